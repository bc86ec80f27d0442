//! The app's HTTP API (`lab-agent app`, on every app board, reached through the LB): the
//! paths, headers and JSON bodies both the app and its clients (`lab load`, the tests)
//! compile against.
//!
//! Every answer carries [`SERVED_BY`]; answers that touched the database carry [`DB`]
//! (`primary db-1` / `replica db-2`), answers to cacheable reads carry [`CACHE`] (`HIT` /
//! `MISS`). Errors are JSON [`AppError`] with a 4xx/5xx status. Authenticated endpoints take
//! `Authorization: Bearer <token>` from [`paths::LOGIN`].

use serde::{Deserialize, Serialize};

/// Endpoint paths of the app.
pub mod paths {
    /// `GET`: a small JSON greeting ([`Hello`]): who served it. Touches nothing else.
    pub const ROOT: &str = "/";
    /// `POST` [`super::Signup`] -> 201 [`super::User`]; 409 when the name is taken.
    pub const SIGNUP: &str = "/api/signup";
    /// `POST` [`super::Login`] -> 200 [`super::Token`]; 401 on a wrong name or password.
    pub const LOGIN: &str = "/api/login";
    /// `GET` (auth) -> [`super::User`].
    pub const WHOAMI: &str = "/api/whoami";
    /// `POST` (auth) [`super::NewPost`] -> 201 [`super::Post`].
    pub const POSTS: &str = "/api/posts";
    /// `GET /api/posts/{id}` -> [`super::Post`] (cached); 404 when there is none.
    pub const POST_PREFIX: &str = "/api/posts/";
    /// `GET /api/users/{id}/posts` -> `Vec<`[`super::Post`]`>`, newest first (cached).
    pub const USERS_PREFIX: &str = "/api/users/";
    /// `PUT /api/files/{bucket}/{name}` (auth), the bytes as the body -> 201 [`super::Uploaded`]:
    /// stored as `users/{id}/{name}` in the bucket's files board (streamed through).
    pub const FILES_PREFIX: &str = "/api/files/";
    /// `GET`: 200 when the app can serve (the agent's readiness probe).
    pub const HEALTH: &str = "/_lab/health";
    /// `GET`: [`super::AppStats`] (the agent's collector). NGINX does not pass `/_lab/` on.
    pub const STATS: &str = "/_lab/stats";
}

/// The answer to an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// Where clients fetch it: through the CDN edge when there is one, else the files board.
    pub url: String,
}

/// Board that answered.
pub const SERVED_BY: &str = "x-served-by";
/// `primary <board>` or `replica <board>`: where the database part of the answer came from.
pub const DB: &str = "x-db";
/// `HIT` or `MISS`: whether a cacheable read came from memcached; `BYPASS` when the request
/// said `Cache-Control: no-cache` (single posts: read from the database, cache untouched).
pub const CACHE: &str = "x-cache";
/// On a write's answer: the GTID of the write (MariaDB `domain-server-seq`). A client may
/// send it back on a read to be sure to see that write (the app remembers it per user too).
pub const GTID: &str = "x-lab-gtid";

/// Longest request body the app reads; a longer one is refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most posts in one answer of [`paths::USERS_PREFIX`]`{id}/posts` (the newest ones).
pub const MAX_LIST_POSTS: usize = 50;
/// Longest post body (characters).
pub const MAX_POST_CHARS: usize = 2000;
/// User names: `[a-z0-9_-]{1,32}`.
pub const MAX_NAME_CHARS: usize = 32;
/// Passwords: 8..=128 characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPost {
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: u64,
    pub user_id: u64,
    pub body: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub served_by: String,
    pub message: String,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    pub error: String,
}

/// Figures of one app process since it started (counters) and of its recent past (gauges):
/// what the agent's collector turns into figures with the same names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppStats {
    pub requests_total: u64,
    /// Answers with a 4xx status.
    pub client_errors_total: u64,
    /// Answers with a 5xx status.
    pub errors_total: u64,
    pub cache_hits_total: u64,
    pub cache_misses_total: u64,
    /// Cache operations that failed (node down, timeout): the request went on without it.
    pub cache_errors_total: u64,
    pub db_reads_replica_total: u64,
    pub db_reads_primary_total: u64,
    pub db_writes_total: u64,
    /// Latency percentiles over the last few seconds, milliseconds (0 when idle).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Cache boards the app currently uses (the others are ejected for now).
    pub cache_nodes_live: u64,
    pub cache_nodes: u64,
}

//! The file store's contract (`lab-agent files`): its paths, bucket names and the stats page
//! the agent's collector reads. Objects are `/<bucket>/<key>`; see the agent's `files`
//! module for what each method answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Health page (200 "ok") and stats page ([`FilesStats`]), not counted as requests.
pub const HEALTH: &str = "/_lab/health";
pub const STATS: &str = "/_lab/stats";

/// Whether `name` can be a bucket: a-z, 0-9 and `-`, 1 to 63 characters, not starting with
/// `-` (safe as a directory name and in a URL, the same on every board).
pub fn is_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `GET /_lab/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesStats {
    pub requests_total: u64,
    /// Answers 4xx and 5xx.
    pub errors_total: u64,
    /// Body bytes received (PUT) and sent (GET).
    pub bytes_in_total: u64,
    pub bytes_out_total: u64,
    pub buckets: BTreeMap<String, BucketUsage>,
}

/// One bucket's place on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUsage {
    pub objects: u64,
    pub bytes: u64,
    pub max_object_bytes: u64,
}

/// The CDN edge's `GET /_lab/stats` (same paths as the file store's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdnStats {
    pub requests_total: u64,
    pub hits_total: u64,
    pub misses_total: u64,
    pub stale_total: u64,
    pub revalidated_total: u64,
    pub origin_fetches_total: u64,
    pub origin_errors_total: u64,
    pub bytes_out_total: u64,
    pub evictions_total: u64,
    pub cached_objects: u64,
    pub cached_bytes: u64,
    pub capacity_bytes: u64,
    pub policy: String,
}

//! The endpoints of [`lab_api::app::paths`], one function each.
//!
//! Cache keys: `post:<id>` (one post, JSON [`Post`]), `user_posts:<user id>` (the newest
//! [`MAX_LIST_POSTS`] of a user, JSON), `ryw:<user id>` (the GTID of the user's last write,
//! [`RYW_TTL_SECS`]). Posts never change, so a cached post is always right; a new post
//! deletes its author's list. A reader who wrote recently (a remembered GTID) or who sends
//! `X-Lab-Gtid` reads the database at least that fresh (see [`super::db`]); the author's own
//! list then skips the cache lookup (another reader may have cached it from a replica that
//! had not yet seen the post) and refreshes it. When the board holding `ryw:<id>` is down
//! (or no cache is configured), the app cannot know what the user wrote last: the user's
//! reads go to the primary.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lab_api::app::{self as contract, Hello, Login, NewPost, Post, Signup, Token, User};
use serde::Serialize;

use super::cache::Lookup;
use super::db::{Freshness, QueryFuture, Served};
use super::error::Failure;
use super::extract::{unix_now, Authed, JsonBody, MaybeAuthed};
use super::queries;
use super::sessions;
use super::state::{App, Backends};
use super::token::Claims;
use super::validate;

/// How long the app remembers a user's last write.
pub const RYW_TTL_SECS: u32 = 10;
use contract::MAX_LIST_POSTS;

fn post_key(id: u64) -> String {
    format!("post:{id}")
}

fn list_key(user_id: u64) -> String {
    format!("user_posts:{user_id}")
}

fn ryw_key(user_id: u64) -> String {
    format!("ryw:{user_id}")
}

fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

fn with_db(mut response: Response, served: &Served) -> Response {
    set_header(&mut response, contract::DB, &served.header());
    response
}

fn with_cache(mut response: Response, hit: bool) -> Response {
    set_header(
        &mut response,
        contract::CACHE,
        if hit { "HIT" } else { "MISS" },
    );
    response
}

/// The GTID a client names with `X-Lab-Gtid`, checked.
fn client_gtid(headers: &HeaderMap) -> Result<Option<String>, Failure> {
    let Some(value) = headers.get(contract::GTID) else {
        return Ok(None);
    };
    let gtid = value
        .to_str()
        .map_err(|_| Failure::bad_request("X-Lab-Gtid is not text"))?;
    validate::gtid(gtid).map_err(Failure::bad_request)?;
    Ok(Some(gtid.to_string()))
}

/// How fresh a read by `reader` must be: at least the GTID the client named, else at least
/// the reader's last write.
async fn freshness(backends: &Backends, reader: Option<&Claims>, named: Option<&str>) -> Freshness {
    if let Some(gtid) = named {
        return Freshness::AtLeast(gtid.to_string());
    }
    let Some(user_id) = reader.and_then(Claims::user_id) else {
        return Freshness::Any;
    };
    let key = ryw_key(user_id);
    if backends.cache.is_empty() || !backends.cache.home_is_live(&key) {
        return Freshness::Primary;
    }
    match backends.cache.get(&key).await {
        Lookup::Hit(bytes) => match String::from_utf8(bytes) {
            Ok(gtid) if validate::gtid(&gtid).is_ok() => Freshness::AtLeast(gtid),
            _ => Freshness::Any,
        },
        Lookup::Miss => Freshness::Any,
        Lookup::Unavailable => Freshness::Primary,
    }
}

/// After a write by `user_id`: its GTID remembered, and on the answer.
async fn remember_write(
    backends: &Backends,
    user_id: u64,
    gtid: Option<&str>,
    response: &mut Response,
) {
    if let Some(gtid) = gtid {
        set_header(response, contract::GTID, gtid);
        backends
            .cache
            .set(&ryw_key(user_id), gtid.as_bytes(), RYW_TTL_SECS)
            .await;
    }
}

pub async fn root(State(app): State<Arc<App>>) -> Json<Hello> {
    Json(Hello {
        served_by: app.backends().config.board.clone(),
        message: "hello from the lab app".to_string(),
    })
}

pub async fn health() -> &'static str {
    "ok\n"
}

pub async fn stats(State(app): State<Arc<App>>) -> Json<contract::AppStats> {
    let backends = app.backends();
    Json(
        app.stats
            .snapshot(backends.cache.live(), backends.cache.len()),
    )
}

pub async fn signup(
    State(app): State<Arc<App>>,
    JsonBody(signup): JsonBody<Signup>,
) -> Result<Response, Failure> {
    validate::name(&signup.name).map_err(Failure::bad_request)?;
    validate::password(&signup.password).map_err(Failure::bad_request)?;
    let hash = app
        .hasher
        .hash(signup.password)
        .await
        .map_err(|e| Failure::internal(e.to_string()))?;
    let backends = app.backends();
    let name = signup.name.clone();
    let written = backends
        .db
        .write(move |conn| -> QueryFuture<'_, u64> {
            Box::pin(async move { queries::insert_user(conn, &name, &hash).await })
        })
        .await
        .map_err(|err| match Failure::from(err) {
            f if f.status == StatusCode::CONFLICT => Failure::new(
                StatusCode::CONFLICT,
                format!("the name {} is taken", signup.name),
            ),
            f => f,
        })?;
    let user = User {
        id: written.value,
        name: signup.name,
    };
    let mut response = with_db(json(StatusCode::CREATED, &user), &written.served);
    remember_write(&backends, user.id, written.gtid.as_deref(), &mut response).await;
    Ok(response)
}

pub async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, Failure> {
    validate::name(&login.name).map_err(Failure::bad_request)?;
    validate::password(&login.password).map_err(Failure::bad_request)?;
    let named = client_gtid(&headers)?;
    let backends = app.backends();
    let freshness = freshness(&backends, None, named.as_deref()).await;
    let (mut found, mut served) = backends.db.read(&freshness, find_user(&login.name)).await?;
    if found.is_none() && matches!(served, Served::Replica(_)) {
        // Maybe signed up a moment ago, and the replica has not seen it yet.
        (found, served) = backends
            .db
            .read(&Freshness::Primary, find_user(&login.name))
            .await?;
    }
    let stored = found.as_ref().map(|u| u.password_hash.clone());
    let matches = app
        .hasher
        .verify(login.password, stored)
        .await
        .map_err(|e| Failure::internal(e.to_string()))?;
    let user = match found {
        Some(u) if matches => User {
            id: u.id,
            name: u.name,
        },
        _ => {
            let response = Failure::unauthorized("wrong name or password").into_response();
            return Ok(with_db(response, &served));
        }
    };
    let now = unix_now();
    let expires_at = now.saturating_add(backends.config.token_ttl_secs);
    let claims = Claims {
        sub: user.id.to_string(),
        name: user.name.clone(),
        iat: now,
        exp: expires_at,
    };
    let token = sessions::open(&backends, &app.sessions, &claims, now).await?;
    let answer = Token {
        token,
        expires_at,
        user,
    };
    Ok(with_db(json(StatusCode::OK, &answer), &served))
}

/// The query finding the user called `name` (run again on the primary if need be).
fn find_user(
    name: &str,
) -> impl for<'c> Fn(&'c mut mysql_async::Conn) -> QueryFuture<'c, Option<queries::UserRow>> + '_ {
    move |conn| {
        let name = name.to_string();
        Box::pin(async move { queries::user_by_name(conn, &name).await })
    }
}

pub async fn whoami(Authed(claims): Authed) -> Result<Json<User>, Failure> {
    let id = claims
        .user_id()
        .ok_or_else(|| Failure::unauthorized("the token is malformed"))?;
    Ok(Json(User {
        id,
        name: claims.name,
    }))
}

pub async fn create_post(
    State(app): State<Arc<App>>,
    Authed(claims): Authed,
    JsonBody(new): JsonBody<NewPost>,
) -> Result<Response, Failure> {
    validate::post_body(&new.body).map_err(Failure::bad_request)?;
    let user_id = claims
        .user_id()
        .ok_or_else(|| Failure::unauthorized("the token is malformed"))?;
    let backends = app.backends();
    let written = backends
        .db
        .write(move |conn| -> QueryFuture<'_, Post> {
            Box::pin(async move { queries::insert_post(conn, user_id, &new.body).await })
        })
        .await?;
    // The author's list changed; the post itself is cached when first read.
    backends.cache.delete(&list_key(user_id)).await;
    let mut response = with_db(json(StatusCode::CREATED, &written.value), &written.served);
    remember_write(&backends, user_id, written.gtid.as_deref(), &mut response).await;
    Ok(response)
}

fn path_id(path: Result<Path<String>, PathRejection>, what: &str) -> Result<u64, Failure> {
    let text = path.map(|Path(t)| t).unwrap_or_default();
    validate::id(&text).ok_or_else(|| Failure::not_found(format!("no {what} {text:?}")))
}

/// A cache lookup of a read-through value, counted.
/// The client asked for an answer from the database (`Cache-Control: no-cache`, what `lab
/// load --no-cache` sends to measure the database's cost): the cache is neither read nor
/// filled, and the answer says `X-Cache: BYPASS`.
fn asks_no_cache(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
        })
}

fn with_bypass(mut response: Response) -> Response {
    set_header(&mut response, contract::CACHE, "BYPASS");
    response
}

async fn cached<T: serde::de::DeserializeOwned>(
    app: &App,
    backends: &Backends,
    key: &str,
) -> Option<T> {
    match backends.cache.get(key).await {
        Lookup::Hit(bytes) => {
            if let Ok(value) = serde_json::from_slice(&bytes) {
                app.stats.cache_hit();
                return Some(value);
            }
        }
        Lookup::Miss | Lookup::Unavailable => {}
    }
    app.stats.cache_miss();
    None
}

async fn fill<T: Serialize>(backends: &Backends, key: &str, value: &T) {
    if let Ok(bytes) = serde_json::to_vec(value) {
        backends
            .cache
            .set(key, &bytes, backends.config.cache_ttl_secs)
            .await;
    }
}

pub async fn get_post(
    State(app): State<Arc<App>>,
    MaybeAuthed(reader): MaybeAuthed,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Failure> {
    let id = path_id(path, "post")?;
    let named = client_gtid(&headers)?;
    let backends = app.backends();
    let key = post_key(id);
    let bypass = asks_no_cache(&headers);
    // Posts never change: a cached one is right for every reader.
    if !bypass {
        if let Some(post) = cached::<Post>(&app, &backends, &key).await {
            return Ok(with_cache(json(StatusCode::OK, &post), true));
        }
    }
    let freshness = freshness(&backends, reader.as_ref(), named.as_deref()).await;
    let (found, served) = backends
        .db
        .read(&freshness, |conn| -> QueryFuture<'_, Option<Post>> {
            Box::pin(queries::post_by_id(conn, id))
        })
        .await?;
    let response = match found {
        Some(post) if bypass => json(StatusCode::OK, &post),
        Some(post) => {
            fill(&backends, &key, &post).await;
            json(StatusCode::OK, &post)
        }
        None => Failure::not_found(format!("no post {id}")).into_response(),
    };
    if bypass {
        return Ok(with_bypass(with_db(response, &served)));
    }
    Ok(with_cache(with_db(response, &served), false))
}

pub async fn user_posts(
    State(app): State<Arc<App>>,
    MaybeAuthed(reader): MaybeAuthed,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Failure> {
    let user_id = path_id(path, "user")?;
    let named = client_gtid(&headers)?;
    let backends = app.backends();
    let key = list_key(user_id);
    let own = reader.as_ref().and_then(Claims::user_id) == Some(user_id);
    // The author (or a client naming a write) must see their writes: decided before the
    // cache is looked at, since a cached list may predate them.
    let mut freshness = None;
    if own || named.is_some() {
        freshness = Some(self::freshness(&backends, reader.as_ref(), named.as_deref()).await);
    }
    let must_be_fresh = freshness.as_ref().is_some_and(|f| *f != Freshness::Any);
    if !must_be_fresh {
        if let Some(posts) = cached::<Vec<Post>>(&app, &backends, &key).await {
            return Ok(with_cache(json(StatusCode::OK, &posts), true));
        }
    } else {
        app.stats.cache_miss();
    }
    let freshness = match freshness {
        Some(f) => f,
        None => self::freshness(&backends, reader.as_ref(), named.as_deref()).await,
    };
    let (found, served) = backends
        .db
        .read(&freshness, |conn| -> QueryFuture<'_, Option<Vec<Post>>> {
            Box::pin(queries::user_posts(conn, user_id, MAX_LIST_POSTS))
        })
        .await?;
    let response = match found {
        Some(posts) => {
            fill(&backends, &key, &posts).await;
            json(StatusCode::OK, &posts)
        }
        None => Failure::not_found(format!("no user {user_id}")).into_response(),
    };
    Ok(with_cache(with_db(response, &served), false))
}

//! What handlers take from a request: a JSON body (bounded by
//! [`lab_api::app::MAX_BODY_BYTES`], unknown fields refused, every refusal a JSON error) and
//! the login token (`Authorization: Bearer <token>`, checked by [`super::sessions`]), required ([`Authed`]) or optional
//! ([`MaybeAuthed`]: none is fine, a bad one is still 401).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use lab_api::app::MAX_BODY_BYTES;
use serde::de::DeserializeOwned;

use super::error::Failure;
use super::sessions;
use super::state::App;
use super::token::{Claims, MAX_TOKEN_BYTES};

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Failure::new(rejection.status(), rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|err| Failure::bad_request(format!("invalid JSON body: {err}")))
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claims of the request's token (a JWT, or a session kept where the config says);
/// None without an `Authorization` header.
async fn claims(parts: &Parts, app: &App) -> Result<Option<Claims>, Failure> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Failure::unauthorized("Authorization must be \"Bearer <token>\""))?;
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Failure::unauthorized("the token is malformed"));
    }
    sessions::check(&app.backends(), &app.sessions, token, unix_now())
        .await
        .map(Some)
}

/// A request with a valid token.
pub struct Authed(pub Claims);

/// A request with a valid token or none.
pub struct MaybeAuthed(pub Option<Claims>);

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Failure> {
        claims(parts, app).await?.map(Authed).ok_or_else(|| {
            Failure::unauthorized("this needs a login token (Authorization: Bearer <token>)")
        })
    }
}

impl FromRequestParts<Arc<App>> for MaybeAuthed {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Failure> {
        claims(parts, app).await.map(MaybeAuthed)
    }
}

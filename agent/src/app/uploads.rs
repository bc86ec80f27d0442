//! Uploads: `PUT /api/files/{bucket}/{name}` from a logged-in user, streamed through to the
//! files board holding the bucket as `users/{id}/{name}` (the app never holds the whole
//! file). The answer gives the object's URL on the CDN edge (the app's pages reference
//! static files there), or on the files board when there is no edge. The store's refusals
//! (413 over the bucket's limit, 507 on a full disk) reach the client with its words.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use lab_api::app::Uploaded;

use super::error::Failure;
use super::extract::Authed;
use super::state::App;

/// Longest file name accepted.
pub const MAX_NAME: usize = 128;
/// Connecting to the files board.
const CONNECT_WITHIN: Duration = Duration::from_secs(3);
/// The whole upload (a slow client on a big file is the store's to bound, not ours).
const UPLOAD_WITHIN: Duration = Duration::from_secs(300);

/// Whether `name` can be an uploaded file's name: letters, digits, `.`, `_`, `-`, not
/// starting with `.`, at most [`MAX_NAME`] (no `/`: the user's directory is the app's).
pub fn file_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub async fn upload(
    State(app): State<Arc<App>>,
    Authed(claims): Authed,
    Path((bucket, name)): Path<(String, String)>,
    request: Request,
) -> Result<Response, Failure> {
    let user_id = claims
        .user_id()
        .ok_or_else(|| Failure::unauthorized("the token is malformed"))?;
    if !file_name_ok(&name) {
        return Err(Failure::bad_request(format!(
            "`{name}` is not a file name (letters, digits, . _ -; at most {MAX_NAME})"
        )));
    }
    let backends = app.backends();
    let config = &backends.config;
    let Some(place) = config.buckets.iter().find(|b| b.bucket == bucket) else {
        return Err(Failure::not_found(format!("no bucket `{bucket}`")));
    };
    let key = format!("users/{user_id}/{name}");
    let origin = format!("{}:{}", place.host, place.port);
    let unreachable = |e: String| {
        Failure::new(
            StatusCode::BAD_GATEWAY,
            format!("the files board of bucket `{bucket}` ({origin}): {e}"),
        )
    };
    let connect = |addr: String| async move {
        match tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(tcp)) => Ok((tcp, addr)),
            Ok(Err(e)) => Err(format!("{addr}: {e}")),
            Err(_) => Err(format!("{addr}: no answer")),
        }
    };
    // The bucket's replica takes the upload when its board cannot be reached.
    let (tcp, origin) = match connect(origin.clone()).await {
        Ok(pair) => pair,
        Err(first) => match place.replica.clone() {
            Some(replica) => connect(replica)
                .await
                .map_err(|second| unreachable(format!("{first}; {second}")))?,
            None => return Err(unreachable(first)),
        },
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let mut forward = hyper::Request::put(format!("/{bucket}/{key}"))
        .header(header::HOST, &origin)
        .header(header::CONNECTION, "close");
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
        if let Some(v) = request.headers().get(&name) {
            forward = forward.header(name, v.clone());
        }
    }
    let forward = forward
        .body(request.into_body())
        .map_err(|e| Failure::internal(e.to_string()))?;
    let exchange = async {
        let response = sender
            .send_request(forward)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), 16 * 1024)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok::<_, Failure>((status, body))
    };
    let answer = tokio::time::timeout(UPLOAD_WITHIN, exchange).await;
    driver.abort();
    let (status, body) = answer.map_err(|_| unreachable("the upload took too long".into()))??;
    let stored: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != StatusCode::CREATED {
        let why = stored["error"].as_str().unwrap_or("refused").to_string();
        return Err(Failure::new(status, why));
    }
    let base = config
        .static_base
        .clone()
        .unwrap_or_else(|| format!("http://{origin}"));
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            url: format!("{base}/{bucket}/{key}"),
            bucket,
            key,
            size: stored["size"].as_u64().unwrap_or(0),
            etag: stored["etag"].as_str().unwrap_or("").to_string(),
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_stay_in_the_users_directory() {
        for good in ["me.png", "cv_2026-12.pdf", "a"] {
            assert!(super::file_name_ok(good), "{good}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", "%2e", &"x".repeat(129)] {
            assert!(!super::file_name_ok(bad), "{bad}");
        }
    }
}

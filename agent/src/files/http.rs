//! The file store's HTTP face: `PUT|GET|HEAD|DELETE /<bucket>/<key>`, streaming both ways.
//! PUT answers 201 with the ETag (413 over the bucket's limit, 507 on a full disk, 400 on a
//! bad key, 404 on an unknown bucket; nothing is left behind by any of them). GET and HEAD
//! answer with Content-Type, Content-Length, ETag and `Accept-Ranges: bytes`; a single
//! `Range` gives 206 (416 when nothing of it exists); `If-None-Match` with the current ETag
//! gives 304. Every answer carries `X-Served-By`; `/_lab/health` and `/_lab/stats` are the
//! agent's probe and collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use serde_json::json;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use lab_api::files::{BucketUsage, FilesStats};

use super::key::{check_bucket, ObjectKey};
use super::range::{self, RangeAsk};
use super::store::{Chunks, PutError, Store};

pub use lab_api::files::{HEALTH, STATS};

/// How much of a refused upload is read and dropped before the 413 (larger ones are cut).
const DRAIN_AFTER_REFUSAL: u64 = 4 << 20;

/// Counters of `/_lab/stats`.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub errors: AtomicU64,
}

/// What every handler shares.
pub struct Files {
    pub board: String,
    pub store: Store,
    pub counters: Counters,
}

pub fn router(files: Arc<Files>) -> Router {
    Router::new()
        .route(HEALTH, get(|| async { "ok\n" }))
        .route(STATS, get(stats))
        .route("/{bucket}/{*key}", axum::routing::any(object))
        .fallback(|| async { failure(StatusCode::NOT_FOUND, "use /<bucket>/<key>") })
        .layer(axum::middleware::from_fn_with_state(
            files.clone(),
            every_answer,
        ))
        .with_state(files)
}

async fn every_answer(
    State(files): State<Arc<Files>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let counted = !request.uri().path().starts_with("/_lab/");
    let mut response = next.run(request).await;
    if counted {
        files.counters.requests.fetch_add(1, Ordering::Relaxed);
        if response.status().is_server_error() || response.status().is_client_error() {
            files.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&files.board) {
        response.headers_mut().insert("x-served-by", v);
    }
    response
}

fn failure(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn object(
    State(files): State<Arc<Files>>,
    Path((bucket, key)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(e) = check_bucket(&bucket) {
        return failure(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let key = match ObjectKey::parse(&key) {
        Ok(k) => k,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if files.store.bucket(&bucket).is_none() {
        return failure(
            StatusCode::NOT_FOUND,
            &format!("no bucket `{bucket}` on this board"),
        );
    }
    match *request.method() {
        Method::PUT => put(&files, &bucket, &key, request).await,
        Method::GET | Method::HEAD => read(&files, &bucket, &key, request).await,
        Method::DELETE => {
            let from_peer = request.headers().contains_key(REPLICA_HEADER);
            let mut response = match files.store.delete(&bucket, &key).await {
                Ok(true) => StatusCode::NO_CONTENT.into_response(),
                Ok(false) => failure(StatusCode::NOT_FOUND, "no such object"),
                Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            };
            if let (Some(peer), false) = (replica_of(&files, &bucket), from_peer) {
                let done = replicate(&peer, Method::DELETE, &bucket, &key, None).await;
                mark_replicated(&mut response, &bucket, &key, done);
            }
            response
        }
        _ => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "PUT, GET, HEAD or DELETE an object",
        ),
    }
}

async fn put(files: &Files, bucket: &str, key: &ObjectKey, request: Request) -> Response {
    let headers = request.headers().clone();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut body = RequestBody {
        body: request.into_body(),
        counters: &files.counters,
    };
    match files
        .store
        .put(bucket, key, &content_type, declared, &mut body)
        .await
    {
        Ok(meta) => {
            let mut response = (
                StatusCode::CREATED,
                axum::Json(json!({
                    "bucket": bucket,
                    "key": key.as_str(),
                    "size": meta.size,
                    "etag": meta.etag,
                    "content_type": meta.content_type,
                })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&meta.etag) {
                response.headers_mut().insert(header::ETAG, v);
            }
            if let (Some(peer), false) = (
                replica_of(files, bucket),
                headers.contains_key(REPLICA_HEADER),
            ) {
                let blob = files.store.blob_path(bucket, &meta);
                let done = replicate(&peer, Method::PUT, bucket, key, Some((blob, &meta))).await;
                mark_replicated(&mut response, bucket, key, done);
            }
            response
        }
        Err(e) => {
            // The client may still be sending: read (and drop) a bounded rest first, so it
            // gets this answer instead of a reset connection.
            if matches!(e, PutError::TooLarge { .. }) {
                let drained = async {
                    let mut left = DRAIN_AFTER_REFUSAL;
                    while let Some(Ok(chunk)) = body.next_chunk().await {
                        left = left.saturating_sub(chunk.len() as u64);
                        if left == 0 {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drained).await;
            }
            let status = match &e {
                PutError::NoBucket(_) => StatusCode::NOT_FOUND,
                PutError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                PutError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
                PutError::Body(_) => StatusCode::BAD_REQUEST,
                PutError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            failure(status, &e.to_string())
        }
    }
}

/// Set on a write passed on by the bucket's other board (so it is not passed back).
pub const REPLICA_HEADER: &str = "x-lab-replica";
/// On a write's answer: `yes` when the bucket's other board has it too, `no` when it could
/// not be reached (the write stands here; the other board misses it until written again).
pub const REPLICATED_HEADER: &str = "x-lab-replicated";
/// Longest a write may take to be passed on.
const REPLICATE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

fn replica_of(files: &Files, bucket: &str) -> Option<String> {
    files.store.bucket(bucket).and_then(|b| b.replica.clone())
}

fn mark_replicated(
    response: &mut Response,
    bucket: &str,
    key: &ObjectKey,
    done: Result<(), String>,
) {
    let word = match done {
        Ok(()) => "yes",
        Err(why) => {
            log::warn!(
                "{bucket}/{}: not passed on to the other board: {why}",
                key.as_str()
            );
            "no"
        }
    };
    response
        .headers_mut()
        .insert(REPLICATED_HEADER, HeaderValue::from_static(word));
}

/// Passes a write (the stored blob) or a delete on to `peer`, marked as a replica's.
async fn replicate(
    peer: &str,
    method: Method,
    bucket: &str,
    key: &ObjectKey,
    blob: Option<(std::path::PathBuf, &super::store::Meta)>,
) -> Result<(), String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(peer)
            .await
            .map_err(|e| format!("{peer}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("/{bucket}/{}", key.as_str()))
            .header(header::HOST, peer)
            .header(header::CONNECTION, "close")
            .header(REPLICA_HEADER, "1");
        let body = match blob {
            Some((path, meta)) => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                request = request
                    .header(header::CONTENT_TYPE, &meta.content_type)
                    .header(header::CONTENT_LENGTH, meta.size);
                Body::from_stream(tokio_util::io::ReaderStream::new(file))
            }
            None => Body::empty(),
        };
        let request = request.body(body).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string());
        driver.abort();
        let status = response?.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(format!("{peer} answered {status}"))
        }
    };
    tokio::time::timeout(REPLICATE_WITHIN, exchange)
        .await
        .map_err(|_| format!("{peer} did not answer within {REPLICATE_WITHIN:?}"))?
}

/// A PUT's body, counted as it arrives.
struct RequestBody<'a> {
    body: Body,
    counters: &'a Counters,
}

impl Chunks for RequestBody<'_> {
    async fn next_chunk(&mut self) -> Option<Result<bytes::Bytes, String>> {
        loop {
            match self.body.frame().await? {
                Err(e) => return Some(Err(e.to_string())),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.counters
                            .bytes_in
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        return Some(Ok(data));
                    }
                }
            }
        }
    }
}

async fn read(files: &Files, bucket: &str, key: &ObjectKey, request: Request) -> Response {
    let head = request.method() == Method::HEAD;
    let meta = match files.store.meta(bucket, key).await {
        Ok(Some(meta)) => meta,
        Ok(None) => return failure(StatusCode::NOT_FOUND, "no such object"),
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut headers = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(header::ETAG, &meta.etag);
    put(header::ACCEPT_RANGES, "bytes");
    let if_none_match = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == meta.etag || t.trim() == "*")
    }) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    put(header::CONTENT_TYPE, &meta.content_type);
    let asked = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, len) = match range::parse(asked, meta.size) {
        RangeAsk::Whole => (StatusCode::OK, 0, meta.size),
        RangeAsk::Part { start, end } => {
            put(
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{}", meta.size),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAsk::Unsatisfiable => {
            put(header::CONTENT_RANGE, &format!("bytes */{}", meta.size));
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
    };
    put(header::CONTENT_LENGTH, &len.to_string());
    if head {
        return (status, headers).into_response();
    }
    let mut file = match tokio::fs::File::open(files.store.blob_path(bucket, &meta)).await {
        Ok(f) => f,
        // Replaced between the index read and the open: the client asks again.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "replaced just now; ask again",
            )
        }
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if start > 0 {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
            return failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
    }
    files.counters.bytes_out.fetch_add(len, Ordering::Relaxed);
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024);
    (status, headers, Body::from_stream(stream)).into_response()
}

async fn stats(State(files): State<Arc<Files>>) -> Response {
    let c = &files.counters;
    let mut stats = FilesStats {
        requests_total: c.requests.load(Ordering::Relaxed),
        errors_total: c.errors.load(Ordering::Relaxed),
        bytes_in_total: c.bytes_in.load(Ordering::Relaxed),
        bytes_out_total: c.bytes_out.load(Ordering::Relaxed),
        buckets: Default::default(),
    };
    for b in files.store.buckets() {
        let (objects, bytes) = files.store.usage(&b.name).await.unwrap_or((0, 0));
        stats.buckets.insert(
            b.name.clone(),
            BucketUsage {
                objects,
                bytes,
                max_object_bytes: b.max_object_bytes,
            },
        );
    }
    axum::Json(stats).into_response()
}

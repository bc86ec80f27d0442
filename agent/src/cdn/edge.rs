//! The edge's request path. A GET (or HEAD) is answered from the cache while the object is
//! fresh (`X-Cache: HIT`); otherwise one origin fetch per key at a time (every concurrent miss
//! of the key waits for that one fetch: `MISS`), conditional when a stale copy has an ETag (a
//! 304 refreshes it: `REVALIDATED`). When the origin fails (refused, timed out, 5xx) a stale
//! copy is served for up to `stale_if_error_secs` past its freshness (`STALE`), then 502/504.
//! Freshness comes from the origin's `Cache-Control` (`max-age`, `s-maxage`; `no-store` and
//! `private` are not kept), else the board's default. Range requests and objects larger than
//! `max_object_bytes` are streamed through from the origin and not kept.
//!
//! `/<bucket>/...` goes to the files board holding the bucket (its replica when it cannot
//! be reached); anything else is proxied to the fallback origin (the LB) as it is, any
//! method, headers and body, and never kept (the app's answers are per user and dynamic).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use lab_api::files::CdnStats;
use lab_api::spec::CdnConfig;
use serde_json::json;
use tokio::sync::OnceCell;

use super::cache::{Cache, Policy};

/// Longest an origin fetch may take (connect, answer and body).
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the LB may take to start answering a proxied request (a log-in hashes a password:
/// NGINX gives it 30 s too).
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes counted per entry beyond its body (key, headers, bookkeeping).
const ENTRY_OVERHEAD: u64 = 256;
/// Largest body of an uncached answer read whole (a 404's JSON).
const MAX_PASSED_BODY: usize = 64 * 1024;

/// One kept object.
#[derive(Clone)]
pub struct Cached {
    content_type: Option<HeaderValue>,
    etag: Option<HeaderValue>,
    body: Bytes,
    /// Fresh until then.
    expires: Instant,
}

/// What one origin fetch gave.
enum Fetched {
    /// 200: the object (kept unless the origin said not to).
    Object(Cached),
    /// 200, but not to be kept (`no-store`, `private`, or the app's answer without a
    /// lifetime): answered, never stored.
    Uncached(Cached),
    /// 304 to our conditional request: the stale copy is good for another TTL.
    NotModified,
    /// Another status (404, 400, ...): passed on as it is, not kept.
    Passed(StatusCode, Bytes),
    /// Larger than the edge keeps: the client's own request is streamed through.
    TooLarge,
    /// Refused, timed out or 5xx: the status to answer and why.
    Failed(StatusCode, String),
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    revalidated: AtomicU64,
    origin_fetches: AtomicU64,
    origin_errors: AtomicU64,
    bytes_out: AtomicU64,
}

/// The edge's state, shared by every request.
pub struct Edge {
    config: CdnConfig,
    /// `X-Served-By`, made once.
    served_by: Option<HeaderValue>,
    /// (bucket, `host:port`) of each origin, made once.
    origins: Vec<(String, String)>,
    /// A bucket origin's replica (`host:port` -> `host:port`), asked when it is unreachable.
    replicas: HashMap<String, String>,
    cache: Mutex<Cache<Cached>>,
    inflight: Mutex<HashMap<String, Arc<OnceCell<Arc<Fetched>>>>>,
    counters: Counters,
}

impl Edge {
    pub fn new(config: CdnConfig) -> Edge {
        let policy = Policy::parse(&config.policy).unwrap_or(Policy::Lru);
        Edge {
            served_by: HeaderValue::from_str(&config.board).ok(),
            origins: config
                .origins
                .iter()
                .map(|o| (o.bucket.clone(), format!("{}:{}", o.host, o.port)))
                .collect(),
            replicas: config
                .origins
                .iter()
                .filter_map(|o| Some((format!("{}:{}", o.host, o.port), o.replica.clone()?)))
                .collect(),
            cache: Mutex::new(Cache::new(policy, config.memory_bytes)),
            inflight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            config,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache<Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops `key` (exact) or every key under `prefix`; how many.
    pub fn purge(&self, key: Option<&str>, prefix: Option<&str>) -> usize {
        let mut cache = self.cache();
        match (key, prefix) {
            (Some(k), _) => usize::from(cache.remove(k)),
            (None, Some(p)) => cache.purge_prefix(p),
            (None, None) => 0,
        }
    }

    pub fn stats(&self) -> CdnStats {
        let c = &self.counters;
        let cache = self.cache();
        CdnStats {
            requests_total: c.requests.load(Ordering::Relaxed),
            hits_total: c.hits.load(Ordering::Relaxed),
            misses_total: c.misses.load(Ordering::Relaxed),
            stale_total: c.stale.load(Ordering::Relaxed),
            revalidated_total: c.revalidated.load(Ordering::Relaxed),
            origin_fetches_total: c.origin_fetches.load(Ordering::Relaxed),
            origin_errors_total: c.origin_errors.load(Ordering::Relaxed),
            bytes_out_total: c.bytes_out.load(Ordering::Relaxed),
            evictions_total: cache.evictions(),
            cached_objects: cache.len() as u64,
            cached_bytes: cache.used_bytes(),
            capacity_bytes: cache.capacity_bytes(),
            policy: cache.policy().as_str().to_string(),
        }
    }

    /// `host:port` of the origin for `path`.
    fn origin(&self, path: &str) -> Option<&str> {
        let bucket = path.trim_start_matches('/').split('/').next().unwrap_or("");
        self.origins
            .iter()
            .find(|(b, _)| b == bucket)
            .map(|(_, addr)| addr.as_str())
    }
}

/// Every client request that is not the edge's own page.
pub async fn serve_object(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    edge.counters.requests.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let key: &str = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(origin) = edge.origin(key) else {
        // Not a bucket: the app's, through the LB, whatever the method, never kept.
        return match edge.config.fallback.clone() {
            Some(fallback) => {
                edge.counters.misses.fetch_add(1, Ordering::Relaxed);
                proxy(&edge, &fallback, request).await
            }
            None => failure(StatusCode::NOT_FOUND, "no origin serves this path"),
        };
    };
    if method != Method::GET && method != Method::HEAD {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "the edge serves GET and HEAD of bucket objects (upload through the app)",
        );
    }
    let head = method == Method::HEAD;
    let if_none_match = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Ranges (video seeking) go straight through.
    if let Some(range) = request.headers().get(header::RANGE).cloned() {
        edge.counters.misses.fetch_add(1, Ordering::Relaxed);
        return pass_through(&edge, origin, key, Some(range), &method).await;
    }
    let now = Instant::now();
    let stale = {
        let mut cache = edge.cache();
        match cache.get(key) {
            Some(c) if c.expires > now => {
                let c = c.clone();
                drop(cache);
                edge.counters.hits.fetch_add(1, Ordering::Relaxed);
                return answer(&edge, &c, "HIT", head, if_none_match.as_deref());
            }
            Some(c) => Some(c.clone()),
            None => None,
        }
    };
    let fetched = fetch_once(&edge, origin, key, stale.as_ref()).await;
    match (&*fetched, stale) {
        (Fetched::Object(c) | Fetched::Uncached(c), _) => {
            edge.counters.misses.fetch_add(1, Ordering::Relaxed);
            answer(&edge, c, "MISS", head, if_none_match.as_deref())
        }
        (Fetched::NotModified, Some(mut s)) => {
            edge.counters.revalidated.fetch_add(1, Ordering::Relaxed);
            s.expires = Instant::now() + ttl_default(&edge);
            answer(&edge, &s, "REVALIDATED", head, if_none_match.as_deref())
        }
        (Fetched::TooLarge, _) => {
            edge.counters.misses.fetch_add(1, Ordering::Relaxed);
            pass_through(&edge, origin, key, None, &method).await
        }
        (Fetched::Passed(status, body), _) => {
            edge.counters.misses.fetch_add(1, Ordering::Relaxed);
            with_edge_headers(&edge, (*status, body.clone()).into_response(), "MISS")
        }
        (Fetched::Failed(status, why), Some(s))
            if now.saturating_duration_since(s.expires)
                <= Duration::from_secs(u64::from(edge.config.stale_if_error_secs)) =>
        {
            log::debug!("serving {key} stale: {why}");
            let _ = status;
            edge.counters.stale.fetch_add(1, Ordering::Relaxed);
            answer(&edge, &s, "STALE", head, if_none_match.as_deref())
        }
        (Fetched::Failed(status, why), _) => failure(*status, why),
        (Fetched::NotModified, None) => failure(
            StatusCode::BAD_GATEWAY,
            "the origin said 304 to a plain GET",
        ),
    }
}

fn ttl_default(edge: &Edge) -> Duration {
    Duration::from_secs(u64::from(edge.config.default_ttl_secs))
}

/// One origin fetch for `key`, shared by every request that misses it meanwhile; a kept
/// object (or a refreshed one) is in the cache before anyone is answered.
async fn fetch_once(
    edge: &Arc<Edge>,
    origin: &str,
    key: &str,
    stale: Option<&Cached>,
) -> Arc<Fetched> {
    let cell = {
        let mut inflight = edge.inflight.lock().unwrap_or_else(|p| p.into_inner());
        inflight
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone()
    };
    let etag = stale
        .and_then(|s| s.etag.as_ref())
        .and_then(|e| e.to_str().ok())
        .map(str::to_string);
    let fetched = cell
        .get_or_init(|| async {
            edge.counters.origin_fetches.fetch_add(1, Ordering::Relaxed);
            let fetched = match tokio::time::timeout(
                ORIGIN_TIMEOUT,
                fetch(edge, origin, key, etag.as_deref()),
            )
            .await
            {
                Ok(f) => f,
                Err(_) => Fetched::Failed(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("the origin {origin} did not answer within {ORIGIN_TIMEOUT:?}"),
                ),
            };
            match &fetched {
                Fetched::Object(c) => {
                    let bytes = c.body.len() as u64 + key.len() as u64 + ENTRY_OVERHEAD;
                    edge.cache().insert(key, c.clone(), bytes);
                }
                Fetched::NotModified => {
                    if let Some(c) = edge.cache().peek_mut(key) {
                        c.expires = Instant::now() + ttl_default(edge);
                    }
                }
                Fetched::Failed(..) => {
                    edge.counters.origin_errors.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            Arc::new(fetched)
        })
        .await
        .clone();
    let mut inflight = edge.inflight.lock().unwrap_or_else(|p| p.into_inner());
    if inflight.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
        inflight.remove(key);
    }
    fetched
}

async fn fetch(edge: &Edge, origin: &str, key: &str, etag: Option<&str>) -> Fetched {
    let refused =
        |e: String| Fetched::Failed(StatusCode::BAD_GATEWAY, format!("the origin {origin}: {e}"));
    let (tcp, origin) = match connect(edge, origin).await {
        Ok(pair) => pair,
        Err(e) => return refused(e),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
            Ok(pair) => pair,
            Err(e) => return refused(e.to_string()),
        };
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(key)
        .header(header::HOST, origin)
        .header(header::CONNECTION, "close");
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let fetched = async {
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if status.is_server_error() {
            return Ok(Fetched::Failed(
                StatusCode::BAD_GATEWAY,
                format!("the origin {origin} answered {status}"),
            ));
        }
        if status != StatusCode::OK {
            let body = http_body_util::Limited::new(response.into_body(), MAX_PASSED_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            return Ok(Fetched::Passed(status, body));
        }
        let max = edge.config.max_object_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Ok(Fetched::TooLarge);
        }
        let body = match http_body_util::Limited::new(response.into_body(), max as usize)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Ok(Fetched::TooLarge),
            Err(e) => return Err(e.to_string()),
        };
        // Only bucket objects are fetched here: static, fresh for the default unless the
        // store says otherwise.
        let (keep, ttl) = freshness(&headers, Some(ttl_default(edge)));
        let cached = Cached {
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            etag: headers.get(header::ETAG).cloned(),
            body,
            expires: Instant::now() + ttl,
        };
        if keep {
            Ok(Fetched::Object(cached))
        } else {
            Ok(Fetched::Uncached(cached))
        }
    }
    .await;
    driver.abort();
    fetched.unwrap_or_else(refused)
}

/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// The client's request, any method, body and headers included, sent to `origin` and its
/// answer streamed back: the edge as a plain reverse proxy for what it does not keep.
async fn proxy(edge: &Edge, origin: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    forward(
        edge,
        origin,
        parts.method,
        &path,
        &parts.headers,
        body,
        PROXY_TIMEOUT,
    )
    .await
}

/// Sends `method path` with `headers` (hop-by-hop ones and Host left out) and `body` to
/// `origin` (its replica when unreachable) and streams the answer back with its end-to-end
/// headers; 502 when it cannot be reached, 504 when it does not start answering `within`.
async fn forward(
    edge: &Edge,
    origin: &str,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Body,
    within: Duration,
) -> Response {
    edge.counters.origin_fetches.fetch_add(1, Ordering::Relaxed);
    let exchange = async {
        let (tcp, origin) = connect(edge, origin).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder().method(method).uri(path);
        if let Some(out) = request.headers_mut() {
            for (name, value) in headers {
                if name != header::HOST && !HOP_BY_HOP.contains(name) {
                    out.append(name, value.clone());
                }
            }
            if let Ok(v) = HeaderValue::from_str(origin) {
                out.insert(header::HOST, v);
            }
        }
        let request = request.body(body).map_err(|e| e.to_string())?;
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(within, exchange).await {
        Ok(Ok(response)) => {
            let (parts, body) = response.into_parts();
            let mut out = Response::new(Body::new(body));
            *out.status_mut() = parts.status;
            for (name, value) in &parts.headers {
                if !HOP_BY_HOP.contains(name) {
                    out.headers_mut().append(name, value.clone());
                }
            }
            with_edge_headers(edge, out, "MISS")
        }
        Ok(Err(e)) => {
            edge.counters.origin_errors.fetch_add(1, Ordering::Relaxed);
            failure(
                StatusCode::BAD_GATEWAY,
                &format!("the origin {origin}: {e}"),
            )
        }
        Err(_) => {
            edge.counters.origin_errors.fetch_add(1, Ordering::Relaxed);
            failure(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("the origin {origin} did not answer"),
            )
        }
    }
}

/// A connection to `origin`, or to its replica when it cannot be reached; and the address
/// that answered.
async fn connect<'a>(
    edge: &'a Edge,
    origin: &'a str,
) -> Result<(tokio::net::TcpStream, &'a str), String> {
    match tokio::net::TcpStream::connect(origin).await {
        Ok(tcp) => Ok((tcp, origin)),
        Err(e) => match edge.replicas.get(origin) {
            Some(replica) => match tokio::net::TcpStream::connect(replica.as_str()).await {
                Ok(tcp) => Ok((tcp, replica.as_str())),
                Err(e2) => Err(format!("{e}; its replica {replica}: {e2}")),
            },
            None => Err(e.to_string()),
        },
    }
}

/// (keep it, for how long) from the origin's `Cache-Control`.
/// `default` None: nothing is kept unless the origin gives a lifetime (the app's answers
/// are dynamic; the file store's objects are not).
pub fn freshness(headers: &HeaderMap, default: Option<Duration>) -> (bool, Duration) {
    let Some(cc) = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return (default.is_some(), default.unwrap_or(Duration::ZERO));
    };
    let mut ttl = None;
    for directive in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "private" || directive == "no-cache" {
            return (false, Duration::ZERO);
        }
        if let Some(v) = directive.strip_prefix("s-maxage=") {
            ttl = v.parse::<u64>().ok().map(Duration::from_secs);
        } else if let Some(v) = directive.strip_prefix("max-age=") {
            ttl = ttl.or(v.parse::<u64>().ok().map(Duration::from_secs));
        }
    }
    match ttl.or(default) {
        Some(ttl) => (true, ttl),
        None => (false, Duration::ZERO),
    }
}

/// The answer from a kept object.
fn answer(
    edge: &Edge,
    c: &Cached,
    x_cache: &'static str,
    head: bool,
    if_none_match: Option<&str>,
) -> Response {
    let mut headers = HeaderMap::with_capacity(6);
    if let Some(v) = &c.content_type {
        headers.insert(header::CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &c.etag {
        headers.insert(header::ETAG, v.clone());
    }
    let matches = match (if_none_match, c.etag.as_ref().and_then(|e| e.to_str().ok())) {
        (Some(asked), Some(etag)) => asked
            .split(',')
            .any(|t| t.trim() == etag || t.trim() == "*"),
        _ => false,
    };
    let response = if matches {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(c.body.len()));
        (StatusCode::OK, headers).into_response()
    } else {
        edge.counters
            .bytes_out
            .fetch_add(c.body.len() as u64, Ordering::Relaxed);
        (StatusCode::OK, headers, c.body.clone()).into_response()
    };
    with_edge_headers(edge, response, x_cache)
}

/// A client's GET or HEAD streamed from the bucket's origin and back, not kept (ranges,
/// objects over the edge's limit).
async fn pass_through(
    edge: &Edge,
    origin: &str,
    key: &str,
    range: Option<HeaderValue>,
    method: &Method,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(range) = range {
        headers.insert(header::RANGE, range);
    }
    let (method, body) = (method.clone(), Body::empty());
    forward(edge, origin, method, key, &headers, body, ORIGIN_TIMEOUT).await
}

fn with_edge_headers(edge: &Edge, mut response: Response, x_cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_CACHE, HeaderValue::from_static(x_cache));
    if let Some(v) = &edge.served_by {
        headers.insert(X_SERVED_BY, v.clone());
    }
    response
}

const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");
const X_SERVED_BY: header::HeaderName = header::HeaderName::from_static("x-served-by");

fn failure(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_freshness_or_forbids_keeping() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_str(v).expect("value"),
            );
            freshness(&h, Some(Duration::from_secs(60)))
        };
        assert_eq!(
            freshness(&HeaderMap::new(), Some(Duration::from_secs(60))),
            (true, Duration::from_secs(60))
        );
        // The app's answers without a lifetime are not kept.
        assert_eq!(freshness(&HeaderMap::new(), None), (false, Duration::ZERO));
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert_eq!(freshness(&h, None), (true, Duration::from_secs(5)));
        assert_eq!(
            with("public, max-age=300"),
            (true, Duration::from_secs(300))
        );
        assert_eq!(
            with("max-age=300, s-maxage=10"),
            (true, Duration::from_secs(10))
        );
        assert_eq!(with("no-store"), (false, Duration::ZERO));
        assert_eq!(with("private, max-age=60"), (false, Duration::ZERO));
        assert_eq!(with("public"), (true, Duration::from_secs(60)));
    }
}

//! The mini CDN edge (`lab-agent cdn --config FILE`): a cache in front of the file store
//! and the app, on every cdn board. The agent runs it as a supervised child
//! ([`crate::roles::cdn`]); its config is the spec's [`lab_api::spec::CdnConfig`].
//!
//! - [`cache`]: the byte-bounded cache and its two eviction policies (LRU, S3-FIFO).
//! - [`edge`]: the request path: HIT / MISS (one origin fetch per key) / REVALIDATED (ETag,
//!   304) / STALE (origin down, within the bound), pass-through for ranges and large objects.
//!
//! Clients use the board's cluster address; purges come on 127.0.0.1 only
//! (`POST /_lab/purge?prefix=/avatars/` or `?key=/avatars/a.png`), from the agent, which
//! takes them over mTLS from `lab cdn purge`.

pub mod cache;
pub mod edge;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::Router;
use lab_api::files::{HEALTH, STATS};
use lab_api::spec::CdnConfig;
use tokio_util::sync::CancellationToken;

use self::edge::Edge;

/// The purge page on the admin (loopback) port.
pub const PURGE: &str = "/_lab/purge";

/// Serves the edge of the config at `config_path` until `shutdown` is cancelled.
pub async fn run(config_path: &Path, shutdown: CancellationToken) -> anyhow::Result<()> {
    let text = tokio::fs::read(config_path)
        .await
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config: CdnConfig = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a cdn config", config_path.display()))?;
    let clients = tokio::net::TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("listening on {}:{}", config.bind, config.port))?;
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", config.admin_port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", config.admin_port))?;
    serve(clients, admin, config, shutdown).await
}

/// Serves `config`'s edge on `clients` and its purges on `admin` until `shutdown`.
pub async fn serve(
    clients: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    config: CdnConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    log::info!(
        "lab cdn {} listening on {}; {} policy over {} bytes; origins: {}",
        config.board,
        clients
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string()),
        config.policy,
        config.memory_bytes,
        config
            .origins
            .iter()
            .map(|o| format!("/{}/ from {}", o.bucket, o.board))
            .chain(config.fallback.iter().map(|f| format!("the rest from {f}")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let edge = Arc::new(Edge::new(config));
    let client_routes = Router::new()
        .route(HEALTH, get(|| async { "ok\n" }))
        .route(STATS, get(stats))
        .fallback(edge::serve_object)
        .with_state(edge.clone());
    let admin_routes = Router::new()
        .route(PURGE, post(purge))
        .route(STATS, get(stats))
        .with_state(edge);
    let a = axum::serve(clients, client_routes)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let b = axum::serve(admin, admin_routes).with_graceful_shutdown(shutdown.cancelled_owned());
    let (a, b) = tokio::join!(a, b);
    a.context("serving clients")?;
    b.context("serving purges")?;
    log::info!("lab cdn stopped");
    Ok(())
}

/// Asks the edge on this board (its purge port on loopback) to drop `ask`'s objects; how
/// many it dropped.
pub async fn purge_local(admin_port: u16, ask: &lab_api::spec::CdnPurge) -> Result<u64, String> {
    let query = match (&ask.key, &ask.prefix) {
        (Some(k), _) => format!("key={}", encode(k)),
        (None, Some(p)) => format!("prefix={}", encode(p)),
        (None, None) => return Err("give a key or a prefix".into()),
    };
    let exchange = async {
        use http_body_util::BodyExt;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", admin_port))
            .await
            .map_err(|e| format!("the edge's purge port {admin_port}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::post(format!("{PURGE}?{query}"))
            .header(hyper::header::HOST, format!("127.0.0.1:{admin_port}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), 4096)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        driver.abort();
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        match answer["purged"].as_u64() {
            Some(n) if status.is_success() => Ok(n),
            _ => Err(format!("the edge answered {status}: {answer}")),
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "the edge did not answer within 5 s".to_string())?
}

/// Percent-encodes a query value (unreserved characters and `/` stay).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn stats(State(edge): State<Arc<Edge>>) -> axum::Json<lab_api::files::CdnStats> {
    axum::Json(edge.stats())
}

#[derive(serde::Deserialize)]
struct PurgeAsk {
    key: Option<String>,
    prefix: Option<String>,
}

async fn purge(
    State(edge): State<Arc<Edge>>,
    Query(ask): Query<PurgeAsk>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if ask.key.is_none() && ask.prefix.is_none() {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": "give ?key=/path or ?prefix=/path/" })),
        )
            .into_response();
    }
    let purged = edge.purge(ask.key.as_deref(), ask.prefix.as_deref());
    axum::Json(serde_json::json!({ "purged": purged })).into_response()
}

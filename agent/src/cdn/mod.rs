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

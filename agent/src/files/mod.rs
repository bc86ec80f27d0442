//! The file store (`lab-agent files --config FILE --data DIR`): our own HTTP object store on
//! every files board, holding the buckets the plan placed there by purpose (avatars on one
//! board, videos on another). The agent runs it as a supervised child
//! ([`crate::roles::files`]); its config is the spec's [`lab_api::spec::FilesConfig`].
//!
//! Tour:
//! - [`key`]: what a bucket name and a key may be (never a path outside the bucket).
//! - [`store`]: objects on disk: streamed into a temp file, fsynced, renamed; an index entry
//!   per key made visible by one rename; nothing half-written is ever seen or left.
//! - [`range`]: one `Range: bytes=` header, read.
//! - [`http`]: the routes (PUT/GET/HEAD/DELETE, Range, ETag/If-None-Match, 413, 507).
//!
//! SIGTERM/SIGINT (through the caller's token) stop accepting, let transfers in flight end
//! and return.

pub mod http;
pub mod key;
pub mod range;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lab_api::spec::FilesConfig;
use tokio_util::sync::CancellationToken;

/// Serves the buckets of the config at `config_path`, kept under `data_dir`, until
/// `shutdown` is cancelled.
pub async fn run(
    config_path: &Path,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let text = tokio::fs::read(config_path)
        .await
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config: FilesConfig = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a files config", config_path.display()))?;
    let listener = tokio::net::TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("listening on {}:{}", config.bind, config.port))?;
    serve(listener, &config, data_dir, shutdown).await
}

/// Serves `config`'s buckets on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &FilesConfig,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut buckets = Vec::new();
    for b in &config.buckets {
        key::check_bucket(&b.name).context("the files config")?;
        buckets.push(store::Bucket {
            name: b.name.clone(),
            max_object_bytes: b.max_object_bytes,
            replica: b.replica.clone(),
        });
    }
    let store = store::Store::open(data_dir, buckets)
        .await
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let files = Arc::new(http::Files {
        board: config.board.clone(),
        store,
        counters: http::Counters::default(),
    });
    log::info!(
        "lab files {} listening on {}; buckets {}",
        config.board,
        listener
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string()),
        config
            .buckets
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    axum::serve(listener, http::router(files))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving")?;
    log::info!("lab files stopped");
    Ok(())
}

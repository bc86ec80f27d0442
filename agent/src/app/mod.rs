//! The app server (`lab-agent app --config FILE`): our own HTTP service on every app board,
//! reached through the LB. The contract (paths, headers, bodies, limits) is
//! [`lab_api::app`]; the agent runs it as a supervised child ([`crate::roles::app`]).
//!
//! Tour:
//! - [`config`]: the JSON config file ([`lab_api::spec::AppConfig`]), checked.
//! - [`state`]: the backends of one config (DB pools, cache ring, token key), swapped whole
//!   on SIGHUP; old ones closed once the requests using them are done.
//! - [`routes`]: the router and the layer every answer passes (`X-Served-By`, counting);
//!   [`handlers`]: one function per endpoint; [`extract`]: JSON bodies and tokens;
//!   [`error`]: JSON error answers; [`validate`]: what input is accepted.
//! - [`token`]: HS256 JWTs; [`password`]: argon2id hashes off the async runtime.
//! - [`db`]: primary/replica routing with read-your-writes (GTIDs); [`queries`]: the SQL.
//! - [`cache`]: our memcached client with consistent hashing and ejection.
//! - [`stats`], [`histogram`]: the figures of `/_lab/stats`.
//!
//! Signals: SIGHUP re-reads the config (a bad file is logged and the running config kept);
//! SIGTERM/SIGINT (through the caller's token) stop accepting, let requests in flight finish
//! and return. Logs: one line at start and one per reload, none per request.

pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod histogram;
pub mod password;
pub mod queries;
pub mod routes;
pub mod sessions;
pub mod state;
pub mod stats;
pub mod token;
pub mod uploads;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use self::state::{App, Backends};
use self::stats::Stats;

/// Serves the app of the config at `config_path` until `shutdown` is cancelled. Must run on
/// a multi-thread Tokio runtime (password hashing uses `spawn_blocking`).
pub async fn run(config_path: &Path, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Before anything can be ready: HUP's default action would kill the process.
    let hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let config = config::load(config_path)?;
    let (bind, port) = (config.bind.clone(), config.port);
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
        .await
        .with_context(|| format!("listening on {bind}:{port}"))?;
    let stats = Arc::new(Stats::default());
    let backends = Backends::new(config, &stats);
    log::info!(
        "lab app {} listening on {}; {}",
        backends.config.board,
        listener
            .local_addr()
            .map_or_else(|_| format!("{bind}:{port}"), |a| a.to_string()),
        backends.describe()
    );
    let app = Arc::new(App::new(backends, stats));
    let reloads = tokio::spawn(reload_on_hangup(
        hangups,
        app.clone(),
        config_path.to_path_buf(),
        shutdown.clone(),
    ));

    let served = axum::serve(listener, routes::router(app.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serving");
    shutdown.cancel();
    let _ = reloads.await;
    // Every request is done: the router and its connections let go of the app.
    match Arc::try_unwrap(app) {
        Ok(app) => App::retire(app.into_backends()).await,
        Err(_) => log::warn!("the app is still referenced at exit; pools not closed"),
    }
    log::info!("lab app stopped");
    served
}

async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    app: Arc<App>,
    path: PathBuf,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        reload(&app, &path);
    }
}

/// Re-reads the config and swaps in its backends; the old ones are retired in the
/// background. The address cannot change in place (the agent restarts the app for that).
fn reload(app: &Arc<App>, path: &Path) {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(err) => {
            log::error!("reload refused, keeping the running config: {err:#}");
            return;
        }
    };
    let old = app.backends();
    if (&config.bind, config.port) != (&old.config.bind, old.config.port) {
        log::warn!(
            "reload: the address {}:{} needs a restart; still listening on {}:{}",
            config.bind,
            config.port,
            old.config.bind,
            old.config.port
        );
    }
    drop(old);
    let backends = Backends::new(config, &app.stats);
    log::info!("reloaded {}; {}", path.display(), backends.describe());
    let old = app.swap(backends);
    if old.db.primary_board() != app.backends().db.primary_board() {
        // The control plane moved the primary (a failover): requests still waiting on the
        // old one fail now, and their clients can retry on the new one.
        old.db.primary_replaced();
    }
    tokio::spawn(App::retire(old));
}

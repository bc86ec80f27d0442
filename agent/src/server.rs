//! The mTLS accept loop.
//!
//! [`Server::bind`] binds the listening socket and loads the TLS material, so configuration
//! mistakes surface before anything is served and a caller (a test) can learn the bound
//! address; [`Server::run`] then accepts connections until the shutdown token is cancelled.
//! Each connection lives in its own task: a TLS handshake under [`HANDSHAKE_TIMEOUT`], then
//! HTTP/1.1 served by the [`crate::api`] router. A failed handshake (no client certificate,
//! wrong CA, wrong key usage, a port scanner) is logged and never affects other connections.
//! On shutdown the listener closes, open connections finish their current request, and
//! whatever is still open after [`SHUTDOWN_GRACE`] is dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use lab_api::AgentConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::roles::Roles;
use crate::sampler;
use crate::tls::{self, TlsError};

/// Longest time a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections may take to finish after shutdown was requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The longest a SIGTERMed server takes to return: connections drained, then every role
/// engine stopped whole.
pub const STOP_BOUND: Duration =
    Duration::from_secs(SHUTDOWN_GRACE.as_secs() + crate::roles::LONGEST_STOP.as_secs());

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed")]
    Tls(#[from] TlsError),
}

/// A bound, configured server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    config: AgentConfig,
}

impl Server {
    /// Loads the TLS material named by `config` and binds `config.listen`.
    pub async fn bind(config: &AgentConfig) -> Result<Self, ServerError> {
        let tls = tls::server_config(
            Path::new(&config.tls_ca),
            Path::new(&config.tls_cert),
            Path::new(&config.tls_key),
        )?;
        let bind_error = |source| ServerError::Bind {
            addr: config.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Server {
            listener,
            local_addr,
            acceptor: TlsAcceptor::from(tls),
            config: config.clone(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then drains connections (at most
    /// [`SHUTDOWN_GRACE`]), stops every role engine whole, and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let started = Instant::now();
        let tracker = TaskTracker::new();
        // Engines' processes orphaned by a dead master come back to us to be reaped.
        if let Err(err) = crate::engine::group::become_subreaper() {
            log::warn!("cannot become the subreaper of the role engines: {err}");
        }
        let board = self.config.board.clone();
        let (roles, roles_task) = Roles::start(&self.config, shutdown.clone()).await;
        let samples = sampler::spawn(
            &tracker,
            shutdown.clone(),
            &board,
            &self.config.collectors,
            roles.subscribe(),
            roles.db_paths().socket,
        )
        .await;
        let app = api::router(AppState::new(&board, started, samples, roles));
        log::info!(
            "lab-agent {} serving board {} on https://{} (mutual TLS)",
            crate::VERSION,
            board,
            self.local_addr
        );

        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let acceptor = self.acceptor.clone();
                    let app = app.clone();
                    let shutdown = shutdown.clone();
                    tracker.spawn(serve_connection(tcp, peer, acceptor, app, shutdown));
                }
                Err(err) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    log::warn!("accept failed: {err}");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }

        drop(self.listener);
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            log::warn!(
                "{} task(s) still running {}s after shutdown; dropping them",
                tracker.len(),
                SHUTDOWN_GRACE.as_secs()
            );
        }
        // Not under the grace: each engine has its own stop deadline, then its group is
        // SIGKILLed; none outlives the agent.
        if let Err(err) = roles_task.await {
            log::error!("the roles' reconciler failed: {err}");
        }
        log::info!("server on {} stopped", self.local_addr);
    }
}

/// Binds and serves `config` until `shutdown` is cancelled.
pub async fn run(config: &AgentConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    Server::bind(config).await?.run(shutdown).await;
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        result = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => result,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            log::info!("{peer}: TLS handshake failed: {err}");
            return;
        }
        Err(_) => {
            log::info!(
                "{peer}: TLS handshake not done after {}s; closing",
                HANDSHAKE_TIMEOUT.as_secs()
            );
            return;
        }
    };
    log::debug!("{peer}: TLS established");

    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        log::debug!("{peer}: connection ended with an error: {err}");
    }
}

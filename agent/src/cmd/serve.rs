//! `lab-agent serve`: load the configuration and run the mTLS server until shutdown.

use std::path::Path;

use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError};
use crate::server::{self, ServerError};
use crate::{tls, SUPERVISOR_PID_ENV};

/// Why `serve` failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("supervisor (pid {supervisor}) is already gone; not starting an orphan server")]
    Orphaned { supervisor: i32 },
}

/// Serves the configuration at `config_path` until `shutdown` is cancelled.
pub async fn run(config_path: &Path, shutdown: CancellationToken) -> Result<(), ServeError> {
    tie_to_supervisor()?;
    tls::install_default_provider();
    let config = config::load(config_path)?;
    server::run(&config, shutdown).await?;
    Ok(())
}

/// When started by `lab-agent supervise`, asks the kernel for SIGTERM if the supervisor
/// dies (even by SIGKILL), so a server never outlives it and blocks the port.
fn tie_to_supervisor() -> Result<(), ServeError> {
    let Some(supervisor) = std::env::var(SUPERVISOR_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok())
    else {
        return Ok(());
    };
    if let Err(err) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        log::warn!("cannot ask to be stopped with the supervisor: {err}");
    }
    // The supervisor may have died before the request above took effect.
    if nix::unistd::getppid().as_raw() != supervisor {
        return Err(ServeError::Orphaned { supervisor });
    }
    Ok(())
}

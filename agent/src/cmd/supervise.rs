//! `lab-agent supervise`: keep `lab-agent serve` running.
//!
//! Records its pid in the pid file, leaves the caller's session (`setsid`), runs
//! `lab-agent serve` as a child and restarts it with [`Backoff`] (1 s doubling to 10 s) whenever it exits. On
//! shutdown (SIGTERM or SIGINT cancel the token) it passes SIGTERM on to the server, waits
//! for it (SIGKILL after [`CHILD_GRACE`]), removes the pid file and returns. The child
//! asks the kernel to be stopped if the supervisor dies without that chance (SIGKILL).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::pidfile::{self, PidFile, PidFileError};
use crate::SUPERVISOR_PID_ENV;
use lab_api::backoff::Backoff;

/// How long the server gets to stop after SIGTERM before it is killed: long enough to stop
/// its engines whole (their process groups are not the server's, so a killed server would
/// leave them holding their ports and data directories).
pub const CHILD_GRACE: Duration = Duration::from_secs(crate::server::STOP_BOUND.as_secs() + 3);

/// What `supervise` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseOptions {
    /// Configuration passed on to `serve`.
    pub config: PathBuf,
    /// Directory of the pid file.
    pub state_dir: PathBuf,
}

/// Why `supervise` failed.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("another supervisor (pid {pid}) is already running per {pid_file}")]
    AlreadyRunning { pid: i32, pid_file: PathBuf },
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("cannot find this program's own path")]
    Exe(#[source] std::io::Error),
}

/// Supervises `lab-agent serve` until `shutdown` is cancelled. Must run on a current-thread
/// runtime: the child's "stop me when my parent dies" request is tied to the thread that
/// spawned it, which must live as long as the supervisor.
pub async fn run(
    options: &SuperviseOptions,
    shutdown: CancellationToken,
) -> Result<(), SuperviseError> {
    match nix::unistd::setsid() {
        Ok(_) => log::debug!("supervisor in its own session"),
        // Already a process group leader (e.g. started by hand from a shell): keep going.
        Err(err) => log::debug!("setsid: {err}; staying in the current session"),
    }
    let me = std::process::id();
    let pid_file = PidFile::in_dir(&options.state_dir);
    let _lock = match pid_file.lock() {
        Ok(lock) => lock,
        Err(PidFileError::Locked { .. }) => {
            return Err(SuperviseError::AlreadyRunning {
                pid: pid_file.read().ok().flatten().unwrap_or_default(),
                pid_file: pid_file.path().to_path_buf(),
            })
        }
        Err(err) => return Err(err.into()),
    };
    pid_file.write(me)?;
    // Ignore SIGHUP: the terminal we were started from may go away (Tokio keeps a handler
    // installed for the life of the process once registered).
    if let Err(err) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        log::warn!("cannot ignore SIGHUP: {err}");
    }
    log::info!(
        "lab-agent {} supervisor started (pid {me}, pid file {})",
        crate::VERSION,
        pid_file.path().display()
    );

    let result = supervise(&options.config, &shutdown).await;

    if pid_file.read().ok().flatten() == Some(me as i32) {
        pid_file.remove()?;
    }
    log::info!("supervisor (pid {me}) stopped");
    result
}

/// Restarts wait 1 s, doubling up to 10 s; a run of 30 s counts as healthy and starts over.
const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(10);
const HEALTHY_RUN: Duration = Duration::from_secs(30);

async fn supervise(config: &Path, shutdown: &CancellationToken) -> Result<(), SuperviseError> {
    // Resolved once: after an upgrade replaces the file, restarts run the new binary.
    let exe = std::env::current_exe().map_err(SuperviseError::Exe)?;
    let mut backoff = Backoff::new(RESTART_MIN, RESTART_MAX);
    loop {
        let started = Instant::now();
        match spawn_server(&exe, config) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                log::info!("started lab-agent serve (pid {pid})");
                tokio::select! {
                    status = child.wait() => match status {
                        Ok(status) => log::warn!(
                            "lab-agent serve (pid {pid}) {} after {}s",
                            describe(status),
                            started.elapsed().as_secs()
                        ),
                        Err(err) => log::error!("cannot wait for lab-agent serve (pid {pid}): {err}"),
                    },
                    _ = shutdown.cancelled() => {
                        stop_server(&mut child).await;
                        return Ok(());
                    }
                }
            }
            Err(err) => log::error!("cannot start {} serve: {err}", exe.display()),
        }
        let delay = backoff.delay_after(started.elapsed(), HEALTHY_RUN);
        log::info!("restarting lab-agent serve in {}s", delay.as_secs());
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn spawn_server(exe: &Path, config: &Path) -> std::io::Result<Child> {
    Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env(SUPERVISOR_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

async fn stop_server(child: &mut Child) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    log::info!("stopping lab-agent serve (pid {pid})");
    if let Err(err) = pidfile::signal(pid as i32, Signal::SIGTERM) {
        log::warn!("cannot send SIGTERM to lab-agent serve (pid {pid}): {err}");
    }
    match tokio::time::timeout(CHILD_GRACE, child.wait()).await {
        Ok(Ok(status)) => log::info!("lab-agent serve (pid {pid}) {}", describe(status)),
        Ok(Err(err)) => log::warn!("cannot wait for lab-agent serve (pid {pid}): {err}"),
        Err(_) => {
            log::warn!(
                "lab-agent serve (pid {pid}) still running {}s after SIGTERM; killing it",
                CHILD_GRACE.as_secs()
            );
            if let Err(err) = child.kill().await {
                log::warn!("cannot kill lab-agent serve (pid {pid}): {err}");
            }
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("was killed by {signal}"),
            Err(_) => format!("was killed by signal {signal}"),
        },
        (None, None) => format!("ended ({status})"),
    }
}

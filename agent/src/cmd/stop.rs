//! `lab-agent stop`: stop the detached supervisor started by `lab-agent start`.
//!
//! SIGTERM first (the supervisor stops its server and removes the pid file), SIGKILL after
//! [`GRACE`]. Nothing running is a success, reported as such.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::engine::group;
use crate::pidfile::{self, PidFile, PidFileError};

/// How long the supervisor gets to stop after SIGTERM: its own grace for the server, and a
/// little more.
pub const GRACE: Duration = Duration::from_secs(super::supervise::CHILD_GRACE.as_secs() + 2);
/// How long to wait for the process to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The supervisor `pid` stopped; `forced` if it needed SIGKILL.
    Stopped { pid: i32, forced: bool },
    /// No supervisor was running; `stale` is a pid file left behind (now removed).
    NotRunning { stale: Option<i32> },
}

impl fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopOutcome::Stopped { pid, forced: false } => {
                write!(f, "lab-agent stopped (supervisor pid {pid})")
            }
            StopOutcome::Stopped { pid, forced: true } => write!(
                f,
                "lab-agent killed (supervisor pid {pid} ignored SIGTERM for {}s)",
                GRACE.as_secs()
            ),
            StopOutcome::NotRunning { stale: None } => write!(f, "lab-agent was not running"),
            StopOutcome::NotRunning { stale: Some(pid) } => write!(
                f,
                "lab-agent was not running (removed stale pid file naming pid {pid})"
            ),
        }
    }
}

/// Why `stop` failed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("cannot send {signal} to supervisor pid {pid}")]
    Signal {
        pid: i32,
        signal: Signal,
        #[source]
        source: nix::Error,
    },
    #[error("supervisor pid {pid} is still running after SIGKILL")]
    StillRunning { pid: i32 },
}

/// Stops the supervisor recorded in `state_dir`, if any.
pub fn run(state_dir: &Path) -> Result<StopOutcome, StopError> {
    let pid_file = PidFile::in_dir(state_dir);
    let Some(recorded) = pid_file.read()? else {
        return Ok(StopOutcome::NotRunning { stale: None });
    };
    if !pidfile::is_supervisor(recorded) {
        pid_file.remove()?;
        return Ok(StopOutcome::NotRunning {
            stale: Some(recorded),
        });
    }
    let forced = stop_supervisor(recorded, &pid_file, GRACE)?;
    Ok(StopOutcome::Stopped {
        pid: recorded,
        forced,
    })
}

/// Stops supervisor `pid`: SIGTERM, up to `grace` to exit, then SIGKILL. Removes the pid file
/// if it still names `pid`. Returns whether SIGKILL was needed.
pub fn stop_supervisor(pid: i32, pid_file: &PidFile, grace: Duration) -> Result<bool, StopError> {
    send(pid, Signal::SIGTERM)?;
    let forced = if wait_gone(pid, grace) {
        false
    } else {
        log::warn!(
            "supervisor pid {pid} still running {}s after SIGTERM; sending SIGKILL",
            grace.as_secs()
        );
        send(pid, Signal::SIGKILL)?;
        if !wait_gone(pid, KILL_WAIT) {
            return Err(StopError::StillRunning { pid });
        }
        true
    };
    // The supervisor leads its own session and process group (it calls setsid), so whatever
    // it started is in group `pid`. A server that outlived it (stuck in shutdown, or
    // orphaned by a SIGKILL) would keep the API port and make the next start fail: end the
    // group too.
    sweep_group(pid);
    if pid_file.read()? == Some(pid) {
        pid_file.remove()?;
    }
    Ok(forced)
}

/// SIGTERM what is left of process group `pgid`, then SIGKILL it if it does not go.
fn sweep_group(pgid: i32) {
    let gone = |limit| group::wait_gone_blocking(pgid, limit).map_or(true, |l| l.is_empty());
    if group::members(pgid).map_or(true, |m| m.is_empty()) {
        return;
    }
    let _ = group::signal(pgid, Signal::SIGTERM);
    if gone(KILL_WAIT) {
        return;
    }
    log::warn!("processes of supervisor group {pgid} survived SIGTERM; sending SIGKILL");
    let _ = group::signal(pgid, Signal::SIGKILL);
    gone(KILL_WAIT);
}

fn send(pid: i32, signal: Signal) -> Result<(), StopError> {
    pidfile::signal(pid, signal).map_err(|source| StopError::Signal {
        pid,
        signal,
        source,
    })
}

/// Polls until `pid` is no longer a live supervisor, at most `limit`.
fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pidfile::is_supervisor(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

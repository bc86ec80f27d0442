//! `lab-agent stop`: stop the detached supervisor started by `lab-agent start`.
//!
//! SIGTERM first (the supervisor stops its server and removes the pid file), SIGKILL after
//! [`GRACE`]. Nothing running is a success, reported as such.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::pidfile::{self, PidFile, PidFileError};

/// How long the supervisor gets to stop after SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);
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
    if group_members(pgid) == 0 {
        return;
    }
    let group = nix::unistd::Pid::from_raw(pgid);
    let _ = nix::sys::signal::killpg(group, Signal::SIGTERM);
    if wait_group_empty(pgid, KILL_WAIT) {
        return;
    }
    log::warn!("processes of supervisor group {pgid} survived SIGTERM; sending SIGKILL");
    let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
    wait_group_empty(pgid, KILL_WAIT);
}

fn wait_group_empty(pgid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if group_members(pgid) == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Live (non-zombie) processes whose process group is `pgid`, from /proc.
fn group_members(pgid: i32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat_pgrp_live(stat) == Some(pgid))
        .count()
}

/// The process group of a `/proc/<pid>/stat` line, unless the process is a zombie.
fn stat_pgrp_live(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    (state != "Z").then_some(pgrp)
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

#[cfg(test)]
mod group_tests {
    use super::stat_pgrp_live;

    #[test]
    fn reads_the_group_of_live_processes_only() {
        let live = "1234 (lab-agent serve) S 1 1200 1200 0 -1 4194560 99 0 0 0";
        assert_eq!(stat_pgrp_live(live), Some(1200));
        let zombie = "1234 (a) b)) Z 1 1200 1200 0";
        assert_eq!(stat_pgrp_live(zombie), None);
        assert_eq!(stat_pgrp_live("garbage"), None);
    }
}

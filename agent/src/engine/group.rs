//! The processes of one process group: found by scanning `/proc`, waited for, signalled at once.
//!
//! An engine is started as the leader of a new process group (its pid is the group id) and what
//! it forks stays in that group unless it asks otherwise (NGINX's workers and MariaDB's helpers
//! do not). So the group is the engine, even after its master is gone.
//!
//! Zombies do not count as members: an exited process holds no socket, no memory and runs
//! nothing; its parent (or init, for orphans) reaps it.
//!
//! Waiting uses one pidfd per process (readable when the process exits), so a stop that takes
//! 40 ms returns after 40 ms without polling. Kernels without `pidfd_open` (before 5.3, e.g. a
//! Jetson Nano's 4.9) fall back to rescanning `/proc` every [`FALLBACK_POLL`].

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::procfs;

/// How often to rescan `/proc` where the kernel has no pidfds.
pub const FALLBACK_POLL: Duration = Duration::from_millis(10);

/// The live (not zombie) processes whose process group is `pgid`, by pid, in `/proc` order.
///
/// Fails only when `/proc` itself cannot be listed; a process that exits during the scan is
/// simply not listed.
pub fn members(pgid: i32) -> io::Result<Vec<i32>> {
    Ok(scan()?
        .into_iter()
        .filter(|(_, s)| s.pgrp == pgid && s.is_live())
        .map(|(pid, _)| pid)
        .collect())
}

/// Every process in `/proc` with its parsed `stat`, in `/proc` order. A process that exits
/// during the scan (unreadable `stat`) is simply not listed.
fn scan() -> io::Result<Vec<(i32, procfs::ProcStat)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(stat) = procfs::parse_stat(&text) {
            found.push((pid, stat));
        }
    }
    Ok(found)
}

/// Makes this process the child subreaper of everything it starts: processes of an engine
/// orphaned by their master's death (NGINX workers of a killed master) are re-parented to it
/// instead of to init, and [`reap_orphans`] collects them once they exit. Without it they go
/// to init, and an init that does not reap (some containers' PID 1) keeps them as zombies
/// forever. Process-wide; call once at startup in whatever supervises engines.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Reaps the exited processes of group `pgid` that are children of this process (orphans
/// re-parented to it as subreaper), except `master`, whose status its owner collects. Returns
/// how many were reaped.
pub fn reap_orphans(pgid: i32, master: i32) -> io::Result<usize> {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let me = nix::unistd::getpid().as_raw();
    let mut reaped = 0;
    for (pid, stat) in scan()? {
        let ours = stat.pgrp == pgid && stat.ppid == me && stat.state == 'Z';
        if ours && pid != master && waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            reaped += 1;
        }
    }
    Ok(reaped)
}

/// Sends `signal` to every process of group `pgid`. A group that no longer exists is not an
/// error: there is nothing left to signal.
pub fn signal(pgid: i32, signal: Signal) -> nix::Result<()> {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Waits until group `pgid` has no live process or `until` passes; returns the members still
/// live at that point (empty: the group is gone). New members forked while waiting are seen
/// by the rescan that follows every wake-up.
pub async fn wait_gone(pgid: i32, until: Instant) -> io::Result<Vec<i32>> {
    loop {
        let live = members(pgid)?;
        if live.is_empty() || Instant::now() >= until {
            return Ok(live);
        }
        wait_exits(live, until).await;
    }
}

/// Waits until process `pid` has exited (or is a zombie) or `until` passes; returns whether
/// it has exited. Does not reap it.
pub async fn wait_exit(pid: i32, until: Instant) -> bool {
    loop {
        if !crate::pidfile::is_alive(pid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        wait_exits(vec![pid], until).await;
    }
}

/// Blocking variant of [`wait_gone`], for `Drop`, which cannot await.
pub fn wait_gone_blocking(pgid: i32, limit: Duration) -> io::Result<Vec<i32>> {
    let until = std::time::Instant::now() + limit;
    loop {
        let live = members(pgid)?;
        if live.is_empty() || std::time::Instant::now() >= until {
            return Ok(live);
        }
        if !block_until_exited(&live, until) {
            std::thread::sleep(FALLBACK_POLL);
        }
    }
}

/// Returns once every process in `pids` has exited or `until` has passed; after
/// [`FALLBACK_POLL`] where pidfds are unavailable, so the caller rescans. The waiting itself
/// is a blocking `poll(2)` on a blocking-pool thread (registering pidfds with tokio's reactor
/// needs `unsafe`, which this workspace denies); it ends by `until` at the latest.
async fn wait_exits(pids: Vec<i32>, until: Instant) {
    let until_std = until.into_std();
    let waited = tokio::task::spawn_blocking(move || block_until_exited(&pids, until_std)).await;
    if !matches!(waited, Ok(true)) {
        tokio::time::sleep_until(until.min(Instant::now() + FALLBACK_POLL)).await;
    }
}

/// Blocks until every process in `pids` has exited or `until` has passed, with one pidfd per
/// process (readable once it has exited). Returns false when pidfds cannot be used.
fn block_until_exited(pids: &[i32], until: std::time::Instant) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, Pid as RustixPid, PidfdFlags};

    let mut pending: Vec<OwnedFd> = Vec::with_capacity(pids.len());
    for &pid in pids {
        let Some(pid) = RustixPid::from_raw(pid) else {
            continue;
        };
        match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => pending.push(fd),
            Err(rustix::io::Errno::SRCH) => {} // already gone
            Err(_) => return false,
        }
    }
    while !pending.is_empty() {
        let now = std::time::Instant::now();
        if now >= until {
            break;
        }
        let Ok(timeout) = Timespec::try_from(until - now) else {
            return false;
        };
        let mut polled: Vec<PollFd<'_>> = pending
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        match poll(&mut polled, Some(&timeout)) {
            Ok(0) => break, // timed out
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
        let exited: Vec<bool> = polled.iter().map(|p| !p.revents().is_empty()).collect();
        drop(polled);
        let mut exited = exited.into_iter();
        pending.retain(|_| !exited.next().unwrap_or(false));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::process::{Command, Stdio};
    use std::time::Duration;

    #[test]
    fn this_process_is_in_its_group() {
        let me = std::process::id() as i32;
        let pgid = nix::unistd::getpgrp().as_raw();
        assert!(members(pgid).expect("scan /proc").contains(&me));
    }

    #[test]
    fn an_unused_group_has_no_members() {
        // Pids above pid_max (4194304 at most) never exist.
        assert!(members(i32::MAX).expect("scan /proc").is_empty());
        signal(i32::MAX, Signal::SIGTERM).expect("an empty group is not an error");
    }

    #[tokio::test]
    async fn wait_gone_returns_when_the_group_exits_and_names_who_is_left_otherwise() {
        use std::os::unix::process::CommandExt;
        // A shell leading its own group, with a child of its own in the same group.
        let mut child = Command::new("/bin/sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pgid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        let both = loop {
            let live = members(pgid).expect("scan");
            if live.len() == 2 || Instant::now() >= deadline {
                break live;
            }
            tokio::time::sleep(FALLBACK_POLL).await;
        };
        assert_eq!(both.len(), 2, "sh and its sleep: {both:?}");

        let left = wait_gone(pgid, Instant::now() + Duration::from_millis(100))
            .await
            .expect("scan");
        assert_eq!(left.len(), 2, "nothing was stopped, both are left");

        let begun = Instant::now();
        signal(pgid, Signal::SIGKILL).expect("killpg");
        let left = wait_gone(pgid, Instant::now() + Duration::from_secs(5))
            .await
            .expect("scan");
        assert!(left.is_empty(), "{left:?}");
        assert!(
            begun.elapsed() < Duration::from_secs(1),
            "{:?}",
            begun.elapsed()
        );
        child.wait().expect("reap sh");
    }
}

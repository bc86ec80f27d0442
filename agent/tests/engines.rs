//! Engines die whole (ARCHITECTURE.md, "Roles"): a real NGINX with two workers and a real memcached,
//! started and stopped through the agent's engine module on unique loopback addresses. After a
//! graceful stop, a fast stop, a stop after the master was SIGKILLed from outside (its workers
//! live on and keep answering: the bug this guards against) and a restart, no process of the
//! old instance is left (the tests' own look at `/proc`: its process group, and every pid it
//! had) and the port is refused, or answered only by the new instance.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::engines::{self, assert_refused, engine_leftovers, group, http_get, Seen};
use common::wait_for;
use lab_agent::engine::{EngineProcess, StopMode, StopOutcome};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The pid of the worker that answered `GET /` (the test config returns `$pid`).
async fn answering_worker(listen: SocketAddr) -> Result<i32, String> {
    let (status, body) = http_get(listen, "/").await?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("{status}: {body}"));
    }
    body.trim()
        .parse()
        .map_err(|_| format!("body is not a pid: {body:?}"))
}

/// NGINX with 2 workers in `dir`, answering on `listen`; returns it and its processes
/// (master + 2 workers) as seen in `/proc`.
async fn nginx_with_two_workers(
    dir: &std::path::Path,
    listen: SocketAddr,
) -> (EngineProcess, Vec<Seen>) {
    let engine = engines::start(engines::nginx(dir, listen, 2));
    let pgid = engine.pid();
    wait_for("nginx to answer", Duration::from_secs(20), || {
        answering_worker(listen)
    })
    .await;
    let processes = wait_for(
        "nginx's master and 2 workers",
        Duration::from_secs(10),
        || async {
            let seen = group(pgid);
            let workers = seen
                .iter()
                .filter(|p| p.cmdline.starts_with("nginx: worker process"))
                .count();
            let master = seen
                .iter()
                .any(|p| p.pid == pgid && p.cmdline.starts_with("nginx: master process"));
            if master && workers == 2 && seen.len() == 3 {
                Ok(seen)
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await;
    (engine, processes)
}

fn assert_gone(pgid: i32, seen: &[Seen], report: &impl std::fmt::Display) {
    let left = engine_leftovers(pgid, seen);
    assert!(left.is_empty(), "after \"{report}\": {left:?}");
}

#[tokio::test]
async fn nginx_graceful_stop_leaves_no_worker_and_frees_the_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = engines::unique_loopback();
    let (mut engine, seen) = nginx_with_two_workers(dir.path(), listen).await;

    let report = engine
        .stop(StopMode::Graceful, Duration::from_secs(10))
        .await
        .expect("stop");
    eprintln!("{report}");
    assert_eq!(report.outcome, StopOutcome::Exited, "{report}");
    assert_eq!(report.signal, Some(Signal::SIGQUIT), "{report}");
    assert!(report.master_was_running, "{report}");
    assert_eq!(report.processes_at_start, 3, "{report}");
    assert_gone(engine.pid(), &seen, &report);
    assert_refused(listen).await;
}

#[tokio::test]
async fn nginx_fast_stop_leaves_no_worker_and_frees_the_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = engines::unique_loopback();
    let (mut engine, seen) = nginx_with_two_workers(dir.path(), listen).await;

    let report = engine
        .stop(StopMode::Fast, Duration::from_secs(10))
        .await
        .expect("stop");
    eprintln!("{report}");
    assert_eq!(report.outcome, StopOutcome::Exited, "{report}");
    assert_eq!(report.signal, Some(Signal::SIGTERM), "{report}");
    assert_gone(engine.pid(), &seen, &report);
    assert_refused(listen).await;
}

#[tokio::test]
async fn nginx_workers_of_a_master_killed_from_outside_are_stopped_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = engines::unique_loopback();
    let (mut engine, seen) = nginx_with_two_workers(dir.path(), listen).await;
    let pgid = engine.pid();

    // What `Child::kill` did in the old tests: SIGKILL to the master alone.
    kill(Pid::from_raw(pgid), Signal::SIGKILL).expect("kill -9 the master");
    wait_for("the master to die", Duration::from_secs(10), || async {
        match group(pgid).iter().find(|p| p.pid == pgid) {
            None => Ok(()),
            Some(master) => Err(format!("still live: {master:?}")),
        }
    })
    .await;
    // The bug: its workers live on, in its group, and keep answering on its port.
    let orphans = group(pgid);
    assert_eq!(
        orphans.len(),
        2,
        "both workers outlive the master: {orphans:?}"
    );
    let worker = answering_worker(listen)
        .await
        .expect("orphaned workers still answer");
    assert!(
        orphans.iter().any(|p| p.pid == worker),
        "{worker} {orphans:?}"
    );

    let report = engine
        .stop(StopMode::Graceful, Duration::from_secs(10))
        .await
        .expect("stop");
    eprintln!("{report}");
    assert!(!report.master_was_running, "{report}");
    assert_eq!(report.processes_at_start, 2, "{report}");
    assert_eq!(report.orphans_signalled, 2, "{report}");
    assert_ne!(report.outcome, StopOutcome::NotRunning, "{report}");
    assert!(
        report
            .master_exit
            .is_some_and(|s| s.to_string().contains("SIGKILL")),
        "{report}"
    );
    assert_gone(pgid, &seen, &report);
    assert_refused(listen).await;
}

#[tokio::test]
async fn nginx_restart_leaves_only_the_new_instance_on_the_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = engines::unique_loopback();
    let (mut engine, old) = nginx_with_two_workers(dir.path(), listen).await;
    let old_pgid = engine.pid();

    let report = engine
        .restart(StopMode::Graceful, Duration::from_secs(10))
        .await
        .expect("restart");
    eprintln!("{report}");
    assert_eq!(report.outcome, StopOutcome::Exited, "{report}");
    let new_pgid = engine.pid();
    assert_ne!(new_pgid, old_pgid, "a new master");
    assert_gone(old_pgid, &old, &report);

    let new = wait_for(
        "the new nginx's workers",
        Duration::from_secs(10),
        || async {
            let seen = group(new_pgid);
            if seen.len() == 3 {
                Ok(seen)
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await;
    for _ in 0..20 {
        let worker = wait_for("the new nginx to answer", Duration::from_secs(10), || {
            answering_worker(listen)
        })
        .await;
        assert!(
            new.iter().any(|p| p.pid == worker && p.pid != new_pgid),
            "answered by {worker}, not a worker of the new instance {new:?} (old: {old:?})"
        );
    }

    let report = engines::stop_whole(&mut engine, StopMode::Fast).await;
    assert_eq!(report.outcome, StopOutcome::Exited, "{report}");
    assert_gone(new_pgid, &new, &report);
    assert_refused(listen).await;
}

#[tokio::test]
async fn memcached_stops_whole_and_frees_the_port() {
    let listen = engines::unique_loopback();
    let mut engine = engines::start(engines::memcached(listen));
    wait_for("memcached to answer", Duration::from_secs(20), || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(listen)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"version\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = [0u8; 64];
        let n = stream.read(&mut answer).await.map_err(|e| e.to_string())?;
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        if answer.starts_with("VERSION ") {
            Ok(())
        } else {
            Err(answer)
        }
    })
    .await;
    let report = engines::stop_whole(&mut engine, StopMode::Graceful).await;
    eprintln!("{report}");
    assert_eq!(report.outcome, StopOutcome::Exited, "{report}");
    assert_eq!(report.signal, Some(Signal::SIGTERM), "{report}");
    assert_refused(listen).await;
}

//! `lab-agent start`, `supervise` and `stop`, run as real processes against a temp dir (never
//! the host's /var/lib/lab): the agent comes up and answers over mTLS, a second start is a
//! no-op, a killed server is restarted by its supervisor, stop leaves nothing behind.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{client_config, get, protocol, wait_for, Board};
use hyper::StatusCode;
use lab_agent::pidfile::{self, PidFile};
use lab_agent::procfs;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

const AGENT: &str = env!("CARGO_BIN_EXE_lab-agent");

fn agent(args: &[&str]) -> Output {
    Command::new(AGENT)
        .args(args)
        .env("LAB_AGENT_LOG", "debug")
        .output()
        .expect("run lab-agent")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Pids of the live `lab-agent serve` processes whose parent is `parent`.
fn servers_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            procfs::parse_stat(&stat).is_some_and(|s| s.ppid == parent && s.state != 'Z')
                && cmdline.split(|b| *b == 0).nth(1) == Some(b"serve".as_slice())
        })
        .collect()
}

/// Kills whatever the test started, even when an assertion failed half-way.
struct Cleanup {
    state_dir: PathBuf,
    seen: Vec<i32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut pids = self.seen.clone();
        if let Ok(Some(pid)) = PidFile::in_dir(&self.state_dir).read() {
            pids.push(pid);
        }
        for pid in pids.clone() {
            pids.extend(servers_of(pid));
        }
        for &pid in &pids {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.starts_with(AGENT.as_bytes()) {
                let _ = pidfile::signal(pid, Signal::SIGKILL);
            }
        }
        // Reap what was re-parented to us (see `become_subreaper`), so no zombie is left.
        let me = std::process::id() as i32;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut pending = pids;
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|&pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                match procfs::parse_stat(&stat) {
                    None => false, // gone
                    Some(stat) if stat.ppid == me => {
                        let _ = waitpid(Pid::from_raw(pid), None);
                        false
                    }
                    Some(_) => true, // not re-parented yet
                }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes orphaned agent processes (the supervisor outlives `lab-agent start`) children of
/// this test process rather than of PID 1, so [`Cleanup`] can reap them: the init of some
/// sandboxes never does.
fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

async fn healthy(addr: SocketAddr, board: &Board) -> Result<(), String> {
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
    match get(addr, client, lab_api::paths::HEALTH, Some(&protocol())).await {
        Ok((StatusCode::OK, _)) => Ok(()),
        Ok((status, body)) => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
        Err(err) => Err(err.to_string()),
    }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_supervise_restart_stop() {
    become_subreaper();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let board = Board::new(&addr.to_string());
    let state_dir = board.dir.path().join("state");
    let log_dir = board.dir.path().join("log");
    let mut cleanup = Cleanup {
        state_dir: state_dir.clone(),
        seen: Vec::new(),
    };
    let config = board.config_path.to_str().expect("utf-8 path");
    let state = state_dir.to_str().expect("utf-8 path");
    let logs = log_dir.to_str().expect("utf-8 path");
    let start_args = [
        "start",
        "--config",
        config,
        "--state-dir",
        state,
        "--log-dir",
        logs,
    ];

    let started = agent(&start_args);
    assert!(started.status.success(), "{}", text(&started));
    assert!(
        String::from_utf8_lossy(&started.stdout).contains("lab-agent started"),
        "{}",
        text(&started)
    );
    let pid_file = PidFile::in_dir(&state_dir);
    let supervisor = pid_file.read().expect("pid file").expect("a pid");
    cleanup.seen.push(supervisor);
    assert!(pidfile::is_supervisor(supervisor));

    wait_for("the agent to answer", Duration::from_secs(20), || {
        healthy(addr, &board)
    })
    .await;

    let again = agent(&start_args);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains(&format!("already running (supervisor pid {supervisor})")),
        "{}",
        text(&again)
    );

    // Power-cut the server: the supervisor starts a new one, which answers again.
    let first = wait_for("the serve child", Duration::from_secs(5), || async {
        match servers_of(supervisor).as_slice() {
            [pid] => Ok(*pid),
            other => Err(format!("serve children: {other:?}")),
        }
    })
    .await;
    cleanup.seen.push(first);
    pidfile::signal(first, Signal::SIGKILL).expect("kill serve");
    let second = wait_for("a new serve child", Duration::from_secs(10), || async {
        match servers_of(supervisor).as_slice() {
            [pid] if *pid != first => Ok(*pid),
            other => Err(format!("serve children: {other:?}")),
        }
    })
    .await;
    cleanup.seen.push(second);
    wait_for(
        "the restarted agent to answer",
        Duration::from_secs(20),
        || healthy(addr, &board),
    )
    .await;
    assert!(
        log_of(&log_dir).contains("was killed by SIGKILL"),
        "{}",
        log_of(&log_dir)
    );

    // --restart replaces the supervisor.
    let restarted = agent(&[&start_args[..], &["--restart"]].concat());
    assert!(restarted.status.success(), "{}", text(&restarted));
    assert!(
        String::from_utf8_lossy(&restarted.stdout).contains(&format!(
            "lab-agent restarted (supervisor pid {supervisor} stopped"
        )),
        "{}",
        text(&restarted)
    );
    assert!(!pidfile::is_alive(supervisor), "old supervisor still alive");
    assert!(!pidfile::is_alive(second), "old serve still alive");
    let supervisor = pid_file.read().expect("pid file").expect("a pid");
    cleanup.seen.push(supervisor);
    let second = wait_for("the new serve child", Duration::from_secs(5), || async {
        match servers_of(supervisor).as_slice() {
            [pid] => Ok(*pid),
            other => Err(format!("serve children: {other:?}")),
        }
    })
    .await;
    cleanup.seen.push(second);
    wait_for("the new agent to answer", Duration::from_secs(20), || {
        healthy(addr, &board)
    })
    .await;

    let stopped = agent(&["stop", "--state-dir", state]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    assert!(
        String::from_utf8_lossy(&stopped.stdout)
            .contains(&format!("lab-agent stopped (supervisor pid {supervisor})")),
        "{}",
        text(&stopped)
    );
    assert!(!pidfile::is_alive(supervisor), "supervisor still alive");
    assert!(!pidfile::is_alive(second), "serve still alive");
    assert!(!pid_file.path().exists(), "pid file left behind");
    assert!(healthy(addr, &board).await.is_err(), "still answering");

    eprintln!("agent.log:\n{}", log_of(&log_dir));
    let again = agent(&["stop", "--state-dir", state]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("was not running"),
        "{}",
        text(&again)
    );
}

/// A supervisor killed outright (no chance to clean up) takes its server with it, and the
/// pid file it leaves is recognised as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_supervisor_takes_its_server_along() {
    become_subreaper();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let board = Board::new(&addr.to_string());
    let state_dir = board.dir.path().join("state");
    let log_dir = board.dir.path().join("log");
    let mut cleanup = Cleanup {
        state_dir: state_dir.clone(),
        seen: Vec::new(),
    };
    let state = state_dir.to_str().expect("utf-8 path");
    let started = agent(&[
        "start",
        "--config",
        board.config_path.to_str().expect("utf-8 path"),
        "--state-dir",
        state,
        "--log-dir",
        log_dir.to_str().expect("utf-8 path"),
    ]);
    assert!(started.status.success(), "{}", text(&started));
    let supervisor = PidFile::in_dir(&state_dir)
        .read()
        .expect("pid file")
        .expect("a pid");
    cleanup.seen.push(supervisor);
    wait_for("the agent to answer", Duration::from_secs(20), || {
        healthy(addr, &board)
    })
    .await;
    let server = wait_for("the serve child", Duration::from_secs(5), || async {
        match servers_of(supervisor).as_slice() {
            [pid] => Ok(*pid),
            other => Err(format!("serve children: {other:?}")),
        }
    })
    .await;
    cleanup.seen.push(server);

    pidfile::signal(supervisor, Signal::SIGKILL).expect("kill supervisor");
    wait_for(
        "the orphaned server to stop",
        Duration::from_secs(10),
        || async {
            if pidfile::is_alive(server) {
                Err(format!("serve pid {server} still alive"))
            } else {
                Ok(())
            }
        },
    )
    .await;

    let stopped = agent(&["stop", "--state-dir", state]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    assert!(
        String::from_utf8_lossy(&stopped.stdout)
            .contains(&format!("removed stale pid file naming pid {supervisor}")),
        "{}",
        text(&stopped)
    );
}

#[test]
fn start_refuses_a_broken_config_without_launching() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "cluster = \"lab\"\nboard = 7\n").expect("write config");
    let state = dir.path().join("state");
    let output = agent(&[
        "start",
        "--config",
        config.to_str().expect("utf-8"),
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--log-dir",
        dir.path().join("log").to_str().expect("utf-8"),
    ]);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("invalid config file {}", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!PidFile::in_dir(&state).path().exists());
}

#[test]
fn stale_pid_file_is_cleaned_up_by_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = PidFile::in_dir(dir.path());
    // Our own pid: alive, but not a supervisor.
    pid_file.write(std::process::id()).expect("write pid file");
    let output = agent(&["stop", "--state-dir", dir.path().to_str().expect("utf-8")]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("removed stale pid file"),
        "{}",
        text(&output)
    );
    assert!(!pid_file.path().exists());
}

#[test]
fn version_has_the_shape_lab_parses() {
    let output = agent(&["--version"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "lab-agent {} ({})\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        )
    );
}

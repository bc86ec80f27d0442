//! `lab serve`: the control-plane process, in the foreground. It follows every board's
//! sample stream over mTLS, keeps recent history, notices silent boards and serves the HTTP
//! API, the Prometheus exposition and the dashboard until SIGINT or SIGTERM.
//!
//! Also here: starting it detached for `lab up` ([`start_detached`]: a new session, output
//! to `<state>/serve.log`, pid in `<state>/serve.pid`, address in `<state>/serve.addr`) and
//! stopping it for `lab down` ([`stop`]: SIGTERM, a deadline, then SIGKILL).
//!
//! The HTTP side has no authentication: it answers only requests whose `Host` names the
//! address served (see [`crate::web::host_check`]), and says so loudly on stderr when it
//! listens beyond loopback ([`exposure_warning`]).

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::InventoryArg;
use crate::agents::ClusterAgents;
use crate::metrics::client::{ServeClient, ADDR_FILE, EVENTS_FILE, LOG_FILE, PID_FILE};
use crate::metrics::events::{EventKind, EventLog};
use crate::metrics::ingest::{self, Target};
use crate::metrics::lease::HEARTBEAT_TTL;
use crate::metrics::ring::DEFAULT_CAPACITY;
use crate::metrics::store::{BoardInfo, MetricsStore};
use crate::web::{self, WebState};

/// Where `lab serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7480";
/// Environment variable naming the listen address (for `lab serve` and `lab up`).
pub const LISTEN_ENV: &str = "LAB_SERVE_LISTEN";
/// Environment variable with extra host names to answer (comma-separated; a `lab serve`
/// started by `lab up` inherits it).
pub const ALLOW_HOST_ENV: &str = "LAB_SERVE_ALLOW_HOST";
/// How long requests and streams in flight get to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Address for the HTTP API and dashboard (plain HTTP: keep it on loopback unless you
    /// mean to share it). Port 0 picks a free port. Default: 127.0.0.1:7480, or a free
    /// loopback port when another cluster's `lab serve` holds it. The address used is
    /// written to <state>/serve.addr.
    #[arg(long, env = LISTEN_ENV, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Also answer requests addressed to NAME (a DNS name you point at this machine), with
    /// the port served, or to NAME:PORT (behind a proxy). Repeatable. Without it only the
    /// address served (and localhost/this host's own addresses) is answered: a request
    /// naming any other host gets 421, so a web page elsewhere cannot read the cluster
    /// through a browser (DNS rebinding).
    #[arg(long = "allow-host", env = ALLOW_HOST_ENV, value_name = "NAME", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,
    /// Started by `lab up`: detach from the terminal's session (internal).
    #[arg(long, hide = true)]
    pub detached: bool,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.detached {
        // Not fatal: we may already lead a session.
        let _ = nix::unistd::setsid();
    }
    let inv = super::load_inventory(&args.inventory)?;
    let ctx = tokio::task::spawn_blocking(move || ClusterAgents::open(inv)).await??;
    let state_dir = ctx.state.root().to_path_buf();
    if let Some(pid) = running_pid(&state_dir) {
        if pid != std::process::id() {
            bail!(
                "lab serve already runs for cluster `{}` (pid {pid}, {}); stop it with `lab down` or kill {pid}",
                ctx.inventory.cluster.name,
                ServeClient::recorded_addr(&state_dir).unwrap_or_else(|| "address unknown".into())
            );
        }
    }
    web::host_check::AllowedHosts::parse_extra(&args.allow_hosts).map_err(anyhow::Error::msg)?;
    let listener = bind(args.listen.as_deref()).await?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let mut allow_hosts = args.allow_hosts.clone();
    // `--listen mybox.lan:7480` names the host it is reached by.
    if let Some((host, _)) = args.listen.as_deref().and_then(|l| l.rsplit_once(':')) {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !host.is_empty() && host != "localhost" && host.parse::<std::net::IpAddr>().is_err() {
            allow_hosts.push(host.to_string());
        }
    }
    let allowed = web::host_check::AllowedHosts::new(addr, &allow_hosts);
    if let Some(warning) = exposure_warning(addr) {
        eprintln!("{warning}");
        eprintln!(
            "WARNING: answering requests addressed to: {}",
            allowed.describe()
        );
    }

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let events = EventLog::with_file(state_dir.join(EVENTS_FILE), &tracker, shutdown.clone());
    // Boards are labelled with their planned roles: auto roles filled in, the db primary as
    // the topology has it (not the inventory's wish).
    let stored = crate::plan::topology::load(&state_dir).unwrap_or_default();
    let mut planned = crate::plan::planned_roles(&ctx.inventory, &stored);
    let boards: Vec<BoardInfo> = ctx
        .inventory
        .boards
        .iter()
        .map(|b| BoardInfo {
            name: b.name.clone(),
            address: b.address.clone(),
            roles: planned.remove(&b.name).unwrap_or_default(),
        })
        .collect();
    let store = Arc::new(MetricsStore::new(
        boards,
        DEFAULT_CAPACITY,
        HEARTBEAT_TTL,
        events,
    ));
    let targets: Vec<Target> = ctx
        .inventory
        .boards
        .iter()
        .enumerate()
        .map(|(i, b)| Target {
            board: i,
            host: ctx.host(b).to_string(),
            port: lab_api::DEFAULT_AGENT_PORT,
        })
        .collect();
    let client = ctx.client(Duration::from_secs(3))?;

    write_file(
        &state_dir.join(PID_FILE),
        &format!("{}\n", std::process::id()),
    )?;
    write_file(&state_dir.join(ADDR_FILE), &format!("{addr}\n"))?;
    println!(
        "lab serve: cluster `{}`, following {} board(s)",
        ctx.inventory.cluster.name,
        store.len()
    );
    println!("  dashboard:  http://{addr}/");
    println!("  API:        http://{addr}/api/boards  /api/history  /api/events  /api/stream");
    println!("  Prometheus: http://{addr}/metrics");

    ingest::spawn(store.clone(), client, targets, &tracker, shutdown.clone());
    let failover_client = ctx.client(Duration::from_secs(3))?;
    let manager = crate::failover::FailoverManager::new(
        store.clone(),
        Arc::new(ctx),
        failover_client,
        std::time::Instant::now(),
    );
    tracker.spawn(manager.run(shutdown.clone()));
    tracker.spawn(print_events(store.clone(), shutdown.clone()));
    tracker.spawn(on_signal(shutdown.clone()));

    let served = web::serve(
        listener,
        WebState {
            store: store.clone(),
            shutdown: shutdown.clone(),
        },
        allowed,
    )
    .await;
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        eprintln!("lab serve: some tasks did not stop within {SHUTDOWN_GRACE:?}");
    }
    remove_if_ours(&state_dir);
    served.context("serving HTTP")?;
    println!("lab serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The warning for a control plane listening on `addr` beyond loopback (None on loopback):
/// what anyone who reaches it can read, and how to keep it on this machine.
pub fn exposure_warning(addr: std::net::SocketAddr) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    let reach = if addr.ip().is_unspecified() {
        "every network this machine is on".to_string()
    } else {
        format!("the network of {}", addr.ip())
    };
    Some(format!(
        "WARNING: lab serve listens on {addr}, reachable from {reach}.\n\
         WARNING: Its dashboard, HTTP API (/api/*) and /metrics are plain HTTP with NO authentication\n\
         WARNING: and no encryption: anyone who reaches port {port} here can read every board's name,\n\
         WARNING: address, roles, metrics history and events (read-only: nothing served changes the\n\
         WARNING: cluster). Requests addressed to another host name get 421; add names with\n\
         WARNING: --allow-host NAME ({ALLOW_HOST_ENV}).\n\
         WARNING: To keep it on this machine: --listen 127.0.0.1:{port} (or unset {LISTEN_ENV}).",
        port = addr.port()
    ))
}

/// Bind the asked address; without one, the default, or a free loopback port when the
/// default is taken (several clusters on one machine).
async fn bind(listen: Option<&str>) -> anyhow::Result<tokio::net::TcpListener> {
    use tokio::net::TcpListener;
    if let Some(addr) = listen {
        return TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (pass another --listen ADDR or set {LISTEN_ENV})")
        });
    }
    match TcpListener::bind(DEFAULT_LISTEN).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            println!("lab serve: {DEFAULT_LISTEN} is taken (another cluster?); using a free loopback port");
            TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot listen on a free loopback port")
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {DEFAULT_LISTEN}")),
    }
}

async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("lab serve: cannot install signal handlers; stop it with SIGKILL");
        return;
    };
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    println!("lab serve: shutting down");
    shutdown.cancel();
}

/// Print each event as it happens (the foreground view; `serve.log` when detached).
async fn print_events(store: Arc<MetricsStore>, shutdown: CancellationToken) {
    let mut rx = store.events.subscribe();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = rx.recv() => e,
        };
        match event {
            Ok(e) => {
                let kind = match e.kind {
                    EventKind::Down => "DOWN",
                    EventKind::Up => "up",
                    EventKind::Info => "info",
                };
                println!(
                    "{} {:<12} {kind:<4} {}",
                    lab_api::time::clock_utc(e.ts_ms),
                    e.board,
                    e.message
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::state::write_atomic(path, text.as_bytes(), crate::state::PUBLIC_MODE)?;
    Ok(())
}

/// Remove serve.pid and serve.addr if they are still this process's.
fn remove_if_ours(state_dir: &Path) {
    let pid_file = state_dir.join(PID_FILE);
    let ours = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(state_dir.join(ADDR_FILE));
        let _ = std::fs::remove_file(pid_file);
    }
}

/// The pid in `<state>/serve.pid` when that process is alive and is a `lab serve`.
pub fn running_pid(state_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_lab_serve(pid).then_some(pid)
}

fn is_lab_serve(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let zombie = std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true);
    if zombie {
        return false;
    }
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_lab = args
        .first()
        .and_then(|a| {
            Path::new(std::str::from_utf8(a).ok()?)
                .file_name()
                .map(|n| n.to_string_lossy().starts_with("lab"))
        })
        .unwrap_or(false);
    is_lab && args.get(1).is_some_and(|a| *a == b"serve")
}

/// How `lab up` found the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Started now, as this pid.
    New { pid: u32, addr: String },
    /// Already running (left alone).
    Running { pid: u32, addr: String },
}

/// Start `lab serve -i <inventory>` detached, unless one already runs for this state dir.
/// Waits until it listens (or fails, quoting the end of its log).
pub async fn start_detached(
    state_dir: &Path,
    inventory: &Path,
    listen: Option<&str>,
) -> anyhow::Result<Started> {
    if let Some(pid) = running_pid(state_dir) {
        if let Some(addr) = ServeClient::recorded_addr(state_dir) {
            return Ok(Started::Running { pid, addr });
        }
    }
    let log_path = state_dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log2 = log.try_clone().context("duplicating the log handle")?;
    let exe = std::env::current_exe().context("locating the lab binary")?;
    let inventory = inventory
        .canonicalize()
        .unwrap_or_else(|_| inventory.to_path_buf());
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--detached")
        .arg("-i")
        .arg(&inventory)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if let Some(listen) = listen {
        cmd.arg("--listen").arg(listen);
    }
    if std::env::var_os("LAB_LOG").is_none() {
        cmd.env("LAB_LOG", "info");
    }
    let mut child = cmd.spawn().context("starting lab serve")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "lab serve exited ({status}) right after starting; end of {}:\n{}",
                log_path.display(),
                tail(&log_path, 10)
            );
        }
        let recorded_pid = std::fs::read_to_string(state_dir.join(PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if recorded_pid == Some(pid) {
            if let Ok(client) = ServeClient::discover(state_dir, Duration::from_millis(500)).await {
                return Ok(Started::New {
                    pid,
                    addr: client.addr().to_string(),
                });
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "lab serve did not start listening within 15 s; end of {}:\n{}",
                log_path.display(),
                tail(&log_path, 10)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stop the `lab serve` of this state dir, if one runs: SIGTERM, up to `grace` for it to
/// exit, then SIGKILL. Returns the pid stopped.
pub async fn stop(state_dir: &Path, grace: Duration) -> anyhow::Result<Option<u32>> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pid) = running_pid(state_dir) else {
        let _ = std::fs::remove_file(state_dir.join(ADDR_FILE));
        let _ = std::fs::remove_file(state_dir.join(PID_FILE));
        return Ok(None);
    };
    let target = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while is_lab_serve(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if is_lab_serve(pid) {
        let _ = kill(target, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while is_lab_serve(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if is_lab_serve(pid) {
            bail!("lab serve (pid {pid}) survived SIGKILL");
        }
    }
    let _ = std::fs::remove_file(state_dir.join(ADDR_FILE));
    let _ = std::fs::remove_file(state_dir.join(PID_FILE));
    Ok(Some(pid))
}

fn tail(path: &Path, lines: usize) -> String {
    crate::report::last_lines(&std::fs::read_to_string(path).unwrap_or_default(), lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_beyond_loopback_only() {
        assert_eq!(
            exposure_warning("127.0.0.1:7480".parse().expect("addr")),
            None
        );
        assert_eq!(exposure_warning("[::1]:7480".parse().expect("addr")), None);
        let w = exposure_warning("0.0.0.0:7480".parse().expect("addr")).expect("warns");
        assert!(
            w.contains("0.0.0.0:7480") && w.contains("NO authentication"),
            "{w}"
        );
        assert!(w.lines().all(|l| l.starts_with("WARNING: ")), "{w}");
        let w = exposure_warning("192.168.1.5:7480".parse().expect("addr")).expect("warns");
        assert!(w.contains("the network of 192.168.1.5"), "{w}");
    }

    #[test]
    fn a_dead_or_foreign_pid_is_not_our_serve() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(running_pid(dir.path()), None);
        std::fs::write(
            dir.path().join(PID_FILE),
            format!("{}\n", std::process::id()),
        )
        .expect("write");
        // The test binary is not `lab serve`.
        assert_eq!(running_pid(dir.path()), None);
    }
}

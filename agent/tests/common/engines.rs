//! Real engines for the integration tests, started through the agent's own
//! [`lab_agent::engine`] (each the leader of its own process group, SIGKILLed whole if the test
//! panics), on unique loopback addresses; and the tests' own look at `/proc`, independent of
//! the code under test, to prove that nothing of an engine is left when a test ends.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use lab_agent::engine::{EngineCommand, EngineProcess, StopMode, StopReport, StopSignals};
use lab_agent::procfs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Installs the role engines through `lab`'s host setup, as `lab up` does.
pub fn ensure_engines() {
    lab::host_setup::ensure(lab::host_setup::ENGINES, &mut |l: &str| eprintln!("{l}"))
        .expect("installing the role engines (run the tests as root)");
}

/// A loopback address no other test (in this binary or another running one) uses, with a
/// port free on it: `127.<pid>.<pid>.<n>`, so a port left open by one test is never the port
/// another test asserts is closed.
pub fn unique_loopback() -> SocketAddr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let pid = std::process::id();
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let ip = Ipv4Addr::new(127, (pid >> 8) as u8, pid as u8, n.max(1));
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|err| panic!("no free port on {ip}: {err}"))
}

/// Starts `command` through the agent's engine module, after making sure the engines are
/// installed. The test process becomes the subreaper of what it starts, as the agent is, so
/// workers orphaned by a killed master are reaped by the stop instead of left as zombies.
pub fn start(command: EngineCommand) -> EngineProcess {
    ensure_engines();
    lab_agent::engine::group::become_subreaper().expect("prctl(PR_SET_CHILD_SUBREAPER)");
    assert!(
        command.program.exists(),
        "{} missing: apt-get install -y nginx-light memcached mariadb-server",
        command.program.display()
    );
    EngineProcess::start(command).unwrap_or_else(|err| panic!("{err:#}"))
}

/// NGINX in the foreground with `workers` workers, listening on `listen`, everything in `dir`:
/// `/` answers with the serving worker's pid, `/stub_status` with NGINX's counters.
pub fn nginx(dir: &Path, listen: SocketAddr, workers: u32) -> EngineCommand {
    let d = dir.display();
    let conf = format!(
        "worker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen {listen};\n    location /stub_status {{ stub_status; }}\n\
             location / {{ return 200 '$pid'; }}\n  }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    EngineCommand::new("nginx", "/usr/sbin/nginx", StopSignals::NGINX)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"])
        .log_to(dir.join("nginx.out"))
}

/// memcached on `listen` (TCP only), as root.
pub fn memcached(listen: SocketAddr) -> EngineCommand {
    EngineCommand::new("memcached", "/usr/bin/memcached", StopSignals::MEMCACHED).args([
        "-l".to_string(),
        listen.ip().to_string(),
        "-p".to_string(),
        listen.port().to_string(),
        "-U".to_string(),
        "0".to_string(),
        "-u".to_string(),
        "root".to_string(),
    ])
}

/// `GET path` over a fresh connection; the status line and body, or why not.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(String, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no header end in {text:?}"))?;
        let status = head.lines().next().unwrap_or_default().to_string();
        Ok((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("GET {path} on {addr} timed out"))?
}

/// Panics unless connecting to `addr` is refused: nothing listens there any more.
pub async fn assert_refused(addr: SocketAddr) {
    match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {}
        Ok(Err(err)) => panic!("connecting to {addr}: expected refused, got {err}"),
        Ok(Ok(_)) => panic!("{addr} still accepts connections"),
        Err(_) => panic!("connecting to {addr} timed out (expected refused)"),
    }
}

/// A live process as the test saw it in `/proc`. Pids are reused, so a process is the same
/// one only if its start time matches too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub pid: i32,
    pub pgrp: i32,
    pub starttime_ticks: u64,
    /// `/proc/<pid>/cmdline` with spaces for NULs (`nginx: worker process`).
    pub cmdline: String,
}

/// Every live (not zombie) process of the host, read by the test itself. Panics when `/proc`
/// cannot be listed: a check that cannot look must not say "nothing left".
pub fn processes() -> Vec<Seen> {
    scan()
        .into_iter()
        .filter(|(_, stat)| stat.state != 'Z')
        .filter_map(|(pid, stat)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some(Seen {
                pid,
                pgrp: stat.pgrp,
                starttime_ticks: stat.starttime_ticks,
                cmdline: String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .trim()
                    .to_string(),
            })
        })
        .collect()
}

/// Every process of the host with its parsed `stat`, read by the test itself (not through
/// the module under test). Panics when `/proc` cannot be listed.
fn scan() -> Vec<(i32, procfs::ProcStat)> {
    let entries = std::fs::read_dir("/proc").unwrap_or_else(|err| panic!("listing /proc: {err}"));
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, procfs::parse_stat(&text)?))
        })
        .collect()
}

/// The live processes of process group `pgid`.
pub fn group(pgid: i32) -> Vec<Seen> {
    processes().into_iter().filter(|p| p.pgrp == pgid).collect()
}

/// Pids of the zombies of process group `pgid`: exited, never reaped.
pub fn zombies(pgid: i32) -> Vec<i32> {
    scan()
        .into_iter()
        .filter(|(_, stat)| stat.state == 'Z' && stat.pgrp == pgid)
        .map(|(pid, _)| pid)
        .collect()
}

/// What is left of an engine: any process of its group `pgid` (zombies included: a stop
/// reaps what it made), and any process of `seen` (its processes as recorded while it ran,
/// e.g. its workers) still alive, whatever group it is in now. Empty when the engine is gone
/// whole.
pub fn engine_leftovers(pgid: i32, seen: &[Seen]) -> Vec<String> {
    let now = processes();
    let mut left: Vec<String> = now
        .iter()
        .filter(|p| p.pgrp == pgid)
        .map(|p| format!("pid {} in group {pgid}: {}", p.pid, p.cmdline))
        .collect();
    for pid in zombies(pgid) {
        left.push(format!("zombie pid {pid} in group {pgid}"));
    }
    for old in seen {
        if now
            .iter()
            .any(|p| p.pid == old.pid && p.starttime_ticks == old.starttime_ticks && p.pgrp != pgid)
        {
            left.push(format!("pid {} still alive: {}", old.pid, old.cmdline));
        }
    }
    left
}

/// Stops `engine` with `mode` (10 s deadline) and asserts that nothing of it is left, by the
/// test's own look at `/proc`; returns the stop's report.
pub async fn stop_whole(engine: &mut EngineProcess, mode: StopMode) -> StopReport {
    let pgid = engine.pid();
    let seen = group(pgid);
    let report = engine
        .stop(mode, Duration::from_secs(10))
        .await
        .unwrap_or_else(|err| panic!("stopping {}: {err:#}", engine.name()));
    let left = engine_leftovers(pgid, &seen);
    assert!(left.is_empty(), "after {report}: {left:?}");
    report
}

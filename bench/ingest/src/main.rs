//! `bench-ingest`: how much CPU and memory `lab serve` needs to follow hundreds of agents.
//!
//! It makes a throw-away cluster PKI (`lab::pki::ClusterPki`) in a temp state dir, starts N
//! simulated agents on loopback addresses `127.77.x.y:7443` (one TLS server certificate
//! each, with the IP in its SAN; client certificates checked against the cluster CA, as the
//! real agent does), each serving `GET /v1/health` and the NDJSON sample stream
//! (`lab_api::paths::SAMPLES_STREAM`, first sample at once, then one per second) with a
//! realistic, varying [`Sample`]. For each step (default 100, 250, 500 agents) it writes a
//! plain (non-virtual) inventory of the first N agents, starts `lab serve` on it, waits until
//! every board is up, warms up, then measures `lab serve`'s CPU (utime+stime from
//! `/proc/<pid>/stat`) and RSS (`VmRSS`) over the window, checks the ingest rate from its
//! `/metrics`, stops it, and finally prints a table against the budget (≤ 50% of one core at
//! 500 agents). Everything stays on loopback; every process it starts is stopped on exit.
//!
//! Run: `cargo build --release -p lab -p lab-bench-ingest && target/release/bench-ingest`
//! (see bench/README.md for options).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lab_api::metrics::{
    CpuSeconds, DiskIo, DiskSample, Figure, FileDescriptors, FilesystemSample, GuestSeconds,
    HostSample, KernelCounters, MemoryDetail, NetworkDetail, NetworkSample, Pressure, RoleSample,
    Sample, Temperature, TemperatureKind, Throttling, Uname,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// Options (all `--name value`).
#[derive(Debug, Clone)]
struct Opts {
    steps: Vec<usize>,
    warmup: Duration,
    window: Duration,
    lab: PathBuf,
    budget_percent: f64,
}

fn usage() -> &'static str {
    "bench-ingest [--steps 100,250,500] [--warmup SECS (10)] [--window SECS (60)] [--lab PATH] [--budget PERCENT (50)]"
}

fn parse_opts() -> anyhow::Result<Opts> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut o = Opts {
        steps: vec![100, 250, 500],
        warmup: Duration::from_secs(10),
        window: Duration::from_secs(60),
        lab: exe_dir.join("lab"),
        budget_percent: 50.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value; {}", usage()))
        };
        match flag.as_str() {
            "--steps" => {
                o.steps = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--steps: comma-separated agent counts")?
            }
            "--warmup" => o.warmup = Duration::from_secs(value()?.parse().context("--warmup")?),
            "--window" => o.window = Duration::from_secs(value()?.parse().context("--window")?),
            "--lab" => o.lab = PathBuf::from(value()?),
            "--budget" => o.budget_percent = value()?.parse().context("--budget")?,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown option {other}; {}", usage()),
        }
    }
    if o.steps.is_empty() || o.steps.iter().any(|n| *n == 0 || *n > 60_000) {
        bail!("--steps: agent counts must be 1..=60000");
    }
    if !o.lab.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p lab` or pass --lab",
            o.lab.display()
        );
    }
    Ok(o)
}

/// Loopback address of simulated agent `i` (127.77.1.1, 127.77.1.2, ...).
fn agent_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 77, (1 + i / 250) as u8, (1 + i % 250) as u8)
}

fn board_name(i: usize) -> String {
    format!("sim-{:04}", i + 1)
}

fn main() -> anyhow::Result<()> {
    let opts = parse_opts()?;
    lab::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

struct Row {
    agents: usize,
    cpu_percent: f64,
    rss_kb: u64,
    hwm_kb: u64,
    samples_per_sec: f64,
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let max = opts.steps.iter().copied().max().unwrap_or(0);
    let tmp = tempfile::Builder::new()
        .prefix("lab-bench-ingest")
        .tempdir()?;
    let state = tmp.path().join("state");
    let pki = lab::pki::ClusterPki::load_or_create(&state.join("pki"), "bench")?;
    eprintln!("making {max} agent certificates in {}", state.display());
    let shutdown = CancellationToken::new();
    let mut agents = Vec::new();
    for i in 0..max {
        let ip = agent_ip(i);
        let pair = pki.board_cert(&board_name(i), &[ip.to_string()])?;
        let acceptor = acceptor(&pki.ca_cert_pem, &pair.cert_pem, &pair.key_pem)?;
        let addr = SocketAddr::new(IpAddr::V4(ip), lab_api::DEFAULT_AGENT_PORT);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding simulated agent on {addr}"))?;
        agents.push(tokio::spawn(serve_agent(
            listener,
            acceptor,
            i,
            shutdown.clone(),
        )));
    }
    eprintln!(
        "{max} simulated agents listening on 127.77.x.y:{}",
        lab_api::DEFAULT_AGENT_PORT
    );

    let mut rows = Vec::new();
    let mut result = Ok(());
    for &n in &opts.steps {
        match measure_step(&opts, tmp.path(), &state, n).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                result = Err(e.context(format!("step with {n} agents")));
                break;
            }
        }
    }
    shutdown.cancel();
    for a in agents {
        a.abort();
    }
    print_table(&opts, &rows);
    result
}

/// A `lab serve` child that is stopped (SIGTERM, then SIGKILL) when dropped.
struct ServeProcess(Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn measure_step(opts: &Opts, dir: &Path, state: &Path, n: usize) -> anyhow::Result<Row> {
    let inventory = dir.join(format!("inventory-{n}.toml"));
    let mut text = format!(
        "[cluster]\nname = \"bench\"\nstate_dir = \"{}\"\nssh_key = \"agent\"\n",
        state.display()
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[board]]\nname = \"{}\"\naddress = \"{}\"\nroles = \"auto\"\n",
            board_name(i),
            agent_ip(i)
        ));
    }
    std::fs::write(&inventory, text)?;
    let _ = std::fs::remove_file(state.join(lab::metrics::client::ADDR_FILE));
    let log = std::fs::File::create(dir.join(format!("serve-{n}.log")))?;
    let child = Command::new(&opts.lab)
        .args(["serve", "--listen", "127.0.0.1:0", "-i"])
        .arg(&inventory)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", opts.lab.display()))?;
    let serve = ServeProcess(child);
    let pid = serve.0.id();
    eprintln!("[{n} agents] lab serve pid {pid}: waiting for every board to be up");
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Some(a) = lab::metrics::client::ServeClient::recorded_addr(state) {
            break a;
        }
        if Instant::now() > deadline {
            bail!(
                "lab serve wrote no serve.addr within 60 s (see {}/serve-{n}.log)",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = lab::metrics::client::ServeClient::new(addr, Duration::from_secs(10));
    loop {
        let boards: Vec<lab::web::api::BoardJson> =
            client.get_json("/api/boards").await.unwrap_or_default();
        let up = boards.iter().filter(|b| b.up).count();
        if up == n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {up}/{n} boards up after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("[{n} agents] all up; warming up {:?}", opts.warmup);
    tokio::time::sleep(opts.warmup).await;
    let samples0 = ingested(&client).await?;
    let (ticks0, t0) = (cpu_ticks(pid)?, Instant::now());
    eprintln!("[{n} agents] measuring for {:?}", opts.window);
    tokio::time::sleep(opts.window).await;
    let (ticks1, t1) = (cpu_ticks(pid)?, Instant::now());
    let samples1 = ingested(&client).await?;
    let (rss_kb, hwm_kb) = memory_kb(pid)?;
    let secs = (t1 - t0).as_secs_f64();
    let clk = clock_ticks_per_sec();
    let row = Row {
        agents: n,
        cpu_percent: (ticks1 - ticks0) as f64 / clk / secs * 100.0,
        rss_kb,
        hwm_kb,
        samples_per_sec: (samples1 - samples0) / secs,
    };
    eprintln!(
        "[{n} agents] cpu {:.1}% of one core, RSS {:.1} MB, {:.0} samples/s",
        row.cpu_percent,
        rss_kb as f64 / 1024.0,
        row.samples_per_sec
    );
    drop(serve);
    Ok(row)
}

async fn ingested(client: &lab::metrics::client::ServeClient) -> anyhow::Result<f64> {
    let body = client.get("/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix("lab_ingest_samples_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("lab_ingest_samples_total missing from /metrics")
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/pid/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as f64)
        .unwrap_or(100.0)
}

fn memory_kb(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn print_table(opts: &Opts, rows: &[Row]) {
    println!();
    println!(
        "lab serve ingest, {} s window after {} s warm-up (budget: <= {:.0}% of one core at 500 agents)",
        opts.window.as_secs(),
        opts.warmup.as_secs(),
        opts.budget_percent
    );
    println!(
        "{:>7}  {:>10}  {:>9}  {:>9}  {:>9}  {:>11}  {:>14}",
        "agents", "CPU %core", "vs budget", "RSS MB", "peak MB", "samples/s", "KB/agent (RSS)"
    );
    let first = rows.first();
    for r in rows {
        let per_agent = match first {
            Some(f) if r.agents > f.agents => format!(
                "{:.1}",
                (r.rss_kb as f64 - f.rss_kb as f64) / (r.agents - f.agents) as f64
            ),
            _ => "-".into(),
        };
        println!(
            "{:>7}  {:>10.1}  {:>8.2}x  {:>9.1}  {:>9.1}  {:>11.0}  {:>14}",
            r.agents,
            r.cpu_percent,
            r.cpu_percent / opts.budget_percent,
            r.rss_kb as f64 / 1024.0,
            r.hwm_kb as f64 / 1024.0,
            r.samples_per_sec,
            per_agent
        );
    }
    println!(
        "(KB/agent: RSS growth per added agent against the first step. History rings fill over an\n hour: add ~0.13 MB per board at steady state, see control/src/metrics/store.rs.)"
    );
}

fn acceptor(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<TlsAcceptor> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve_agent(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    index: usize,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = service_fn(move |req| handle(req, index, shutdown.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    index: usize,
    shutdown: CancellationToken,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path();
    if path == lab_api::paths::HEALTH {
        let health = lab_api::Health {
            protocol_version: lab_api::PROTOCOL_VERSION,
            agent_version: "bench".into(),
            board: board_name(index),
            hostname: board_name(index),
            arch: "aarch64".into(),
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.6.31+rpt-rpi-v8".into(),
            uptime_secs: 1000,
            agent_uptime_secs: 10,
            cpu_percent: 5.0,
            cpu_count: 4,
            cpus: 4.0,
            mem_used_bytes: 1 << 30,
            mem_total_bytes: 4 << 30,
            binary_sha256: String::new(),
            spec_epoch: None,
            roles: Vec::new(),
        };
        let body = serde_json::to_vec(&health).unwrap_or_default();
        return Ok(Response::new(Full::new(Bytes::from(body)).boxed()));
    }
    if path == lab_api::paths::SAMPLES_STREAM {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
        tokio::spawn(async move {
            let mut sim = SimAgent::new(index);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let mut line = serde_json::to_vec(&sim.next_sample()).unwrap_or_default();
                line.push(b'\n');
                if tx.send(Frame::data(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
        });
        return Ok(Response::new(body.boxed()));
    }
    let mut resp =
        Response::new(Full::new(Bytes::from_static(b"{\"error\":\"not found\"}")).boxed());
    *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
    Ok(resp)
}

/// One simulated board: a Raspberry Pi 4 shaped sample whose counters grow and gauges wobble.
struct SimAgent {
    index: usize,
    seq: u64,
    sample: Sample,
    rng: u64,
}

impl SimAgent {
    fn new(index: usize) -> Self {
        let name = board_name(index);
        let cores = 4;
        let roles = match index % 4 {
            0 => vec![role(
                "lb",
                "nginx",
                &[("requests_total", true), ("active_connections", false)],
            )],
            1 => vec![role(
                "app",
                "lab-app",
                &[
                    ("requests_total", true),
                    ("errors_total", true),
                    ("latency_p99_ms", false),
                    ("cache_hit_ratio", false),
                ],
            )],
            2 => vec![role(
                "cache",
                "memcached",
                &[
                    ("get_hits_total", true),
                    ("get_misses_total", true),
                    ("evictions_total", true),
                    ("curr_items", false),
                    ("bytes", false),
                ],
            )],
            _ => vec![],
        };
        let sample = Sample {
            board: name.clone(),
            seq: 0,
            timestamp_ms: 0,
            host: HostSample {
                uname: Uname {
                    sysname: "Linux".into(),
                    nodename: name,
                    release: "6.6.31+rpt-rpi-v8".into(),
                    version: "#1 SMP PREEMPT Debian 1:6.6.31-1+rpt1 (2024-05-29)".into(),
                    machine: "aarch64".into(),
                },
                boot_time_seconds: 1_795_000_000,
                cpu_per_core: vec![0.0; cores],
                cpu_seconds: (0..cores as u32)
                    .map(|cpu| CpuSeconds {
                        cpu,
                        idle: 1000.0,
                        guest: Some(GuestSeconds::default()),
                        ..Default::default()
                    })
                    .collect(),
                mem_total_bytes: 3_977_527_296,
                swap_total_bytes: 104_853_504,
                swap_free_bytes: 104_853_504,
                memory: Some(MemoryDetail {
                    cached_bytes: 1_500_000_000,
                    buffers_bytes: 60_000_000,
                    sreclaimable_bytes: 40_000_000,
                    slab_bytes: 70_000_000,
                    page_tables_bytes: 8_000_000,
                    swap_cached_bytes: 0,
                }),
                kernel: Some(KernelCounters {
                    context_switches_total: 123_456_789,
                    interrupts_total: 98_765_432,
                    forks_total: 45_678,
                    procs_running: 2,
                    procs_blocked: 0,
                }),
                pressure: Some(Pressure {
                    cpu_waiting_seconds: Some(129.5),
                    memory_waiting_seconds: Some(0.25),
                    memory_stalled_seconds: Some(0.125),
                    io_waiting_seconds: Some(3.17),
                    io_stalled_seconds: Some(1.12),
                    irq_stalled_seconds: None,
                }),
                file_descriptors: Some(FileDescriptors {
                    allocated: 1_216,
                    maximum: 9_223_372_036_854_775_807,
                }),
                filesystems: vec![
                    fs("/dev/mmcblk0p2", "/", "ext4", 31_000_000_000),
                    fs("/dev/mmcblk0p1", "/boot/firmware", "vfat", 535_000_000),
                ],
                disks: vec![DiskSample {
                    device: "mmcblk0".into(),
                    io: Some(DiskIo::default()),
                    ..Default::default()
                }],
                network: ["lo", "eth0", "wlan0"]
                    .iter()
                    .map(|d| NetworkSample {
                        device: d.to_string(),
                        detail: Some(NetworkDetail::default()),
                        ..Default::default()
                    })
                    .collect(),
                temperatures: vec![Temperature {
                    chip: "thermal_zone0".into(),
                    sensor: "cpu-thermal".into(),
                    celsius: 45.0,
                    kind: TemperatureKind::ThermalZone,
                }],
                throttling: Some(Throttling::default()),
                ..Default::default()
            },
            roles,
        };
        Self {
            index,
            seq: 0,
            sample,
            rng: 0x9E37_79B9_7F4A_7C15 ^ index as u64,
        }
    }

    fn rand(&mut self) -> f64 {
        // xorshift64*: plenty for wobbling numbers.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next_sample(&mut self) -> Sample {
        self.seq += 1;
        let busy = 5.0 + 30.0 * self.rand() + (self.index % 7) as f64;
        let mut s = self.sample.clone();
        s.seq = self.seq;
        s.timestamp_ms = lab::metrics::now_ms();
        let h = &mut s.host;
        h.uptime_secs = 1000 + self.seq;
        h.cpu_percent = busy as f32;
        for c in h.cpu_per_core.iter_mut() {
            *c = (busy * (0.5 + self.rng as f64 / u64::MAX as f64)) as f32;
        }
        for c in h.cpu_seconds.iter_mut() {
            c.user += busy / 100.0 * 0.7;
            c.system += busy / 100.0 * 0.3;
            c.idle += 1.0 - busy / 100.0;
        }
        h.load1 = busy / 25.0;
        h.load5 = busy / 30.0;
        h.load15 = busy / 35.0;
        let avail = 2_500_000_000.0 + 500_000_000.0 * self.rand();
        h.mem_available_bytes = avail as u64;
        h.mem_free_bytes = (avail * 0.6) as u64;
        for f in h.filesystems.iter_mut() {
            f.avail_bytes = f.size_bytes / 2;
            f.free_bytes = f.size_bytes / 2 + 1000;
        }
        let io = (self.rand() * 200_000.0) as u64;
        for d in h.disks.iter_mut() {
            d.read_bytes_total += io;
            d.written_bytes_total += io / 2;
        }
        let net = (self.rand() * 1_000_000.0) as u64;
        for n in h.network.iter_mut() {
            n.rx_bytes_total += net;
            n.tx_bytes_total += net / 3;
            n.rx_packets_total += net / 800;
            n.tx_packets_total += net / 2400;
        }
        for t in h.temperatures.iter_mut() {
            t.celsius = 45.0 + 10.0 * busy / 40.0;
        }
        let bump = 100.0 + 400.0 * self.rand();
        for role in s.roles.iter_mut() {
            for f in role.figures.iter_mut() {
                if f.counter {
                    f.value += bump;
                } else {
                    f.value = bump / 10.0;
                }
            }
        }
        self.sample = s.clone();
        s
    }
}

fn role(role: &str, engine: &str, figures: &[(&str, bool)]) -> RoleSample {
    RoleSample {
        role: lab_api::Role::parse(role).expect("a role name"),
        engine: lab_api::Engine::parse(engine).expect("an engine name"),
        up: true,
        figures: figures
            .iter()
            .map(|(name, counter)| Figure {
                name: name.to_string(),
                value: 0.0,
                counter: *counter,
            })
            .collect(),
        labels: vec![],
    }
}

fn fs(device: &str, mountpoint: &str, fstype: &str, size: u64) -> FilesystemSample {
    FilesystemSample {
        device: device.into(),
        mountpoint: mountpoint.into(),
        fstype: fstype.into(),
        size_bytes: size,
        avail_bytes: size / 2,
        free_bytes: size / 2,
        files: Some(size / 16_384),
        files_free: Some(size / 32_768),
        readonly: Some(false),
    }
}

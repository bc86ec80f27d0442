//! `lab load` against real servers, through the real binary: a real NGINX (Debian's
//! nginx-light, ensured through `lab::host_setup`) serving a static page on a loopback address
//! of its own, loaded at a fixed rate, whose timeline and summary must add up; and a tiny
//! hyper server that answers after 50 ms, asked for an impossible rate over one connection,
//! which must be reported as a shortfall with its exit code. Bad arguments send nothing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LAB: &str = env!("CARGO_BIN_EXE_lab");
const NGINX: &str = "/usr/sbin/nginx";
/// `lab load`'s exit code for a shortfall (documented in `lab load --help`).
const EXIT_SHORTFALL: i32 = 3;

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Poll `check` until it holds or `deadline` passes; the last thing it said on failure.
fn wait_for(what: &str, deadline: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + deadline;
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if Instant::now() >= end => panic!("{what}: not after {deadline:?}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A loopback address no parallel test (or other test binary) uses: 127.<pid>.<n>.1.
fn unique_loopback() -> std::net::Ipv4Addr {
    static N: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let n = N.fetch_add(1, Ordering::SeqCst) as u32;
    std::net::Ipv4Addr::new(
        127,
        60 + (pid % 150) as u8,
        ((pid / 150) as u8).wrapping_add(n as u8 * 17),
        1 + (n % 200) as u8,
    )
}

/// NGINX in the foreground with its own prefix, pid, logs and temp paths in a temp dir;
/// killed (its whole process group) on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(page: &str) -> Self {
        Self::start_with(page, "")
    }

    /// With `server_lines` added to the server block (e.g. `keepalive_timeout 1s;`).
    fn start_with(page: &str, server_lines: &str) -> Self {
        let nginx_light: Vec<lab::host_setup::Requirement> = lab::host_setup::ENGINES
            .iter()
            .filter(|r| r.package == "nginx-light")
            .copied()
            .collect();
        lab::host_setup::ensure(&nginx_light, &mut |l: &str| eprintln!("{l}"))
            .expect("installing nginx-light (run the tests as root)");
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} missing after ensuring nginx-light"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let root = root.as_path();
        std::fs::create_dir_all(root.join("www")).expect("www");
        std::fs::create_dir_all(root.join("tmp")).expect("tmp");
        std::fs::write(root.join("www/index.html"), page).expect("page");
        let ip = unique_loopback();
        // A port nothing listens on at that address (bind-and-release on the same address).
        let port = TcpListener::bind((ip, 0))
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let addr = SocketAddr::from((ip, port));
        let p = root.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n\
               fastcgi_temp_path {p}/tmp/fastcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n\
               server {{\n    listen {addr};\n    root {p}/www;\n    {server_lines}\n    location / {{ }}\n  }}\n}}\n"
        );
        std::fs::write(root.join("nginx.conf"), conf).expect("conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(root)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .arg("-e")
            .arg(root.join("error.log"))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            child,
            addr,
            _dir: dir,
        };
        let log = root.join("error.log");
        wait_for("nginx listening", Duration::from_secs(10), || {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        nginx
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// An HTTP server on 127.0.0.1 that answers every request after `delay`, counting them; it
/// stops (its runtime and every connection) on drop.
struct SlowServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SlowServer {
    fn start(delay: Duration) -> Self {
        use http_body_util::Full;
        use hyper::body::Bytes;
        use hyper_util::rt::TokioIo;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"slow\n"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SlowServer {
            addr,
            requests,
            runtime: Some(runtime),
        }
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn lab_load(args: &[&str]) -> Output {
    Command::new(LAB)
        .arg("load")
        .args(args)
        .env("LAB_INVENTORY", "/nonexistent/never-read.toml")
        .stdin(Stdio::null())
        .output()
        .expect("run lab load")
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} not written: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn a_fixed_rate_against_real_nginx_adds_up_second_by_second() {
    let nginx = Nginx::start("<html><body>lab load test page</body></html>\n");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out_path: PathBuf = out_dir.path().join("run");
    let out_arg = out_path.display().to_string();
    let url = nginx.url();
    let out = lab_load(&[
        "--url",
        &url,
        "--mix",
        "static",
        "--rate",
        "200",
        "--duration",
        "3s",
        "--out",
        &out_arg,
    ]);
    assert!(out.status.success(), "lab load failed:\n{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("200 req/s achieved of 200 asked"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout.contains("timeline.csv"),
        "where the files are is said:\n{stdout}"
    );

    // The CSV: a header and one row per second, each near 200 requests.
    let csv = std::fs::read_to_string(out_path.join("timeline.csv")).expect("timeline.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("t,sent,ok,errors,rate,p50_ms,p99_ms,max_ms,hits,misses")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| {
            l.split(',')
                .map(|f| f.parse().unwrap_or_else(|_| panic!("field `{f}` in `{l}`")))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (i + 1) as f64, "t of row {i}: {csv}");
        assert!(
            (185.0..=215.0).contains(&r[1]),
            "sent in second {}: {csv}",
            i + 1
        );
        assert!(
            (170.0..=230.0).contains(&r[4]),
            "rate in second {}: {csv}",
            i + 1
        );
        assert_eq!(r[3], 0.0, "errors: {csv}");
        assert!(
            r[5] > 0.0 && r[5] <= r[6] && r[6] <= r[7],
            "p50 <= p99 <= max: {csv}"
        );
    }

    // The JSON timeline says the same; the summary's counts are the rows' sums.
    let timeline = read_json(&out_path.join("timeline.json"));
    let timeline = timeline.as_array().expect("timeline rows");
    assert_eq!(timeline.len(), 3);
    let sum = |key: &str| timeline.iter().map(|r| u(&r[key])).sum::<u64>();
    let summary = read_json(&out_path.join("summary.json"));
    assert_eq!(u(&summary["sent"]), 600, "3 s at 200/s: {summary}");
    assert_eq!(u(&summary["ok"]), 600, "{summary}");
    assert_eq!(u(&summary["failed"]), 0, "{summary}");
    assert_eq!(sum("sent"), 600);
    assert_eq!(sum("ok"), 600);
    assert_eq!(sum("errors"), 0);
    for (row, csv_row) in timeline.iter().zip(&rows) {
        assert_eq!(u(&row["sent"]) as f64, csv_row[1]);
    }
    assert_eq!(u(&summary["punctuality"]["scheduled"]), 600);
    assert!(summary["shortfall"].is_null(), "{summary}");
    assert_eq!(summary["mode"], "open");
    assert!(summary["latency_ms"]["p99"].as_f64().unwrap_or(0.0) > 0.0);
    // NGINX sends no X-Served-By: every answer is counted as unsaid.
    assert_eq!(u(&summary["served_by_unknown"]), 600);
}

#[test]
fn an_impossible_rate_is_reported_as_a_shortfall_not_hidden() {
    let server = SlowServer::start(Duration::from_millis(50));
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out_arg = out_dir.path().display().to_string();
    let url = format!("http://{}/", server.addr);
    let out = lab_load(&[
        "--url",
        &url,
        "--mix",
        "static",
        "--rate",
        "1000000",
        "--concurrency",
        "1",
        "--duration",
        "2s",
        "--out",
        &out_arg,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_SHORTFALL),
        "expected the shortfall exit code:\n{}",
        describe(&out)
    );
    let stdout: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json: {e}\n{}", describe(&out)));
    let summary = read_json(&out_dir.path().join("summary.json"));
    assert_eq!(stdout, summary, "--json prints what summary.json holds");
    let sent = u(&summary["sent"]);
    // One connection, 50 ms an answer, 2 s: about 40 requests, never thousands.
    assert!((10..=45).contains(&sent), "sent {sent}: {summary}");
    assert_eq!(u(&summary["ok"]), sent);
    let shortfall = &summary["shortfall"];
    assert_eq!(u(&shortfall["scheduled"]), 2_000_000, "{summary}");
    assert_eq!(u(&shortfall["not_started"]), 2_000_000 - sent);
    assert_eq!(shortfall["cause"], "concurrency limit");
    // Latency counts from the schedule: the last requests waited most of the run.
    let max_ms = summary["latency_ms"]["max"].as_f64().unwrap_or(0.0);
    assert!(
        max_ms > 1000.0,
        "latency from the due time, not from the send: {summary}"
    );
    let achieved = summary["achieved_rate"].as_f64().unwrap_or(f64::MAX);
    assert!(achieved < 30.0, "{summary}");
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        sent,
        "the server saw what was counted"
    );
    // Without --json the same is said in words.
    let out = lab_load(&[
        "--url",
        &url,
        "--mix",
        "static",
        "--rate",
        "1000000",
        "--concurrency",
        "1",
        "--duration",
        "1s",
        "--out",
        &out_arg,
    ]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_SHORTFALL),
        "{}",
        describe(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SHORTFALL"), "{text}");
    assert!(text.contains("all 1 connection(s) were busy"), "{text}");
}

#[test]
fn bad_arguments_are_refused_and_nothing_is_sent() {
    let server = SlowServer::start(Duration::from_millis(1));
    let url = format!("http://{}/", server.addr);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out_arg = out_dir.path().join("never").display().to_string();
    for (args, says) in [
        (vec!["--rate", "-5"], "rate"),
        (vec!["--rate", "nan"], "rate"),
        (vec!["--duration", "2h"], "between 1s and 1h"),
        (vec!["--duration", "ten"], "duration"),
        (vec!["--concurrency", "0"], "concurrency"),
        (vec!["--concurrency", "100000"], "concurrency"),
        (vec!["--timeout", "0s"], "timeout"),
        (vec!["--read-ratio", "2"], "read ratio"),
        (vec!["--mix", "chaos"], "mix"),
    ] {
        let mut all = vec![
            "--url",
            url.as_str(),
            "--out",
            out_arg.as_str(),
            "--mix",
            "static",
        ];
        all.extend(args.iter().copied());
        let out = lab_load(&all);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} accepted:\n{}",
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says),
            "{args:?}: `{says}` not in:\n{stderr}"
        );
    }
    for (url, says) in [
        ("https://127.0.0.1/", "only http://"),
        ("127.0.0.1:80", "http://"),
    ] {
        let out = lab_load(&["--url", url, "--mix", "static", "--out", &out_arg]);
        assert_eq!(out.status.code(), Some(1), "{url}:\n{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            describe(&out)
        );
    }
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "a refused run sent requests"
    );
    assert!(
        !Path::new(&out_arg).exists(),
        "a refused run made its output directory"
    );
}

#[test]
fn a_target_that_refuses_every_connection_is_said_and_exits_4() {
    // A port that was just free on loopback: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out_arg = out_dir.path().display().to_string();
    let url = format!("http://{addr}/");
    let out = lab_load(&[
        "--url",
        &url,
        "--mix",
        "static",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--out",
        &out_arg,
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOTHING ANSWERED OK"), "{text}");
    assert!(
        text.contains("connect: 50"),
        "every request counted as a connect error: {text}"
    );
    let summary = read_json(&out_dir.path().join("summary.json"));
    assert_eq!(u(&summary["errors"]["connect"]), 50, "{summary}");
    assert_eq!(u(&summary["ok"]), 0);
}

#[test]
fn connections_the_server_closed_while_idle_are_reopened_not_failed() {
    // NGINX drops a keep-alive connection idle for 1 s; at 2 req/s over 4 connections each
    // one idles 2 s between requests, so every reuse finds it closed.
    let nginx = Nginx::start_with("idle\n", "keepalive_timeout 1s;");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out_arg = out_dir.path().display().to_string();
    let url = nginx.url();
    let out = lab_load(&[
        "--url",
        &url,
        "--mix",
        "static",
        "--rate",
        "2",
        "--concurrency",
        "4",
        "--duration",
        "4s",
        "--out",
        &out_arg,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let summary = read_json(&out_dir.path().join("summary.json"));
    assert_eq!(u(&summary["sent"]), 8, "{summary}");
    assert_eq!(
        u(&summary["failed"]),
        0,
        "a closed idle connection became an error: {summary}"
    );
}

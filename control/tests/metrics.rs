//! The metrics path end to end, on a real virtual cluster with real agents: `lab up` starts
//! the control plane (`lab serve`) on a port this test picks; its HTTP API shows both boards'
//! latest samples and growing history; `/metrics` passes `promtool check metrics`; `lab
//! metrics export` writes CSV; a killed board is reported down within seconds; `lab down`
//! stops the control plane. The harness tears the cluster down even when an assert fails.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{describe, wait_for, TestCluster, LAB};

const PROMTOOL: &str = "/usr/bin/promtool";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A plain HTTP/1.0 GET (the server closes the connection after the answer).
fn get(addr: &str, path: &str) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in answer to {path}: {text}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    let a = get(addr, path)?;
    if a.status != 200 {
        return Err(format!("{path}: {} {}", a.status, a.body));
    }
    serde_json::from_str(&a.body).map_err(|e| format!("{path}: {e}: {}", a.body))
}

fn free_loopback_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn lab_with_listen(cluster: &TestCluster, args: &[&str], listen: &str) -> std::process::Output {
    Command::new(LAB)
        .args(args)
        .arg("-i")
        .arg(&cluster.inventory)
        .env("LAB_SERVE_LISTEN", listen)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run lab")
}

fn history_len(addr: &str, board: &str) -> Result<usize, String> {
    let h = get_json(
        addr,
        &format!("/api/history?board={board}&series=cpu_percent&seconds=3600"),
    )?;
    h["points"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("no points: {h}"))
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// `promtool check metrics` on `text`: parse errors fail; lint findings are allowed only for
/// node_exporter-compatible names (camelCase such as node_memory_MemAvailable_bytes).
fn promtool_check(text: &str, dir: &Path) {
    lab::host_setup::ensure(&[lab::host_setup::PROMTOOL], &mut |l: &str| {
        eprintln!("{l}")
    })
    .expect("installing promtool (run the tests as root)");
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text).expect("write metrics");
    let out = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open metrics"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool's exit status says what it found: 0 clean, 3 lint findings only, anything
    // else (1: a parse error) a broken exposition. The text is kept for the message.
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "promtool rejected the exposition ({}):\n{report}\n(exposition in {})",
        out.status,
        file.display()
    );
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let lint_ok = line.contains("camelCase");
        assert!(
            lint_ok,
            "promtool check metrics: unexpected finding `{line}`\nfull report:\n{report}\n(exposition in {})",
            file.display()
        );
    }
}

#[test]
fn metrics_path_end_to_end() {
    let cluster = TestCluster::new("mt", &[("mt-a", "native"), ("mt-b", "native")]);
    let port = free_loopback_port();
    let listen = format!("127.0.0.1:{port}");
    let addr = listen.as_str();

    // 1. `lab up` bootstraps and starts the control plane where we asked.
    let up = lab_with_listen(&cluster, &["up"], addr);
    let up_text = describe(&up);
    assert!(up.status.success(), "lab up failed:\n{up_text}");
    assert!(
        up_text.contains(&format!("dashboard: http://{addr}/")),
        "{up_text}"
    );
    let state = cluster.state_dir();
    let pid: u32 = std::fs::read_to_string(state.join("serve.pid"))
        .expect("serve.pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(process_alive(pid), "lab serve (pid {pid}) runs");
    assert_eq!(
        std::fs::read_to_string(state.join("serve.addr"))
            .expect("serve.addr")
            .trim(),
        addr
    );
    // Re-running `lab up` leaves the running control plane alone.
    let again = lab_with_listen(&cluster, &["up"], addr);
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(
        std::fs::read_to_string(state.join("serve.pid"))
            .expect("serve.pid")
            .trim(),
        pid.to_string()
    );

    // 2. Both boards show a latest sample.
    let names: Vec<String> = cluster.boards.iter().map(|(n, _)| n.clone()).collect();
    let boards = wait_for(
        "both boards to have a latest sample",
        Duration::from_secs(60),
        || {
            let b = get_json(addr, "/api/boards")?;
            let arr = b.as_array().ok_or("not an array")?;
            let ready = arr.len() == 2
                && arr
                    .iter()
                    .all(|x| x["up"] == true && x["latest"].is_object() && x["os"].is_string());
            if ready {
                Ok(b)
            } else {
                Err(b.to_string())
            }
        },
    );
    let arr = boards.as_array().expect("array");
    for (i, b) in arr.iter().enumerate() {
        assert_eq!(b["board"], names[i].as_str(), "inventory order");
        assert_eq!(b["address"], cluster.boards[i].1.as_str());
        assert!(b["roles"].is_array());
        assert!(b["last_seen_ms"].as_u64().unwrap_or(0) > 0);
        assert_eq!(b["arch"], std::env::consts::ARCH);
        let l = &b["latest"];
        assert!(l["mem_total_bytes"].as_u64().unwrap_or(0) > 0, "{b}");
        assert!(l["mem_used_bytes"].as_u64().unwrap_or(0) > 0, "{b}");
        for key in [
            "cpu_percent",
            "load1",
            "net_rx_bps",
            "net_tx_bps",
            "disk_read_bps",
            "disk_write_bps",
        ] {
            assert!(l[key].is_number(), "{key} in {b}");
        }
        for key in ["temp_c", "throttled", "gpu_load_percent", "key_figure"] {
            assert!(l.get(key).is_some(), "{key} present (maybe null) in {b}");
        }
    }

    // 3. History grows (by polling, not sleeping).
    let first = wait_for("history to start", Duration::from_secs(10), || {
        history_len(addr, &names[0]).and_then(|n| if n > 0 { Ok(n) } else { Err("empty".into()) })
    });
    wait_for(
        "history to grow by 2 points",
        Duration::from_secs(15),
        || {
            let n = history_len(addr, &names[0])?;
            if n >= first + 2 {
                Ok(())
            } else {
                Err(format!("{n} points (started at {first})"))
            }
        },
    );
    let series = get_json(addr, &format!("/api/series?board={}", names[0])).expect("series");
    let series: Vec<&str> = series
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for s in ["cpu_percent", "mem_used_percent", "load1", "net_rx_bps"] {
        assert!(series.contains(&s), "{s} in {series:?}");
    }

    // 4. Bad parameters name the parameter; an unknown board is 404.
    let bad = get(addr, &format!("/api/history?board={}", names[0])).expect("bad");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.json()["error"]
        .as_str()
        .unwrap_or("")
        .contains("series"));
    let bad = get(
        addr,
        &format!(
            "/api/history?board={}&series=cpu_percent&seconds=99999",
            names[0]
        ),
    )
    .expect("bad");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]
        .as_str()
        .unwrap_or("")
        .contains("seconds"));
    let bad = get(addr, "/api/history?board=nope&series=cpu_percent").expect("404");
    assert_eq!(bad.status, 404);
    assert!(bad.json()["error"].as_str().unwrap_or("").contains("board"));
    let bad = get(addr, "/api/events?since_ms=yesterday").expect("bad");
    assert_eq!(bad.status, 400);

    // 5. Prometheus text: exact content type, node_exporter names per board, promtool clean.
    let m = get(addr, "/metrics").expect("/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for name in &names {
        assert!(
            m.body.lines().any(|l| l.starts_with("node_load1{")
                && l.contains(&format!("node=\"{name}\""))
                && l.contains(&format!("instance=\"{name}\""))),
            "node_load1 for {name}"
        );
        assert!(m.body.contains(&format!(
            "lab_board_up{{node=\"{name}\",instance=\"{name}\"}} 1"
        )));
    }
    assert!(m.body.contains("lab_samples_received_total{"));
    assert!(m.body.contains("lab_ingest_samples_total "));
    promtool_check(&m.body, cluster.dir.path());

    // 6. The dashboard and the live stream.
    let index = get(addr, "/").expect("/");
    assert_eq!(index.status, 200);
    assert!(index
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert_eq!(get(addr, "/app.js").expect("app.js").status, 200);
    assert_eq!(get(addr, "/style.css").expect("style.css").status, 200);
    let mut sse = TcpStream::connect(addr).expect("sse connect");
    sse.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(sse, "GET /api/stream HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("sse request");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains("event: boards") && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match sse.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: boards"), "{seen}");
    // Keep this SSE connection open: `lab down` must still stop serve gracefully.

    // 7. CSV export from the running control plane.
    let csv_path = cluster.dir.path().join("export.csv");
    let csv_path_s = csv_path.to_string_lossy().into_owned();
    let out = lab_with_listen(
        &cluster,
        &["metrics", "export", "--seconds", "600", "-o", &csv_path_s],
        addr,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let csv = std::fs::read_to_string(&csv_path).expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp_ms,iso_time,board,series,value")
    );
    for name in &names {
        assert!(
            csv.lines()
                .any(|l| l.split(',').nth(2) == Some(name.as_str())
                    && l.split(',').nth(3) == Some("cpu_percent")),
            "rows for {name} in\n{}",
            csv.lines().take(5).collect::<Vec<_>>().join("\n")
        );
    }

    // 8. Pull one board's plug: a `down` event within seconds, and the board shown down.
    let victim = names[1].clone();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    cluster.lab_ok(&["kill", &victim]);
    let killed = Instant::now();
    let event = wait_for(
        "a down event for the killed board",
        Duration::from_secs(8),
        || {
            let ev = get_json(addr, &format!("/api/events?since_ms={since}"))?;
            ev.as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|e| e["board"] == victim.as_str() && e["kind"] == "down")
                        .cloned()
                })
                .ok_or_else(|| ev.to_string())
        },
    );
    let took = killed.elapsed();
    eprintln!("down event {took:?} after `lab kill` returned");
    assert!(
        took <= Duration::from_secs(6),
        "down noticed after {took:?}"
    );
    assert!(
        event["message"]
            .as_str()
            .unwrap_or("")
            .contains("no heartbeat"),
        "{event}"
    );
    let boards = get_json(addr, "/api/boards").expect("boards");
    let v = boards
        .as_array()
        .expect("array")
        .iter()
        .find(|b| b["board"] == victim.as_str())
        .expect("victim listed");
    assert_eq!(v["up"], false, "{v}");
    let events_file = std::fs::read_to_string(state.join("events.jsonl")).expect("events.jsonl");
    assert!(events_file.contains("\"kind\":\"down\""), "{events_file}");

    // 9. `lab down` stops the control plane (gracefully, despite the open SSE stream).
    cluster.lab_ok(&["down"]);
    assert!(
        !process_alive(pid),
        "lab serve (pid {pid}) still runs after lab down"
    );
    assert!(!state.join("serve.pid").exists());
    let log = std::fs::read_to_string(state.join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("lab serve: stopped"),
        "graceful stop in serve.log:\n{log}"
    );
    drop(sse);
    let out = lab_with_listen(&cluster, &["metrics", "export"], addr);
    assert!(!out.status.success());
    assert!(
        describe(&out).contains("control plane not running"),
        "{}",
        describe(&out)
    );
}

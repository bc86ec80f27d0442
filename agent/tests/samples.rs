//! The samples stream and the Prometheus exposition, over real mTLS against the in-process
//! server; the exposition is checked by `promtool check metrics` (Debian's `prometheus`).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{client_config, get, protocol, start, Board};
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use lab_api::metrics::Sample;
use lab_api::{paths, CollectorConfig};

#[tokio::test]
async fn stream_sends_one_sample_per_second_and_ends_on_shutdown() {
    let mut board = Board::new("127.0.0.1:0");
    // A role whose engine is down: reported, never blocking the stream.
    board.config.collectors = vec![CollectorConfig {
        role: lab_api::Role::Cache,
        engine: lab_api::Engine::Memcached,
        address: "127.0.0.1:1".into(),
    }];
    let mut server = start(&board).await;
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
    let (mut sender, _conn) = common::connect(server.addr, client).await.expect("connect");
    let request = hyper::Request::get(paths::SAMPLES_STREAM)
        .header(hyper::header::HOST, server.addr.to_string())
        .header(lab_api::PROTOCOL_HEADER, protocol())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(b"application/x-ndjson".as_slice())
    );
    let mut body = response.into_body();

    let mut pending = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), async {
        while samples.len() < 3 {
            let frame = body
                .frame()
                .await
                .expect("stream ended early")
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                pending.extend_from_slice(&data);
            }
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                samples.push(serde_json::from_slice(&line).expect("sample JSON line"));
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "3 samples not read within 6 s: got {}",
        samples.len()
    );
    for pair in samples.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        let step = pair[1].timestamp_ms.saturating_sub(pair[0].timestamp_ms);
        // One sample a second, never a burst; a 2-core machine running the whole suite can
        // delay a tick, so the upper bound allows one late tick but not a stall.
        assert!((700..=2500).contains(&step), "samples {step} ms apart");
    }
    let last = &samples[2];
    assert_eq!(last.board, common::BOARD_NAME);
    assert!(!last.host.cpu_seconds.is_empty());
    assert_eq!(last.roles.len(), 1);
    assert!(!last.roles[0].up);

    // Shutdown ends the stream cleanly and the server stops.
    server.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match body.frame().await {
                None => return Ok(()),
                Some(Err(err)) => return Err(err.to_string()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("stream did not end on shutdown");
    assert_eq!(ended, Ok(()));
    let task = server.task.take().expect("task");
    tokio::time::timeout(Duration::from_secs(6), task)
        .await
        .expect("server stopped")
        .expect("server task");
}

#[tokio::test]
async fn metrics_need_no_protocol_header_and_pass_promtool() {
    let board = Board::new("127.0.0.1:0");
    let server = start(&board).await;
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
    let (mut sender, _conn) = common::connect(server.addr, client.clone())
        .await
        .expect("connect");
    let request = hyper::Request::get(paths::METRICS)
        .header(hyper::header::HOST, server.addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(lab_api::prometheus::CONTENT_TYPE.as_bytes())
    );
    let text = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(text.to_vec()).expect("UTF-8");
    for family in [
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}",
        "node_load1 ",
        "node_memory_MemAvailable_bytes ",
        "node_filesystem_avail_bytes{device=",
        "node_network_receive_bytes_total{device=\"lo\"}",
        "node_uname_info{sysname=\"Linux\"",
        "node_boot_time_seconds ",
        "node_time_seconds ",
        "lab_cpu_busy_percent ",
        // What Grafana's "Node Exporter Full" (1860) needs beyond the basics.
        "node_memory_Cached_bytes ",
        "node_memory_Buffers_bytes ",
        "node_memory_SReclaimable_bytes ",
        "node_memory_Slab_bytes ",
        "node_memory_PageTables_bytes ",
        "node_memory_SwapCached_bytes ",
        "node_cpu_guest_seconds_total{cpu=\"0\",mode=\"user\"}",
        "node_cpu_guest_seconds_total{cpu=\"0\",mode=\"nice\"}",
        "node_filesystem_files{device=",
        "node_filesystem_files_free{device=",
        "node_filesystem_readonly{device=",
        "node_network_receive_errs_total{device=\"lo\"}",
        "node_network_transmit_errs_total{device=\"lo\"}",
        "node_network_receive_drop_total{device=\"lo\"}",
        "node_network_transmit_drop_total{device=\"lo\"}",
        "node_context_switches_total ",
        "node_intr_total ",
        "node_forks_total ",
        "node_procs_running ",
        "node_filefd_allocated ",
        "node_filefd_maximum ",
    ] {
        assert!(text.contains(family), "{family} missing from:\n{text}");
    }
    // Families that exist exactly where the host has their source.
    let has_disk = std::fs::read_to_string("/proc/diskstats")
        .map(|d| !lab_agent::hostmetrics::parse::diskstats(&d).is_empty())
        .unwrap_or(false);
    let readable = |path: &str| std::fs::read_to_string(path).is_ok();
    let conditional = [
        ("node_disk_reads_completed_total{device=", has_disk),
        ("node_disk_writes_completed_total{device=", has_disk),
        ("node_disk_io_time_seconds_total{device=", has_disk),
        (
            "node_pressure_cpu_waiting_seconds_total ",
            readable("/proc/pressure/cpu"),
        ),
        (
            "node_pressure_memory_waiting_seconds_total ",
            readable("/proc/pressure/memory"),
        ),
        (
            "node_pressure_memory_stalled_seconds_total ",
            readable("/proc/pressure/memory"),
        ),
        (
            "node_pressure_io_waiting_seconds_total ",
            readable("/proc/pressure/io"),
        ),
        (
            "node_pressure_io_stalled_seconds_total ",
            readable("/proc/pressure/io"),
        ),
        (
            "node_pressure_irq_stalled_seconds_total ",
            readable("/proc/pressure/irq"),
        ),
        (
            "node_hwmon_chip_names{chip=",
            text.contains("node_hwmon_temp_celsius{"),
        ),
    ];
    for (family, expected) in conditional {
        assert_eq!(
            text.contains(family),
            expected,
            "{family} present: expected {expected}, in:\n{text}"
        );
    }
    promtool_check(&text);

    // The other endpoints still want the header; mTLS is still required for /metrics.
    let (status, _) = get(server.addr, client, paths::HEALTH, None)
        .await
        .expect("health");
    assert_eq!(status, StatusCode::CONFLICT);
    let anonymous = client_config(&board.ca.pem(), None);
    assert!(get(server.addr, anonymous, paths::METRICS, None)
        .await
        .is_err());
}

/// A realistic multi-board exposition (Pi with throttling and a thermal zone, roles) as the
/// control plane would render it.
#[test]
fn central_exposition_passes_promtool() {
    use lab_api::metrics::*;
    let mut pi: Sample = serde_json::from_str(PI_SAMPLE).expect("fixture");
    pi.host.throttling = Some(Throttling {
        raw: 0x50005,
        under_voltage: true,
        throttled: true,
        under_voltage_occurred: true,
        throttled_occurred: true,
        ..Default::default()
    });
    let mut jetson = pi.clone();
    jetson.board = "jetson-1".into();
    jetson.host.throttling = None;
    jetson.host.gpu_load_percent = Some(53.7);
    let text = lab_api::prometheus::render(&[("pi-1", &pi), ("jetson-1", &jetson)], true);
    assert!(
        text.contains("lab_pi_throttled{node=\"pi-1\",instance=\"pi-1\",flag=\"under_voltage\"} 1")
    );
    assert!(text.contains(
        "lab_memcached_get_hits_total{node=\"jetson-1\",instance=\"jetson-1\",role=\"cache\"} 10"
    ));
    promtool_check(&text);
}

const PI_SAMPLE: &str = r##"{"board":"pi-1","seq":3,"timestamp_ms":1700000000123,
"host":{"uname":{"sysname":"Linux","nodename":"pi-1","release":"6.6.31+rpt-rpi-v8",
"version":"#1 SMP PREEMPT Debian 1:6.6.31-1+rpt1 (2024-05-29)","machine":"aarch64"},
"boot_time_seconds":1699990000,"uptime_secs":10000,"cpu_percent":12.5,
"cpu_per_core":[10.0,15.0],"cpu_seconds":[{"cpu":0,"user":10.5,"nice":0.0,"system":3.25,
"idle":900.0,"iowait":1.0,"irq":0.0,"softirq":0.5,"steal":0.0}],"load1":0.5,"load5":0.25,
"load15":0.1,"mem_total_bytes":3978000000,"mem_available_bytes":3000000000,
"mem_free_bytes":2500000000,"swap_total_bytes":104853504,"swap_free_bytes":104853504,
"filesystems":[{"device":"/dev/mmcblk0p2","mountpoint":"/","fstype":"ext4",
"size_bytes":31000000000,"avail_bytes":20000000000,"free_bytes":21000000000}],
"disks":[{"device":"mmcblk0","read_bytes_total":1000,"written_bytes_total":2000}],
"network":[{"device":"eth0","rx_bytes_total":5,"tx_bytes_total":6,"rx_packets_total":1,
"tx_packets_total":2}],"temperatures":[{"chip":"thermal_zone0","sensor":"cpu-thermal",
"celsius":51.6,"kind":"thermal_zone"},{"chip":"rp1_adc","sensor":"temp1","celsius":49.1}],
"throttling":null,"gpu_load_percent":null},
"roles":[{"role":"lb","engine":"nginx","up":true,"figures":[{"name":"requests_total",
"value":100.0,"counter":true},{"name":"active_connections","value":3.0,"counter":false}]},
{"role":"cache","engine":"memcached","up":true,"figures":[{"name":"get_hits_total",
"value":10.0,"counter":true}]},{"role":"db-replica","engine":"mariadb","up":false,"figures":[]}]}"##;

/// Pipes `text` into `promtool check metrics`; lint findings are allowed (node_exporter's
/// own camelCase names are flagged), parse errors are not. Fails if promtool is missing.
fn promtool_check(text: &str) {
    lab::host_setup::ensure(&[lab::host_setup::PROMTOOL], &mut |l: &str| {
        eprintln!("{l}")
    })
    .expect("installing promtool (run the tests as root)");
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => panic!(
            "promtool not runnable ({err}): install it with `apt-get install -y prometheus` \
             (Debian) to validate the exposition"
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool's exit status says what it found: 0 clean, 3 lint findings only, anything
    // else (1: a parse error) a broken exposition. The text is kept for the message.
    match out.status.code() {
        Some(0) | Some(3) => {}
        other => panic!("promtool rejected the exposition (exit {other:?}):\n{said}\n---\n{text}"),
    }
    for line in said.lines() {
        assert!(
            line.contains("camelCase") || line.contains("counter metrics should have \"_total\""),
            "unexpected promtool finding: {line}\n---\n{text}"
        );
    }
}

//! Virtual boards sized like their model, end to end: a board given `cpus = 0.5` and
//! `memory = "256MiB"` in the inventory reports exactly that through its agent over the real
//! mTLS API (health via `lab status --json`, the samples stream and the agent's /metrics), a
//! process in it that allocates past 256 MiB is OOM-killed (exit 137, the group's oom_kill
//! counter) while the board, its neighbour and the host carry on, and a busy board is
//! throttled to its quota and reports itself busy. A board without figures gets the virtual
//! default (1 CPU, 512 MiB) and can allocate what kills the small one.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{describe, wait_for, TestCluster};
use lab::agent_client::AgentClient;
use lab::inventory::BoardSize;
use lab::pki::ClusterPki;

const SMALL: u64 = 256 << 20;

fn board<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status
        .as_array()
        .and_then(|boards| boards.iter().find(|b| b["board"] == name))
        .unwrap_or_else(|| panic!("no board {name} in {status:#}"))
}

/// The first `lines` lines of `path` from the agent at `addr`, over mTLS with the cluster's
/// control certificate.
fn agent_lines(cluster: &TestCluster, addr: &str, path: &str, lines: usize) -> Vec<String> {
    let pki = ClusterPki::load_or_create(&cluster.state_dir().join("pki"), &cluster.name)
        .expect("cluster PKI");
    let client = AgentClient::new(&pki, Duration::from_secs(10)).expect("agent client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut stream = client
            .get_lines(addr, lab_api::DEFAULT_AGENT_PORT, path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
        let mut out = Vec::new();
        while out.len() < lines {
            match stream.next_line().await {
                Ok(Some(line)) => out.push(String::from_utf8_lossy(&line).trim_end().to_owned()),
                Ok(None) => break,
                Err(e) => panic!("reading {path} from {addr}: {e}"),
            }
        }
        out
    })
}

/// The board's cgroup directories, as `lab` recorded them at boot.
fn groups(cluster: &TestCluster, board: &str) -> Vec<PathBuf> {
    let file = cluster
        .state_dir()
        .join("virtual")
        .join(board)
        .join("cgroups");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// `key value` from the first of `files` found in one of `dirs`.
fn group_counter(dirs: &[PathBuf], files: &[&str], key: &str) -> u64 {
    let (file, text) = files
        .iter()
        .find_map(|f| {
            dirs.iter().find_map(|d| {
                std::fs::read_to_string(d.join(f))
                    .ok()
                    .map(|t| (d.join(f), t))
            })
        })
        .unwrap_or_else(|| panic!("none of {files:?} in {dirs:?}"));
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}: {text}", file.display()))
}

fn exit_code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn a_board_reports_its_size_and_is_oom_killed_at_it() {
    let cluster = TestCluster::with_board_lines(
        "sz",
        &[
            ("small", "native", "cpus = 0.5\nmemory = \"256MiB\"\n"),
            ("plain", "native", ""),
        ],
    );
    let small_addr = cluster.boards[0].1.clone();
    let plain_addr = cluster.boards[1].1.clone();
    cluster.up_with_serve();

    // Health, through `lab status --json`.
    let status = wait_for("both agents up", Duration::from_secs(30), || {
        let s = cluster.status_json();
        let up = ["small", "plain"].iter().all(|b| {
            board(&s, b)["up"] == true && board(&s, b)["health"]["cpus"].as_f64() > Some(0.0)
        });
        if up {
            Ok(s)
        } else {
            Err(format!("{s:#}"))
        }
    });
    let small = &board(&status, "small")["health"];
    assert_eq!(small["mem_total_bytes"].as_u64(), Some(SMALL), "{small:#}");
    assert_eq!(small["cpus"].as_f64(), Some(0.5), "{small:#}");
    assert_eq!(small["cpu_count"].as_u64(), Some(1), "{small:#}");
    let used = small["mem_used_bytes"].as_u64().expect("mem_used_bytes");
    assert!(used > 0 && used < SMALL, "used {used} of {SMALL}");
    let plain = &board(&status, "plain")["health"];
    let default = BoardSize::VIRTUAL_DEFAULT;
    assert_eq!(
        plain["mem_total_bytes"].as_u64(),
        Some(default.memory_bytes)
    );
    assert_eq!(plain["cpus"].as_f64(), Some(default.cpus()));
    let table = cluster.lab_ok(&["status"]);
    assert!(table.contains("CPUS"), "{table}");
    assert!(
        table.contains("256.0 MiB") || table.contains("256 MiB"),
        "{table}"
    );

    // The samples stream and the agent's own /metrics say the same.
    let line = agent_lines(&cluster, &small_addr, lab_api::paths::SAMPLES_STREAM, 1);
    let sample: lab_api::metrics::Sample =
        serde_json::from_str(&line[0]).expect("a sample is JSON");
    assert_eq!(sample.host.mem_total_bytes, SMALL);
    assert!(sample.host.mem_available_bytes <= SMALL);
    assert_eq!(sample.host.cpus, 0.5);
    assert_eq!(sample.host.cpu_seconds.len(), 1, "ceil(0.5) cores");
    let metrics = agent_lines(&cluster, &small_addr, lab_api::paths::METRICS, usize::MAX);
    assert!(
        metrics
            .iter()
            .any(|l| l == &format!("node_memory_MemTotal_bytes {SMALL}")),
        "{metrics:#?}"
    );
    assert!(metrics.iter().any(|l| l == "lab_cpus 0.5"));
    let idle_cores = metrics
        .iter()
        .filter(|l| l.starts_with("node_cpu_seconds_total{") && l.contains("mode=\"idle\""))
        .count();
    assert_eq!(idle_cores, 1, "one cpu label for 0.5 CPU");

    // Past its size, a process of the board is OOM-killed; the board lives on.
    let small_groups = groups(&cluster, "small");
    let oom_files = ["memory.oom_control", "memory.events"];
    let kills_before = group_counter(&small_groups, &oom_files, "oom_kill ");
    let hog = cluster.ssh(&small_addr, "head -c 600M /dev/zero | tail > /dev/null");
    assert_eq!(exit_code(&hog), Some(137), "{}", describe(&hog));
    let kills = group_counter(&small_groups, &oom_files, "oom_kill ");
    assert!(kills > kills_before, "oom_kill {kills_before} -> {kills}");
    let alive = cluster.ssh(&small_addr, "echo alive");
    assert_eq!(String::from_utf8_lossy(&alive.stdout).trim(), "alive");
    // The same allocation fits the default board: it was the limit that killed.
    let fits = cluster.ssh(&plain_addr, "head -c 300M /dev/zero | tail > /dev/null");
    assert!(fits.status.success(), "{}", describe(&fits));

    // Two busy loops on a 0.5 CPU board: throttled, and the board says it is busy.
    let throttled_before = group_counter(&small_groups, &["cpu.stat"], "nr_throttled ");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            cluster.ssh(
                &small_addr,
                "for i in 1 2; do timeout 8 sh -c 'while :; do :; done' & done; wait",
            )
        });
        wait_for(
            "the small board to report itself busy",
            Duration::from_secs(8),
            || {
                let s = cluster.status_json();
                let percent = board(&s, "small")["health"]["cpu_percent"]
                    .as_f64()
                    .unwrap_or(0.0);
                (percent >= 60.0)
                    .then_some(())
                    .ok_or(format!("cpu_percent {percent}"))
            },
        );
    });
    let throttled = group_counter(&small_groups, &["cpu.stat"], "nr_throttled ");
    assert!(
        throttled > throttled_before,
        "nr_throttled {throttled_before} -> {throttled}"
    );

    // Down removes every group of the cluster, and their records.
    let all_groups: Vec<PathBuf> = small_groups
        .into_iter()
        .chain(groups(&cluster, "plain"))
        .collect();
    cluster.lab_ok(&["down"]);
    let left: Vec<&PathBuf> = all_groups.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups left after down: {left:?}");
    let cluster_dirs: Vec<PathBuf> = all_groups
        .iter()
        .filter_map(|d| d.parent().map(Path::to_path_buf))
        .collect();
    assert!(cluster_dirs.iter().all(|d| !d.exists()), "{cluster_dirs:?}");
    for b in ["small", "plain"] {
        let record = cluster.state_dir().join("virtual").join(b).join("cgroups");
        assert!(!record.exists(), "{} survived down", record.display());
    }
}

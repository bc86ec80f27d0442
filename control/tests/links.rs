//! Shaped virtual links, measured from the outside: `lab link` gives a board's link a delay
//! (a TCP handshake to it takes that much longer, from the host and from another board),
//! kept across a restart and gone with `--clear`; data centers apart by `wan_delay` (across
//! slower, within one not), `lab partition --dc` cutting one off and `heal --dc` restoring
//! it; bad input refused with nothing changed; nothing left after `lab down`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{describe, TestCluster};

/// Median time of 9 TCP handshakes with `addr:22` (the board's sshd), made from the host or
/// from inside the network namespace `from`. `None` when a connect fails.
fn handshake_ms(from: Option<&str>, addr: &str) -> Option<f64> {
    let from = from.map(str::to_owned);
    let target: SocketAddr = format!("{addr}:22").parse().expect("address");
    std::thread::spawn(move || {
        if let Some(ns) = from {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("join netns");
        }
        let mut times = Vec::new();
        for _ in 0..9 {
            let start = Instant::now();
            let stream = TcpStream::connect_timeout(&target, Duration::from_millis(1500)).ok()?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            drop(stream);
        }
        times.sort_by(f64::total_cmp);
        Some(times[times.len() / 2])
    })
    .join()
    .expect("measuring thread")
}

fn netns(cluster: &TestCluster, board: &str) -> String {
    lab::virt::names::netns_name(&cluster.name, board)
}

/// Link devices and shaper processes of this cluster still on the host.
fn shaping_leftovers(cluster: &TestCluster, boards: &[&str], dcs: &[&str]) -> Vec<String> {
    use lab::virt::names;
    let mut names: Vec<String> = Vec::new();
    for board in boards {
        let (a, b) = names::link_veth_names(&cluster.name, board);
        names.extend([a, b]);
    }
    for dc in dcs {
        names.push(names::dc_bridge_name(&cluster.name, dc));
        names.extend(names::wan_veth_names(&cluster.name, dc));
    }
    let mut left: Vec<String> = names
        .into_iter()
        .filter(|n| std::path::Path::new("/sys/class/net").join(n).exists())
        .collect();
    let dir = cluster.dir.path().display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline);
            if text.contains("link-shaper") && text.contains(&dir) {
                left.push(format!("process {}", entry.file_name().to_string_lossy()));
            }
        }
    }
    left
}

#[test]
fn shaped_links_and_data_centers() {
    let cluster = TestCluster::with_board_lines(
        "lk",
        &[
            ("e-1", "native", "dc = \"east\"\n"),
            ("e-2", "native", "dc = \"east\"\n"),
            ("w-1", "native", "dc = \"west\"\n"),
        ],
    );
    let text = std::fs::read_to_string(&cluster.inventory).expect("read the inventory");
    std::fs::write(
        &cluster.inventory,
        text.replacen("[virtual]\n", "[virtual]\nwan_delay = \"40ms\"\n", 1),
    )
    .expect("write the inventory");
    let (e1, e2, w1) = (
        cluster.addr("e-1"),
        cluster.addr("e-2"),
        cluster.addr("w-1"),
    );
    let up = cluster.lab_ok(&["up", "--no-bootstrap"]);
    assert!(up.contains("boards created"), "{up}");

    // Data centers: a round trip across is 40 ms slower; within one it is not.
    let within = handshake_ms(Some(&netns(&cluster, "e-1")), &e2).expect("e-1 -> e-2");
    let across = handshake_ms(Some(&netns(&cluster, "e-1")), &w1).expect("e-1 -> w-1");
    let from_host = handshake_ms(None, &w1).expect("host -> w-1");
    assert!(within < 10.0, "within east: {within:.1} ms");
    assert!(
        (36.0..90.0).contains(&across),
        "east -> west: {across:.1} ms"
    );
    assert!(
        (36.0..90.0).contains(&from_host),
        "control plane (east) -> west: {from_host:.1} ms"
    );

    // A board's link: its round trips take the delay longer, from anywhere.
    let before = handshake_ms(None, &e2).expect("host -> e-2");
    assert!(before < 10.0, "e-2 before lab link: {before:.1} ms");
    let set = cluster.lab_ok(&["link", "e-2", "--delay", "30ms", "--jitter", "2ms"]);
    assert!(set.contains("e-2: link delay 30ms ±2ms"), "{set}");
    let shaped = handshake_ms(None, &e2).expect("host -> e-2 shaped");
    assert!(
        (27.0..80.0).contains(&shaped),
        "e-2 with 30ms: {shaped:.1} ms"
    );
    let neighbour = handshake_ms(Some(&netns(&cluster, "e-1")), &e2).expect("e-1 -> e-2");
    assert!(
        (27.0..80.0).contains(&neighbour),
        "e-1 -> e-2 with 30ms: {neighbour:.1} ms"
    );
    let status = describe(&cluster.lab(&["status"]));
    assert!(status.contains("link e-2: delay 30ms ±2ms"), "{status}");
    assert!(status.contains("west (40ms round trip away)"), "{status}");

    // Kept across a restart of the board.
    cluster.lab_ok(&["restart", "e-2"]);
    let restarted = handshake_ms(None, &e2).expect("host -> e-2 after restart");
    assert!(restarted >= 27.0, "e-2 after a restart: {restarted:.1} ms");

    // Bad input changes nothing.
    for bad in [
        &["link", "e-2", "--delay", "5ms", "--jitter", "10ms"][..],
        &["link", "e-2", "--delay", "fast"][..],
        &["link", "e-2"][..],
        &["link", "nope", "--delay", "5ms"][..],
        &["partition", "--dc", "north"][..],
    ] {
        let out = cluster.lab(bad);
        assert!(
            !out.status.success(),
            "{bad:?} was accepted:\n{}",
            describe(&out)
        );
    }
    let still = handshake_ms(None, &e2).expect("host -> e-2");
    assert!(
        still >= 27.0,
        "e-2's link changed by bad input: {still:.1} ms"
    );

    let cleared = cluster.lab_ok(&["link", "e-2", "--clear"]);
    assert!(cleared.contains("e-2: link plain"), "{cleared}");
    let after = handshake_ms(None, &e2).expect("host -> e-2 cleared");
    assert!(after < 10.0, "e-2 after --clear: {after:.1} ms");

    // A data center cut off: nothing crosses to it while the rest of the cluster runs on;
    // healed, it is back at its distance.
    cluster.lab_ok(&["partition", "--dc", "west"]);
    assert_eq!(handshake_ms(None, &w1), None, "west reachable while cut");
    assert!(
        handshake_ms(None, &e1).is_some_and(|ms| ms < 10.0),
        "east hurt by west's cut"
    );
    let status = describe(&cluster.lab(&["status"]));
    assert!(status.contains("WAN link CUT"), "{status}");
    cluster.lab_ok(&["heal", "--dc", "west"]);
    let healed = handshake_ms(None, &w1).expect("west back after heal");
    assert!(
        (36.0..90.0).contains(&healed),
        "west after heal: {healed:.1} ms"
    );

    cluster.lab_ok(&["down"]);
    let left = shaping_leftovers(&cluster, &["e-1", "e-2", "w-1"], &["east", "west"]);
    assert!(left.is_empty(), "left after lab down: {left:?}");
    let leftovers = cluster.leftovers();
    assert!(leftovers.is_empty(), "left after lab down: {leftovers:?}");
}

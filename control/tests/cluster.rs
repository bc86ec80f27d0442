//! End to end through the real `lab` binary on a real virtual cluster (namespaces, real
//! sshd, real mTLS): up, status from every agent, a no-change re-run that uploads nothing, a
//! tampered host key refused, a killed board shown down, and a teardown that leaves nothing.

mod common;

use std::time::Duration;

use common::{host_leftovers, wait_for, TestCluster};

fn boards_by_name(status: &serde_json::Value) -> Vec<(String, bool, Option<String>)> {
    status
        .as_array()
        .expect("array")
        .iter()
        .map(|b| {
            (
                b["board"].as_str().unwrap_or_default().to_string(),
                b["up"].as_bool().unwrap_or(false),
                b["health"]["arch"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn virtual_cluster_lifecycle() {
    let cluster = TestCluster::new(
        "t",
        &[
            ("node-a", "native"),
            ("node-b", "native"),
            ("node-c", "native"),
        ],
    );

    // 1. Bring up from bare boards: every board bootstrapped, agent uploaded.
    let first = cluster.lab_ok(&["up"]);
    assert_eq!(first.matches("agent uploaded").count(), 3, "{first}");
    assert!(first.contains("3/3 boards ok"), "{first}");
    assert!(first.contains("pinned host key SHA256:"), "{first}");

    // 2. Status over mTLS from every agent.
    let status = cluster.status_json();
    let boards = boards_by_name(&status);
    assert_eq!(boards.len(), 3);
    for (name, up, arch) in &boards {
        assert!(up, "{name} should be up: {status}");
        assert_eq!(arch.as_deref(), Some(std::env::consts::ARCH), "{name}");
    }
    for b in status.as_array().expect("array") {
        assert_eq!(
            b["health"]["board"], b["board"],
            "agent knows its board name"
        );
        assert_eq!(
            b["health"]["hostname"], b["board"],
            "board has its own hostname"
        );
        assert!(b["health"]["mem_total_bytes"].as_u64().unwrap_or(0) > 0);
    }

    // 3. A re-run with nothing changed uploads nothing and restarts nothing.
    let again = cluster.lab_ok(&["bootstrap"]);
    assert_eq!(again.matches("unchanged").count(), 3, "{again}");
    assert!(!again.contains("agent uploaded"), "{again}");
    assert!(!again.contains("first contact"), "{again}");

    // 3b. An agent still running another build than the one installed (a run interrupted
    //     between upload and restart) is restarted, even though every file matches.
    let (b0, a0) = cluster.boards[0].clone();
    let swap = cluster.ssh(
        &a0,
        "mkdir -p /tmp/old && cp /usr/local/bin/lab-agent /tmp/old/lab-agent && printf x >> /tmp/old/lab-agent && \
         /usr/local/bin/lab-agent stop && /tmp/old/lab-agent start --config /etc/lab/agent.toml",
    );
    assert!(swap.status.success(), "{}", common::describe(&swap));
    let fixed = cluster.lab_ok(&["bootstrap", &b0]);
    assert!(fixed.contains("restarted"), "{fixed}");
    let installed = std::fs::read(
        cluster
            .state_dir()
            .join("virtual")
            .join(&b0)
            .join("disk/usr-local-bin/lab-agent"),
    )
    .expect("installed agent");
    let want = sha256_hex(&installed);
    let status = cluster.status_json();
    let b0_status = status
        .as_array()
        .and_then(|a| a.iter().find(|b| b["board"] == b0.as_str()))
        .expect("board in status");
    assert_eq!(
        b0_status["health"]["binary_sha256"],
        want.as_str(),
        "{status}"
    );

    // 4. A changed host key refuses that board (and only that board).
    let known_hosts = cluster.state_dir().join("known_hosts");
    let text = std::fs::read_to_string(&known_hosts).expect("pinned keys");
    let (victim, victim_addr) = cluster.boards[1].clone();
    let forged_key = "AAAAC3NzaC1lZDI1NTE5AAAAIFJ2nSKMZ6l0iS7Hf3zYDaDnvXFkwgDn1iB1Q1Lr2eGp";
    let tampered: String = text
        .lines()
        .map(|l| {
            if l.split_whitespace().next() == Some(victim_addr.as_str()) {
                format!("{victim_addr} ssh-ed25519 {forged_key}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(tampered, text, "the victim's pin was found and replaced");
    std::fs::write(&known_hosts, tampered).expect("tamper");
    let refused = cluster.lab(&["bootstrap"]);
    let refused_text = common::describe(&refused);
    assert!(!refused.status.success(), "{refused_text}");
    assert!(refused_text.contains("HOST KEY CHANGED"), "{refused_text}");
    assert!(
        refused_text.contains(&format!("{victim}: ")),
        "{refused_text}"
    );
    assert!(refused_text.contains("2/3 boards ok"), "{refused_text}");
    assert!(
        refused_text.contains("lab forget-host-key"),
        "{refused_text}"
    );
    // Forgetting the key lets the board be pinned again.
    cluster.lab_ok(&["forget-host-key", &victim]);
    let repinned = cluster.lab_ok(&["bootstrap", &victim]);
    assert!(
        repinned.contains("first contact, pinned host key"),
        "{repinned}"
    );

    // 5. Kill a board: status shows it down, the others stay up.
    let (dead, _) = cluster.boards[2].clone();
    cluster.lab_ok(&["kill", &dead]);
    let status = cluster.status_json();
    for (name, up, _) in boards_by_name(&status) {
        assert_eq!(up, name != dead, "{name}: {status}");
    }
    // Restart powers it back on; its agent comes back by itself (boot starts it).
    cluster.lab_ok(&["restart", &dead]);
    wait_for("restarted board's agent", Duration::from_secs(30), || {
        let s = cluster.status_json();
        if boards_by_name(&s).iter().all(|(_, up, _)| *up) {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });

    // 5b. The leftover check sees a running cluster, each kind of object and each way of
    //     finding a board's processes: its empty answer after `down` means something.
    let seen = cluster.leftovers();
    let count = |prefix: &str| seen.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("bridge "), 1, "{seen:#?}");
    assert_eq!(count("veth "), 3, "{seen:#?}");
    assert_eq!(count("netns "), 3, "{seen:#?}");
    assert!(
        count("mount ") >= 3,
        "each board's netns is a mount: {seen:#?}"
    );
    for (what, how) in [
        ("board-init", "mentions"),
        ("sshd", "in netns lab-"),
        ("sshd", "in a mount namespace with"),
        ("lab-agent", "in a mount namespace with"),
    ] {
        assert!(
            seen.iter()
                .any(|l| l.starts_with("process ") && l.contains(what) && l.contains(how)),
            "no {what} process found by \"{how}\": {seen:#?}"
        );
    }

    // 6. Down leaves nothing of this cluster on the host.
    cluster.lab_ok(&["down"]);
    let left = cluster.leftovers();
    assert!(left.is_empty(), "leftovers after down: {left:?}");

    // 7. Purged boards are new boards (new host keys): a fresh `up` pins them again instead
    //    of refusing them as impostors.
    cluster.lab_ok(&["down", "--purge"]);
    let fresh = cluster.lab_ok(&["up"]);
    assert!(fresh.contains("3/3 boards ok"), "{fresh}");
    assert_eq!(
        fresh.matches("first contact, pinned host key").count(),
        3,
        "{fresh}"
    );
}

#[test]
fn invalid_inventory_changes_nothing() {
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("bad.toml");
    std::fs::write(
        &inv,
        "[cluster]\nname = \"bad\"\nstate_dir = \"state\"\n[virtual]\nsubnet = \"10.250.250.0/24\"\n\
         [[board]]\nname = \"a\"\naddress = \"10.250.250.10\"\n\
         [[board]]\nname = \"a\"\naddress = \"10.250.250.11\"\nroles = [\"dns\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(common::LAB)
        .args(["up", "-i"])
        .arg(&inv)
        .output()
        .expect("run lab");
    let text = common::describe(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("bad.toml:10: board `a`: duplicate board name (first defined on line 7)"),
        "{text}"
    );
    assert!(
        text.contains("bad.toml:12: board `a`: unknown role `dns`"),
        "{text}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "no state dir was created"
    );
    let left = host_leftovers("bad", &["a"], dir.path());
    assert!(left.is_empty(), "nothing created: {left:?}");
}

#[test]
fn stop_only_commands_create_nothing_and_bad_args_are_refused() {
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, a, b) = common::unique("nv");
    let inv = dir.path().join("never.toml");
    std::fs::write(
        &inv,
        format!(
            "[cluster]\nname = \"{name}\"\nstate_dir = \"state\"\nssh_key = \"managed\"\n\
             [virtual]\nsubnet = \"10.{a}.{b}.0/24\"\n\
             [[board]]\nname = \"x\"\naddress = \"10.{a}.{b}.10\"\n"
        ),
    )
    .expect("write");
    let lab = |args: &[&str]| {
        std::process::Command::new(common::LAB)
            .args(args)
            .arg("-i")
            .arg(&inv)
            .output()
            .expect("run lab")
    };
    let out = lab(&["down"]);
    let text = common::describe(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("nothing to stop"), "{text}");
    assert!(
        !dir.path().join("state").exists(),
        "lab down created a state dir:\n{text}"
    );
    for bad in ["nan", "-1", "1e300"] {
        let arg = format!("--timeout={bad}");
        let out = lab(&["status", &arg]);
        let text = common::describe(&out);
        assert_eq!(out.status.code(), Some(2), "--timeout {bad}: {text}");
        assert!(text.contains("--timeout"), "{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    assert!(!dir.path().join("state").exists());
}

//! A virtual board that boots systemd (`init = "systemd"`: systemd-nspawn in the board's
//! namespaces, the cached Debian root under the board's own layer) and is reached as `pi`
//! with sudo, beside a plain board: bootstrap installs the agent as an enabled unit logging to
//! journald, `lab restart` brings it back through systemd, `lab kill` leaves no process of
//! the board, `lab down` leaves nothing.

mod common;

use std::time::Duration;

use common::{describe, wait_for, TestCluster};

/// Host PIDs of the processes in `board`'s cgroup (or below it), in any hierarchy.
fn board_processes(cluster: &str, board: &str) -> Vec<u32> {
    let group = format!(":/lab/{cluster}/{board}");
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let inside = text.lines().any(|l| {
            l.find(&group).is_some_and(|at| {
                let rest = &l[at + group.len()..];
                rest.is_empty() || rest.starts_with('/')
            })
        });
        if inside {
            pids.push(pid);
        }
    }
    pids
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn systemd_board_with_a_sudo_login_beside_a_plain_board() {
    let cluster = TestCluster::with_board_lines(
        "sd",
        &[
            ("sd-1", "native", "init = \"systemd\"\nuser = \"pi\"\n"),
            ("plain-1", "native", ""),
        ],
    );
    // The cluster logs in as root except where a board says otherwise, with sudo for those.
    let text = std::fs::read_to_string(&cluster.inventory).expect("read the inventory");
    std::fs::write(
        &cluster.inventory,
        text.replacen(
            "ssh_user = \"root\"\n",
            "ssh_user = \"root\"\nsudo = true\n",
            1,
        ),
    )
    .expect("write the inventory");
    let sd = cluster.addr("sd-1");
    let plain = cluster.addr("plain-1");

    let up = cluster.lab_ok(&["up"]);
    assert!(up.contains("2/2 boards ok"), "{up}");
    let sd_line = up
        .lines()
        .find(|l| l.contains("sd-1") && l.contains("ok:"))
        .unwrap_or_else(|| panic!("no ok line for sd-1:\n{up}"));
    assert!(sd_line.contains("systemd"), "{sd_line}");
    let plain_line = up
        .lines()
        .find(|l| l.contains("plain-1") && l.contains("ok:"))
        .unwrap_or_else(|| panic!("no ok line for plain-1:\n{up}"));
    assert!(plain_line.contains("supervised"), "{plain_line}");

    // The login is pi, root through sudo; PID 1 is systemd; the agent is an enabled unit
    // whose start line is in the journal.
    let pi = |command: &str| {
        let out = cluster.ssh_as("pi", &sd, command);
        assert!(out.status.success(), "{command}:\n{}", describe(&out));
        stdout_of(&out)
    };
    assert_eq!(pi("id -un"), "pi");
    assert_eq!(pi("sudo -n id -u"), "0");
    assert_eq!(pi("cat /proc/1/comm"), "systemd");
    assert_eq!(pi("systemctl is-enabled lab-agent"), "enabled");
    assert_eq!(pi("systemctl is-active lab-agent"), "active");
    let journal = pi("sudo -n journalctl -u lab-agent --no-pager");
    assert!(journal.contains("serving board sd-1"), "{journal}");
    // The plain board is the other kind: no systemd, root login.
    let plain_init = cluster.ssh(&plain, "cat /proc/1/comm");
    assert_ne!(
        stdout_of(&plain_init),
        "systemd",
        "{}",
        describe(&plain_init)
    );
    // pi exists on the systemd board only: not on the plain board, not on the host.
    let no_pi = cluster.ssh(&plain, "id pi");
    assert!(!no_pi.status.success(), "{}", describe(&no_pi));

    // A fresh boot: systemd starts the agent again (nothing of lab's runs at boot there).
    let before = pi("systemctl show -p InvocationID --value lab-agent");
    cluster.lab_ok(&["restart", "sd-1"]);
    let after = wait_for(
        "the agent started by systemd after the restart",
        Duration::from_secs(30),
        || {
            let out = cluster.ssh_as(
                "pi",
                &sd,
                "systemctl is-active lab-agent && systemctl show -p InvocationID --value lab-agent",
            );
            let text = stdout_of(&out);
            match text.strip_prefix("active\n") {
                Some(id) if out.status.success() => Ok(id.to_string()),
                _ => Err(describe(&out)),
            }
        },
    );
    assert_ne!(before, after, "a new boot starts a new invocation");
    let journal = pi("sudo -n journalctl -b -u lab-agent --no-pager");
    assert!(journal.contains("serving board sd-1"), "{journal}");
    wait_for("sd-1 up in lab status", Duration::from_secs(30), || {
        let status = cluster.status_json();
        let up = status.as_array().is_some_and(|boards| {
            boards
                .iter()
                .any(|b| b["board"] == "sd-1" && b["up"] == true)
        });
        if up {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });

    // A power cut: every process of the board (systemd, journald, sshd, the agent) goes.
    let running = board_processes(&cluster.name, "sd-1");
    assert!(
        running.len() >= 4,
        "the board's processes before the kill: {running:?}"
    );
    cluster.lab_ok(&["kill", "sd-1", "--yes"]);
    let left = board_processes(&cluster.name, "sd-1");
    assert!(left.is_empty(), "left after lab kill: {left:?}");
    assert!(
        !board_processes(&cluster.name, "plain-1").is_empty(),
        "the plain board runs on"
    );

    cluster.lab_ok(&["restart", "sd-1"]);
    cluster.lab_ok(&["down"]);
    assert!(board_processes(&cluster.name, "sd-1").is_empty());
    assert!(board_processes(&cluster.name, "plain-1").is_empty());
    let leftovers = cluster.leftovers();
    assert!(leftovers.is_empty(), "left after lab down: {leftovers:?}");
}

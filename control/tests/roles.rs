//! Roles end to end through the real `lab` binary on a real virtual cluster: `lab up` ends with
//! real MariaDB (a GTID primary and two replicas) and a real memcached, decided by the control
//! plane and run by the agents; `lab plan` / `lab apply` converge, change exactly what moved,
//! and refuse bad input; a replica board restarted while `lab serve` is stopped comes back
//! replicating on its own.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{describe, rewrite_roles, sql, wait_for, TestCluster};

/// memcached's `stats`, straight over TCP from the host.
fn memcached_stats(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(
        &format!("{addr}:11211")
            .parse()
            .map_err(|e| format!("{e}"))?,
        Duration::from_secs(2),
    )
    .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"stats\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.ends_with("END\r\n") {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(text)
}

fn role_states(status: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for b in status.as_array().expect("array") {
        for r in b["health"]["roles"].as_array().into_iter().flatten() {
            out.push((
                b["board"].as_str().unwrap_or_default().to_string(),
                r["role"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn data_tier_from_plan_to_replication() {
    let cluster = TestCluster::with_board_lines(
        "r",
        &[
            ("db-1", "native", "roles = [\"db-master\"]\n"),
            ("db-2", "native", "roles = [\"db\"]\n"),
            ("db-3", "native", "roles = [\"db\"]\n"),
            (
                "cache-1",
                "native",
                "roles = [\"cache\"]\nmemory = \"256MiB\"\n",
            ),
        ],
    );
    let addr = |name: &str| cluster.addr(name);

    // Before anything exists, the plan is refused with what to do.
    let out = cluster.lab(&["plan"]);
    assert!(!out.status.success());
    assert!(describe(&out).contains("run `lab up"), "{}", describe(&out));

    // 1. `lab up` = bootstrap + apply: every role running, shown in a table.
    let up = cluster.lab_ok(&["up"]);
    assert!(up.contains("ROLE"), "{up}");
    for (board, role) in [
        ("db-1", "db-master"),
        ("db-2", "db-replica"),
        ("db-3", "db-replica"),
        ("cache-1", "cache"),
    ] {
        assert!(
            up.lines()
                .any(|l| l.contains(role) && l.contains(board) && l.contains("running")),
            "{board} {role} running in:\n{up}"
        );
    }
    let status = cluster.status_json();
    assert_eq!(
        role_states(&status),
        vec![
            ("cache-1".into(), "cache".into(), "running".into()),
            ("db-1".into(), "db-master".into(), "running".into()),
            ("db-2".into(), "db-replica".into(), "running".into()),
            ("db-3".into(), "db-replica".into(), "running".into()),
        ]
    );
    let topology: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.state_dir().join("topology.json")).expect("topology"),
    )
    .expect("json");
    assert_eq!(topology["primary"], "db-1");
    assert_eq!(topology["epoch"], 1);

    // 2. Replication: a row written on the primary appears on both replicas; replicas are
    // read-only (the app user cannot write there).
    sql(
        &cluster,
        &addr("db-1"),
        "INSERT INTO labapp.users (name, password_hash) VALUES ('ada', 'x')",
    )
    .expect("insert on the primary");
    for replica in ["db-2", "db-3"] {
        let a = addr(replica);
        wait_for(
            &format!("the row on {replica}"),
            Duration::from_secs(30),
            || match sql(&cluster, &a, "SELECT name FROM labapp.users") {
                Ok(rows) if rows.lines().any(|l| l == "ada") => Ok(()),
                Ok(rows) => Err(format!("rows: {rows:?}")),
                Err(e) => Err(e),
            },
        );
        assert_eq!(sql(&cluster, &a, "SELECT @@read_only").as_deref(), Ok("1"));
        let refused = sql(
            &cluster,
            &a,
            "INSERT INTO labapp.users (name, password_hash) VALUES ('eve', 'x')",
        )
        .expect_err("a replica refuses writes");
        assert!(refused.contains("read-only"), "{refused}");
    }
    assert_eq!(
        sql(&cluster, &addr("db-1"), "SELECT @@read_only").as_deref(),
        Ok("0")
    );
    let stats = memcached_stats(&addr("cache-1")).expect("memcached answers stats");
    assert!(stats.contains("STAT limit_maxbytes 67108864"), "{stats}");

    // 3. Converged: plan and apply change nothing.
    let plan = cluster.lab_ok(&["plan"]);
    assert!(plan.contains("nothing to change"), "{plan}");
    let again = cluster.lab_ok(&["apply"]);
    assert!(again.contains("nothing to change"), "{again}");

    // Bad input changes nothing: two preferred primaries.
    let good = std::fs::read_to_string(&cluster.inventory).expect("inventory");
    rewrite_roles(&cluster, "db-2", "[\"db-master\"]");
    let out = cluster.lab(&["apply"]);
    assert!(!out.status.success());
    assert!(
        describe(&out).contains("two preferred primaries"),
        "{}",
        describe(&out)
    );
    std::fs::write(&cluster.inventory, good).expect("restore inventory");
    let plan = cluster.lab_ok(&["plan"]);
    assert!(plan.contains("nothing to change"), "{plan}");

    // 4. Move the cache: the plan lists exactly that, apply makes it.
    rewrite_roles(&cluster, "cache-1", "[]");
    rewrite_roles(&cluster, "db-3", "[\"db\", \"cache\"]");
    let out = cluster.lab(&["plan", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan --json");
    let changes: std::collections::BTreeSet<(String, String, String)> = plan["boards"]
        .as_array()
        .expect("boards")
        .iter()
        .flat_map(|b| {
            b["changes"].as_array().into_iter().flatten().map(move |c| {
                (
                    b["board"].as_str().unwrap_or_default().to_string(),
                    c["change"].as_str().unwrap_or_default().to_string(),
                    c["role"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect();
    let expected = [
        (
            "cache-1".to_string(),
            "stop".to_string(),
            "cache".to_string(),
        ),
        ("db-3".to_string(), "start".to_string(), "cache".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(changes, expected, "exactly the moved cache: {plan}");
    cluster.lab_ok(&["apply"]);
    memcached_stats(&addr("db-3")).expect("memcached now on db-3");
    // Apply waits for roles to run, not for removed ones to finish stopping.
    let cache_1 = addr("cache-1");
    wait_for(
        "cache-1 stopped its memcached",
        Duration::from_secs(20),
        || match memcached_stats(&cache_1) {
            Err(_) => Ok(()),
            Ok(_) => Err("memcached still answers on cache-1".to_string()),
        },
    );

    // 5. Restart a replica board with the control plane stopped: it comes back replicating.
    let pid: i32 = std::fs::read_to_string(cluster.state_dir().join("serve.pid"))
        .expect("serve.pid")
        .trim()
        .parse()
        .expect("pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_for("lab serve to stop", Duration::from_secs(10), || {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    });
    cluster.lab_ok(&["restart", "db-2"]);
    sql(
        &cluster,
        &addr("db-1"),
        "INSERT INTO labapp.users (name, password_hash) VALUES ('grace', 'x')",
    )
    .expect("insert on the primary");
    let a = addr("db-2");
    wait_for(
        "db-2 replicating after its restart",
        Duration::from_secs(90),
        || match sql(
            &cluster,
            &a,
            "SELECT name FROM labapp.users WHERE name = 'grace'",
        ) {
            Ok(rows) if rows == "grace" => Ok(()),
            Ok(rows) => Err(format!("rows: {rows:?}")),
            Err(e) => Err(e),
        },
    );
}

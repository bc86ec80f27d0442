//! The failover manager in `lab serve`, on a virtual cluster with real engines: a board
//! whose power is cut (`lab kill`) leaves its peers' specs (an app leaves the LB's upstream,
//! a cache leaves the apps' ring) while `lab load` runs with no failed GET, the decision is
//! in the event log, and after `lab restart` the boards are back in without a manual step.
//! A dead database primary is replaced with no acknowledged write lost and rejoins as a
//! replica; a primary that lost only the control plane is left alone.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::request;
use common::{describe, sql, wait_for, TestCluster};

/// How long a dead or returning board may take to be acted on: the heartbeat lease (3 s),
/// the lease check, the spec round trip and NGINX's reload, with room for a busy machine.
const NOTICED_WITHIN: Duration = Duration::from_secs(20);

#[test]
fn dead_app_and_cache_leave_their_peers_and_come_back() {
    let cluster = TestCluster::with_board_lines(
        "f",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("app-2", "native", "roles = [\"app\"]\n"),
            (
                "cache-1",
                "native",
                "roles = [\"cache\"]\nmemory = \"256MiB\"\n",
            ),
            (
                "cache-2",
                "native",
                "roles = [\"cache\"]\nmemory = \"256MiB\"\n",
            ),
            ("db-1", "native", "roles = [\"db-master\"]\n"),
        ],
    );
    let addr = |name: &str| cluster.addr(name);
    cluster.lab_ok(&["up"]);
    let lb = format!("{}:80", addr("lb-1"));
    let (app1, cache2) = (
        format!("{}:8080", addr("app-1")),
        "\"board\": \"cache-2\"".to_string(),
    );
    let upstreams = || {
        let out = cluster.ssh(&addr("lb-1"), "cat /var/lib/lab/lb/nginx.conf");
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let app2_config = || {
        let out = cluster.ssh(&addr("app-2"), "cat /var/lib/lab/app/app.json");
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(upstreams().contains(&app1), "{}", upstreams());
    assert!(app2_config().contains(&cache2), "{}", app2_config());

    // Reads only (the sign-ups and logins come first), so every request may be retried.
    let load = start_reads(&cluster, &lb, &app1);

    // Pull two plugs at once.
    let killed = std::time::Instant::now();
    cluster.lab_ok(&["kill", "app-1"]);
    cluster.lab_ok(&["kill", "cache-2"]);
    wait_for("app-1 out of the LB", NOTICED_WITHIN, || {
        let conf = upstreams();
        if conf.contains(&app1) {
            Err("still an upstream".into())
        } else {
            Ok(())
        }
    });
    println!(
        "app-1 out of lb-1's upstreams {:?} after the kill",
        killed.elapsed()
    );
    wait_for("cache-2 out of app-2's ring", NOTICED_WITHIN, || {
        if app2_config().contains(&cache2) {
            Err("still a cache peer".into())
        } else {
            Ok(())
        }
    });
    println!(
        "cache-2 out of app-2's ring {:?} after the kill",
        killed.elapsed()
    );
    let summary = finish_reads(load, "no failed GET through the kill");
    // lab load's own output is marked with what the control plane noticed and did.
    let marked = summary["events"].as_array().cloned().unwrap_or_default();
    assert!(
        marked
            .iter()
            .any(|e| e["board"] == "app-1" && e["kind"] == "down"),
        "{summary}"
    );
    assert!(
        marked.iter().any(|e| e["board"] == "lb-1"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("left out app-1"))),
        "{summary}"
    );

    // The decisions are in the event log, with their cause.
    let events = events(&cluster);
    let failover: Vec<&str> = events.lines().filter(|l| l.contains("failover")).collect();
    assert!(
        failover
            .iter()
            .any(|l| l.contains("\"lb-1\"") && l.contains("left out app-1")),
        "{events}"
    );
    assert!(
        failover
            .iter()
            .any(|l| l.contains("\"app-2\"") && l.contains("cache-2")),
        "{events}"
    );

    // Power back on: both rejoin with no `lab apply`.
    cluster.lab_ok(&["restart", "app-1"]);
    cluster.lab_ok(&["restart", "cache-2"]);
    wait_for("app-1 back in the LB", Duration::from_secs(60), || {
        if upstreams().contains(&app1) {
            Ok(())
        } else {
            Err("not an upstream yet".into())
        }
    });
    wait_for(
        "cache-2 back in app-2's ring",
        Duration::from_secs(60),
        || {
            if app2_config().contains(&cache2) {
                Ok(())
            } else {
                Err("not a cache peer yet".into())
            }
        },
    );
    wait_for("app-1 serving again", Duration::from_secs(30), || {
        let seen: BTreeSet<String> = (0..6)
            .filter_map(|_| request(&lb, "GET", "/", &[], None).ok())
            .filter_map(|a| a.header("x-served-by").map(str::to_string))
            .collect();
        if seen.contains("app-1") {
            Ok(())
        } else {
            Err(format!("served by {seen:?}"))
        }
    });
    // Everything converged: an apply has nothing to send.
    let apply = cluster.lab_ok(&["apply"]);
    assert!(apply.contains("nothing to change"), "{apply}");
}

/// The primary's plug pulled while a writer posts through the LB: the most advanced replica
/// is promoted by `lab serve` alone, the apps and the other replica follow it, every write
/// that was acknowledged (201) is on the new primary and on the replica (semi-sync), and the
/// old primary, powered on again, rejoins as a read-only replica with the same data.
#[test]
fn a_dead_primary_is_replaced_and_rejoins_as_a_replica() {
    let cluster = TestCluster::with_board_lines(
        "p",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db\"]\n"),
            ("db-2", "native", "roles = [\"db\"]\n"),
            ("db-3", "native", "roles = [\"db\"]\n"),
        ],
    );
    cluster.append_inventory("\n[db]\nprimary = \"db-1\"\nsemi_sync = true");
    let addr = |name: &str| cluster.addr(name);
    cluster.lab_ok(&["up"]);
    let lb = format!("{}:80", addr("lb-1"));
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        request(&lb, "POST", path, headers, Some(body))
    };
    let user = r#"{"name":"writer","password":"correct horse"}"#;
    let a = post("/api/signup", &[], user).expect("signup");
    assert_eq!(a.status, 201, "{a:?}");
    let a = post("/api/login", &[], user).expect("login");
    assert_eq!(a.status, 200, "{a:?}");
    let bearer = format!("Bearer {}", a.json()["token"].as_str().expect("token"));

    // The write checker: one post at a time, each acknowledged id kept with who took it.
    type Acked = Vec<(u64, String, std::time::Instant)>;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Acked::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (lb, bearer) = (lb.clone(), bearer.clone());
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut failed: std::collections::BTreeMap<String, u64> = Default::default();
            let deadline = std::time::Instant::now() + Duration::from_secs(150);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                n += 1;
                let body = format!(r#"{{"body":"write {n}"}}"#);
                let auth = [("Authorization", bearer.as_str())];
                match request(&lb, "POST", "/api/posts", &auth, Some(&body)) {
                    Ok(a) if a.status == 201 => {
                        let id = a.json()["id"].as_u64().expect("post id");
                        let db = a.header("x-db").unwrap_or("?").to_string();
                        if let Ok(mut acked) = acked.lock() {
                            acked.push((id, db, std::time::Instant::now()));
                        }
                    }
                    other => {
                        let kind = match other {
                            Ok(a) => {
                                format!("{} {}", a.status, a.header("x-served-by").unwrap_or(""))
                            }
                            Err(e) => e.to_string(),
                        };
                        *failed.entry(kind).or_default() += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            failed
        })
    };
    let acked_by = |db: &str, min: usize, within: Duration| {
        wait_for(
            &format!("{min} writes acknowledged by {db}"),
            within,
            || {
                let n = acked
                    .lock()
                    .map_err(|e| e.to_string())?
                    .iter()
                    .filter(|(_, by, _)| by == db)
                    .count();
                if n >= min {
                    Ok(())
                } else {
                    Err(format!("{n} so far"))
                }
            },
        )
    };
    acked_by("primary db-1", 20, Duration::from_secs(30));

    let killed = std::time::Instant::now();
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    cluster.lab_ok(&["kill", "db-1"]);
    let primary = wait_for("a new primary", Duration::from_secs(40), || {
        let t = topology(&cluster)?;
        match t["primary"].as_str() {
            Some(p) if p != "db-1" => Ok(p.to_string()),
            other => Err(format!("primary {other:?}")),
        }
    });
    println!("{primary} chosen {:?} after the kill", killed.elapsed());
    let replica = if primary == "db-2" { "db-3" } else { "db-2" };
    // Writes resume on the new primary.
    acked_by(&format!("primary {primary}"), 20, Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let failed = writer.join().expect("writer thread");
    let acked = acked.lock().expect("acked").clone();
    let first_new = acked
        .iter()
        .filter(|(_, db, _)| db == &format!("primary {primary}"))
        .map(|(_, _, t)| *t)
        .min()
        .expect("writes acknowledged by the new primary");
    println!(
        "writes: {} acknowledged, {} failed {failed:?}; first write acknowledged by {primary} \
         {:?} after the kill",
        acked.len(),
        failed.values().sum::<u64>(),
        first_new.duration_since(killed)
    );
    let want: BTreeSet<u64> = acked.iter().map(|(id, _, _)| *id).collect();
    let holds_all = |board: &str| -> Result<(), String> {
        let out = sql(&cluster, &addr(board), "SELECT id FROM labapp.posts")?;
        let have: BTreeSet<u64> = out.lines().filter_map(|l| l.parse().ok()).collect();
        let missing: Vec<&u64> = want.difference(&have).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} acknowledged writes missing: {missing:?}",
                missing.len()
            ))
        }
    };
    holds_all(&primary).unwrap_or_else(|e| panic!("new primary {primary}: {e}"));
    wait_for(
        "the other replica holding every write",
        Duration::from_secs(30),
        || holds_all(replica),
    );
    let events = events(&cluster);
    assert!(
        events
            .lines()
            .any(|l| l.contains(&format!("promoting {primary} at epoch"))),
        "{events}"
    );
    // The timeline, for people reading the output.
    for line in events.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let at = e["ts_ms"].as_i64().unwrap_or(0) - killed_ms;
        if at >= 0 {
            println!(
                "  +{:>5} ms {}: {}",
                at,
                e["board"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            );
        }
    }

    // The old primary powered on: a read-only replica of the new one, with every write.
    let restarted = std::time::Instant::now();
    cluster.lab_ok(&["restart", "db-1"]);
    wait_for("db-1 rejoining read-only", Duration::from_secs(90), || {
        let ro = sql(&cluster, &addr("db-1"), "SELECT @@read_only")?;
        if ro != "1" {
            let events = self::events(&cluster);
            if let Some(flag) = events.lines().find(|l| l.contains("kept out")) {
                let state = |b: &str| sql(&cluster, &addr(b), "SELECT @@gtid_binlog_state");
                let log = cluster.ssh(
                    &addr("db-1"),
                    "grep -i -E 'truncat|recover|semi|rollback' /var/log/lab/mariadb.log | tail -20",
                );
                panic!(
                    "{flag}\ngtid_binlog_state: db-1 {:?}, db-2 {:?}, db-3 {:?}\ndb-1 log:\n{}",
                    state("db-1"),
                    state("db-2"),
                    state("db-3"),
                    String::from_utf8_lossy(&log.stdout)
                );
            }
            let recent: Vec<&str> = events.lines().rev().take(6).collect();
            return Err(format!("read_only={ro}; latest events: {recent:#?}"));
        }
        holds_all("db-1")
    });
    println!(
        "db-1 read-only with every write {:?} after its restart",
        restarted.elapsed()
    );
    let count = |board: &str| sql(&cluster, &addr(board), "SELECT COUNT(*) FROM labapp.posts");
    wait_for(
        "db-1 holding what the primary holds",
        Duration::from_secs(30),
        || {
            let (a, b) = (count("db-1")?, count(&primary)?);
            if a == b {
                Ok(())
            } else {
                Err(format!("db-1 {a}, {primary} {b}"))
            }
        },
    );
    let apply = cluster.lab_ok(&["apply"]);
    assert!(apply.contains("nothing to change"), "{apply}");
}

#[test]
fn a_primary_that_lost_only_the_control_plane_stays_primary() {
    let cluster = TestCluster::with_board_lines(
        "q",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db\"]\n"),
            ("db-2", "native", "roles = [\"db\"]\n"),
        ],
    );
    cluster.append_inventory("\n[db]\nprimary = \"db-1\"");
    let addr = |name: &str| cluster.addr(name);
    cluster.lab_ok(&["up"]);
    let lb = format!("{}:80", addr("lb-1"));
    let user = r#"{"name":"steady","password":"correct horse"}"#;
    let a = request(&lb, "POST", "/api/signup", &[], Some(user)).expect("signup");
    assert_eq!(a.status, 201, "{a:?}");
    let a = request(&lb, "POST", "/api/login", &[], Some(user)).expect("login");
    assert_eq!(a.status, 200, "{a:?}");
    let bearer = format!("Bearer {}", a.json()["token"].as_str().expect("token"));
    let post = |n: u32| {
        let body = format!(r#"{{"body":"post {n}"}}"#);
        request(
            &lb,
            "POST",
            "/api/posts",
            &[("Authorization", bearer.as_str())],
            Some(&body),
        )
        .expect("post")
    };
    let primary = || {
        let t = topology(&cluster).expect("topology.json");
        (
            t["primary"].as_str().unwrap_or("").to_string(),
            t["epoch"].as_u64(),
        )
    };
    let before = primary();
    assert_eq!(before.0, "db-1");

    // db-1's agent frozen: no heartbeat reaches `lab serve`, but MariaDB serves on and the
    // replica still reaches it. (The supervisor's child is the agent that serves the API.)
    let signal = |sig: &str| {
        let out = cluster.ssh(
            &addr("db-1"),
            &format!("kill -{sig} $(pgrep -P \"$(cat /var/lib/lab/agent.pid)\")"),
        );
        assert!(out.status.success(), "{}", describe(&out));
    };
    signal("STOP");
    let frozen = wait_for("db-1 down and not replaced", NOTICED_WITHIN, || {
        let text = events(&cluster);
        let down = text
            .lines()
            .any(|l| l.contains("\"db-1\"") && l.contains("board down"));
        let kept = text
            .lines()
            .find(|l| l.contains("misses its heartbeats but db-2 still reaches it"));
        match (down, kept) {
            (true, Some(line)) => Ok(line.to_string()),
            _ => Err(format!("events so far:\n{text}")),
        }
    });
    println!("{frozen}");
    assert_eq!(primary(), before, "no new topology while db-1 serves");
    let a = post(1);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.header("x-db"), Some("primary db-1"), "{a:?}");

    signal("CONT");
    wait_for("db-1 up again", NOTICED_WITHIN, || {
        let text = events(&cluster);
        let mut lines = text.lines().filter(|l| l.contains("\"db-1\""));
        if lines.any(|l| l.contains("board down")) && lines.any(|l| l.contains("\"up\"")) {
            Ok(())
        } else {
            Err(format!("events so far:\n{text}"))
        }
    });
    assert_eq!(primary(), before, "still no new topology");
    assert!(
        !events(&cluster).contains("promoting"),
        "{}",
        events(&cluster)
    );
    let a = post(2);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.header("x-db"), Some("primary db-1"), "{a:?}");
}

#[test]
fn a_diverged_replica_is_kept_out_until_recloned() {
    let cluster = TestCluster::with_board_lines(
        "r",
        &[
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db\"]\n"),
            ("db-2", "native", "roles = [\"db\"]\n"),
        ],
    );
    cluster.append_inventory("\n[db]\nprimary = \"db-1\"");
    let addr = |name: &str| cluster.addr(name);
    cluster.lab_ok(&["up"]);
    let app_reads_db2 = || app_reads_from(&cluster, "app-1", "db-2");
    assert!(app_reads_db2(), "app-1 reads from db-2 at first");
    let rows = |board: &str| {
        sql(
            &cluster,
            &addr(board),
            "SELECT COUNT(*) FROM labapp.posts WHERE body = 'only on db-2'",
        )
    };

    // A write on the replica itself (root may, read-only or not): db-2 now holds a
    // transaction its primary lacks.
    let out = cluster.ssh(
        &addr("db-2"),
        "mariadb -u root --socket=/var/lib/lab/db/mysqld.sock -e \
         \"INSERT INTO labapp.posts (user_id, body) VALUES (1, 'only on db-2')\"",
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(rows("db-2").as_deref(), Ok("1"));
    let flag = wait_for("db-2 kept out", NOTICED_WITHIN, || {
        events(&cluster)
            .lines()
            .find(|l| l.contains("db-2 kept out") && l.contains("lab reclone db-2 --yes"))
            .map(str::to_string)
            .ok_or_else(|| format!("events so far:\n{}", events(&cluster)))
    });
    println!("{flag}");
    wait_for("app-1 no longer reading from db-2", NOTICED_WITHIN, || {
        if app_reads_db2() {
            Err("db-2 still in app-1's replicas".to_string())
        } else {
            Ok(())
        }
    });

    // Refused without --yes, and on the primary.
    let out = cluster.lab(&["reclone", "db-2"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains("--yes"), "{}", describe(&out));
    let out = cluster.lab(&["reclone", "db-1", "--yes"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains("primary"), "{}", describe(&out));
    assert_eq!(
        rows("db-2").as_deref(),
        Ok("1"),
        "nothing done without --yes"
    );

    let out = cluster.lab_ok(&["reclone", "db-2", "--yes"]);
    println!("{out}");
    wait_for("db-2 back in", Duration::from_secs(90), || {
        let back = events(&cluster)
            .lines()
            .any(|l| l.contains("db-2 holds nothing db-1 lacks any more"));
        match (back, app_reads_db2(), rows("db-2")) {
            (true, true, Ok(n)) if n == "0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let ro = sql(&cluster, &addr("db-2"), "SELECT @@read_only");
    assert_eq!(ro.as_deref(), Ok("1"));
}

/// A replica's plug pulled while `lab load` reads through the LB with no cache: reads in
/// flight there fall back (the app's replica budget, then another replica or the primary),
/// none fails; the manager takes it out of the app's read list and puts it back on return.
#[test]
fn a_dead_replica_costs_no_read() {
    let cluster = TestCluster::with_board_lines(
        "s",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db\"]\n"),
            ("db-2", "native", "roles = [\"db\"]\n"),
            ("db-3", "native", "roles = [\"db\"]\n"),
        ],
    );
    cluster.append_inventory("\n[db]\nprimary = \"db-1\"");
    let addr = |name: &str| cluster.addr(name);
    cluster.lab_ok(&["up"]);
    let lb = format!("{}:80", addr("lb-1"));
    let app1 = format!("{}:8080", addr("app-1"));
    let app_reads_from = |board: &str| app_reads_from(&cluster, "app-1", board);
    assert!(app_reads_from("db-2"));

    let load = start_reads(&cluster, &lb, &app1);
    let killed = std::time::Instant::now();
    cluster.lab_ok(&["kill", "db-2"]);
    wait_for("db-2 out of app-1's read list", NOTICED_WITHIN, || {
        if app_reads_from("db-2") {
            Err("still a replica peer".into())
        } else {
            Ok(())
        }
    });
    println!(
        "db-2 out of app-1's read list {:?} after the kill",
        killed.elapsed()
    );
    finish_reads(load, "no failed read through the kill");
    cluster.lab_ok(&["restart", "db-2"]);
    wait_for(
        "db-2 back in app-1's read list",
        Duration::from_secs(60),
        || {
            if app_reads_from("db-2") {
                Ok(())
            } else {
                Err("not a replica peer yet".into())
            }
        },
    );
}

/// `lab serve`'s event log so far (empty before it writes one).
fn events(cluster: &TestCluster) -> String {
    std::fs::read_to_string(cluster.state_dir().join("events.jsonl")).unwrap_or_default()
}

/// `<state>/topology.json`.
fn topology(cluster: &TestCluster) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(cluster.state_dir().join("topology.json"))
        .map_err(|e| format!("topology.json: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("topology.json: {e}"))
}

/// Whether board `app`'s app config lists `replica` among the replicas it reads from.
fn app_reads_from(cluster: &TestCluster, app: &str, replica: &str) -> bool {
    let out = cluster.ssh(&cluster.addr(app), "cat /var/lib/lab/app/app.json");
    assert!(out.status.success(), "{}", describe(&out));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("app.json is JSON");
    config["db"]["replicas"]
        .as_array()
        .is_some_and(|r| r.iter().any(|p| p["board"] == replica))
}

/// `lab load` reads through the LB at `lb` (40/s for 20 s) in a thread, returned once the
/// app at `app` has seen its first second of them.
fn start_reads(
    cluster: &TestCluster,
    lb: &str,
    app: &str,
) -> std::thread::JoinHandle<std::process::Output> {
    let (inventory, out_dir) = (cluster.inventory.clone(), cluster.dir.path().join("load"));
    let url = format!("http://{lb}/");
    let load = std::thread::spawn(move || {
        std::process::Command::new(common::LAB)
            .args(["load", "-i"])
            .arg(&inventory)
            .args(["--url", &url, "--rate", "40", "--duration", "20s"])
            .args(["--users", "4", "--keys", "20", "--read-ratio", "1"])
            .args(["--json", "--out"])
            .arg(&out_dir)
            .output()
            .expect("run lab load")
    });
    wait_for("lab load reaching the app", Duration::from_secs(30), || {
        let n = request(app, "GET", "/_lab/stats", &[], None)?.json()["requests_total"]
            .as_u64()
            .unwrap_or(0);
        if n >= 40 || load.is_finished() {
            Ok(())
        } else {
            Err(format!("{n} requests so far"))
        }
    });
    load
}

/// The summary of a [`start_reads`] run, asserted to have no failed request (`what`: the
/// assertion's words) and most of its 800 answered.
fn finish_reads(
    load: std::thread::JoinHandle<std::process::Output>,
    what: &str,
) -> serde_json::Value {
    let out = load.join().expect("lab load thread");
    assert!(out.status.success(), "{}", describe(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert_eq!(summary["failed"], 0, "{what}: {summary}");
    assert!(summary["ok"].as_u64().unwrap_or(0) > 300, "{summary}");
    println!(
        "lab load through the kill: ok {} failed {} p50 {} ms p99 {} ms max {} ms",
        summary["ok"],
        summary["failed"],
        summary["latency_ms"]["p50"],
        summary["latency_ms"]["p99"],
        summary["latency_ms"]["max"]
    );
    summary
}

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
    let upstreams = || lb_config(&cluster);
    let app2_config = || {
        let out = cluster.ssh(&addr("app-2"), "cat /var/lib/lab/app/app.json");
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(upstreams().contains(&app1), "{}", upstreams());
    assert!(app2_config().contains(&cache2), "{}", app2_config());

    // Reads only (the sign-ups and logins come first), so every request may be retried.
    // About five seconds of them first (app-1 sees half): the cache warm, its hit ratio's
    // level measured.
    let load = start_reads(&cluster, &lb, &app1, 100);

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
    let killed_at = marked
        .iter()
        .find(|e| {
            e["board"] == "cache-2"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("lab kill"))
        })
        .and_then(|e| e["at_s"].as_f64())
        .unwrap_or_else(|| panic!("lab kill marked in lab load's output: {summary}"));
    hit_ratio_recovery(&cluster.dir.path().join("load/timeline.json"), killed_at);
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
    // Started at boot by the board's init (which waits for its signals blocked), the agent
    // and what it runs still get their signals: a blocked HUP would be a reload never done.
    let masks = cluster.ssh(
        &addr("app-1"),
        "for p in $(pgrep -x lab-agent); do grep SigBlk /proc/$p/status; done",
    );
    let masks = String::from_utf8_lossy(&masks.stdout).to_string();
    assert!(
        masks.lines().count() >= 3,
        "agent, supervisor, app: {masks}"
    );
    assert!(
        masks.lines().all(|l| l.ends_with("0000000000000000")),
        "signals blocked after a restart:\n{masks}"
    );
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
    primary_replaced("p", PrimaryCut::Kill);
}

/// The primary's cable pulled (`lab partition`) while the writer posts: its processes run on,
/// so a write it took just before the cut can commit there alone once the semi-sync wait
/// times out. It is replaced as if dead; no acknowledged write is lost; back on the network
/// it is fenced (read-only, never again a write target) and either rejoins or, holding that
/// unacknowledged write, is kept out until `lab reclone`.
#[test]
fn a_partitioned_primary_is_replaced_and_fenced() {
    primary_replaced("o", PrimaryCut::Partition);
}

/// How the primary is taken away in [`primary_replaced`].
#[derive(Clone, Copy, PartialEq)]
enum PrimaryCut {
    /// `lab kill`, later `lab restart`.
    Kill,
    /// `lab partition`, later `lab heal`.
    Partition,
}

fn primary_replaced(prefix: &str, cut: PrimaryCut) {
    let cluster = TestCluster::with_board_lines(
        prefix,
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
    // (post id, who took it, when, its body)
    type Acked = Vec<(u64, String, std::time::Instant, String)>;
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
                            acked.push((id, db, std::time::Instant::now(), format!("write {n}")));
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
                    .filter(|(_, by, _, _)| by == db)
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
    match cut {
        PrimaryCut::Kill => cluster.lab_ok(&["kill", "db-1"]),
        PrimaryCut::Partition => cluster.lab_ok(&["partition", "db-1"]),
    };
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
        .filter(|(_, db, _, _)| db == &format!("primary {primary}"))
        .map(|(_, _, t, _)| *t)
        .min()
        .expect("writes acknowledged by the new primary");
    println!(
        "writes: {} acknowledged, {} failed {failed:?}; first write acknowledged by {primary} \
         {:?} after the kill",
        acked.len(),
        failed.values().sum::<u64>(),
        first_new.duration_since(killed)
    );
    let want: BTreeSet<u64> = acked.iter().map(|(id, _, _, _)| *id).collect();
    let acked_rows: BTreeSet<String> = acked
        .iter()
        .map(|(id, _, _, body)| format!("{id}\t{body}"))
        .collect();
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

    // The old primary back: a read-only replica of the new one, with every write; or, after
    // a partition, perhaps flagged for a write nobody acknowledged, and recloned.
    let back = std::time::Instant::now();
    match cut {
        PrimaryCut::Kill => cluster.lab_ok(&["restart", "db-1"]),
        PrimaryCut::Partition => cluster.lab_ok(&["heal", "db-1"]),
    };
    let mut recloned = false;
    wait_for("db-1 rejoining read-only", Duration::from_secs(90), || {
        let ro = sql(&cluster, &addr("db-1"), "SELECT @@read_only")?;
        let events = self::events(&cluster);
        let flag = events.lines().find(|l| l.contains("kept out"));
        if let (Some(flag), false) = (flag, recloned) {
            if cut == PrimaryCut::Kill {
                panic!("{flag}\n{}", divergence(&cluster));
            }
            // Only writes nobody was told about may be db-1's alone (rows compared whole:
            // the new primary may have given the same id to another post).
            let posts = |b: &str| sql(&cluster, &addr(b), "SELECT id, body FROM labapp.posts");
            let (old, new) = (posts("db-1")?, posts(&primary)?);
            let new: BTreeSet<&str> = new.lines().collect();
            let extra: Vec<&str> = old.lines().filter(|row| !new.contains(row)).collect();
            let lost: Vec<&&str> = extra.iter().filter(|r| acked_rows.contains(**r)).collect();
            assert!(lost.is_empty(), "acknowledged, only on db-1: {lost:?}");
            println!("{flag}\n  posts only db-1 holds (never acknowledged): {extra:?}");
            assert_eq!(ro, "1", "a kept-out replica is read-only");
            cluster.lab_ok(&["reclone", "db-1", "--yes"]);
            recloned = true;
        }
        if ro != "1" {
            let recent: Vec<&str> = events.lines().rev().take(6).collect();
            return Err(format!("read_only={ro}; latest events: {recent:#?}"));
        }
        holds_all("db-1")
    });
    println!(
        "db-1 read-only with every write {:?} after it came back{}",
        back.elapsed(),
        if recloned { " (recloned)" } else { "" }
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
    // Fenced: writes go to the new primary only.
    let auth = [("Authorization", bearer.as_str())];
    for n in 0..5 {
        let body = format!(r#"{{"body":"after {n}"}}"#);
        let a = post_with(&lb, &auth, &body);
        assert_eq!(a.status, 201, "{a:?}");
        assert_eq!(
            a.header("x-db"),
            Some(format!("primary {primary}").as_str())
        );
    }
    let apply = cluster.lab_ok(&["apply"]);
    assert!(apply.contains("nothing to change"), "{apply}");
}

/// One post through the LB at `lb`.
fn post_with(lb: &str, headers: &[(&str, &str)], body: &str) -> common::http::Answer {
    request(lb, "POST", "/api/posts", headers, Some(body)).expect("post")
}

/// The three boards' GTID states and db-1's recovery lines, for a failure message.
fn divergence(cluster: &TestCluster) -> String {
    let state = |b: &str| sql(cluster, &cluster.addr(b), "SELECT @@gtid_binlog_state");
    let log = cluster.ssh(
        &cluster.addr("db-1"),
        "grep -i -E 'truncat|recover|semi|rollback' /var/log/lab/mariadb.log | tail -20",
    );
    format!(
        "gtid_binlog_state: db-1 {:?}, db-2 {:?}, db-3 {:?}\ndb-1 log:\n{}",
        state("db-1"),
        state("db-2"),
        state("db-3"),
        String::from_utf8_lossy(&log.stdout)
    )
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

    // db-1 cut off from the control plane alone: no heartbeat reaches `lab serve`, but
    // MariaDB serves on and the replica and the app still reach it.
    let out = cluster.lab_ok(&["partition", "db-1", "--from-control-plane"]);
    assert!(out.contains("control plane only"), "{out}");
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

    cluster.lab_ok(&["heal", "db-1"]);
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

/// `lab serve` killed during `lab load`: the data plane serves on (no failed GET) but heals
/// nothing (a board killed meanwhile stays in the LB, NGINX stepping around it); started
/// again, the control plane reads the cluster's state, acts on what died while it was away
/// and undoes nothing (same primary, same epoch, nothing else sent).
#[test]
fn without_the_control_plane_the_cluster_serves_and_heals_once_it_is_back() {
    let cluster = TestCluster::with_board_lines(
        "c",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("app-2", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db\"]\n"),
            ("db-2", "native", "roles = [\"db\"]\n"),
        ],
    );
    cluster.append_inventory("\n[db]\nprimary = \"db-1\"");
    let addr = |name: &str| cluster.addr(name);
    cluster.lab_ok(&["up"]);
    let before = topology(&cluster).expect("topology.json");
    let lb = format!("{}:80", addr("lb-1"));
    let app1 = format!("{}:8080", addr("app-1"));
    let upstreams = || lb_config(&cluster);
    let load = start_reads(&cluster, &lb, &app1, 40);

    // The control plane's plug pulled, then an app's.
    let pid_file = cluster.state_dir().join("serve.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("serve.pid");
    let out = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .output()
        .expect("run kill");
    assert!(out.status.success(), "{}", describe(&out));
    cluster.lab_ok(&["kill", "app-1"]);
    let killed = std::time::Instant::now();
    // Nobody heals: app-1 stays an upstream well past the time `lab serve` takes.
    while killed.elapsed() < Duration::from_secs(8) {
        assert!(
            upstreams().contains(&app1),
            "healed without a control plane"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Back: a fresh `lab serve` (as a user would start it) picks up where it was.
    let log = std::fs::File::create(cluster.dir.path().join("serve-again.log")).expect("log");
    let mut serve = std::process::Command::new(common::LAB)
        .args(["serve", "--listen", "127.0.0.1:0", "-i"])
        .arg(&cluster.inventory)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start lab serve");
    let restarted = std::time::Instant::now();
    let healed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("app-1 out of the LB", Duration::from_secs(40), || {
            if upstreams().contains(&app1) {
                Err("still an upstream".into())
            } else {
                Ok(())
            }
        });
        println!(
            "app-1 out of lb-1's upstreams {:?} after lab serve started again",
            restarted.elapsed()
        );
        finish_reads(load, "no failed GET without the control plane")
    }));
    let summary = match healed {
        Ok(summary) => summary,
        Err(panic) => {
            let _ = serve.kill();
            let _ = serve.wait();
            std::panic::resume_unwind(panic);
        }
    };
    println!("served without a control plane: {}", summary["ok"]);
    let after = topology(&cluster).expect("topology.json");
    assert_eq!(
        after, before,
        "the restarted control plane changed the topology"
    );
    let events = events(&cluster);
    assert!(!events.contains("promoting"), "{events}");

    // And app-1, powered on, comes back in through the restarted control plane.
    cluster.lab_ok(&["restart", "app-1"]);
    wait_for("app-1 back in the LB", Duration::from_secs(60), || {
        if upstreams().contains(&app1) {
            Ok(())
        } else {
            Err("not an upstream yet".into())
        }
    });
    let _ = serve.kill();
    let _ = serve.wait();
}

/// Two lb boards: keepalived holds the cluster's floating address on exactly one (whichever
/// came up first: nopreempt), `lab load` aims at it by default, and when its holder's plug is
/// pulled the address moves to the other board and requests flow again; the dead board,
/// powered on, does not take the address back (no second move).
#[test]
fn two_lb_boards_share_an_address_that_moves_when_its_holder_dies() {
    let cluster = TestCluster::with_board_lines(
        "v",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("lb-2", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db-master\"]\n"),
        ],
    );
    let addr = |name: &str| cluster.addr(name);
    // The virtual subnet's last host address (the tests' subnets are /24s).
    let lb1 = addr("lb-1");
    let vip = format!("{}.254", lb1.rsplit_once('.').expect("IPv4").0);
    let up = cluster.lab_ok(&["up"]);
    assert!(up.contains(&format!("http://{vip}/")), "{up}");
    let plan = cluster.lab_ok(&["plan"]);
    assert!(
        plan.contains(&format!("share the floating address {vip}")),
        "{plan}"
    );
    let holds = |board: &str| {
        let out = cluster.ssh(&addr(board), "ip -o -4 addr show");
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {vip}/"))
    };
    let holder = || -> Vec<&str> { ["lb-1", "lb-2"].into_iter().filter(|b| holds(b)).collect() };
    let (first, second) = wait_for(
        "one lb board holding the address",
        Duration::from_secs(30),
        || match holder().as_slice() {
            ["lb-1"] => Ok(("lb-1", "lb-2")),
            ["lb-2"] => Ok(("lb-2", "lb-1")),
            other => Err(format!("held by {other:?}")),
        },
    );
    let vip80 = format!("{vip}:80");
    let a = request(&vip80, "GET", "/", &[], None).expect("GET through the address");
    assert_eq!(a.status, 200, "{a:?}");

    // lab load with no --url: the floating address.
    let out_dir = cluster.dir.path().join("load");
    let inventory = cluster.inventory.clone();
    let load = std::thread::spawn(move || {
        std::process::Command::new(common::LAB)
            .args(["load", "-i"])
            .arg(&inventory)
            .args(["--rate", "40", "--duration", "20s", "--timeout", "2s"])
            .args(["--users", "4", "--keys", "20", "--read-ratio", "1"])
            .args(["--json", "--out"])
            .arg(&out_dir)
            .output()
            .expect("run lab load")
    });
    let app1 = format!("{}:8080", addr("app-1"));
    wait_for("lab load reaching the app", Duration::from_secs(30), || {
        let n = request(&app1, "GET", "/_lab/stats", &[], None)?.json()["requests_total"]
            .as_u64()
            .unwrap_or(0);
        if n >= 80 {
            Ok(())
        } else {
            Err(format!("{n} requests so far"))
        }
    });
    let killed = std::time::Instant::now();
    cluster.lab_ok(&["kill", first]);
    // (The dead board is not asked: its ssh would wait for a board that is gone.)
    wait_for(
        "the other board holding the address",
        Duration::from_secs(20),
        || {
            if holds(second) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    );
    let moved = killed.elapsed();
    let a = request(&vip80, "GET", "/", &[], None).expect("GET after the move");
    assert_eq!(a.status, 200, "{a:?}");
    let out = load.join().expect("lab load thread");
    // Exit 3 (a shortfall) says only that the generator started over 1 % of its requests
    // more than 25 ms late, which a 2-core machine running other clusters does at times (seen
    // once: 9 of 800). What this test is about are the figures below; any other exit is not.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        describe(&out)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert!(
        summary["target"].as_str().unwrap_or("").contains(&vip) || describe(&out).contains(&vip),
        "lab load aims at the floating address by default: {summary}"
    );
    let (ok, failed) = (
        summary["ok"].as_u64().unwrap_or(0),
        summary["failed"].as_u64().unwrap_or(0),
    );
    println!(
        "address moved to {second} {moved:?} after {first}'s kill; lab load: ok {ok} failed {failed} \
         p99 {} ms max {} ms; errors {}",
        summary["latency_ms"]["p99"], summary["latency_ms"]["max"], summary["errors"]
    );
    // What fails is what was in flight or sent during the move, no more.
    assert!(ok > 600, "{summary}");
    assert!(failed <= 40 * (moved.as_secs() + 3), "{summary}");

    // The dead board powered on: it stands by, the address stays where it is.
    cluster.lab_ok(&["restart", first]);
    wait_for(
        "the old holder standing by",
        Duration::from_secs(60),
        || {
            let status = cluster.status_json().to_string();
            if status.contains(&format!("standing by for {vip}")) {
                Ok(())
            } else {
                Err("its vip role not running yet".into())
            }
        },
    );
    assert_eq!(holder(), vec![second], "the address moved back");
}

/// The same boards seen as real ones (an inventory without `[virtual]`, the same state):
/// `lab kill` asks before it stops anything (no terminal, no --yes: refused, nothing
/// stopped), partition is the user's cable; with --yes the agent and its engines stop, the
/// control plane takes the app out of the LB, and `lab restart` brings it back in.
#[test]
fn lab_kill_on_a_real_board_asks_then_stops_its_agent() {
    let cluster = TestCluster::with_board_lines(
        "k",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("app-2", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db-master\"]\n"),
        ],
    );
    let addr = |name: &str| cluster.addr(name);
    cluster.lab_ok(&["up"]);
    let text = std::fs::read_to_string(&cluster.inventory).expect("inventory");
    let real_text: String = text
        .lines()
        .filter(|l| {
            !l.starts_with("[virtual]") && !l.starts_with("subnet") && !l.starts_with("arch")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let real = cluster.dir.path().join("real.toml");
    std::fs::write(&real, real_text).expect("write real.toml");
    let lab_real = |args: &[&str]| {
        std::process::Command::new(common::LAB)
            .args(args)
            .arg("-i")
            .arg(&real)
            .stdin(std::process::Stdio::null())
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("run lab")
    };
    let app1 = format!("{}:8080", addr("app-1"));
    let upstreams = || lb_config(&cluster);
    let agent_runs = || {
        let out = cluster.ssh(&addr("app-1"), "kill -0 \"$(cat /var/lib/lab/agent.pid)\"");
        out.status.success()
    };

    let out = lab_real(&["kill", "app-1"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(describe(&out).contains("say --yes"), "{}", describe(&out));
    let out = lab_real(&["partition", "app-1"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        describe(&out).contains("network cable"),
        "{}",
        describe(&out)
    );
    assert!(agent_runs(), "a refused kill stopped the agent");
    let a = request(&app1, "GET", "/_lab/stats", &[], None).expect("the app answers");
    assert_eq!(a.status, 200);

    let out = lab_real(&["kill", "app-1", "--yes"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!agent_runs(), "the agent still runs");
    assert!(
        request(&app1, "GET", "/_lab/stats", &[], None).is_err(),
        "the app still answers"
    );
    wait_for("app-1 out of the LB", NOTICED_WITHIN, || {
        if upstreams().contains(&app1) {
            Err("still an upstream".to_string())
        } else {
            Ok(())
        }
    });

    let out = lab_real(&["restart", "app-1"]);
    assert!(out.status.success(), "{}", describe(&out));
    wait_for("app-1 back in the LB", Duration::from_secs(60), || {
        if upstreams().contains(&app1) {
            Ok(())
        } else {
            Err("not an upstream yet".to_string())
        }
    });
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

    let load = start_reads(&cluster, &lb, &app1, 40);
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

/// From `lab load`'s per-second timeline: the cache hit ratio before a cache board's kill at
/// `killed_at` (seconds into the run), its lowest second after, and when it was back at 90 %
/// of its level (printed for bench/failover; the run must get back there).
fn hit_ratio_recovery(timeline: &std::path::Path, killed_at: f64) {
    let text = std::fs::read_to_string(timeline).expect("timeline.json");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("timeline is JSON");
    let ratio = |r: &serde_json::Value| {
        let (h, m) = (r["hits"].as_f64()?, r["misses"].as_f64()?);
        (h + m > 0.0).then(|| h / (h + m))
    };
    let t = |r: &serde_json::Value| r["t"].as_f64().unwrap_or(0.0);
    // Whole seconds before the kill, the first two (warming) left out.
    let before: Vec<f64> = rows
        .iter()
        .filter(|r| t(r) > 2.0 && t(r) <= killed_at)
        .filter_map(ratio)
        .collect();
    assert!(!before.is_empty(), "no second before the kill: {rows:?}");
    let level = before.iter().sum::<f64>() / before.len() as f64;
    let after: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| t(r) > killed_at)
        .filter_map(|r| Some((t(r), ratio(r)?)))
        .collect();
    let lowest = after.iter().map(|(_, v)| *v).fold(f64::MAX, f64::min);
    // The first second after the dip that is back at 90 % of the level (the row's end).
    let dip = after
        .iter()
        .position(|(_, v)| *v < 0.9 * level)
        .unwrap_or(0);
    let back = after[dip..]
        .iter()
        .find(|(_, v)| *v >= 0.9 * level)
        .map(|(t, _)| t - killed_at)
        .unwrap_or_else(|| panic!("the hit ratio never came back to 90% of {level}: {after:?}"));
    println!(
        "hit ratio: {:.1}% before the cache kill, lowest {:.1}% after, back at 90% of its level \
         {back:.1}s after the kill",
        level * 100.0,
        lowest * 100.0
    );
}

/// lb-1's NGINX config as its agent rendered it (the upstreams are the apps it sends to).
fn lb_config(cluster: &TestCluster) -> String {
    let out = cluster.ssh(&cluster.addr("lb-1"), "cat /var/lib/lab/lb/nginx.conf");
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
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
/// app at `app` has seen `first` of them (40: the first second).
fn start_reads(
    cluster: &TestCluster,
    lb: &str,
    app: &str,
    first: u64,
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
        if n >= first || load.is_finished() {
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

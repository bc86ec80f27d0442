//! The failover manager in `lab serve`, on a virtual cluster with real engines: a board
//! whose power is cut (`lab kill`) leaves its peers' specs (an app leaves the LB's upstream,
//! a cache leaves the apps' ring) while `lab load` runs with no failed GET, the decision is
//! in the event log, and after `lab restart` the boards are back in without a manual step.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::request;
use common::{describe, wait_for, TestCluster};

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
    let out_dir = cluster.dir.path().join("load");
    let url = format!("http://{lb}/");
    let load = {
        let inventory = cluster.inventory.clone();
        std::thread::spawn(move || {
            std::process::Command::new(common::LAB)
                .args(["load", "-i"])
                .arg(&inventory)
                .args(["--url", &url, "--rate", "40", "--duration", "20s"])
                .args([
                    "--users",
                    "4",
                    "--keys",
                    "20",
                    "--read-ratio",
                    "1",
                    "--json",
                    "--out",
                ])
                .arg(&out_dir)
                .output()
                .expect("run lab load")
        })
    };
    wait_for("lab load reaching app-1", Duration::from_secs(30), || {
        let n = request(&app1, "GET", "/_lab/stats", &[], None)?.json()["requests_total"]
            .as_u64()
            .unwrap_or(0);
        if n >= 40 || load.is_finished() {
            Ok(())
        } else {
            Err(format!("{n} requests so far"))
        }
    });

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
    let out = load.join().expect("lab load thread");
    assert!(out.status.success(), "{}", describe(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert_eq!(
        summary["failed"], 0,
        "no failed GET through the kill: {summary}"
    );
    assert!(summary["ok"].as_u64().unwrap_or(0) > 300, "{summary}");
    println!(
        "lab load through the kill: ok {} failed {} p50 {} ms p99 {} ms max {} ms",
        summary["ok"],
        summary["failed"],
        summary["latency_ms"]["p50"],
        summary["latency_ms"]["p99"],
        summary["latency_ms"]["max"]
    );

    // The decisions are in the event log, with their cause.
    let events = std::fs::read_to_string(cluster.state_dir().join("events.jsonl"))
        .expect("lab serve keeps events.jsonl");
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

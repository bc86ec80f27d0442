//! The request path end to end on a real virtual cluster, through the real `lab` binary:
//! NGINX on the lb board in front of two app boards (our `lab-agent app`), memcached, a
//! MariaDB primary and a replica. Real HTTP from the host to the LB: requests go round the
//! apps, a user signs up, logs in, posts and reads the post back at once, the second read
//! is a cache hit, anonymous reads come from the replica, bad input is refused with a JSON
//! error and writes nothing; switching the LB algorithm, draining an app and adding it back
//! take effect on `lab apply`, the drain with no failed request while `lab load` runs.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::{request, Answer};
use common::{app_password, describe, rewrite_roles, sql, wait_for, TestCluster};

fn served_by(a: &Answer) -> String {
    a.header("x-served-by").unwrap_or("?").to_string()
}

fn rows(cluster: &TestCluster, addr: &str, query: &str) -> String {
    sql(cluster, addr, query).unwrap_or_else(|e| panic!("{query}: {e}"))
}

#[test]
fn requests_through_the_lb_reach_apps_cache_and_replicas() {
    let cluster = TestCluster::with_board_lines(
        "q",
        &[
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("app-2", "native", "roles = [\"app\"]\n"),
            (
                "cache-1",
                "native",
                "roles = [\"cache\"]\nmemory = \"256MiB\"\n",
            ),
            ("db-1", "native", "roles = [\"db-master\"]\n"),
            ("db-2", "native", "roles = [\"db\"]\n"),
        ],
    );
    let addr = |name: &str| cluster.addr(name);
    let up = cluster.lab_ok(&["up"]);
    for (board, role) in [("lb-1", "lb"), ("app-1", "app"), ("app-2", "app")] {
        assert!(
            up.lines()
                .any(|l| l.contains(role) && l.contains(board) && l.contains("running")),
            "{board} {role} running in:\n{up}"
        );
    }
    let lb = format!("{}:80", addr("lb-1"));
    assert!(
        up.contains(&format!("curl -i http://{}/", addr("lb-1"))),
        "{up}"
    );
    let get = |path: &str, headers: &[(&str, &str)]| {
        request(&lb, "GET", path, headers, None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    };
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        request(&lb, "POST", path, headers, Some(body))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    };

    // 1. Successive requests go round the app boards.
    let seen: BTreeSet<String> = (0..6)
        .map(|_| {
            let a = get("/", &[]);
            assert_eq!(a.status, 200, "{a:?}");
            served_by(&a)
        })
        .collect();
    assert_eq!(
        seen,
        ["app-1", "app-2"].map(String::from).into_iter().collect(),
        "round robin over both apps"
    );
    // The stats page is for the agent only.
    assert_eq!(get("/_lab/stats", &[]).status, 404);

    // 2. Sign up, log in, who am I, post, read the own write at once, then from the cache.
    let a = post(
        "/api/signup",
        &[],
        r#"{"name":"ada","password":"correct horse"}"#,
    );
    assert_eq!(a.status, 201, "{a:?}");
    let uid = a.json()["id"].as_u64().expect("user id");
    let a = post(
        "/api/login",
        &[],
        r#"{"name":"ada","password":"correct horse"}"#,
    );
    assert_eq!(a.status, 200, "{a:?}");
    let token = a.json()["token"].as_str().expect("token").to_string();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let a = get("/api/whoami", &auth);
    assert_eq!(
        (a.status, a.json()["name"].as_str()),
        (200, Some("ada")),
        "{a:?}"
    );
    let a = post("/api/posts", &auth, r#"{"body":"hello, cluster"}"#);
    assert_eq!(a.status, 201, "{a:?}");
    assert!(
        a.header("x-db").is_some_and(|d| d == "primary db-1"),
        "writes go to the primary: {a:?}"
    );
    let pid = a.json()["id"].as_u64().expect("post id");
    let path = format!("/api/posts/{pid}");
    let first = get(&path, &auth);
    assert_eq!(first.status, 200, "own write visible at once: {first:?}");
    assert_eq!(first.json()["body"], "hello, cluster");
    assert_eq!(first.header("x-cache"), Some("MISS"), "{first:?}");
    let again = get(&path, &auth);
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.header("x-cache"), Some("HIT"), "{again:?}");

    // 3. The post is on the replica (the real client on the db board), and anonymous reads
    // are served by the replica.
    let db2 = addr("db-2");
    wait_for("the post on db-2", Duration::from_secs(30), || {
        match sql(
            &cluster,
            &db2,
            &format!("SELECT body FROM labapp.posts WHERE id = {pid}"),
        ) {
            Ok(r) if r == "hello, cluster" => Ok(()),
            Ok(r) => Err(format!("rows: {r:?}")),
            Err(e) => Err(e),
        }
    });
    let list = get(&format!("/api/users/{uid}/posts"), &[]);
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.json()[0]["id"].as_u64(), Some(pid), "{list:?}");
    assert_eq!(list.header("x-cache"), Some("MISS"), "{list:?}");
    if list.header("x-db") != Some("replica db-2") {
        for app in ["app-1", "app-2"] {
            let out = cluster.ssh(&addr(app), "tail -n 30 /var/log/lab/lab-app.log");
            eprintln!("{app}'s log:\n{}", describe(&out));
        }
        let out = cluster.ssh(&db2, "mariadb -S /var/lib/lab/db/mysqld.sock -e 'SHOW SLAVE STATUS\\G; SELECT user, host FROM mysql.user; SELECT @@gtid_slave_pos, @@gtid_binlog_pos' ; tail -n 40 /var/log/lab/*.log");
        eprintln!("db-2:\n{}", describe(&out));
        let out = cluster.ssh(
            &addr("app-1"),
            &format!(
                "MYSQL_PWD='{}' mariadb -h {db2} -u lab_app -e 'SELECT current_user()'",
                app_password(&cluster)
            ),
        );
        eprintln!("app-1 to db-2:\n{}", describe(&out));
    }
    assert_eq!(list.header("x-db"), Some("replica db-2"), "{list:?}");

    // 4. Bad input: a 4xx with a JSON error, and nothing written.
    let count = |table: &str| {
        rows(
            &cluster,
            &addr("db-1"),
            &format!("SELECT COUNT(*) FROM labapp.{table}"),
        )
    };
    let (users_before, posts_before) = (count("users"), count("posts"));
    let big = format!(r#"{{"body":"{}"}}"#, "x".repeat(20_000));
    let forged = format!("{}x", &token[..token.len() - 1]);
    let bad: Vec<(&str, Answer, u16)> = vec![
        (
            "malformed JSON",
            post("/api/posts", &auth, "{\"body\":"),
            400,
        ),
        (
            "missing field",
            post("/api/signup", &[], r#"{"name":"bob"}"#),
            400,
        ),
        ("oversized body", post("/api/posts", &auth, &big), 413),
        ("no token", post("/api/posts", &[], r#"{"body":"x"}"#), 401),
        (
            "forged token",
            post(
                "/api/posts",
                &[("Authorization", &format!("Bearer {forged}"))],
                r#"{"body":"x"}"#,
            ),
            401,
        ),
        ("unknown post", get("/api/posts/999999999", &[]), 404),
        (
            "name taken",
            post(
                "/api/signup",
                &[],
                r#"{"name":"ada","password":"another one"}"#,
            ),
            409,
        ),
        (
            "wrong password",
            post(
                "/api/login",
                &[],
                r#"{"name":"ada","password":"wrong horse"}"#,
            ),
            401,
        ),
    ];
    for (what, a, status) in &bad {
        // 413 may come from NGINX (client_max_body_size) or the app: both say so.
        assert_eq!(a.status, *status, "{what}: {a:?}");
        if *status != 413 {
            assert!(
                a.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{what}: JSON error expected: {a:?}"
            );
        }
    }
    assert_eq!(
        (count("users"), count("posts")),
        (users_before, posts_before)
    );

    // 5. The classroom switch: ip_hash sends one client to one app.
    let mut text = std::fs::read_to_string(&cluster.inventory).expect("inventory");
    text.push_str("\n[lb]\nalgorithm = \"ip-hash\"\n");
    std::fs::write(&cluster.inventory, &text).expect("inventory");
    let plan = cluster.lab_ok(&["plan"]);
    assert!(plan.contains("reload lb"), "{plan}");
    cluster.lab_ok(&["apply"]);
    wait_for("ip-hash in effect", Duration::from_secs(20), || {
        let seen: BTreeSet<String> = (0..8).map(|_| served_by(&get("/", &[]))).collect();
        if seen.len() == 1 {
            Ok(())
        } else {
            Err(format!("one client reached {seen:?}"))
        }
    });
    let text = text.replace("algorithm = \"ip-hash\"", "algorithm = \"round-robin\"");
    std::fs::write(&cluster.inventory, &text).expect("inventory");
    cluster.lab_ok(&["apply"]);

    // 6. Drain app-1 while `lab load` runs: no failed request, then only app-2 serves.
    let out_dir = cluster.dir.path().join("load");
    let url = format!("http://{lb}/");
    let load = {
        let inventory = cluster.inventory.clone();
        std::thread::spawn(move || {
            std::process::Command::new(common::LAB)
                .args(["load", "-i"])
                .arg(&inventory)
                .args([
                    "--url",
                    &url,
                    "--rate",
                    "40",
                    "--duration",
                    "12s",
                    "--users",
                    "4",
                ])
                .args(["--keys", "20", "--json", "--out"])
                .arg(&out_dir)
                .output()
                .expect("run lab load")
        })
    };
    // The drain starts once the load is flowing through app-1 (its own request counter).
    let app1 = format!("{}:8080", addr("app-1"));
    let start = request(&app1, "GET", "/_lab/stats", &[], None)
        .map(|a| a.json()["requests_total"].as_u64().unwrap_or(0))
        .expect("app-1 stats");
    wait_for("lab load reaching app-1", Duration::from_secs(30), || {
        let now = request(&app1, "GET", "/_lab/stats", &[], None)?.json()["requests_total"]
            .as_u64()
            .unwrap_or(0);
        // A load that ended early has failed: the assertions below say why.
        if now >= start + 60 || load.is_finished() {
            Ok(())
        } else {
            Err(format!("{} requests so far", now - start))
        }
    });
    rewrite_roles(&cluster, "app-1", "[]");
    cluster.lab_ok(&["apply"]);
    let out = load.join().expect("lab load thread");
    assert!(out.status.success(), "{}", describe(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert_eq!(
        summary["failed"], 0,
        "no failed request while draining: {summary}"
    );
    assert!(summary["ok"].as_u64().unwrap_or(0) > 200, "{summary}");
    let seen: BTreeSet<String> = (0..6).map(|_| served_by(&get("/", &[]))).collect();
    assert_eq!(seen, ["app-2"].map(String::from).into_iter().collect());

    // 7. Adding an app board back: after apply it serves again.
    rewrite_roles(&cluster, "app-1", "[\"app\"]");
    cluster.lab_ok(&["apply"]);
    let seen: BTreeSet<String> = (0..6).map(|_| served_by(&get("/", &[]))).collect();
    assert_eq!(
        seen,
        ["app-1", "app-2"].map(String::from).into_iter().collect()
    );
}

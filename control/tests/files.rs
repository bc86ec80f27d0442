//! The files and cdn roles on a virtual cluster: buckets placed on boards by purpose from the
//! inventory, our store (`lab-agent files`) run by each files board's agent, objects put and
//! read over real HTTP on the boards' addresses, a bucket only on its board, the size limit,
//! the objects still there after the board's power cycle; and a cdn board's edge in front of
//! them (MISS, then HIT) emptied by `lab cdn purge`.

mod common;

use std::time::Duration;

use common::http::request;
use common::{wait_for, TestCluster};

#[test]
fn buckets_live_on_the_boards_the_inventory_names_and_an_edge_caches_them() {
    let cluster = TestCluster::with_board_lines(
        "s",
        &[
            ("files-1", "native", "roles = [\"files\"]\n"),
            ("files-2", "native", "roles = [\"files\"]\n"),
            ("cdn-1", "native", "roles = [\"cdn\"]\n"),
            ("cdn-2", "native", "roles = [\"cdn\"]\n"),
            ("lb-1", "native", "roles = [\"lb\"]\n"),
            ("app-1", "native", "roles = [\"app\"]\n"),
            ("db-1", "native", "roles = [\"db-master\"]\n"),
        ],
    );
    cluster.append_inventory(
        "\n[files.avatars]\nboard = \"files-1\"\nmax_object = \"64KiB\"\n\n\
         [files.videos]\nboard = \"files-2\"\nreplica = \"files-1\"\n\n\
         [cdn.regions]\neu = \"cdn-1\"\nus = \"cdn-2\"\n",
    );
    let up = cluster.lab_ok(&["up"]);
    let plan = cluster.lab_ok(&["plan"]);
    assert!(
        plan.contains("buckets by purpose: avatars on files-1, videos on files-2"),
        "{plan}\n{up}"
    );
    let one = format!("{}:8070", cluster.addr("files-1"));
    let two = format!("{}:8070", cluster.addr("files-2"));
    let body = "a small avatar";
    let put = request(
        &one,
        "PUT",
        "/avatars/users/7.txt",
        &[("Content-Type", "text/plain")],
        Some(body),
    )
    .expect("PUT");
    assert_eq!(put.status, 201, "{put:?}");
    let get = request(&one, "GET", "/avatars/users/7.txt", &[], None).expect("GET");
    assert_eq!((get.status, get.body.as_str()), (200, body), "{get:?}");
    assert_eq!(get.header("x-served-by"), Some("files-1"));
    assert_eq!(get.header("content-type"), Some("text/plain"));
    // The bucket lives on files-1 only; videos on files-2.
    let elsewhere = request(&two, "GET", "/avatars/users/7.txt", &[], None).expect("GET");
    assert_eq!(elsewhere.status, 404, "{elsewhere:?}");
    let video = request(&two, "PUT", "/videos/intro.mp4", &[], Some("frames")).expect("PUT");
    assert_eq!(video.status, 201, "{video:?}");
    // videos is replicated on files-1: there too once the write is answered.
    assert_eq!(video.header("x-lab-replicated"), Some("yes"), "{video:?}");
    let copy = request(&one, "GET", "/videos/intro.mp4", &[], None).expect("GET");
    assert_eq!(
        (copy.status, copy.body.as_str()),
        (200, "frames"),
        "{copy:?}"
    );
    // Over the bucket's limit, and a key that tries to leave the bucket.
    let big = "x".repeat(64 * 1024 + 1);
    let refused = request(&one, "PUT", "/avatars/big", &[], Some(&big)).expect("PUT");
    assert_eq!(refused.status, 413, "{refused:?}");
    let escape = request(&one, "PUT", "/avatars/%2e%2e/%2e%2e/x", &[], Some("x")).expect("PUT");
    assert_eq!(escape.status, 400, "{escape:?}");

    // The edge: the avatar from files-1 and the video from files-2, MISS then HIT.
    let edge = format!("{}:8090", cluster.addr("cdn-1"));
    for (path, want) in [
        ("/avatars/users/7.txt", body),
        ("/videos/intro.mp4", "frames"),
    ] {
        let miss = request(&edge, "GET", path, &[], None).expect("GET via the edge");
        assert_eq!((miss.status, miss.body.as_str()), (200, want), "{miss:?}");
        assert_eq!(miss.header("x-cache"), Some("MISS"), "{miss:?}");
        assert_eq!(miss.header("x-served-by"), Some("cdn-1"));
        let hit = request(&edge, "GET", path, &[], None).expect("GET via the edge");
        assert_eq!(hit.header("x-cache"), Some("HIT"), "{hit:?}");
    }
    let purged = cluster.lab_ok(&["cdn", "purge", "--prefix", "/avatars/"]);
    assert!(purged.contains("cdn-1: 1 object(s) purged"), "{purged}");
    let after = request(&edge, "GET", "/avatars/users/7.txt", &[], None).expect("GET");
    assert_eq!(after.header("x-cache"), Some("MISS"), "{after:?}");
    let video = request(&edge, "GET", "/videos/intro.mp4", &[], None).expect("GET");
    assert_eq!(
        video.header("x-cache"),
        Some("HIT"),
        "only /avatars/ was purged"
    );
    let bad = cluster.lab(&["cdn", "purge", "--prefix", "avatars"]);
    assert!(!bad.status.success());

    // Uploaded through the LB and the app, stored by files-1, served by the edge.
    let lb = format!("{}:80", cluster.addr("lb-1"));
    let user = r#"{"name":"uploader","password":"correct horse"}"#;
    let a = request(&lb, "POST", "/api/signup", &[], Some(user)).expect("signup");
    assert_eq!(a.status, 201, "{a:?}");
    let a = request(&lb, "POST", "/api/login", &[], Some(user)).expect("login");
    let bearer = format!("Bearer {}", a.json()["token"].as_str().expect("token"));
    let auth = [("Authorization", bearer.as_str())];
    let up = request(
        &lb,
        "PUT",
        "/api/files/avatars/me.png",
        &auth,
        Some("png bytes"),
    )
    .expect("upload");
    assert_eq!(up.status, 201, "{up:?}");
    let url = up.json()["url"].as_str().expect("url").to_string();
    let user_id = a.json()["user"]["id"].as_u64().unwrap_or(1);
    assert!(
        url.starts_with(&format!("http://{edge}/avatars/users/")) && url.ends_with("/me.png"),
        "{url} (user {user_id})"
    );
    let path = url.trim_start_matches(&format!("http://{edge}"));
    let miss = request(&edge, "GET", path, &[], None).expect("GET the upload");
    assert_eq!((miss.status, miss.body.as_str()), (200, "png bytes"));
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    let hit = request(&edge, "GET", path, &[], None).expect("GET the upload");
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    // Refused through the app with the store's words: too large, no such bucket, a bad name,
    // no login.
    let big = "x".repeat(64 * 1024 + 1);
    let a = request(&lb, "PUT", "/api/files/avatars/big.png", &auth, Some(&big)).expect("PUT");
    assert_eq!(a.status, 413, "{a:?}");
    let a = request(&lb, "PUT", "/api/files/nope/x.png", &auth, Some("x")).expect("PUT");
    assert_eq!(a.status, 404, "{a:?}");
    let a = request(&lb, "PUT", "/api/files/avatars/..", &auth, Some("x")).expect("PUT");
    assert_eq!(a.status, 400, "{a:?}");
    let a = request(&lb, "PUT", "/api/files/avatars/x.png", &[], Some("x")).expect("PUT");
    assert_eq!(a.status, 401, "{a:?}");
    // What is not a bucket comes from the LB through the edge, never kept (the app's
    // answers are dynamic and give no lifetime).
    for _ in 0..2 {
        let page = request(&edge, "GET", "/", &[], None).expect("GET / via the edge");
        assert_eq!(page.status, 200, "{page:?}");
        assert_eq!(page.header("x-served-by"), Some("cdn-1"));
        assert_eq!(page.header("x-cache"), Some("MISS"), "{page:?}");
    }

    // Power cycle: the agent brings the store back with its objects.
    cluster.lab_ok(&["restart", "files-1"]);
    let again = wait_for(
        "the avatar after files-1's restart",
        Duration::from_secs(60),
        || {
            let a = request(&one, "GET", "/avatars/users/7.txt", &[], None)?;
            if a.status == 200 {
                Ok(a)
            } else {
                Err(format!("{a:?}"))
            }
        },
    );
    assert_eq!(again.body, body);
    wait_for(
        "files-1 running its buckets again",
        Duration::from_secs(30),
        || {
            let status = cluster.status_json().to_string();
            if status.contains("buckets: avatars (objects up to 64 KiB)") {
                Ok(())
            } else {
                Err(status)
            }
        },
    );

    // Users of region eu go through cdn-1; when it dies, through us's edge.
    let out_dir = cluster.dir.path().join("load");
    let inventory = cluster.inventory.clone();
    let load = std::thread::spawn(move || {
        std::process::Command::new(common::LAB)
            .args(["load", "-i"])
            .arg(&inventory)
            .args([
                "--region",
                "eu",
                "--rate",
                "40",
                "--duration",
                "12s",
                "--timeout",
                "1s",
            ])
            .args([
                "--users",
                "2",
                "--keys",
                "10",
                "--read-ratio",
                "1",
                "--json",
                "--out",
            ])
            .arg(&out_dir)
            .output()
            .expect("run lab load")
    });
    wait_for("lab load through cdn-1", Duration::from_secs(30), || {
        let a = request(&edge, "GET", "/_lab/stats", &[], None)?;
        let n = a.json()["requests_total"].as_u64().unwrap_or(0);
        if n >= 80 {
            Ok(())
        } else {
            Err(format!("{n} requests so far"))
        }
    });
    cluster.lab_ok(&["kill", "cdn-1"]);
    let out = load.join().expect("lab load thread");
    assert!(out.status.success(), "{}", common::describe(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::describe(&out)));
    let served = &summary["served_by"];
    println!(
        "lab load --region eu through cdn-1's kill: ok {} failed {} served by {served}; errors {}",
        summary["ok"], summary["failed"], summary["errors"]
    );
    assert!(served["cdn-1"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(
        served["cdn-2"].as_u64().unwrap_or(0) > 100,
        "the us edge took over: {summary}"
    );
    assert!(summary["ok"].as_u64().unwrap_or(0) > 300, "{summary}");
}

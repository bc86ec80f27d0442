//! The CDN edge (`lab-agent cdn`) in front of a real file store (`lab-agent files`), both in
//! this process on loopback, over real HTTP: MISS then HIT; twenty concurrent misses of one
//! key make one origin fetch; after the TTL a conditional fetch (304) makes it REVALIDATED,
//! and a changed object comes back new; purge by prefix; ranges and objects over the edge's
//! limit pass through; with the origin gone a stale copy is served (STALE) within the bound,
//! then 502.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::plain_http::{request, Answer, FilesServer};
use hyper::StatusCode;
use lab_api::spec::{CdnConfig, CdnOrigin};
use tokio_util::sync::CancellationToken;

struct Edge {
    addr: SocketAddr,
    admin: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Edge {
    async fn start(origin: SocketAddr, ttl_secs: u32, stale_secs: u32) -> Edge {
        Edge::start_with(origin, None, ttl_secs, stale_secs).await
    }

    async fn start_with(
        origin: SocketAddr,
        replica: Option<SocketAddr>,
        ttl_secs: u32,
        stale_secs: u32,
    ) -> Edge {
        let clients = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (addr, admin_addr) = (
            clients.local_addr().expect("addr"),
            admin.local_addr().expect("addr"),
        );
        let config = CdnConfig {
            board: "cdn-test".into(),
            bind: "127.0.0.1".into(),
            port: addr.port(),
            admin_port: admin_addr.port(),
            memory_bytes: 1 << 20,
            policy: "s3-fifo".into(),
            default_ttl_secs: ttl_secs,
            stale_if_error_secs: stale_secs,
            max_object_bytes: 64 * 1024,
            origins: vec![CdnOrigin {
                bucket: "avatars".into(),
                board: "files-test".into(),
                host: origin.ip().to_string(),
                port: origin.port(),
                replica: replica.map(|r| r.to_string()),
            }],
            fallback: None,
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task =
            tokio::spawn(async move { lab_agent::cdn::serve(clients, admin, config, token).await });
        Edge {
            addr,
            admin: admin_addr,
            stop,
            task,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        request(self.addr, "GET", path, headers, vec![]).await
    }

    async fn stats(&self) -> serde_json::Value {
        let a = request(self.addr, "GET", "/_lab/stats", &[], vec![]).await;
        serde_json::from_slice(&a.body).expect("stats JSON")
    }

    async fn stop(self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the edge stops");
        ended.expect("task").expect("served without error");
    }
}

/// Polls `check` every 50 ms until it gives Some, at most `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hits_misses_single_flight_revalidation_purge_and_pass_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = FilesServer::start(dir.path(), &[("avatars", 1 << 20)]).await;
    let edge = Edge::start(files.addr, 1, 60).await;
    let put = |path: &'static str, body: Vec<u8>| {
        let addr = files.addr;
        async move {
            let a = request(addr, "PUT", path, &[("content-type", "image/png")], body).await;
            assert_eq!(a.status, StatusCode::CREATED);
        }
    };
    put("/avatars/a.png", b"first".to_vec()).await;

    let miss = edge.get("/avatars/a.png", &[]).await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert_eq!(miss.header("x-served-by"), Some("cdn-test"));
    assert_eq!(miss.header("content-type"), Some("image/png"));
    assert_eq!(miss.body.as_ref(), b"first");
    let hit = edge.get("/avatars/a.png", &[]).await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.body.as_ref(), b"first");
    let etag = hit.header("etag").expect("ETag").to_string();
    let same = edge
        .get("/avatars/a.png", &[("if-none-match", &etag)])
        .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);

    // Twenty clients miss the same key at once: one origin fetch.
    put("/avatars/crowd.png", vec![7u8; 30_000]).await;
    let before = edge.stats().await["origin_fetches_total"]
        .as_u64()
        .unwrap_or(0);
    let crowd: Vec<_> = (0..20)
        .map(|_| {
            let addr = edge.addr;
            tokio::spawn(
                async move { request(addr, "GET", "/avatars/crowd.png", &[], vec![]).await },
            )
        })
        .collect();
    for c in crowd {
        let a = c.await.expect("client");
        assert_eq!((a.status, a.body.len()), (StatusCode::OK, 30_000));
    }
    let after = edge.stats().await["origin_fetches_total"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        after - before,
        1,
        "twenty concurrent misses, one origin fetch"
    );

    // After the TTL (1 s): a conditional fetch, 304, served as REVALIDATED.
    until("a revalidation", Duration::from_secs(10), || async {
        let a = edge.get("/avatars/a.png", &[]).await;
        (a.header("x-cache") == Some("REVALIDATED")).then_some(())
    })
    .await;
    // Changed at the origin: after the TTL the new bytes come back.
    put("/avatars/a.png", b"second".to_vec()).await;
    let fresh = until("the new object", Duration::from_secs(10), || async {
        let a = edge.get("/avatars/a.png", &[]).await;
        (a.body.as_ref() == b"second").then_some(a)
    })
    .await;
    assert_eq!(fresh.header("x-cache"), Some("MISS"));

    // Purge by prefix on the admin port: the next GET misses.
    let hit = edge.get("/avatars/crowd.png", &[]).await;
    assert_ne!(hit.header("x-cache"), Some("MISS"));
    let purge = request(
        edge.admin,
        "POST",
        "/_lab/purge?prefix=/avatars/",
        &[],
        vec![],
    )
    .await;
    assert_eq!(purge.status, StatusCode::OK);
    let purged: serde_json::Value = serde_json::from_slice(&purge.body).expect("JSON");
    assert_eq!(purged["purged"], 2, "{purged}");
    let after_purge = edge.get("/avatars/crowd.png", &[]).await;
    assert_eq!(after_purge.header("x-cache"), Some("MISS"));
    // Purges are not for clients (not a bucket; no fallback origin in this test), and a
    // bucket object is not written through the edge.
    let refused = request(edge.addr, "POST", "/_lab/purge?prefix=/", &[], vec![]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let refused = request(edge.addr, "PUT", "/avatars/a.png", &[], b"x".to_vec()).await;
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);

    // A range and an object over the edge's 64 KiB limit go through, never kept.
    let part = edge
        .get("/avatars/crowd.png", &[("range", "bytes=0-9")])
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body.len(), 10);
    put("/avatars/big.png", vec![1u8; 100_000]).await;
    for _ in 0..2 {
        let big = edge.get("/avatars/big.png", &[]).await;
        assert_eq!((big.status, big.body.len()), (StatusCode::OK, 100_000));
        assert_eq!(big.header("x-cache"), Some("MISS"));
    }
    // No origin for this path (no fallback configured), and a missing object.
    assert_eq!(
        edge.get("/other/x", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        edge.get("/avatars/none.png", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let stats = edge.stats().await;
    assert!(stats["hits_total"].as_u64().unwrap_or(0) >= 2, "{stats}");
    assert_eq!(stats["policy"], "s3-fifo");
    edge.stop().await;
    files.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_gone_a_stale_copy_is_served_within_its_bound_then_502() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = FilesServer::start(dir.path(), &[("avatars", 1 << 20)]).await;
    let a = request(files.addr, "PUT", "/avatars/s.png", &[], b"kept".to_vec()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    // Fresh for 1 s, then served stale for 2 s more while the origin fails.
    let edge = Edge::start(files.addr, 1, 2).await;
    let miss = edge.get("/avatars/s.png", &[]).await;
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    files.stop().await;
    let stale = until("a stale answer", Duration::from_secs(5), || async {
        let a = edge.get("/avatars/s.png", &[]).await;
        (a.header("x-cache") == Some("STALE")).then_some(a)
    })
    .await;
    assert_eq!(
        (stale.status, stale.body.as_ref()),
        (StatusCode::OK, &b"kept"[..])
    );
    let gone = until(
        "the stale bound to pass",
        Duration::from_secs(10),
        || async {
            let a = edge.get("/avatars/s.png", &[]).await;
            (a.status == StatusCode::BAD_GATEWAY).then_some(a)
        },
    )
    .await;
    let error: serde_json::Value = serde_json::from_slice(&gone.body).expect("JSON error");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("origin")),
        "{error}"
    );
    let stats = edge.stats().await;
    assert!(stats["stale_total"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(
        stats["origin_errors_total"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    edge.stop().await;
}

/// A bucket on two boards: each write and delete taken by one is on the other when it is
/// answered (`X-Lab-Replicated: yes`); with the other gone the write stands (`no`); and the
/// edge reads from the replica when the first board is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_bucket_is_written_to_both_and_read_from_either() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let la = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (a_addr, b_addr) = (la.local_addr().expect("a"), lb.local_addr().expect("b"));
    let a = FilesServer::start_on(
        la,
        "files-a",
        dir_a.path(),
        &[("avatars", 1 << 20, Some(b_addr.to_string()))],
    );
    let b = FilesServer::start_on(
        lb,
        "files-b",
        dir_b.path(),
        &[("avatars", 1 << 20, Some(a_addr.to_string()))],
    );
    let put = request(
        a.addr,
        "PUT",
        "/avatars/intro.mp4",
        &[("content-type", "video/mp4")],
        b"frames".to_vec(),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(put.header("x-lab-replicated"), Some("yes"));
    let on_b = request(b.addr, "GET", "/avatars/intro.mp4", &[], vec![]).await;
    assert_eq!(
        (on_b.status, on_b.body.as_ref()),
        (StatusCode::OK, &b"frames"[..])
    );
    assert_eq!(on_b.header("content-type"), Some("video/mp4"));
    assert_eq!(on_b.header("etag"), put.header("etag"), "the same bytes");
    // Written on b, read on a; deleted on a, gone from b.
    let put = request(b.addr, "PUT", "/avatars/two.mp4", &[], b"more".to_vec()).await;
    assert_eq!(put.header("x-lab-replicated"), Some("yes"));
    let on_a = request(a.addr, "GET", "/avatars/two.mp4", &[], vec![]).await;
    assert_eq!(on_a.body.as_ref(), b"more");
    let gone = request(a.addr, "DELETE", "/avatars/two.mp4", &[], vec![]).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(gone.header("x-lab-replicated"), Some("yes"));
    let on_b = request(b.addr, "GET", "/avatars/two.mp4", &[], vec![]).await;
    assert_eq!(on_b.status, StatusCode::NOT_FOUND);

    // The edge, told a first and b as its replica, reads from b once a is gone.
    let edge = Edge::start_with(a_addr, Some(b_addr), 60, 60).await;
    a.stop().await;
    let via_replica = edge.get("/avatars/intro.mp4", &[]).await;
    assert_eq!(
        (via_replica.status, via_replica.body.as_ref()),
        (StatusCode::OK, &b"frames"[..])
    );
    assert_eq!(via_replica.header("x-cache"), Some("MISS"));
    edge.stop().await;

    // With its other board gone, a write on b stands, marked as not replicated.
    let alone = request(b.addr, "PUT", "/avatars/alone.mp4", &[], b"x".to_vec()).await;
    assert_eq!(alone.status, StatusCode::CREATED);
    assert_eq!(alone.header("x-lab-replicated"), Some("no"));
    b.stop().await;
}

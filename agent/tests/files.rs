//! The file store (`lab-agent files`) over real HTTP on loopback, in this process: objects
//! go in and come out whole (streamed), with Content-Type, ETag, HEAD, single ranges (206,
//! 416) and revalidation (304); a replaced object is replaced whole; bad keys, unknown
//! buckets and oversize uploads (declared or streamed) are refused with nothing left behind;
//! a full disk (a 512 KiB tmpfs) is 507 with nothing half-written.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::plain_http::{request, FilesServer as Server};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A chunked PUT of `chunks` chunks of `size` bytes over a raw connection (no
/// Content-Length, so only the streamed count can catch it); the status code answered.
async fn chunked_put(addr: SocketAddr, path: &str, chunks: usize, size: usize) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'x'; size];
    for _ in 0..chunks {
        // The server may answer 413 and close before everything is sent.
        if tcp
            .write_all(format!("{size:x}\r\n").as_bytes())
            .await
            .is_err()
            || tcp.write_all(&chunk).await.is_err()
            || tcp.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).unwrap_or("").to_string()
}

/// Files left in the store's temp directories, and blobs in the bucket.
fn leftovers(data: &Path, bucket: &str) -> (usize, usize) {
    let count = |sub: &str| {
        std::fs::read_dir(data.join(bucket).join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    (count("tmp"), count("blobs"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_go_in_and_come_out_whole_with_ranges_and_etags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[("avatars", 1 << 20), ("videos", 8 << 20)]).await;
    let addr = server.addr;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let put = request(
        addr,
        "PUT",
        "/avatars/users/42/me.png",
        &[("content-type", "image/png")],
        data.clone(),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    let etag = put.header("etag").expect("ETag").to_string();
    assert_eq!(put.header("x-served-by"), Some("files-test"));

    let get = request(addr, "GET", "/avatars/users/42/me.png", &[], vec![]).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body.as_ref(), data.as_slice());
    assert_eq!(get.header("content-type"), Some("image/png"));
    assert_eq!(get.header("content-length"), Some("100000"));
    assert_eq!(get.header("etag"), Some(etag.as_str()));
    assert_eq!(get.header("accept-ranges"), Some("bytes"));

    let head = request(addr, "HEAD", "/avatars/users/42/me.png", &[], vec![]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("100000"));
    assert!(head.body.is_empty());

    let part = request(
        addr,
        "GET",
        "/avatars/users/42/me.png",
        &[("range", "bytes=1000-1999")],
        vec![],
    )
    .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body.as_ref(), &data[1000..2000]);
    assert_eq!(part.header("content-range"), Some("bytes 1000-1999/100000"));
    let tail = request(
        addr,
        "GET",
        "/avatars/users/42/me.png",
        &[("range", "bytes=-10")],
        vec![],
    )
    .await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.body.as_ref(), &data[99_990..]);
    let beyond = request(
        addr,
        "GET",
        "/avatars/users/42/me.png",
        &[("range", "bytes=200000-")],
        vec![],
    )
    .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.header("content-range"), Some("bytes */100000"));

    let same = request(
        addr,
        "GET",
        "/avatars/users/42/me.png",
        &[("if-none-match", etag.as_str())],
        vec![],
    )
    .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert!(same.body.is_empty());

    // Replaced whole: the new bytes, a new ETag, the old one no longer matches.
    let put = request(
        addr,
        "PUT",
        "/avatars/users/42/me.png",
        &[],
        b"new".to_vec(),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let get = request(
        addr,
        "GET",
        "/avatars/users/42/me.png",
        &[("if-none-match", etag.as_str())],
        vec![],
    )
    .await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body.as_ref(), b"new");
    assert_eq!(get.header("content-type"), Some("application/octet-stream"));
    assert_ne!(get.header("etag"), Some(etag.as_str()));
    // A key and a key under it live side by side.
    let under = request(
        addr,
        "PUT",
        "/avatars/users/42/me.png/small",
        &[],
        b"s".to_vec(),
    )
    .await;
    assert_eq!(under.status, StatusCode::CREATED);
    let get = request(addr, "GET", "/avatars/users/42/me.png", &[], vec![]).await;
    assert_eq!(get.body.as_ref(), b"new");

    let gone = request(addr, "DELETE", "/avatars/users/42/me.png", &[], vec![]).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let get = request(addr, "GET", "/avatars/users/42/me.png", &[], vec![]).await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    let again = request(addr, "DELETE", "/avatars/users/42/me.png", &[], vec![]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        leftovers(dir.path(), "avatars"),
        (0, 1),
        "only users/42/me.png/small"
    );

    let stats = request(addr, "GET", "/_lab/stats", &[], vec![]).await;
    let stats: serde_json::Value = serde_json::from_slice(&stats.body).expect("stats JSON");
    assert_eq!(stats["buckets"]["avatars"]["objects"], 1);
    assert!(stats["bytes_out_total"].as_u64().unwrap_or(0) >= 100_000 + 1000 + 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_unknown_buckets_and_oversize_uploads_leave_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[("avatars", 64 * 1024)]).await;
    let addr = server.addr;
    for (path, status) in [
        ("/avatars/%2e%2e/%2e%2e/etc/passwd", StatusCode::BAD_REQUEST),
        ("/avatars/..%2F..%2Fetc%2Fpasswd", StatusCode::BAD_REQUEST),
        ("/avatars/a/../../b", StatusCode::BAD_REQUEST),
        ("/avatars/a//b", StatusCode::BAD_REQUEST),
        ("/avatars/a%00b", StatusCode::BAD_REQUEST),
        ("/avatars/%2Fetc%2Fpasswd", StatusCode::BAD_REQUEST),
        ("/Avatars/x", StatusCode::BAD_REQUEST),
        ("/videos/x", StatusCode::NOT_FOUND),
    ] {
        let a = request(addr, "PUT", path, &[], b"x".to_vec()).await;
        assert_eq!(a.status, status, "PUT {path}: {:?}", a.body);
        let error: serde_json::Value = serde_json::from_slice(&a.body).expect("JSON error");
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }
    // Over the limit: declared (Content-Length), then streamed (chunked).
    let big = request(addr, "PUT", "/avatars/big", &[], vec![0u8; 64 * 1024 + 1]).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(chunked_put(addr, "/avatars/big", 20, 8192).await, "413");
    let fits = request(addr, "PUT", "/avatars/fits", &[], vec![1u8; 64 * 1024]).await;
    assert_eq!(fits.status, StatusCode::CREATED);
    assert_eq!(chunked_put(addr, "/avatars/chunked", 4, 1000).await, "201");
    let get = request(addr, "GET", "/avatars/big", &[], vec![]).await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    assert_eq!(leftovers(dir.path(), "avatars"), (0, 2));
    // Nothing was ever written outside the store.
    assert!(!dir.path().join("etc").exists());
    server.stop().await;
}

/// Unmounts the tmpfs at its path, also when the test fails.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_507_and_nothing_half_written_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "lab-files-test"])
        .arg(&data)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (run the suite as root)"
    );
    let _unmount = Tmpfs(data.clone());
    let server = Server::start(&data, &[("videos", 8 << 20)]).await;
    let addr = server.addr;
    let small = request(addr, "PUT", "/videos/small", &[], vec![7u8; 100 * 1024]).await;
    assert_eq!(small.status, StatusCode::CREATED);
    let full = request(addr, "PUT", "/videos/huge", &[], vec![9u8; 1024 * 1024]).await;
    assert_eq!(
        full.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{:?}",
        full.body
    );
    let error: serde_json::Value = serde_json::from_slice(&full.body).expect("JSON error");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("disk is full")),
        "{error}"
    );
    assert_eq!(
        leftovers(&data, "videos"),
        (0, 1),
        "the huge upload's temp file removed"
    );
    let get = request(addr, "GET", "/videos/huge", &[], vec![]).await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    let get = request(addr, "GET", "/videos/small", &[], vec![]).await;
    assert_eq!(get.body.len(), 100 * 1024);
    // The room is back: the next upload that fits goes in.
    let again = request(addr, "PUT", "/videos/again", &[], vec![1u8; 100 * 1024]).await;
    assert_eq!(again.status, StatusCode::CREATED);
    server.stop().await;
}

//! Role collectors against real engines: a `memcached`, an `nginx` and a `mariadbd` started
//! through the agent's engine module (each the leader of its own process group, in temp dirs,
//! on unique loopback addresses), exercised with real requests; the collectors' figures must
//! move accordingly. Every test stops its engine whole at the end and checks that nothing of
//! it is left; a failing test's engine is SIGKILLed with its whole group when dropped.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::engines::{self, stop_whole};
use lab_agent::collect::Collector;
use lab_agent::engine::{EngineCommand, EngineProcess, StopMode, StopSignals};
use lab_api::metrics::RoleSample;
use lab_api::CollectorConfig;
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(role: &str, engine: &str, address: String) -> CollectorConfig {
    CollectorConfig {
        role: lab_api::Role::parse(role).expect("a role name"),
        engine: lab_api::Engine::parse(engine).expect("an engine name"),
        address,
    }
}

fn figure(sample: &RoleSample, name: &str) -> f64 {
    sample
        .figures
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no figure {name} in {sample:?}"))
        .value
}

/// Collects until the engine is up (it may still be starting), at most 20 s.
async fn collect_up(collector: &mut Collector, engine: &mut EngineProcess) -> RoleSample {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sample = collector.collect().await;
        if sample.up {
            return sample;
        }
        if let Some(status) = engine.try_exited().expect("engine status") {
            panic!("{} exited early: {status}", engine.name());
        }
        assert!(
            Instant::now() < deadline,
            "{} never answered: {sample:?}",
            engine.name()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn memcached_command(addr: &str, command: &[u8], until: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect memcached");
    stream.write_all(command).await.expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(until) {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "memcached closed: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    answer
}

#[tokio::test]
async fn memcached_figures_follow_sets_and_gets() {
    let listen = engines::unique_loopback();
    let mut engine = engines::start(engines::memcached(listen));
    let addr = listen.to_string();
    let mut collector = Collector::new(config("cache", "memcached", addr.clone()));
    let before = collect_up(&mut collector, &mut engine).await;
    assert_eq!(before.engine, lab_api::Engine::Memcached);

    memcached_command(&addr, b"set k 0 0 5\r\nhello\r\n", b"STORED\r\n").await;
    memcached_command(&addr, b"get k\r\n", b"END\r\n").await;
    memcached_command(&addr, b"get missing\r\n", b"END\r\n").await;

    let after = collector.collect().await;
    assert!(after.up);
    assert_eq!(
        figure(&after, "cmd_set_total") - figure(&before, "cmd_set_total"),
        1.0
    );
    assert_eq!(
        figure(&after, "get_hits_total") - figure(&before, "get_hits_total"),
        1.0
    );
    assert_eq!(
        figure(&after, "get_misses_total") - figure(&before, "get_misses_total"),
        1.0
    );
    assert_eq!(figure(&after, "curr_items"), 1.0);
    assert!(figure(&after, "bytes") > 0.0);
    assert!(figure(&after, "limit_maxbytes") > 0.0);

    stop_whole(&mut engine, StopMode::Graceful).await;
    let down = collector.collect().await;
    assert!(!down.up);
    assert!(down.figures.is_empty());
}

#[tokio::test]
async fn nginx_requests_are_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = engines::unique_loopback();
    let mut engine = engines::start(engines::nginx(dir.path(), listen, 2));
    let url = format!("http://{listen}/stub_status");
    let mut collector = Collector::new(config("lb", "nginx", url));
    let before = collect_up(&mut collector, &mut engine).await;

    const N: f64 = 5.0;
    for _ in 0..N as usize {
        let (status, body) = engines::http_get(listen, "/").await.expect("GET /");
        assert!(status.starts_with("HTTP/1.1 200"), "{status} {body}");
    }

    let after = collector.collect().await;
    assert!(after.up);
    let requests = figure(&after, "requests_total") - figure(&before, "requests_total");
    assert!(
        requests >= N,
        "requests_total grew by {requests}, expected >= {N}"
    );
    assert!(figure(&after, "accepts_total") - figure(&before, "accepts_total") >= N);
    assert!(figure(&after, "handled_total") >= figure(&after, "accepts_total") - 0.5);
    assert!(figure(&after, "active_connections") >= 1.0);
    assert!(figure(&after, "writing") >= 1.0);

    stop_whole(&mut engine, StopMode::Graceful).await;
    engines::assert_refused(listen).await;
    assert!(!collector.collect().await.up);
}

#[tokio::test]
async fn mariadb_status_over_unix_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let socket = dir.path().join("sock");
    engines::ensure_engines();
    let install = Command::new("/usr/bin/mariadb-install-db")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--auth-root-authentication-method=socket",
            "--user=root",
            "--skip-test-db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("mariadb-install-db missing: apt-get install -y mariadb-server");
    assert!(
        install.status.success(),
        "mariadb-install-db failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let mut engine = engines::start(
        EngineCommand::new("mariadbd", "/usr/sbin/mariadbd", StopSignals::MARIADB)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args([
                "--skip-networking",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .log_to(dir.path().join("mariadbd.log")),
    );

    let address = format!("root@{}", socket.display());
    let mut collector = Collector::new(config("db-master", "mariadb", address));
    let before = collect_up(&mut collector, &mut engine).await;
    assert_eq!(figure(&before, "read_only"), 0.0);
    assert_eq!(figure(&before, "replica"), 0.0);
    assert!(figure(&before, "threads_connected") >= 1.0);
    assert!(before.labels.iter().any(|(k, _)| k == "gtid_current_pos"));

    // A user with a password, over the same socket (mysql_native_password, MariaDB's
    // default), created through mysql_async as root by unix_socket.
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("root"));
    let mut root = mysql_async::Conn::new(opts)
        .await
        .expect("root via unix_socket");
    root.query_drop("CREATE USER lab@localhost IDENTIFIED BY 'pa:ss@word'")
        .await
        .expect("create user");
    root.query_drop("GRANT PROCESS, SLAVE MONITOR ON *.* TO lab@localhost")
        .await
        .expect("grant");
    let row: Option<(Option<String>, Option<String>)> = root
        .query_first("SELECT 1 + 1, NULL")
        .await
        .expect("select");
    assert_eq!(row, Some((Some("2".to_string()), None)));
    root.disconnect().await.expect("disconnect");

    let address = format!("lab:pa:ss@word@{}", socket.display());
    let mut with_password = Collector::new(config("db-master", "mariadb", address));
    let after = with_password.collect().await;
    assert!(after.up, "password login failed");
    assert!(figure(&after, "queries_total") > figure(&before, "queries_total"));

    let wrong = format!("lab:nope@{}", socket.display());
    assert!(
        !Collector::new(config("db-master", "mariadb", wrong))
            .collect()
            .await
            .up
    );

    stop_whole(&mut engine, StopMode::Graceful).await;
    assert!(
        !socket.exists(),
        "mariadbd removes its socket on a clean shutdown"
    );
}

//! Role collectors against real engines: a `memcached`, an `nginx` and a `mariadbd` started
//! as children of the test (killed by a drop guard, in temp dirs, on free ports), exercised
//! with real requests; the collectors' figures must move accordingly.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab_agent::collect::{mysql, Collector};
use lab_api::metrics::RoleSample;
use lab_api::CollectorConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A child process killed (and reaped) when dropped, even if the test panics.
struct Engine {
    child: Child,
    name: &'static str,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program`; its stderr goes to `log` when given (engines that chatter).
fn start(name: &'static str, program: &str, args: &[&str]) -> Engine {
    start_logged(name, program, args, None)
}

fn start_logged(name: &'static str, program: &str, args: &[&str], log: Option<&Path>) -> Engine {
    lab::host_setup::ensure(lab::host_setup::ENGINES, &mut |l: &str| eprintln!("{l}"))
        .expect("installing the role engines (run the tests as root)");
    assert!(
        Path::new(program).exists(),
        "{program} missing: apt-get install -y nginx-light memcached mariadb-server"
    );
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("engine log")),
            None => Stdio::inherit(),
        })
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));
    Engine { child, name }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

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
async fn collect_up(collector: &mut Collector, engine: &mut Engine) -> RoleSample {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sample = collector.collect().await;
        if sample.up {
            return sample;
        }
        if let Ok(Some(status)) = engine.child.try_wait() {
            panic!("{} exited early: {status}", engine.name);
        }
        assert!(
            Instant::now() < deadline,
            "{} never answered: {sample:?}",
            engine.name
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
    let port = free_port().to_string();
    let mut engine = start(
        "memcached",
        "/usr/bin/memcached",
        &["-l", "127.0.0.1", "-p", &port, "-U", "0", "-u", "root"],
    );
    let addr = format!("127.0.0.1:{port}");
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

    drop(engine);
    let down = collector.collect().await;
    assert!(!down.up);
    assert!(down.figures.is_empty());
}

#[tokio::test]
async fn nginx_requests_are_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location /stub_status {{ stub_status; }}\n\
             location / {{ return 200 'ok'; }}\n  }}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let conf_arg = conf_path.display().to_string();
    let mut engine = start(
        "nginx",
        "/usr/sbin/nginx",
        &["-c", &conf_arg, "-p", &d.to_string(), "-g", "daemon off;"],
    );
    let url = format!("http://127.0.0.1:{port}/stub_status");
    let mut collector = Collector::new(config("lb", "nginx", url));
    let before = collect_up(&mut collector, &mut engine).await;

    const N: f64 = 5.0;
    for _ in 0..N as usize {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("answer");
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
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
}

#[tokio::test]
async fn mariadb_status_over_unix_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let socket = dir.path().join("sock");
    lab::host_setup::ensure(lab::host_setup::ENGINES, &mut |l: &str| eprintln!("{l}"))
        .expect("installing the role engines (run the tests as root)");
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
    let log = dir.path().join("mariadbd.log");
    let mut engine = start_logged(
        "mariadbd",
        "/usr/sbin/mariadbd",
        &[
            "--no-defaults",
            &format!("--datadir={}", data.display()),
            &format!("--socket={}", socket.display()),
            &format!("--pid-file={}", dir.path().join("pid").display()),
            "--skip-networking",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=16M",
        ],
        Some(&log),
    );

    let address = format!("root@{}", socket.display());
    let mut collector = Collector::new(config("db-master", "mariadb", address));
    let before = collect_up(&mut collector, &mut engine).await;
    assert_eq!(figure(&before, "read_only"), 0.0);
    assert_eq!(figure(&before, "replica"), 0.0);
    assert!(figure(&before, "threads_connected") >= 1.0);
    assert!(before.labels.iter().any(|(k, _)| k == "gtid_current_pos"));

    // A user with a password, over the same socket: mysql_native_password.
    let target = mysql::parse_target(&format!("root@{}", socket.display()));
    let mut root = mysql::Connection::connect(&target)
        .await
        .expect("root via unix_socket");
    root.query("CREATE USER lab@localhost IDENTIFIED BY 'pa:ss@word'")
        .await
        .expect("create user");
    root.query("GRANT PROCESS, SLAVE MONITOR ON *.* TO lab@localhost")
        .await
        .or(root
            .query("GRANT PROCESS, REPLICATION CLIENT ON *.* TO lab@localhost")
            .await)
        .expect("grant");
    let set = root.query("SELECT 1 + 1, NULL").await.expect("select");
    assert_eq!(set.rows, vec![vec![Some("2".to_string()), None]]);

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
}

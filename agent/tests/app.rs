//! The app server end to end, with real engines on unique loopback addresses: a MariaDB
//! primary and a replica (each run by an agent in this process, through `PUT /v1/spec`, as
//! the control plane does), memcached boards, and the built `lab-agent app` binary with a
//! config file, driven over real HTTP. Everything is killed on drop, also when a step fails.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::engines;
use common::{client_config, get, put, start, wait_for, Board, Running, BOARD_NAME};
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use lab_agent::app::token::{Claims, TokenKey};
use lab_agent::engine::EngineProcess;
use lab_api::app::{self as contract, paths, AppError, AppStats, Hello, Post, Token, User};
use lab_api::spec::{
    AppConfig, AppDb, BoardSpec, CachePeer, Credential, DbConfig, DbPeer, DbUsers, RoleConfig,
    RoleState,
};
use lab_api::{Health, Role};
use mysql_async::prelude::Queryable;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP_PASSWORD: &str = "app-pw-2";
const JWT_KEY: &str = "0123456789abcdef0123456789abcdef-test";

/// An agent in this process running one database role.
struct DbAgent {
    board: Board,
    server: Running,
    client: Arc<ClientConfig>,
}

impl DbAgent {
    async fn start(role: RoleConfig) -> DbAgent {
        let board = Board::new("127.0.0.1:0");
        // The database runs as user mysql: it must be able to walk down to its directory.
        std::fs::set_permissions(board.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
        let server = start(&board).await;
        let spec = BoardSpec {
            board: BOARD_NAME.into(),
            epoch: 1,
            roles: vec![role],
        };
        let (status, body) = put(
            server.addr,
            client.clone(),
            lab_api::paths::SPEC,
            serde_json::to_vec(&spec).expect("json"),
        )
        .await
        .expect("PUT /v1/spec");
        assert_eq!(status, StatusCode::OK, "{body:?}");
        DbAgent {
            board,
            server,
            client,
        }
    }

    async fn wait_running(&self, role: Role) {
        wait_for(
            &format!("{role} running"),
            Duration::from_secs(90),
            || async {
                let (_, body) = get(
                    self.server.addr,
                    self.client.clone(),
                    lab_api::paths::HEALTH,
                    Some(&common::protocol()),
                )
                .await
                .map_err(|e| e.to_string())?;
                let health: Health = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                match health.roles.iter().find(|r| r.role == role) {
                    Some(s) if s.state == RoleState::Running => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    fn socket(&self) -> String {
        format!("{}/db/mysqld.sock", self.board.config.state_dir)
    }
}

fn db_config(server_id: u32, bind: SocketAddr, primary: Option<SocketAddr>) -> DbConfig {
    let c = |u: &str, p: &str| Credential {
        user: u.into(),
        password: p.into(),
    };
    DbConfig {
        server_id,
        bind: bind.ip().to_string(),
        port: bind.port(),
        buffer_pool_mb: 32,
        semi_sync: false,
        client_hosts: "127.%".into(),
        users: DbUsers {
            replication: c("lab_repl", "repl-pw-1"),
            app: c("lab_app", APP_PASSWORD),
            monitor: c("lab_monitor", "mon-pw-3"),
        },
        primary: primary.map(|p| DbPeer {
            board: "db-primary".into(),
            host: p.ip().to_string(),
            port: p.port(),
        }),
    }
}

/// The `lab-agent app` process; SIGKILLed on drop if still running.
struct AppProcess {
    child: std::process::Child,
    log: PathBuf,
}

impl AppProcess {
    fn start(config: &std::path::Path, log: PathBuf) -> AppProcess {
        let out = std::fs::File::create(&log).expect("app log");
        let err = out.try_clone().expect("app log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_lab-agent"))
            .args(["app", "--config"])
            .arg(config)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start lab-agent app");
        AppProcess { child, log }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal the app");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!("app log:\n{}", self.log_text());
        }
    }
}

/// One answer: status, headers (lower-case names), body.
struct Answer {
    status: StatusCode,
    headers: HashMap<String, String>,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: {e}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A 4xx with a JSON error and the board's name.
    fn assert_error(&self, status: StatusCode, what: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header(contract::SERVED_BY), Some("app-test"), "{what}");
        let error: AppError = self.json();
        assert!(!error.error.is_empty(), "{what}");
        error.error
    }
}

/// One HTTP/1.1 request over a fresh connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer within 10 s"))?
}

/// A client of one app.
struct Client {
    addr: SocketAddr,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        request(self.addr, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.call("GET", path, headers, None).await
    }

    async fn post_json(&self, path: &str, headers: &[(&str, &str)], json: &str) -> Answer {
        self.call("POST", path, headers, Some(json.as_bytes().to_vec()))
            .await
    }

    async fn stats(&self) -> AppStats {
        let answer = self.get(paths::STATS, &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn cache_peer(board: &str, addr: SocketAddr) -> CachePeer {
    CachePeer {
        board: board.into(),
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

async fn count(socket: &str, table: &str) -> u64 {
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket))
        .user(Some("root"));
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .unwrap_or_else(|err| panic!("root over {socket}: {err}"));
    conn.query_first::<u64, _>(format!("SELECT COUNT(*) FROM labapp.{table}"))
        .await
        .expect("count")
        .expect("a count")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_serves_users_and_posts_through_failures_and_reloads() {
    engines::ensure_engines();
    let (primary_addr, replica_addr) = (engines::unique_loopback(), engines::unique_loopback());
    let begun = Instant::now();
    let (primary, replica) = tokio::join!(
        DbAgent::start(RoleConfig::DbMaster(db_config(1, primary_addr, None))),
        DbAgent::start(RoleConfig::DbReplica(db_config(
            2,
            replica_addr,
            Some(primary_addr)
        ))),
    );
    let cache_addrs = [
        engines::unique_loopback(),
        engines::unique_loopback(),
        engines::unique_loopback(),
    ];
    let mut caches: Vec<EngineProcess> = cache_addrs[..2]
        .iter()
        .map(|a| engines::start(engines::memcached(*a)))
        .collect();
    tokio::join!(
        primary.wait_running(Role::DbMaster),
        replica.wait_running(Role::DbReplica)
    );
    println!("databases running in {:?}", begun.elapsed());

    let dir = tempfile::tempdir().expect("temp dir");
    let app_addr = engines::unique_loopback();
    let mut config = AppConfig {
        board: "app-test".into(),
        bind: app_addr.ip().to_string(),
        port: app_addr.port(),
        db: AppDb {
            primary: Some(DbPeer {
                board: "db-primary".into(),
                host: primary_addr.ip().to_string(),
                port: primary_addr.port(),
            }),
            replicas: vec![DbPeer {
                board: "db-replica".into(),
                host: replica_addr.ip().to_string(),
                port: replica_addr.port(),
            }],
            user: Credential {
                user: "lab_app".into(),
                password: APP_PASSWORD.into(),
            },
            schema: "labapp".into(),
        },
        caches: vec![
            cache_peer("cache-1", cache_addrs[0]),
            cache_peer("cache-2", cache_addrs[1]),
        ],
        cache_hashing: Default::default(),
        sessions: Default::default(),
        jwt_key: JWT_KEY.into(),
        token_ttl_secs: 3600,
        cache_ttl_secs: 60,
        buckets: Vec::new(),
        static_base: None,
    };
    let config_path = dir.path().join("app.json");
    std::fs::write(&config_path, serde_json::to_vec(&config).expect("json")).expect("config");
    let app = AppProcess::start(&config_path, dir.path().join("app.log"));
    let client = Client { addr: app_addr };
    wait_for("the app's health", Duration::from_secs(20), || async {
        let answer = request(app_addr, "GET", paths::HEALTH, &[], None).await?;
        (answer.status == StatusCode::OK)
            .then_some(())
            .ok_or(format!("{}", answer.status))
    })
    .await;

    // Who answers.
    let hello = client.get(paths::ROOT, &[]).await;
    assert_eq!(hello.status, StatusCode::OK);
    assert_eq!(hello.header(contract::SERVED_BY), Some("app-test"));
    assert_eq!(hello.json::<Hello>().served_by, "app-test");

    // Sign up, log in, who am I.
    let signup = client
        .post_json(
            paths::SIGNUP,
            &[],
            r#"{"name":"ada","password":"correct horse"}"#,
        )
        .await;
    assert_eq!(signup.status, StatusCode::CREATED);
    assert_eq!(signup.header(contract::DB), Some("primary db-primary"));
    assert!(signup
        .header(contract::GTID)
        .is_some_and(|g| g.starts_with("0-1-")));
    let ada: User = signup.json();
    assert_eq!(ada.name, "ada");
    let wrong = client
        .post_json(
            paths::LOGIN,
            &[],
            r#"{"name":"ada","password":"wrong horse"}"#,
        )
        .await;
    assert_eq!(
        wrong.assert_error(StatusCode::UNAUTHORIZED, "wrong password"),
        "wrong name or password"
    );
    let login = client
        .post_json(
            paths::LOGIN,
            &[],
            r#"{"name":"ada","password":"correct horse"}"#,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let token: Token = login.json();
    assert_eq!(token.user, ada);
    assert!(token.expires_at > unix_now() + 3000);
    let auth = bearer(&token.token);
    let auth = [("authorization", auth.as_str())];
    let whoami = client.get(paths::WHOAMI, &auth).await;
    assert_eq!(whoami.status, StatusCode::OK);
    assert_eq!(whoami.json::<User>(), ada);

    // A post, read back: from the database (MISS), then from the cache (HIT).
    let created = client
        .post_json(paths::POSTS, &auth, r#"{"body":"hello, lab"}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header(contract::DB), Some("primary db-primary"));
    let gtid = created.header(contract::GTID).expect("a GTID").to_string();
    let post: Post = created.json();
    assert_eq!((post.user_id, post.body.as_str()), (ada.id, "hello, lab"));
    assert!(post.created_at.ends_with('Z') && post.created_at.len() == 20);
    let post_path = format!("{}{}", paths::POST_PREFIX, post.id);
    // The author reads it at once: the app waits for the replica to have the write (or asks
    // the primary).
    let first = client.get(&post_path, &auth).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header(contract::CACHE), Some("MISS"));
    let db = first.header(contract::DB).unwrap_or_default();
    assert!(
        db == "replica db-replica" || db == "primary db-primary",
        "{db}"
    );
    assert_eq!(first.json::<Post>(), post);
    let second = client.get(&post_path, &[]).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header(contract::CACHE), Some("HIT"));
    assert_eq!(
        second.header(contract::DB),
        None,
        "a hit touches no database"
    );
    assert_eq!(second.json::<Post>(), post);
    // Cache-Control: no-cache reads the database and says so.
    let bypass = client
        .get(&post_path, &[("cache-control", "no-cache")])
        .await;
    assert_eq!(bypass.status, StatusCode::OK);
    assert_eq!(bypass.header(contract::CACHE), Some("BYPASS"));
    assert!(
        bypass.header(contract::DB).is_some(),
        "{:?}",
        bypass.header(contract::DB)
    );
    assert_eq!(bypass.json::<Post>(), post);

    // The list, newest first; the author sees a new post at once (the cache is skipped and
    // refreshed for them); then anyone reads it from the cache.
    let list_path = format!("{}{}/posts", paths::USERS_PREFIX, ada.id);
    let list = client.get(&list_path, &auth).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json::<Vec<Post>>(), vec![post.clone()]);
    let newer: Post = client
        .post_json(paths::POSTS, &auth, r#"{"body":"second"}"#)
        .await
        .json();
    let list = client.get(&list_path, &auth).await;
    assert_eq!(list.header(contract::CACHE), Some("MISS"));
    assert_eq!(list.json::<Vec<Post>>(), vec![newer.clone(), post.clone()]);
    let anyone = client.get(&list_path, &[]).await;
    assert_eq!(anyone.header(contract::CACHE), Some("HIT"));
    assert_eq!(
        anyone.json::<Vec<Post>>(),
        vec![newer.clone(), post.clone()]
    );
    // A read naming a write with X-Lab-Gtid is answered by the replica once it has it.
    wait_for(
        "a read served by the replica",
        Duration::from_secs(10),
        || async {
            let answer = request(
                app_addr,
                "GET",
                &list_path,
                &[(contract::GTID, gtid.as_str())],
                None,
            )
            .await?;
            match answer.header(contract::DB) {
                Some("replica db-replica") if answer.status == StatusCode::OK => Ok(()),
                other => Err(format!("{} {other:?}", answer.status)),
            }
        },
    )
    .await;

    // Bad input: 4xx, a JSON error, nothing written.
    let socket = primary.socket();
    let (users_before, posts_before) =
        (count(&socket, "users").await, count(&socket, "posts").await);
    assert_eq!((users_before, posts_before), (1, 2));
    let bad_signups: [(&str, StatusCode); 7] = [
        (r#"{"name":"bob","password":"#, StatusCode::BAD_REQUEST),
        (r#"{"name":"bob"}"#, StatusCode::BAD_REQUEST),
        (
            r#"{"name":"bob","password":"12345678","admin":true}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"name":"Bob!","password":"12345678"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"name":"bob","password":"short"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"["bob"]"#, StatusCode::BAD_REQUEST),
        (
            r#"{"name":"ada","password":"another one"}"#,
            StatusCode::CONFLICT,
        ),
    ];
    for (body, status) in bad_signups {
        let answer = client.post_json(paths::SIGNUP, &[], body).await;
        answer.assert_error(status, body);
    }
    let huge = format!(r#"{{"body":"{}"}}"#, "x".repeat(contract::MAX_BODY_BYTES));
    client
        .post_json(paths::POSTS, &auth, &huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body over the limit");
    let too_long = format!(
        r#"{{"body":"{}"}}"#,
        "x".repeat(contract::MAX_POST_CHARS + 1)
    );
    for body in [
        r#"{"body":""}"#,
        r#"{"body":"  "}"#,
        too_long.as_str(),
        r#"{"text":"hi"}"#,
    ] {
        client
            .post_json(paths::POSTS, &auth, body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad post");
    }
    // Tokens: none, tampered, another key's, expired.
    let expired = TokenKey::new(JWT_KEY.as_bytes()).sign(&Claims {
        sub: ada.id.to_string(),
        name: "ada".into(),
        iat: unix_now() - 100,
        exp: unix_now() - 10,
    });
    let other_key = TokenKey::new(b"another key of 32 characters....").sign(&Claims {
        sub: ada.id.to_string(),
        name: "ada".into(),
        iat: unix_now(),
        exp: unix_now() + 100,
    });
    let mut tampered = token.token.clone();
    tampered.insert(tampered.len() / 2, 'x');
    let bad_tokens = [
        None,
        Some(bearer(&expired)),
        Some(bearer(&other_key)),
        Some(bearer(&tampered)),
        Some(token.token.clone()),
    ];
    for header in &bad_tokens {
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        let message = client
            .post_json(paths::POSTS, &headers, r#"{"body":"sneaky"}"#)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, &format!("{header:?}"));
        if header.as_deref() == Some(bearer(&expired).as_str()) {
            assert!(message.contains("expired"), "{message}");
        }
        client
            .get(paths::WHOAMI, &headers)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "whoami");
    }
    // Unknown things.
    for path in [
        format!("{}999999", paths::POST_PREFIX),
        format!("{}abc", paths::POST_PREFIX),
        format!("{}0", paths::POST_PREFIX),
        format!("{}999999/posts", paths::USERS_PREFIX),
        "/nowhere".to_string(),
    ] {
        client
            .get(&path, &[])
            .await
            .assert_error(StatusCode::NOT_FOUND, &path);
    }
    client
        .get(paths::SIGNUP, &[])
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "GET signup");
    client
        .get(&post_path, &[(contract::GTID, "0-1-x'")])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad GTID");
    assert_eq!(
        (count(&socket, "users").await, count(&socket, "posts").await),
        (users_before, posts_before),
        "bad input wrote nothing"
    );
    let stats = client.stats().await;
    assert_eq!(stats.errors_total, 0, "{stats:?}");
    assert!(stats.client_errors_total >= 20, "{stats:?}");
    assert!(
        stats.cache_hits_total >= 2 && stats.cache_misses_total >= 2,
        "{stats:?}"
    );
    assert!(stats.db_reads_replica_total >= 1, "{stats:?}");
    assert_eq!(stats.db_writes_total, 3, "{stats:?}");
    assert_eq!((stats.cache_nodes, stats.cache_nodes_live), (2, 2));
    assert!(stats.latency_p99_ms > 0.0, "{stats:?}");

    // A cache board dies: nobody notices but the stats.
    let mut posts = vec![post.clone(), newer.clone()];
    for i in 0..8 {
        let p: Post = client
            .post_json(paths::POSTS, &auth, &format!(r#"{{"body":"post {i}"}}"#))
            .await
            .json();
        posts.push(p);
    }
    for p in &posts {
        let path = format!("{}{}", paths::POST_PREFIX, p.id);
        assert_eq!(client.get(&path, &[]).await.status, StatusCode::OK);
    }
    // With no request to notice it, the board's checker does, within about a second.
    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(caches[1].pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill memcached");
    let dropped = wait_for("cache_nodes_live 1", Duration::from_secs(3), || async {
        let stats = client.stats().await;
        (stats.cache_nodes_live == 1)
            .then(|| killed_at.elapsed())
            .ok_or(format!("{stats:?}"))
    })
    .await;
    println!("a killed cache board was out of use within {dropped:?} (no traffic)");
    assert!(dropped < Duration::from_millis(1500), "{dropped:?}");
    let errors_before = client.stats().await.errors_total;
    for round in 0..3 {
        for p in &posts {
            let path = format!("{}{}", paths::POST_PREFIX, p.id);
            let answer = client.get(&path, &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "round {round}, {path}");
            assert_eq!(answer.json::<Post>(), *p);
        }
        let list = client.get(&list_path, &auth).await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.json::<Vec<Post>>().len(), posts.len());
    }
    let stats = client.stats().await;
    assert_eq!(
        stats.errors_total, errors_before,
        "no request failed: {stats:?}"
    );
    assert_eq!((stats.cache_nodes, stats.cache_nodes_live), (2, 1));
    // What lived on the survivor is still cached.
    let mut hits = 0;
    for p in &posts {
        let path = format!("{}{}", paths::POST_PREFIX, p.id);
        if client.get(&path, &[]).await.header(contract::CACHE) == Some("HIT") {
            hits += 1;
        }
    }
    assert_eq!(
        hits,
        posts.len(),
        "after one round every post is cached again"
    );

    // SIGHUP with another cache set: the dead board replaced by a new one.
    caches.push(engines::start(engines::memcached(cache_addrs[2])));
    wait_for("the new memcached", Duration::from_secs(10), || async {
        lab_agent::collect::memcached::collect(&cache_addrs[2].to_string())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    config.caches = vec![
        cache_peer("cache-1", cache_addrs[0]),
        cache_peer("cache-3", cache_addrs[2]),
    ];
    let tmp = dir.path().join("app.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&config).expect("json")).expect("config");
    std::fs::rename(&tmp, &config_path).expect("rename");
    app.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(
        "the new cache set in use",
        Duration::from_secs(5),
        || async {
            let stats = client.stats().await;
            (stats.cache_nodes == 2 && stats.cache_nodes_live == 2)
                .then_some(())
                .ok_or(format!("{stats:?}"))
        },
    )
    .await;
    // The new board takes keys: a full round of reads fills both, the next one hits.
    for _ in 0..2 {
        for p in &posts {
            let path = format!("{}{}", paths::POST_PREFIX, p.id);
            assert_eq!(client.get(&path, &[]).await.status, StatusCode::OK);
        }
    }
    let on_new_board = lab_agent::collect::memcached::collect(&cache_addrs[2].to_string())
        .await
        .expect("stats of the new board");
    let items = on_new_board
        .figures
        .iter()
        .find(|f| f.name == "curr_items")
        .map(|f| f.value)
        .unwrap_or(0.0);
    assert!(
        items >= 1.0,
        "keys went to the new board: {:?}",
        on_new_board.figures
    );
    // A bad file on reload is refused and the running config kept.
    std::fs::write(&config_path, b"{ not json").expect("config");
    app.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the refusal logged", Duration::from_secs(5), || async {
        app.log_text()
            .contains("reload refused")
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(client.get(&post_path, &[]).await.status, StatusCode::OK);
    let log = app.log_text();
    assert!(log.contains("lab app app-test listening on"), "{log}");
    assert!(log.contains("cache-3"), "{log}");
    assert!(log.lines().count() < 20, "no line per request: {log}");

    // A replica dies: reads go on (to the primary) without an error.
    let replica_marker = format!(
        "--defaults-file={}/db/my.cnf",
        replica.board.config.state_dir
    );
    let mariadbd: Vec<engines::Seen> = engines::processes()
        .into_iter()
        .filter(|p| p.cmdline.contains(&replica_marker))
        .collect();
    assert!(!mariadbd.is_empty(), "the replica's mariadbd runs");
    for p in &mariadbd {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the replica");
    }
    let errors_before = client.stats().await.errors_total;
    let mut from_primary = 0;
    for _ in 0..10 {
        // Naming a write skips the cache: each of these reads the database.
        let answer = client
            .get(&list_path, &[(contract::GTID, gtid.as_str())])
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "a read while the replica is dead"
        );
        assert_eq!(answer.json::<Vec<Post>>().len(), posts.len());
        if answer.header(contract::DB) == Some("primary db-primary") {
            from_primary += 1;
        }
    }
    assert!(
        from_primary >= 9,
        "reads went to the primary: {from_primary}"
    );
    assert_eq!(client.stats().await.errors_total, errors_before);

    // SIGTERM while a request is in flight: the listener closes, the request is answered,
    // the app exits 0. `Expect: 100-continue` tells when the app is reading the body.
    let body = br#"{"name":"late","password":"in flight"}"#;
    let mut inflight = tokio::net::TcpStream::connect(app_addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        paths::SIGNUP,
        body.len()
    );
    inflight.write_all(head.as_bytes()).await.expect("head");
    let mut continued = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), inflight.read_exact(&mut continued))
        .await
        .expect("100 Continue within 10 s")
        .expect("read");
    assert_eq!(&continued, b"HTTP/1.1 100 Continue\r\n\r\n");
    let mut app = app;
    app.signal(nix::sys::signal::Signal::SIGTERM);
    wait_for("the listener closed", Duration::from_secs(10), || async {
        match tokio::net::TcpStream::connect(app_addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    inflight.write_all(body).await.expect("body");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), inflight.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201 Created\r\n"), "{answer}");
    assert!(answer.contains("\"name\":\"late\""), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = app.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the app did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}: {}", app.log_text());
    engines::assert_refused(app_addr).await;
    drop((primary, replica));
}

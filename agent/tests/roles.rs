//! The role contract end to end: agents started in this process (each with its own temp state
//! and log dirs), driven over mTLS with `PUT /v1/spec` like the control plane does, running
//! real engines (memcached, MariaDB) on unique loopback addresses. Each test stops its agents
//! at the end and checks, by its own look at `/proc`, that no engine of theirs is left; an
//! agent dropped by a failing test SIGKILLs its engines' groups.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::engines::{self, assert_refused};
use common::{client_config, get, put, start, wait_for, Board, Running, BOARD_NAME};
use hyper::StatusCode;
use lab_api::spec::{
    BoardSpec, CacheConfig, Credential, DbConfig, DbPeer, DbUsers, RoleConfig, RoleState,
    RoleStatus, SpecAccepted,
};
use lab_api::{paths, ApiError, Health, Role};
use mysql_async::prelude::Queryable;
use rustls::ClientConfig;

/// One agent of a test: its board files and the server running in this process.
struct Agent {
    board: Board,
    server: Option<Running>,
    client: Arc<ClientConfig>,
}

impl Agent {
    async fn start() -> Agent {
        engines::ensure_engines();
        let board = Board::new("127.0.0.1:0");
        // The database runs as user mysql: it must be able to walk down to its directory.
        std::fs::set_permissions(board.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
        let server = Some(start(&board).await);
        Agent {
            board,
            server,
            client,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running").addr
    }

    /// Stops the server (and with it every engine) and waits until it returned.
    async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown.cancel();
            if let Some(task) = server.task.take() {
                tokio::time::timeout(Duration::from_secs(90), task)
                    .await
                    .expect("agent stopped within 90 s")
                    .expect("agent task");
            }
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        self.server = Some(start(&self.board).await);
    }

    async fn put_raw(&self, body: Vec<u8>) -> (StatusCode, String) {
        let (status, body) = put(self.addr(), self.client.clone(), paths::SPEC, body)
            .await
            .expect("PUT /v1/spec");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn put(&self, spec: &BoardSpec) -> (StatusCode, String) {
        self.put_raw(serde_json::to_vec(spec).expect("json")).await
    }

    async fn accepted(&self, spec: &BoardSpec) -> SpecAccepted {
        let (status, body) = self.put(spec).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).expect("SpecAccepted")
    }

    async fn health(&self) -> Health {
        self.get_json(paths::HEALTH).await
    }

    async fn held(&self) -> Option<BoardSpec> {
        self.get_json(paths::SPEC).await
    }

    /// GET `path` with the protocol header; 200 and a `T` body expected.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = get(
            self.addr(),
            self.client.clone(),
            path,
            Some(&common::protocol()),
        )
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, StatusCode::OK, "GET {path}");
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Polls health until `role` is in `state`; returns its status.
    async fn wait_role(&self, role: Role, state: RoleState, limit: Duration) -> RoleStatus {
        wait_for(&format!("{role} {state}"), limit, || async {
            let health = self.health().await;
            let status = health.roles.iter().find(|r| r.role == role).cloned();
            match status {
                Some(s) if s.state == state => Ok(s),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    async fn metrics(&self) -> String {
        let (status, body) = get(self.addr(), self.client.clone(), paths::METRICS, None)
            .await
            .expect("GET /metrics");
        assert_eq!(status, StatusCode::OK);
        String::from_utf8_lossy(&body).into_owned()
    }

    fn spec_file(&self) -> std::path::PathBuf {
        std::path::Path::new(&self.board.config.state_dir).join("spec.json")
    }

    fn db_socket(&self) -> String {
        format!("{}/db/mysqld.sock", self.board.config.state_dir)
    }
}

fn cache(bind: SocketAddr, epoch: u64) -> BoardSpec {
    BoardSpec {
        board: BOARD_NAME.into(),
        epoch,
        roles: vec![RoleConfig::Cache(CacheConfig {
            bind: bind.ip().to_string(),
            port: bind.port(),
            memory_mb: 16,
        })],
    }
}

/// The live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<engines::Seen> {
    engines::processes()
        .into_iter()
        .filter(|p| p.cmdline.contains(marker))
        .collect()
}

fn memcached_marker(bind: SocketAddr) -> String {
    format!("memcached -l {} -p {}", bind.ip(), bind.port())
}

/// The one memcached serving `bind`.
fn memcached_process(bind: SocketAddr) -> engines::Seen {
    let found = processes_with(&memcached_marker(bind));
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

async fn stats_answer(bind: SocketAddr) -> Result<(), String> {
    lab_agent::collect::memcached::collect(&bind.to_string())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_cache_spec_runs_memcached_and_only_newer_specs_change_it() {
    let mut agent = Agent::start().await;
    let bind = engines::unique_loopback();
    assert_eq!(agent.held().await, None);
    assert_eq!(agent.health().await.spec_epoch, None);

    let begun = Instant::now();
    let accepted = agent.accepted(&cache(bind, 5)).await;
    assert_eq!((accepted.epoch, accepted.changed), (5, true));
    let status = agent
        .wait_role(Role::Cache, RoleState::Running, Duration::from_secs(20))
        .await;
    println!("cache: PUT to running in {:?}", begun.elapsed());
    stats_answer(bind).await.expect("memcached answers stats");
    assert_eq!(
        status.message.as_deref(),
        Some(format!("listening on {bind}, 16 MiB").as_str())
    );
    assert_eq!(status.restarts, 0);
    let log = status.log.expect("log path");
    assert!(log.ends_with("/log/memcached.log"), "{log}");
    let health = agent.health().await;
    assert_eq!(health.spec_epoch, Some(5));
    assert_eq!(health.roles.len(), 1);
    let process = memcached_process(bind);
    assert_eq!(agent.held().await, Some(cache(bind, 5)));

    // The same spec again: nothing restarts.
    let again = agent.accepted(&cache(bind, 5)).await;
    assert!(!again.changed);
    // An older one: refused, nothing changes.
    let stored = std::fs::read(agent.spec_file()).expect("spec.json");
    let mode = std::fs::metadata(agent.spec_file())
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let other = engines::unique_loopback();
    let (status, body) = agent.put(&cache(other, 4)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let error: ApiError = serde_json::from_str(&body).expect("ApiError");
    assert_eq!(
        error.error,
        "spec epoch 4 is older than the epoch 5 this board holds"
    );
    assert_eq!(std::fs::read(agent.spec_file()).expect("spec.json"), stored);
    // Unusable specs: 400 with the reason, nothing changes.
    let mut wrong_board = cache(other, 6);
    wrong_board.board = "someone-else".into();
    let (status, body) = agent.put(&wrong_board).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("someone-else"), "{body}");
    let mut problems = cache(other, 6);
    problems.roles.push(problems.roles[0].clone());
    let (status, body) = agent.put(&problems).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("role cache appears twice"), "{body}");
    let (status, body) = agent.put_raw(b"{\"board\": 7".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error: ApiError = serde_json::from_str(&body).expect("ApiError");
    assert!(error.error.contains("invalid type"), "{}", error.error);
    assert_eq!(std::fs::read(agent.spec_file()).expect("spec.json"), stored);
    assert_eq!(
        memcached_process(bind),
        process,
        "memcached was not restarted"
    );
    assert_eq!(agent.health().await.spec_epoch, Some(5));

    // A spec without the role: memcached stopped whole.
    let empty = BoardSpec {
        board: BOARD_NAME.into(),
        epoch: 6,
        roles: Vec::new(),
    };
    assert!(agent.accepted(&empty).await.changed);
    wait_for("memcached gone", Duration::from_secs(20), || async {
        match processes_with(&memcached_marker(bind)).as_slice() {
            [] => Ok(()),
            left => Err(format!("{left:?}")),
        }
    })
    .await;
    assert_refused(bind).await;
    assert!(agent.health().await.roles.is_empty());
    assert!(engines::engine_leftovers(process.pgrp, &[process]).is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn a_restarted_agent_brings_its_roles_back_from_the_stored_spec() {
    let mut agent = Agent::start().await;
    let bind = engines::unique_loopback();
    agent.accepted(&cache(bind, 1)).await;
    agent
        .wait_role(Role::Cache, RoleState::Running, Duration::from_secs(20))
        .await;
    let before = memcached_process(bind);

    agent.stop().await;
    // A clean stop of the agent leaves no engine behind.
    assert!(processes_with(&memcached_marker(bind)).is_empty());
    assert!(engines::engine_leftovers(before.pgrp, std::slice::from_ref(&before)).is_empty());
    assert_refused(bind).await;

    agent.restart().await;
    assert_eq!(agent.held().await, Some(cache(bind, 1)), "no PUT needed");
    agent
        .wait_role(Role::Cache, RoleState::Running, Duration::from_secs(20))
        .await;
    stats_answer(bind).await.expect("memcached is back");
    let after = memcached_process(bind);
    assert_ne!(after, before, "a new memcached");
    agent.stop().await;
    assert!(processes_with(&memcached_marker(bind)).is_empty());
}

fn users() -> DbUsers {
    let c = |u: &str, p: &str| Credential {
        user: u.into(),
        password: p.into(),
    };
    DbUsers {
        replication: c("lab_repl", "repl-pw-1"),
        app: c("lab_app", "app:pw@2"),
        monitor: c("lab_monitor", "mon-pw-3"),
    }
}

fn db(server_id: u32, bind: SocketAddr, primary: Option<SocketAddr>) -> DbConfig {
    DbConfig {
        server_id,
        bind: bind.ip().to_string(),
        port: bind.port(),
        buffer_pool_mb: 32,
        semi_sync: false,
        client_hosts: "127.%".into(),
        users: users(),
        primary: primary.map(|p| DbPeer {
            board: "db-primary".into(),
            host: p.ip().to_string(),
            port: p.port(),
        }),
    }
}

async fn root(socket: &str) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket))
        .user(Some("root"));
    mysql_async::Conn::new(opts)
        .await
        .unwrap_or_else(|err| panic!("root over {socket}: {err}"))
}

async fn one(conn: &mut mysql_async::Conn, sql: &str) -> Option<String> {
    conn.query_first::<Option<String>, _>(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .flatten()
}

/// The marker of the mariadbd an agent with `state_dir` runs.
fn mariadbd_marker(state_dir: &str) -> String {
    format!("--defaults-file={state_dir}/db/my.cnf")
}

/// Asserts that the mariadbd of `state_dir` runs now, so that a later "gone" is not vacuous.
fn assert_mariadbd_runs(state_dir: &str) {
    assert!(
        !processes_with(&mariadbd_marker(state_dir)).is_empty(),
        "no mariadbd with {} running",
        mariadbd_marker(state_dir)
    );
}

/// Waits until no process runs with `--defaults-file` under `state_dir`.
async fn assert_no_mariadbd(state_dir: &str) {
    let marker = mariadbd_marker(state_dir);
    wait_for("mariadbd gone", Duration::from_secs(5), || async {
        match processes_with(&marker).as_slice() {
            [] => Ok(()),
            left => Err(format!("{left:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_replica_follows_its_primary() {
    let (mut primary, mut replica) = tokio::join!(Agent::start(), Agent::start());
    let (primary_addr, replica_addr) = (engines::unique_loopback(), engines::unique_loopback());
    let primary_spec = BoardSpec {
        board: BOARD_NAME.into(),
        epoch: 1,
        roles: vec![RoleConfig::DbMaster(db(1, primary_addr, None))],
    };
    let replica_spec = BoardSpec {
        board: BOARD_NAME.into(),
        epoch: 1,
        roles: vec![RoleConfig::DbReplica(db(
            2,
            replica_addr,
            Some(primary_addr),
        ))],
    };
    // The replica first, its primary only once the replica's server answers: the replica
    // must not say it runs before it holds what its primary sets up.
    let begun = Instant::now();
    replica.accepted(&replica_spec).await;
    let replica_socket = replica.db_socket();
    wait_for("the replica's server", Duration::from_secs(60), || {
        let socket = replica_socket.clone();
        async move {
            let opts = mysql_async::OptsBuilder::default()
                .socket(Some(socket))
                .user(Some("root"));
            mysql_async::Conn::new(opts)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    })
    .await;
    primary.accepted(&primary_spec).await;
    let limit = Duration::from_secs(90);
    let (p, r) = tokio::join!(
        async {
            let s = primary
                .wait_role(Role::DbMaster, RoleState::Running, limit)
                .await;
            (s, begun.elapsed())
        },
        async {
            let s = replica
                .wait_role(Role::DbReplica, RoleState::Running, limit)
                .await;
            (s, begun.elapsed())
        },
    );
    println!(
        "db: PUT to running: primary {:?}, replica {:?} (fresh data dirs)",
        p.1, r.1
    );
    assert_eq!(
        p.0.message.as_deref(),
        Some(format!("primary, listening on {primary_addr}").as_str())
    );
    let message = r.0.message.unwrap_or_default();
    assert!(
        message.starts_with(&format!("replicating from db-primary ({primary_addr})")),
        "{message}"
    );

    let app_opts = |at: SocketAddr| {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(at.ip().to_string())
            .tcp_port(at.port())
            .prefer_socket(false)
            .user(Some("lab_app"))
            .pass(Some("app:pw@2"))
            .db_name(Some("labapp"))
    };
    // Running means the apps can read there at once: the user and the tables reached the
    // replica through replication before it said so (both started together).
    let mut reader = mysql_async::Conn::new(app_opts(replica_addr))
        .await
        .expect("the app user logs in on the replica as soon as it runs");
    let posts: Option<u64> = reader
        .query_first("SELECT COUNT(*) FROM posts")
        .await
        .expect("the app's tables are on the replica as soon as it runs");
    assert_eq!(posts, Some(0));
    drop(reader);

    // The app user writes on the primary over TCP (its grants came with the setup).
    let mut app = mysql_async::Conn::new(app_opts(primary_addr))
        .await
        .expect("app user over TCP");
    app.query_drop("INSERT INTO users (name, password_hash) VALUES ('ada', 'x')")
        .await
        .expect("insert");
    assert!(
        app.query_drop("CREATE TABLE labapp.nope (id INT)")
            .await
            .is_err(),
        "the app user has DML only"
    );
    drop(app);

    let mut on_replica = root(&replica.db_socket()).await;
    let mut on_primary = root(&primary.db_socket()).await;
    wait_for("the row on the replica", Duration::from_secs(30), || {
        let socket = replica_socket.clone();
        async move {
            let found = root(&socket)
                .await
                .query_first::<Option<String>, _>("SELECT name FROM labapp.users WHERE name='ada'")
                .await
                .map_err(|e| e.to_string())?;
            found.flatten().ok_or_else(|| "not yet".to_string())
        }
    })
    .await;
    assert_eq!(
        one(&mut on_replica, "SELECT @@read_only").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        one(&mut on_primary, "SELECT @@read_only").await.as_deref(),
        Some("0")
    );
    let primary_gtid = one(&mut on_primary, "SELECT @@gtid_binlog_pos").await;
    assert!(primary_gtid.as_deref().is_some_and(|g| !g.is_empty()));
    wait_for("GTID positions match", Duration::from_secs(10), || {
        let socket = replica_socket.clone();
        let want = primary_gtid.clone();
        async move {
            let got = one(&mut root(&socket).await, "SELECT @@gtid_slave_pos").await;
            if got == want {
                Ok(())
            } else {
                Err(format!("replica {got:?}, primary {want:?}"))
            }
        }
    })
    .await;
    // The replica wrote nothing of its own: its binlog holds the primary's transactions only.
    assert_eq!(
        one(&mut on_replica, "SELECT @@gtid_binlog_pos").await,
        primary_gtid
    );
    // The monitor user reached the replica through replication.
    assert_eq!(
        one(
            &mut on_replica,
            "SELECT COUNT(*) FROM mysql.user WHERE user='lab_monitor'"
        )
        .await
        .as_deref(),
        Some("1")
    );
    drop((on_replica, on_primary));

    // The sampler follows the spec: the replica's role is sampled over its socket as the
    // monitor user (whose grants arrived through replication).
    wait_for("the replica's figures", Duration::from_secs(15), || async {
        let text = replica.metrics().await;
        let up = "lab_mariadb_up{role=\"db-replica\"} 1";
        let replicating = "lab_mariadb_slave_io_running{role=\"db-replica\"} 1";
        if text.contains(up) && text.contains(replicating) {
            Ok(())
        } else {
            Err(text
                .lines()
                .filter(|l| l.contains("mariadb"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    })
    .await;
    let rss = rss_kib(std::process::id());
    println!("test process (both agents, in-process) RSS while supervising: {rss} KiB");

    let (primary_state, replica_state) = (
        primary.board.config.state_dir.clone(),
        replica.board.config.state_dir.clone(),
    );
    assert_mariadbd_runs(&primary_state);
    assert_mariadbd_runs(&replica_state);
    tokio::join!(primary.stop(), replica.stop());
    assert_no_mariadbd(&primary_state).await;
    assert_no_mariadbd(&replica_state).await;
}

#[tokio::test]
async fn an_engine_that_cannot_start_is_reported_and_the_other_role_runs() {
    let mut agent = Agent::start().await;
    let db_addr = engines::unique_loopback();
    // 203.0.113.1 (TEST-NET-3) is on no interface here: memcached cannot bind it. Nothing is
    // sent anywhere.
    let unbindable = SocketAddr::new(IpAddr::from([203, 0, 113, 1]), 11211);
    let mut spec = cache(unbindable, 1);
    spec.roles.push(RoleConfig::DbMaster(db(9, db_addr, None)));
    agent.accepted(&spec).await;

    let failed = agent
        .wait_role(Role::Cache, RoleState::Failed, Duration::from_secs(20))
        .await;
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("memcached exited with status"),
        "{failed:?}"
    );
    assert!(
        failed
            .log_tail
            .iter()
            .any(|l| l.contains("Cannot assign requested address")),
        "{failed:?}"
    );
    agent
        .wait_role(Role::DbMaster, RoleState::Running, Duration::from_secs(90))
        .await;
    // The crash loop is visible: restarted, counted, failing again.
    wait_for("a counted restart", Duration::from_secs(30), || async {
        let health = agent.health().await;
        let cache = health.roles.iter().find(|r| r.role == Role::Cache).cloned();
        match cache {
            Some(s) if s.restarts >= 1 && s.state == RoleState::Failed => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let db = agent
        .wait_role(Role::DbMaster, RoleState::Running, Duration::from_secs(1))
        .await;
    assert_eq!(db.restarts, 0, "the database was never disturbed: {db:?}");

    let state_dir = agent.board.config.state_dir.clone();
    assert_mariadbd_runs(&state_dir);
    agent.stop().await;
    assert_no_mariadbd(&state_dir).await;
    assert!(processes_with("memcached -l 203.0.113.1").is_empty());
}

/// The real binary, as a board runs it: `lab-agent serve`; SIGKILLed (with whatever engines
/// it left) if the test fails half-way.
struct AgentProcess {
    child: std::process::Child,
    markers: Vec<String>,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for marker in &self.markers {
            for p in processes_with(marker) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p.pgrp),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_stops_its_engines_on_sigterm() {
    engines::ensure_engines();
    // This test's own loopback address: no parallel test can take the port in between.
    let addr: SocketAddr = engines::unique_loopback();
    let board = Board::new(&addr.to_string());
    std::fs::set_permissions(board.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    let (cache_addr, db_addr) = (engines::unique_loopback(), engines::unique_loopback());
    let mut agent = AgentProcess {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_lab-agent"))
            .args(["serve", "--config"])
            .arg(&board.config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start lab-agent serve"),
        markers: vec![
            memcached_marker(cache_addr),
            format!("--defaults-file={}/db/my.cnf", board.config.state_dir),
        ],
    };
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
    let before_kib = wait_for("the agent answers", Duration::from_secs(20), || async {
        get(
            addr,
            client.clone(),
            paths::HEALTH,
            Some(&common::protocol()),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(rss_kib(agent.child.id()))
    })
    .await;
    let mut spec = cache(cache_addr, 1);
    spec.roles.push(RoleConfig::DbMaster(db(3, db_addr, None)));
    let (status, body) = put(
        addr,
        client.clone(),
        paths::SPEC,
        serde_json::to_vec(&spec).expect("json"),
    )
    .await
    .expect("PUT");
    assert_eq!(status, StatusCode::OK, "{body:?}");
    wait_for("both roles running", Duration::from_secs(90), || async {
        let (_, body) = get(
            addr,
            client.clone(),
            paths::HEALTH,
            Some(&common::protocol()),
        )
        .await
        .map_err(|e| e.to_string())?;
        let health: Health = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if health.roles.len() == 2 && health.roles.iter().all(|r| r.state == RoleState::Running) {
            Ok(())
        } else {
            Err(format!("{:?}", health.roles))
        }
    })
    .await;
    // Both roles sampled (the collectors followed the spec), then the agent's own memory.
    wait_for("both roles sampled", Duration::from_secs(15), || async {
        let (_, body) = get(addr, client.clone(), paths::METRICS, None)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let wanted = [
            "lab_memcached_up{role=\"cache\"} 1",
            "lab_mariadb_up{role=\"db-master\"} 1",
        ];
        if wanted.iter().all(|w| text.contains(w)) {
            Ok(())
        } else {
            Err(text
                .lines()
                .filter(|l| l.contains("_up"))
                .collect::<Vec<_>>()
                .join("; "))
        }
    })
    .await;
    let supervising_kib = rss_kib(agent.child.id());
    println!(
        "lab-agent (debug build) RSS: {before_kib} KiB idle, {supervising_kib} KiB supervising \
         memcached + mariadbd"
    );
    assert_eq!(processes_with(&agent.markers[0]).len(), 1);
    assert!(!processes_with(&agent.markers[1]).is_empty());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent.child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let exited = tokio::task::block_in_place(|| agent.child.wait()).expect("wait");
    assert!(exited.success(), "{exited}");
    for marker in &agent.markers {
        assert!(
            processes_with(marker).is_empty(),
            "{marker} outlived the agent"
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `GET /` through `addr` with a fresh connection; the body.
async fn get_body(addr: SocketAddr) -> Result<String, String> {
    lab_agent::collect::http::get(&format!("http://{addr}/"), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| e.to_string())
}

fn lb(listen: SocketAddr, status_port: u16, apps: &[SocketAddr], epoch: u64) -> BoardSpec {
    BoardSpec {
        board: BOARD_NAME.into(),
        epoch,
        roles: vec![RoleConfig::Lb(lab_api::spec::LbConfig {
            listen: listen.ip().to_string(),
            port: listen.port(),
            status_port,
            algorithm: lab_api::spec::LbAlgorithm::RoundRobin,
            upstreams: apps
                .iter()
                .enumerate()
                .map(|(i, a)| lab_api::spec::Upstream {
                    board: format!("app-{}", i + 1),
                    host: a.ip().to_string(),
                    port: a.port(),
                    weight: 1,
                })
                .collect(),
            connect_timeout_ms: 300,
        })],
    }
}

#[tokio::test]
async fn an_lb_spec_runs_nginx_over_the_apps_and_reloads_in_place() {
    let mut agent = Agent::start().await;
    // Two stand-in apps: real NGINX answering `/` with their worker's pid.
    let dirs = [
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    ];
    let apps = [engines::unique_loopback(), engines::unique_loopback()];
    let mut upstreams: Vec<_> = dirs
        .iter()
        .zip(apps)
        .map(|(d, a)| engines::start(engines::nginx(d.path(), a, 1)))
        .collect();
    let mut answers = Vec::new();
    for app in apps {
        let a = wait_for("stand-in app", Duration::from_secs(10), || get_body(app)).await;
        answers.push(a);
    }
    let listen = engines::unique_loopback();
    let status_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();

    agent.accepted(&lb(listen, status_port, &apps, 1)).await;
    let status = agent
        .wait_role(Role::Lb, RoleState::Running, Duration::from_secs(20))
        .await;
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("round-robin over app-1, app-2")),
        "{status:?}"
    );
    // Round robin: both apps answer through the LB.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(get_body(listen).await.expect("through the lb"));
    }
    assert_eq!(seen, answers.iter().cloned().collect());
    let marker = format!("-c {}", agent.board.config.state_dir);
    let master = processes_with("nginx: master");
    let ours: Vec<_> = master
        .iter()
        .filter(|p| p.cmdline.contains(&marker))
        .collect();
    assert_eq!(ours.len(), 1, "{master:?}");
    let pid = ours[0].pid;
    // Its figures are sampled.
    let metrics = wait_for("lb figures", Duration::from_secs(10), || async {
        let text = agent.metrics().await;
        if text.contains("lab_nginx_up{role=\"lb\"} 1") {
            Ok(text)
        } else {
            Err("no lab_nginx_up 1 yet".to_string())
        }
    })
    .await;
    assert!(metrics.contains("lab_nginx_requests_total"), "{metrics}");

    // The app set shrinks: reloaded in place (same master), only app-1 answers.
    agent
        .accepted(&lb(listen, status_port, &apps[..1], 1))
        .await;
    wait_for(
        "only app-1 behind the lb",
        Duration::from_secs(10),
        || async {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..4 {
                seen.insert(get_body(listen).await?);
            }
            if seen == std::iter::once(answers[0].clone()).collect() {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await;
    let still: Vec<_> = processes_with("nginx: master")
        .into_iter()
        .filter(|p| p.cmdline.contains(&marker))
        .collect();
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].pid, pid, "reloaded, not restarted");
    let status = agent
        .wait_role(Role::Lb, RoleState::Running, Duration::from_secs(5))
        .await;
    assert_eq!(status.restarts, 0);

    agent.stop().await;
    assert!(
        processes_with(&marker).is_empty(),
        "the lb's nginx outlived the agent"
    );
    for mut u in upstreams.drain(..) {
        let _ = u
            .stop(lab_agent::engine::StopMode::Fast, Duration::from_secs(5))
            .await;
    }
}

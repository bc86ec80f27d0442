//! The agent side of the role contract (ARCHITECTURE.md, "Roles"): the control plane sends
//! the board's whole desired state with `PUT /v1/spec`; the agent stores it, converges to it
//! and reports each role in its health answer.
//!
//! - [`store`]: the held spec in `<state_dir>/spec.json` (atomic, 0600) and the decision
//!   on every PUT (400 malformed / wrong board / problems, 409 older epoch); a watch channel
//!   publishes each taken spec.
//! - [`reconciler`]: the task owning the running roles; converges on every spec (start, stop
//!   whole, restart, or repoint a replica without a restart).
//! - [`supervisor`]: one task per role: prepare, start, wait until it answers, set up, watch;
//!   restarts with backoff, failures reported with the log's tail.
//! - [`nginx`], [`app`], [`files`], [`cdn`], [`memcached`], [`mariadb`], [`keepalived`]: what each
//!   engine needs (command line,
//!   config, readiness, setup, reload in place); [`sql`]: the SQL text the database roles run, built and escaped in one place.
//!
//! - [`replication`]: `GET /v1/db`, the database's replication state read live.
//!
//! [`Roles::start`] loads the stored spec and starts the reconciler, so a rebooted board
//! comes back with its roles without the control plane.

pub mod app;
pub mod cdn;
pub mod files;
pub mod keepalived;
pub mod mariadb;
pub mod memcached;
pub mod nginx;
pub mod reconciler;
pub mod replication;
pub mod sql;
pub mod store;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;

use lab_api::spec::{RoleState, RoleStatus, SpecAccepted};
use lab_api::AgentConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::store::{Held, PutError, SpecStore};
use self::supervisor::{RoleDirs, StatusBoard};

/// The longest a role engine may take to stop whole: the slowest engine's stop deadline
/// (MariaDB flushing InnoDB) plus the SIGKILL confirmation. Whatever waits for the agent to
/// stop (its supervisor, `lab-agent stop`) waits at least this long on top of its own grace.
pub const LONGEST_STOP: std::time::Duration = std::time::Duration::from_secs(
    mariadb::STOP_DEADLINE.as_secs() + crate::engine::process::KILL_CONFIRM.as_secs(),
);
const _: () = assert!(mariadb::STOP_DEADLINE.as_secs() >= memcached::STOP_DEADLINE.as_secs());
const _: () = assert!(mariadb::STOP_DEADLINE.as_secs() >= nginx::STOP_DEADLINE.as_secs());
const _: () = assert!(mariadb::STOP_DEADLINE.as_secs() >= app::STOP_DEADLINE.as_secs());
const _: () = assert!(mariadb::STOP_DEADLINE.as_secs() >= keepalived::STOP_DEADLINE.as_secs());
const _: () = assert!(mariadb::STOP_DEADLINE.as_secs() >= files::STOP_DEADLINE.as_secs());
const _: () = assert!(mariadb::STOP_DEADLINE.as_secs() >= cdn::STOP_DEADLINE.as_secs());

/// What the API and the sampler hold of the roles: the spec store and the statuses.
#[derive(Clone)]
pub struct Roles {
    store: Arc<SpecStore>,
    statuses: StatusBoard,
    dirs: RoleDirs,
    reclones: tokio::sync::mpsc::Sender<reconciler::Reclone>,
}

impl Roles {
    /// Loads the stored spec and starts the reconciler; the task ends (every engine stopped
    /// whole) after `shutdown` is cancelled.
    pub async fn start(
        config: &AgentConfig,
        shutdown: CancellationToken,
    ) -> (Roles, JoinHandle<()>) {
        let dirs = RoleDirs {
            state_dir: PathBuf::from(&config.state_dir),
            log_dir: PathBuf::from(&config.log_dir),
        };
        let store = Arc::new(SpecStore::open(&config.board, &dirs.state_dir).await);
        let statuses = StatusBoard::default();
        let (reclones, reclone_orders) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(reconciler::run(
            store.subscribe(),
            reclone_orders,
            dirs.clone(),
            statuses.clone(),
            shutdown,
        ));
        let roles = Roles {
            store,
            statuses,
            dirs,
            reclones,
        };
        (roles, task)
    }

    /// Takes or refuses a `PUT /v1/spec` body.
    pub async fn put(&self, body: &[u8]) -> Result<SpecAccepted, PutError> {
        self.store.put(body).await
    }

    /// The spec held now.
    pub fn held(&self) -> Held {
        self.store.held()
    }

    /// Why the stored spec was unusable at start (until a new one is taken).
    pub fn load_problem(&self) -> Option<&str> {
        self.store.load_problem()
    }

    /// Follows the held spec (the sampler's role collectors).
    pub fn subscribe(&self) -> watch::Receiver<Held> {
        self.store.subscribe()
    }

    /// Where the database role keeps its socket (the collector reads it there).
    pub fn db_paths(&self) -> mariadb::DbPaths {
        mariadb::DbPaths::new(&self.dirs.state_dir)
    }

    /// The database's replication state, read now; `None` when the held spec has no
    /// database role.
    pub async fn db_replication(
        &self,
        board: &str,
    ) -> Option<anyhow::Result<lab_api::spec::DbReplication>> {
        let spec = self.held()?;
        let (db, replica) = spec.roles.iter().find_map(|r| match r {
            lab_api::spec::RoleConfig::DbMaster(d) => Some((d.clone(), false)),
            lab_api::spec::RoleConfig::DbReplica(d) => Some((d.clone(), true)),
            _ => None,
        })?;
        Some(replication::read(board, &self.db_paths(), &db, replica).await)
    }

    /// Has the reconciler reclone the database replica (see [`reconciler::Reclone`]).
    pub async fn reclone_db(&self) -> Result<String, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.reclones
            .send(reply)
            .await
            .map_err(|_| "the agent is stopping".to_string())?;
        answer
            .await
            .map_err(|_| "the agent is stopping".to_string())?
    }

    /// Health's `spec_epoch` and `roles`: one status per role of the held spec, in spec order.
    pub fn health(&self) -> (Option<u64>, Vec<RoleStatus>) {
        let Some(spec) = self.held() else {
            return (None, Vec::new());
        };
        let roles = spec
            .roles
            .iter()
            .map(|config| {
                let role = config.role();
                self.statuses.get(role).unwrap_or_else(|| RoleStatus {
                    role,
                    state: RoleState::Starting,
                    message: Some("waiting for the reconciler".into()),
                    log_tail: Vec::new(),
                    restarts: 0,
                    log: Some(supervisor::log_path(role, &self.dirs).display().to_string()),
                    config: None,
                })
            })
            .collect();
        (Some(spec.epoch), roles)
    }
}

/// Whether the system has a user `name` (looked up off the runtime: NSS may read files).
pub(crate) async fn user_exists(name: &str) -> bool {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || matches!(nix::unistd::User::from_name(&name), Ok(Some(_))))
        .await
        .unwrap_or(false)
}

/// An error and its causes on one line: "a: b: c".
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One readiness probe of our own servers (the app, the file store, the edge): `GET url`
/// answers 2xx within a second.
pub async fn health_answers(url: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        crate::collect::http::get(url, 4096),
    )
    .await
    .context("no answer within 1 s")?
    .map_err(|err| anyhow::anyhow!("{url}: {err}"))?;
    Ok(())
}

//! One role's supervisor: a task that keeps the role's engine running and says where it is.
//!
//! Loop: prepare (config, data directory) -> start the engine ([`crate::engine`], output
//! appended to `<log_dir>/<engine>.log`) -> poll until it answers, with a deadline -> role
//! setup -> `running`. When the engine exits or anything fails, the engine is stopped whole,
//! the role is `failed` with the reason and the last lines of its log, and it is started again
//! after a [`Backoff`] wait; `restarts` counts every restart, so a crash loop stays visible.
//! Cancelling the task stops the engine whole (graceful, with the engine's deadline) before
//! the task ends.
//!
//! While running, a changed config arriving on the task's watch channel is applied without a
//! restart; the reconciler sends one only when that is possible (a replica's primary moved,
//! a replica promoted: then the task reports under the new role).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lab_api::backoff::Backoff;
use lab_api::spec::{RoleConfig, RoleState, RoleStatus};
use lab_api::Role;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::app::{self, App};
use super::cdn::{self, Cdn};
use super::files::{self, Files};
use super::keepalived::{self, Vip};
use super::mariadb::{self, Db};
use super::memcached::{self, Cache};
use super::nginx::{self, Lb};
use crate::engine::{EngineCommand, EngineProcess, StopMode};

/// Lines of the engine's log shown with a failure.
pub const LOG_TAIL_LINES: usize = 15;
/// First and longest wait before a restart.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next failure waits [`BACKOFF_MIN`] again.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How often a running role's message is refreshed (a replica's replication state).
pub const REFRESH: Duration = Duration::from_secs(2);
/// Time between two readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Longest a running engine may take to apply a config change in place (a replica's repoint).
pub const APPLY_WITHIN: Duration = Duration::from_secs(30);

/// Where every role is, shared by the supervisors (writers) and health (reader).
#[derive(Clone, Default)]
pub struct StatusBoard(Arc<Mutex<Vec<RoleStatus>>>);

impl StatusBoard {
    fn set(&self, status: RoleStatus) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter_mut().find(|s| s.role == status.role) {
            Some(slot) => *slot = status,
            None => all.push(status),
        }
    }

    /// Forgets `role` (it was removed from the spec and is stopped).
    pub fn remove(&self, role: Role) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|s| s.role != role);
    }

    /// The status of `role`, if it is supervised.
    pub fn get(&self, role: Role) -> Option<RoleStatus> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().find(|s| s.role == role).cloned()
    }
}

/// Where a role's files go.
#[derive(Debug, Clone)]
pub struct RoleDirs {
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
}

/// The engine behind a role (enum dispatch: a few kinds, no trait objects needed).
enum RoleEngine {
    Lb(Box<Lb>),
    App(Box<App>),
    Cache(Cache),
    Db(Box<Db>),
    Vip(Box<Vip>),
    Files(Box<Files>),
    Cdn(Box<Cdn>),
}

impl RoleEngine {
    fn new(config: &RoleConfig, dirs: &RoleDirs) -> RoleEngine {
        let log = log_path(config.role(), dirs);
        match config {
            RoleConfig::Lb(l) => RoleEngine::Lb(Box::new(Lb::new(l.clone(), &dirs.state_dir, log))),
            RoleConfig::App(a) => {
                RoleEngine::App(Box::new(App::new(a.clone(), &dirs.state_dir, log)))
            }
            RoleConfig::Cache(c) => RoleEngine::Cache(Cache {
                config: c.clone(),
                log,
            }),
            RoleConfig::DbMaster(d) => {
                RoleEngine::Db(Box::new(Db::new(d.clone(), false, &dirs.state_dir, log)))
            }
            RoleConfig::DbReplica(d) => {
                RoleEngine::Db(Box::new(Db::new(d.clone(), true, &dirs.state_dir, log)))
            }
            RoleConfig::Cdn(c) => {
                RoleEngine::Cdn(Box::new(Cdn::new(c.clone(), &dirs.state_dir, log)))
            }
            RoleConfig::Files(f) => {
                RoleEngine::Files(Box::new(Files::new(f.clone(), &dirs.state_dir, log)))
            }
            RoleConfig::Vip(v) => {
                RoleEngine::Vip(Box::new(Vip::new(v.clone(), &dirs.state_dir, log)))
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            RoleEngine::Lb(_) => "nginx",
            RoleEngine::App(_) => "lab-app",
            RoleEngine::Cache(_) => "memcached",
            RoleEngine::Db(_) => "mariadbd",
            RoleEngine::Vip(_) => "keepalived",
            RoleEngine::Files(_) => "lab-files",
            RoleEngine::Cdn(_) => "lab-cdn",
        }
    }

    fn log(&self) -> &Path {
        match self {
            RoleEngine::Lb(l) => &l.log,
            RoleEngine::App(a) => &a.log,
            RoleEngine::Cache(c) => &c.log,
            RoleEngine::Db(d) => &d.log,
            RoleEngine::Vip(v) => &v.log,
            RoleEngine::Files(f) => &f.log,
            RoleEngine::Cdn(c) => &c.log,
        }
    }

    fn ready_within(&self) -> Duration {
        match self {
            RoleEngine::Lb(_) => nginx::READY_WITHIN,
            RoleEngine::App(_) => app::READY_WITHIN,
            RoleEngine::Cache(_) => memcached::READY_WITHIN,
            RoleEngine::Db(_) => mariadb::READY_WITHIN,
            RoleEngine::Vip(_) => keepalived::READY_WITHIN,
            RoleEngine::Files(_) => files::READY_WITHIN,
            RoleEngine::Cdn(_) => cdn::READY_WITHIN,
        }
    }

    fn stop_deadline(&self) -> Duration {
        match self {
            RoleEngine::Lb(_) => nginx::STOP_DEADLINE,
            RoleEngine::App(_) => app::STOP_DEADLINE,
            RoleEngine::Cache(_) => memcached::STOP_DEADLINE,
            RoleEngine::Db(_) => mariadb::STOP_DEADLINE,
            RoleEngine::Vip(_) => keepalived::STOP_DEADLINE,
            RoleEngine::Files(_) => files::STOP_DEADLINE,
            RoleEngine::Cdn(_) => cdn::STOP_DEADLINE,
        }
    }

    async fn prepare(&mut self) -> anyhow::Result<EngineCommand> {
        match self {
            RoleEngine::Lb(l) => l.prepare().await,
            RoleEngine::App(a) => a.prepare().await,
            RoleEngine::Cache(c) => c.prepare().await,
            RoleEngine::Db(d) => d.prepare().await,
            RoleEngine::Vip(v) => v.prepare().await,
            RoleEngine::Files(f) => f.prepare().await,
            RoleEngine::Cdn(c) => c.prepare().await,
        }
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        match self {
            RoleEngine::Lb(l) => l.ready().await,
            RoleEngine::App(a) => a.ready().await,
            RoleEngine::Cache(c) => c.ready().await,
            RoleEngine::Db(d) => d.ready().await,
            RoleEngine::Vip(v) => v.ready().await,
            RoleEngine::Files(f) => f.ready().await,
            RoleEngine::Cdn(c) => c.ready().await,
        }
    }

    async fn setup(&mut self) -> anyhow::Result<String> {
        match self {
            RoleEngine::Lb(l) => Ok(l.message()),
            RoleEngine::App(a) => Ok(a.message()),
            RoleEngine::Cache(c) => Ok(c.message()),
            RoleEngine::Db(d) => d.setup().await,
            RoleEngine::Vip(v) => Ok(v.message()),
            RoleEngine::Files(f) => Ok(f.message()),
            RoleEngine::Cdn(c) => Ok(c.message()),
        }
    }

    /// The running message again (None: keep the old one).
    async fn refresh(&mut self) -> Option<String> {
        match self {
            RoleEngine::Lb(_)
            | RoleEngine::App(_)
            | RoleEngine::Cache(_)
            | RoleEngine::Files(_)
            | RoleEngine::Cdn(_) => None,
            // The address moves without the agent: say where it is now.
            RoleEngine::Vip(v) => Some(v.message()),
            RoleEngine::Db(d) => {
                let fresh = tokio::time::timeout(Duration::from_secs(1), d.message()).await;
                match fresh {
                    Ok(Ok(text)) => Some(text),
                    Ok(Err(err)) => {
                        log::debug!("refreshing the database's state: {err:#}");
                        d.disconnect();
                        if d.ready().await.is_err() {
                            return Some("running, but root cannot log in over its socket".into());
                        }
                        None
                    }
                    Err(_) => None,
                }
            }
        }
    }

    /// Applies a config changed in a way that needs no restart (`pid`: the engine's main
    /// process, for those that reload on a signal).
    async fn apply(&mut self, config: &RoleConfig, pid: i32) -> anyhow::Result<String> {
        match (self, config) {
            (RoleEngine::Db(d), RoleConfig::DbReplica(c)) => d.repoint(c.clone()).await,
            (RoleEngine::Db(d), RoleConfig::DbMaster(c)) => d.promote(c.clone()).await,
            (RoleEngine::Lb(l), RoleConfig::Lb(c)) => l.reload(c.clone(), pid).await,
            (RoleEngine::App(a), RoleConfig::App(c)) => a.reload(c.clone(), pid).await,
            _ => anyhow::bail!("this change needs a restart"),
        }
    }
}

/// `<log_dir>/<engine>.log` of `role`.
pub fn log_path(role: Role, dirs: &RoleDirs) -> PathBuf {
    dirs.log_dir.join(format!("{}.log", role.engine().as_str()))
}

/// Why one run of the engine ended.
enum Ended {
    Cancelled,
    Failed(String),
}

/// Supervises the role in `config` until `cancel`; returns once its engine is stopped whole.
pub async fn supervise(
    mut config: watch::Receiver<RoleConfig>,
    dirs: RoleDirs,
    statuses: StatusBoard,
    cancel: CancellationToken,
) {
    let mut role = config.borrow().role();
    let log = log_path(role, &dirs);
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut restarts = 0u32;
    let mut last_failure: Option<(String, Vec<String>)> = None;
    loop {
        let current = config.borrow_and_update().clone();
        // The role can change under a running engine (a replica promoted in place).
        if current.role() != role {
            statuses.remove(role);
            role = current.role();
        }
        let mut engine = RoleEngine::new(&current, &dirs);
        let status = |role, state, message: Option<String>, log_tail: Vec<String>| RoleStatus {
            role,
            state,
            message,
            log_tail,
            restarts,
            log: Some(log.display().to_string()),
            config: None,
        };
        let (message, tail) = match &last_failure {
            Some((why, tail)) => (format!("restarting after: {why}"), tail.clone()),
            None => ("starting".to_string(), Vec::new()),
        };
        statuses.set(status(role, RoleState::Starting, Some(message), tail));
        let begun = Instant::now();
        let mut process = None;
        let ended = run(
            &mut engine,
            &mut process,
            &mut config,
            &cancel,
            current.fingerprint(),
            &|now: Role, message, fingerprint| {
                if now != role {
                    statuses.remove(role);
                }
                statuses.set(RoleStatus {
                    config: Some(fingerprint),
                    ..status(now, RoleState::Running, Some(message), Vec::new())
                });
            },
        )
        .await;
        if let Some(mut process) = process {
            stop(&mut process, engine.stop_deadline()).await;
        }
        let why = match ended {
            Ended::Cancelled => return,
            Ended::Failed(why) => why,
        };
        let tail = log_tail(&log, LOG_TAIL_LINES).await;
        log::warn!(
            "role {role}: {why}; restart {} follows{}",
            restarts + 1,
            if tail.is_empty() {
                String::new()
            } else {
                format!(
                    "; last lines of {}:\n  {}",
                    log.display(),
                    tail.join("\n  ")
                )
            }
        );
        let failed_as = config.borrow().role();
        if failed_as != role {
            statuses.remove(role);
            role = failed_as;
        }
        statuses.set(status(
            role,
            RoleState::Failed,
            Some(why.clone()),
            tail.clone(),
        ));
        last_failure = Some((why, tail));
        let delay = backoff.delay_after(begun.elapsed(), HEALTHY_AFTER);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        restarts = restarts.saturating_add(1);
    }
}

/// One run: prepare, start, wait until it answers, set up, then watch it.
async fn run(
    engine: &mut RoleEngine,
    process: &mut Option<EngineProcess>,
    config: &mut watch::Receiver<RoleConfig>,
    cancel: &CancellationToken,
    mut fingerprint: String,
    running: &(dyn Fn(Role, String, String) + Sync),
) -> Ended {
    let name = engine.name();
    if let Some(dir) = engine.log().parent() {
        if let Err(err) = tokio::fs::create_dir_all(dir).await {
            return Ended::Failed(format!("cannot create {}: {err}", dir.display()));
        }
    }
    let command = tokio::select! {
        _ = cancel.cancelled() => return Ended::Cancelled,
        prepared = engine.prepare() => match prepared {
            Ok(command) => command,
            Err(err) => return Ended::Failed(format!("{err:#}")),
        },
    };
    let proc = match EngineProcess::start(command) {
        Ok(p) => process.insert(p),
        Err(err) => return Ended::Failed(super::error_chain(&err)),
    };
    let deadline = Instant::now() + engine.ready_within();
    loop {
        let probe = tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            status = proc.exited() => return Ended::Failed(exited(name, status)),
            probe = engine.ready() => probe,
        };
        match probe {
            Ok(()) => break,
            Err(err) if Instant::now() >= deadline => {
                return Ended::Failed(format!(
                    "{name} did not answer within {} s: {err:#}",
                    engine.ready_within().as_secs()
                ))
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            status = proc.exited() => return Ended::Failed(exited(name, status)),
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
    let message = tokio::select! {
        _ = cancel.cancelled() => return Ended::Cancelled,
        status = proc.exited() => return Ended::Failed(exited(name, status)),
        setup = engine.setup() => match setup {
            Ok(message) => message,
            Err(err) => return Ended::Failed(format!("setting up {name}: {err:#}")),
        },
    };
    log::info!("{name} (pid {}) running: {message}", proc.pid());
    let mut role = config.borrow().role();
    running(role, message, fingerprint.clone());
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            status = proc.exited() => return Ended::Failed(exited(name, status)),
            changed = config.changed() => {
                if changed.is_err() {
                    return Ended::Cancelled; // the reconciler is gone
                }
                let new = config.borrow_and_update().clone();
                // A hung server must neither hold up a shutdown nor the next spec forever.
                let applied = tokio::select! {
                    _ = cancel.cancelled() => return Ended::Cancelled,
                    applied = tokio::time::timeout(APPLY_WITHIN, engine.apply(&new, proc.pid())) => applied,
                };
                match applied {
                    Ok(Ok(message)) => {
                        log::info!("{name}: applied the new config without a restart: {message}");
                        fingerprint = new.fingerprint();
                        role = new.role();
                        running(role, message, fingerprint.clone());
                    }
                    Ok(Err(err)) => return Ended::Failed(format!("applying the new config: {err:#}")),
                    Err(_) => {
                        return Ended::Failed(format!(
                            "applying the new config: {name} did not answer within {} s",
                            APPLY_WITHIN.as_secs()
                        ))
                    }
                }
            }
            _ = refresh.tick() => {
                let refreshed = tokio::select! {
                    _ = cancel.cancelled() => return Ended::Cancelled,
                    refreshed = engine.refresh() => refreshed,
                };
                if let Some(message) = refreshed {
                    running(role, message, fingerprint.clone());
                }
            }
        }
    }
}

/// Stops `process` whole (graceful, then the group SIGKILLed at the deadline), logging how.
async fn stop(process: &mut EngineProcess, deadline: Duration) {
    match process.stop(StopMode::Graceful, deadline).await {
        Ok(report) => log::info!("{report}"),
        // Dropping the process SIGKILLs its group as a last resort.
        Err(err) => log::error!("stopping {}: {}", process.name(), super::error_chain(&err)),
    }
}

/// "mariadbd exited with status 1", "memcached was killed by signal 9".
fn exited(name: &str, status: Result<ExitStatus, crate::engine::EngineError>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("{name} exited with status {code}"),
            (None, Some(signal)) => format!("{name} was killed by signal {signal}"),
            _ => format!("{name} exited ({s})"),
        },
        Err(err) => format!("{name}: {}", super::error_chain(&err)),
    }
}

/// The last `lines` non-empty lines of the file at `path` (read from its last 16 KiB).
pub async fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    let len = file.metadata().await.map_or(0, |m| m.len());
    if file
        .seek(std::io::SeekFrom::Start(len.saturating_sub(WINDOW)))
        .await
        .is_err()
    {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).await.is_err() {
        return Vec::new();
    }
    tail_lines(&String::from_utf8_lossy(&bytes), lines)
}

fn tail_lines(text: &str, lines: usize) -> Vec<String> {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let text = "a\n\nb\nc\nd\n";
        assert_eq!(tail_lines(text, 2), ["c", "d"]);
        assert_eq!(tail_lines(text, 10), ["a", "b", "c", "d"]);
        assert!(tail_lines("", 3).is_empty());
    }
}

//! What requests share: the current [`Backends`] (config, database pools, cache ring, token
//! key), swapped whole on reload, plus what lives as long as the process (stats, the password
//! hasher). A request takes the current backends once (an `Arc` clone) and finishes with
//! them even if a reload swaps in new ones meanwhile; the old ones are closed once the last
//! request using them is done ([`App::retire`]).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use lab_api::spec::AppConfig;

use super::cache::Cache;
use super::db::Db;
use super::password::Hasher;
use super::sessions::LocalSessions;
use super::stats::Stats;
use super::token::TokenKey;

/// How long retired backends may stay in use by requests in flight before they are closed
/// regardless.
pub const RETIRE_WITHIN: Duration = Duration::from_secs(30);
/// How long closing a retired pool may wait for its connections.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Everything that comes from one config.
pub struct Backends {
    pub config: AppConfig,
    pub db: Db,
    pub cache: Cache,
    pub tokens: TokenKey,
}

impl Backends {
    /// Pools and ring for `config` (one connection per pool is opened in the background).
    pub fn new(config: AppConfig, stats: &Arc<Stats>) -> Backends {
        let db = Db::new(&config.db, stats.clone());
        db.warm();
        Backends {
            db,
            cache: Cache::new(&config.caches, config.cache_hashing, stats.clone()),
            tokens: TokenKey::new(config.jwt_key.as_bytes()),
            config,
        }
    }

    /// One line for the log: where it reads and writes.
    pub fn describe(&self) -> String {
        let caches: Vec<String> = self
            .config
            .caches
            .iter()
            .map(|c| format!("{} ({}:{})", c.board, c.host, c.port))
            .collect();
        format!(
            "{}; cache boards [{}]",
            self.db.describe(),
            caches.join(", ")
        )
    }

    /// Closes the database pools (the cache's checkers stop when it is dropped).
    pub async fn close(self) {
        self.db.close(CLOSE_WITHIN).await;
    }
}

/// The app's shared state.
pub struct App {
    current: RwLock<Arc<Backends>>,
    pub stats: Arc<Stats>,
    pub hasher: Hasher,
    /// Logins kept in this process (`sessions = "local"`); they outlive reloads.
    pub sessions: LocalSessions,
}

impl App {
    pub fn new(backends: Backends, stats: Arc<Stats>) -> App {
        App {
            current: RwLock::new(Arc::new(backends)),
            stats,
            hasher: Hasher::new(),
            sessions: LocalSessions::default(),
        }
    }

    /// The backends requests use now.
    pub fn backends(&self) -> Arc<Backends> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `backends` in use; the previous ones, to be retired.
    pub fn swap(&self, backends: Backends) -> Arc<Backends> {
        let new = Arc::new(backends);
        match self.current.write() {
            Ok(mut current) => std::mem::replace(&mut *current, new),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), new),
        }
    }

    /// The backends in use, the app being done.
    pub fn into_backends(self) -> Arc<Backends> {
        match self.current.into_inner() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Closes `old` once no request holds it any more (or after [`RETIRE_WITHIN`]).
    pub async fn retire(old: Arc<Backends>) {
        let deadline = Instant::now() + RETIRE_WITHIN;
        let mut old = old;
        loop {
            match Arc::try_unwrap(old) {
                Ok(backends) => {
                    backends.close().await;
                    return;
                }
                Err(still_shared) if Instant::now() >= deadline => {
                    log::warn!("old backends still in use after {RETIRE_WITHIN:?}; dropping them");
                    drop(still_shared);
                    return;
                }
                Err(still_shared) => {
                    old = still_shared;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

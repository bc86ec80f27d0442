//! The one sampling task: every [`INTERVAL`] it reads the host ([`crate::hostmetrics`]) and
//! asks every role collector concurrently ([`crate::collect`]), then publishes a
//! [`lab_api::metrics::Sample`] on a watch channel.
//!
//! Besides the collectors of the agent's config, it samples the roles of the held spec
//! (memcached at its address, MariaDB over its socket as the monitor user), following spec
//! changes: the collectors are rebuilt only when what they would read changes, so a kept
//! MariaDB connection survives unrelated spec changes.
//!
//! All readers (health, every samples stream, `/metrics`) take the latest value from the
//! channel: nobody samples on demand, a slow reader only ever skips to the newest sample, and
//! the sample is serialized to its NDJSON line once, here, not once per client.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lab_api::metrics::Sample;
use lab_api::spec::RoleConfig;
use lab_api::{CollectorConfig, Engine};
use std::path::{Path, PathBuf};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::collect::{self, Collector};
use crate::hostmetrics::HostSampler;
use crate::roles::store::Held;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The latest sample and its NDJSON line (JSON plus `\n`).
#[derive(Debug, Clone)]
pub struct Latest {
    pub sample: Arc<Sample>,
    pub line: Bytes,
}

impl Latest {
    fn new(sample: Sample) -> Self {
        let mut line = serde_json::to_vec(&sample).unwrap_or_else(|err| {
            log::error!("cannot serialize sample {}: {err}", sample.seq);
            b"{}".to_vec()
        });
        line.push(b'\n');
        Latest {
            sample: Arc::new(sample),
            line: Bytes::from(line),
        }
    }
}

/// The sampler's state between ticks.
struct Sampler {
    board: String,
    seq: u64,
    host: HostSampler,
    /// The configured collectors first ([`Sampler::fixed`] of them), then the spec's.
    collectors: Vec<Collector>,
    fixed: usize,
    specs: watch::Receiver<Held>,
    spec_configs: Vec<CollectorConfig>,
    db_socket: PathBuf,
}

/// What to sample for the roles of `spec`: memcached at its address, MariaDB over
/// `db_socket` as the monitor user.
pub fn spec_collectors(spec: &Held, db_socket: &Path) -> Vec<CollectorConfig> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    spec.roles
        .iter()
        .filter_map(|role| {
            Some(match role {
                RoleConfig::Lb(l) => CollectorConfig {
                    role: role.role(),
                    engine: Engine::Nginx,
                    address: format!("http://127.0.0.1:{}/stub_status", l.status_port),
                },
                RoleConfig::App(a) => CollectorConfig {
                    role: role.role(),
                    engine: Engine::LabApp,
                    address: format!("http://{}:{}{}", a.bind, a.port, lab_api::app::paths::STATS),
                },
                RoleConfig::Cache(c) => CollectorConfig {
                    role: role.role(),
                    engine: Engine::Memcached,
                    address: format!("{}:{}", c.bind, c.port),
                },
                RoleConfig::DbMaster(d) | RoleConfig::DbReplica(d) => CollectorConfig {
                    role: role.role(),
                    engine: Engine::Mariadb,
                    address: format!(
                        "{}:{}@{}",
                        d.users.monitor.user,
                        d.users.monitor.password,
                        db_socket.display()
                    ),
                },
                RoleConfig::Cdn(c) => CollectorConfig {
                    role: role.role(),
                    engine: Engine::LabCdn,
                    address: format!("http://{}:{}{}", c.bind, c.port, lab_api::files::STATS),
                },
                RoleConfig::Files(f) => CollectorConfig {
                    role: role.role(),
                    engine: Engine::LabFiles,
                    address: format!("http://{}:{}{}", f.bind, f.port, lab_api::files::STATS),
                },
                // keepalived has no figures to sample; where the address is shows in health.
                RoleConfig::Vip(_) => return None,
            })
        })
        .collect()
}

impl Sampler {
    /// Rebuilds the spec's collectors if what they read changed.
    fn follow_spec(&mut self) {
        let held = self.specs.borrow_and_update().clone();
        let wanted = spec_collectors(&held, &self.db_socket);
        if wanted != self.spec_configs {
            self.collectors.truncate(self.fixed);
            self.collectors
                .extend(wanted.iter().cloned().map(Collector::new));
            self.spec_configs = wanted;
        }
    }

    async fn sample(&mut self) -> Sample {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let host = self.host.sample();
        if self.specs.has_changed().unwrap_or(false) {
            self.follow_spec();
        }
        let roles = collect::collect_all(&mut self.collectors).await;
        let sample = Sample {
            board: self.board.clone(),
            seq: self.seq,
            timestamp_ms,
            host,
            roles,
        };
        self.seq += 1;
        sample
    }
}

/// Takes the first sample (roles included, each bounded by [`collect::TIMEOUT`]), then
/// starts the sampler on `tracker`; it stops when `shutdown` is cancelled, which closes the
/// channel and so ends every stream. `specs` is the held spec (its roles are sampled too),
/// `db_socket` where a database role's server listens.
pub async fn spawn(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    board: &str,
    collectors: &[CollectorConfig],
    specs: watch::Receiver<Held>,
    db_socket: PathBuf,
) -> watch::Receiver<Latest> {
    let mut sampler = Sampler {
        board: board.to_string(),
        seq: 0,
        host: HostSampler::new(),
        collectors: collectors.iter().cloned().map(Collector::new).collect(),
        fixed: collectors.len(),
        specs,
        spec_configs: Vec::new(),
        db_socket,
    };
    sampler.follow_spec();
    let first = Latest::new(sampler.sample().await);
    let (tx, rx) = watch::channel(first);
    tracker.spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick completes immediately
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    let sample = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        sample = sampler.sample() => sample,
                    };
                    tx.send_replace(Latest::new(sample));
                }
            }
        }
        log::debug!("sampler stopped");
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_sample_is_immediate_and_sampler_stops() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let down = CollectorConfig {
            role: lab_api::Role::Cache,
            engine: lab_api::Engine::Memcached,
            address: "127.0.0.1:1".into(),
        };
        let spec = lab_api::spec::BoardSpec {
            board: "pi-x".into(),
            epoch: 1,
            roles: vec![RoleConfig::Cache(lab_api::spec::CacheConfig {
                bind: "127.0.0.1".into(),
                port: 1,
                memory_mb: 8,
            })],
        };
        let (_spec_tx, spec_rx) = watch::channel(Some(Arc::new(spec)));
        let mut rx = spawn(
            &tracker,
            shutdown.clone(),
            "pi-x",
            &[down],
            spec_rx,
            PathBuf::from("/nonexistent"),
        )
        .await;
        let latest = rx.borrow_and_update().clone();
        assert_eq!(latest.sample.board, "pi-x");
        assert_eq!(latest.sample.seq, 0);
        assert!(!latest.sample.host.cpu_per_core.is_empty());
        assert!(latest.sample.host.mem_total_bytes > 0);
        assert_eq!(latest.sample.roles.len(), 2, "configured + the spec's");
        assert!(!latest.sample.roles[0].up);
        assert_eq!(latest.sample.roles[1].role, lab_api::Role::Cache);
        assert!(latest.line.ends_with(b"\n"));
        let parsed: Sample = serde_json::from_slice(&latest.line).expect("NDJSON line");
        assert_eq!(&parsed, latest.sample.as_ref());
        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("sampler did not stop on shutdown");
        assert!(
            rx.changed().await.is_err(),
            "channel closed with the sampler"
        );
    }
}

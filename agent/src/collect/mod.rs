//! Role collectors: one module per engine, each turning one answer of its engine into a
//! [`RoleSample`] with stable figure names (documented in the module).
//!
//! [`Collector`] is built from a [`CollectorConfig`] and asked once per sample; every call
//! runs under [`TIMEOUT`], and an engine that does not answer in time (or at all, or with
//! garbage) yields `up: false` and no figures: a collector never stops the sampler.
//! [`collect_all`] runs all collectors of the agent concurrently.
//!
//! - [`nginx`]: `stub_status` over plain HTTP ([`http`]).
//! - [`lab_app`]: our app's stats page (JSON) over plain HTTP.
//! - [`memcached`]: the `stats` command over TCP.
//! - [`mariadb`]: status, read-only flag and replication over the MySQL protocol
//!   (`mysql_async`).

pub mod http;
pub mod lab_app;
pub mod lab_cdn;
pub mod lab_files;
pub mod mariadb;
pub mod memcached;
pub mod nginx;

use std::time::Duration;

use lab_api::metrics::{Figure, RoleSample};
use lab_api::{CollectorConfig, Engine};
use tokio::task::JoinSet;

/// Longest time one collector may take per sample.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// What a collector found: figures and text labels of an engine that answered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reading {
    pub figures: Vec<Figure>,
    pub labels: Vec<(String, String)>,
}

/// Why an engine gave no reading (logged at debug level; the sample says `up: false`).
pub type CollectError = Box<dyn std::error::Error + Send + Sync>;

/// A counter figure.
pub fn counter(name: &str, value: f64) -> Figure {
    Figure {
        name: name.to_string(),
        value,
        counter: true,
    }
}

/// A gauge figure.
pub fn gauge(name: &str, value: f64) -> Figure {
    Figure {
        name: name.to_string(),
        value,
        counter: false,
    }
}

/// How one engine is read, with what must survive between samples.
enum Source {
    Nginx,
    LabApp,
    LabFiles,
    LabCdn,
    Memcached,
    Mariadb(Box<mariadb::Mariadb>),
    /// An engine without a collector yet: reported as down.
    None,
}

/// One configured role engine, with whatever state its engine needs between samples (a
/// MariaDB connection is kept open).
pub struct Collector {
    config: CollectorConfig,
    source: Source,
}

impl Collector {
    pub fn new(config: CollectorConfig) -> Self {
        let source = match config.engine {
            Engine::Nginx => Source::Nginx,
            Engine::Memcached => Source::Memcached,
            Engine::LabApp => Source::LabApp,
            Engine::LabFiles => Source::LabFiles,
            Engine::LabCdn => Source::LabCdn,
            Engine::Mariadb => Source::Mariadb(Box::new(mariadb::Mariadb::new(&config.address))),
            other => {
                log::warn!(
                    "role {}: no collector for engine {other}; reported as down",
                    config.role
                );
                Source::None
            }
        };
        Collector { config, source }
    }

    /// Asks the engine once, under [`TIMEOUT`].
    pub async fn collect(&mut self) -> RoleSample {
        let address = self.config.address.as_str();
        let result = tokio::time::timeout(TIMEOUT, async {
            match &mut self.source {
                Source::Nginx => nginx::collect(address).await,
                Source::LabApp => lab_app::collect(address).await,
                Source::LabFiles => lab_files::collect(address).await,
                Source::LabCdn => lab_cdn::collect(address).await,
                Source::Memcached => memcached::collect(address).await,
                Source::Mariadb(db) => db.collect().await,
                Source::None => Err("no collector for this engine".into()),
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}").into()));
        if result.is_err() {
            if let Source::Mariadb(db) = &mut self.source {
                db.disconnect();
            }
        }
        let mut sample = RoleSample {
            role: self.config.role,
            engine: self.config.engine,
            up: false,
            figures: Vec::new(),
            labels: Vec::new(),
        };
        match result {
            Ok(reading) => {
                sample.up = true;
                sample.figures = reading.figures;
                sample.labels = reading.labels;
            }
            Err(err) => log::debug!(
                "role {} ({} at {}): down: {err}",
                self.config.role,
                self.config.engine,
                match self.config.engine {
                    Engine::Mariadb => mariadb::redacted(&self.config.address),
                    _ => self.config.address.clone(),
                }
            ),
        }
        sample
    }
}

/// Runs every collector concurrently and returns their samples in configuration order.
/// The collectors are moved into tasks and put back afterwards.
pub async fn collect_all(collectors: &mut Vec<Collector>) -> Vec<RoleSample> {
    if collectors.is_empty() {
        return Vec::new();
    }
    let mut set = JoinSet::new();
    for (i, mut collector) in collectors.drain(..).enumerate() {
        set.spawn(async move {
            let sample = collector.collect().await;
            (i, collector, sample)
        });
    }
    let mut done = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(item) => done.push(item),
            Err(err) => log::error!("collector task failed: {err}"),
        }
    }
    done.sort_by_key(|(i, _, _)| *i);
    let mut samples = Vec::with_capacity(done.len());
    for (_, collector, sample) in done {
        collectors.push(collector);
        samples.push(sample);
    }
    samples
}

//! The cdn role, as the agent runs it: our edge (`lab-agent cdn`, [`crate::cdn`]) as a
//! separate supervised process of the same binary, like the app. Its config is the spec's
//! [`CdnConfig`], written to `<state>/cdn/cdn.json`. Ready when its health page answers. The
//! cache lives in its memory: a changed config restarts it empty.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lab_api::spec::CdnConfig;

use crate::engine::{EngineCommand, StopSignals};

/// How long the edge may take to answer after it was started.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// TERM lets answers in flight end (it stops accepting at once).
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// One cdn role.
pub struct Cdn {
    pub config: CdnConfig,
    pub file: PathBuf,
    pub log: PathBuf,
}

impl Cdn {
    pub fn new(config: CdnConfig, state_dir: &Path, log: PathBuf) -> Cdn {
        Cdn {
            config,
            file: state_dir.join("cdn").join("cdn.json"),
            log,
        }
    }

    /// Writes the config; the command line (this very binary, `cdn --config`).
    pub async fn prepare(&self) -> anyhow::Result<EngineCommand> {
        if let Some(dir) = self.file.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(&self.config)?;
        super::store::write_atomically_off_runtime(self.file.clone(), bytes)
            .await
            .with_context(|| format!("writing {}", self.file.display()))?;
        let exe = std::env::current_exe().context("finding the agent's own binary")?;
        Ok(EngineCommand::new("lab-cdn", exe, StopSignals::TERM)
            .arg("cdn")
            .arg("--config")
            .arg(&self.file)
            .log_to(&self.log))
    }

    /// One probe: the health page answers 200.
    pub async fn ready(&self) -> anyhow::Result<()> {
        super::health_answers(&format!(
            "http://{}:{}{}",
            self.config.bind,
            self.config.port,
            lab_api::files::HEALTH
        ))
        .await
    }

    /// What health says while it runs.
    pub fn message(&self) -> String {
        let c = &self.config;
        format!(
            "edge on {}:{}, {} over {} MiB, {} bucket origin(s){}",
            c.bind,
            c.port,
            c.policy,
            c.memory_bytes >> 20,
            c.origins.len(),
            if c.fallback.is_some() {
                ", the rest from the LB"
            } else {
                ""
            }
        )
    }
}

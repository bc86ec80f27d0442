//! The app role, as the agent runs it: our own server (`lab-agent app`, [`crate::app`]) as a
//! separate supervised process of the same binary, so it can crash or be killed alone. Its
//! config is the spec's [`AppConfig`], written to `<state>/app/app.json` (0600: it holds the
//! database password and the token key). Ready when [`paths::HEALTH`] answers. A changed
//! config on the same address (another cache set, a moved primary) is applied in place: the
//! file is rewritten and the app sent HUP, and it re-reads it without dropping a request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lab_api::app::paths;
use lab_api::spec::AppConfig;

use crate::engine::{EngineCommand, StopSignals};

/// How long the app may take to answer after it was started.
pub const READY_WITHIN: Duration = Duration::from_secs(20);
/// TERM lets it finish requests in flight (it stops accepting at once).
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// One app role.
pub struct App {
    pub config: AppConfig,
    pub file: PathBuf,
    pub log: PathBuf,
}

impl App {
    pub fn new(config: AppConfig, state_dir: &Path, log: PathBuf) -> App {
        App {
            config,
            file: state_dir.join("app").join("app.json"),
            log,
        }
    }

    async fn write_config(&self) -> anyhow::Result<()> {
        if let Some(dir) = self.file.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(&self.config)?;
        super::store::write_atomically_off_runtime(self.file.clone(), bytes)
            .await
            .with_context(|| format!("writing {}", self.file.display()))
    }

    /// Writes the config; the command line (this very binary, `app --config <file>`).
    pub async fn prepare(&self) -> anyhow::Result<EngineCommand> {
        self.write_config().await?;
        let exe = std::env::current_exe().context("finding the agent's own binary")?;
        Ok(EngineCommand::new("lab-app", exe, StopSignals::TERM)
            .arg("app")
            .arg("--config")
            .arg(&self.file)
            .log_to(&self.log))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.config.bind, self.config.port)
    }

    /// One probe: the health page answers 200.
    pub async fn ready(&self) -> anyhow::Result<()> {
        super::health_answers(&self.url(paths::HEALTH)).await
    }

    /// Takes `config` in place: rewritten, then the app (`pid`) re-reads it on HUP.
    pub async fn reload(&mut self, config: AppConfig, pid: i32) -> anyhow::Result<String> {
        self.config = config;
        self.write_config().await?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .context("asking the app to re-read its config")?;
        Ok(self.message())
    }

    /// What health says while it runs.
    pub fn message(&self) -> String {
        let c = &self.config;
        format!(
            "listening on {}:{}, database primary {}, {} replica(s), {} cache board(s)",
            c.bind,
            c.port,
            c.db.primary.as_ref().map_or("none", |p| p.board.as_str()),
            c.db.replicas.len(),
            c.caches.len()
        )
    }
}

//! The files role, as the agent runs it: our own object store (`lab-agent files`,
//! [`crate::files`]) as a separate supervised process of the same binary, like the app. Its
//! config is the spec's [`FilesConfig`], written to `<state>/files/files.json`; the objects
//! live in `<state>/files/data/<bucket>/`, kept across restarts and spec changes. Ready when
//! its health page answers. A changed bucket set restarts it (a few milliseconds).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lab_api::spec::FilesConfig;

use crate::engine::{EngineCommand, StopSignals};
use crate::files::http::HEALTH;

/// How long the store may take to answer after it was started.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// TERM lets transfers in flight end (it stops accepting at once).
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// One files role.
pub struct Files {
    pub config: FilesConfig,
    pub file: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Files {
    pub fn new(config: FilesConfig, state_dir: &Path, log: PathBuf) -> Files {
        let dir = state_dir.join("files");
        Files {
            config,
            file: dir.join("files.json"),
            data: dir.join("data"),
            log,
        }
    }

    /// Writes the config; the command line (this very binary, `files --config --data`).
    pub async fn prepare(&self) -> anyhow::Result<EngineCommand> {
        tokio::fs::create_dir_all(&self.data)
            .await
            .with_context(|| format!("creating {}", self.data.display()))?;
        let bytes = serde_json::to_vec_pretty(&self.config)?;
        super::store::write_atomically_off_runtime(self.file.clone(), bytes)
            .await
            .with_context(|| format!("writing {}", self.file.display()))?;
        let exe = std::env::current_exe().context("finding the agent's own binary")?;
        Ok(EngineCommand::new("lab-files", exe, StopSignals::TERM)
            .arg("files")
            .arg("--config")
            .arg(&self.file)
            .arg("--data")
            .arg(&self.data)
            .log_to(&self.log))
    }

    /// One probe: the health page answers 200.
    pub async fn ready(&self) -> anyhow::Result<()> {
        super::health_answers(&format!(
            "http://{}:{}{HEALTH}",
            self.config.bind, self.config.port
        ))
        .await
    }

    /// What health says while it runs.
    pub fn message(&self) -> String {
        let c = &self.config;
        let buckets: Vec<String> = c
            .buckets
            .iter()
            .map(|b| format!("{} (objects up to {})", b.name, size(b.max_object_bytes)))
            .collect();
        format!(
            "listening on {}:{}, buckets: {}",
            c.bind,
            c.port,
            if buckets.is_empty() {
                "none".to_string()
            } else {
                buckets.join(", ")
            }
        )
    }
}

/// `5 MiB`, `64 KiB`, or bytes when not a whole number of either.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::size(5 << 20), "5 MiB");
        assert_eq!(super::size(64 << 10), "64 KiB");
        assert_eq!(super::size(1000), "1000 B");
    }
}

//! The cache role: memcached on the board's address, TCP only (`-U 0`), item memory from the
//! spec, run as user `memcache` where that user exists (Debian's package makes it), else
//! `nobody`. Ready when it answers `stats`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use lab_api::spec::CacheConfig;

use crate::engine::{EngineCommand, StopSignals};

/// The binary Debian's `memcached` package installs.
pub const BINARY: &str = "/usr/bin/memcached";

/// How long memcached may take to answer after it was started.
pub const READY_WITHIN: Duration = Duration::from_secs(10);

/// How long a graceful stop may take before the group is SIGKILLed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// One cache role.
pub struct Cache {
    pub config: CacheConfig,
    pub log: PathBuf,
}

impl Cache {
    fn address(&self) -> String {
        format!("{}:{}", self.config.bind, self.config.port)
    }

    /// The command line (checks the binary is there and picks the user).
    pub async fn prepare(&self) -> anyhow::Result<EngineCommand> {
        if tokio::fs::metadata(BINARY).await.is_err() {
            bail!("memcached not found ({BINARY}): install the memcached package");
        }
        let user = if super::user_exists("memcache").await {
            "memcache"
        } else {
            "nobody"
        };
        let c = &self.config;
        Ok(
            EngineCommand::new("memcached", BINARY, StopSignals::MEMCACHED)
                .args(["-l", &c.bind, "-p", &c.port.to_string()])
                .args(["-m", &c.memory_mb.to_string(), "-U", "0", "-u", user])
                .log_to(&self.log),
        )
    }

    /// One probe: `stats` answers.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let address = self.address();
        tokio::time::timeout(
            Duration::from_secs(1),
            crate::collect::memcached::collect(&address),
        )
        .await
        .context("no answer to stats within 1 s")?
        .map_err(|err| anyhow::anyhow!("stats on {address}: {err}"))?;
        Ok(())
    }

    /// What health says while it runs.
    pub fn message(&self) -> String {
        format!(
            "listening on {}, {} MiB",
            self.address(),
            self.config.memory_mb
        )
    }
}

//! The app's config file: [`AppConfig`] as JSON, written by the agent (`<state>/app/app.json`,
//! 0600), read at start and again on SIGHUP. A file that does not parse or that the role
//! contract calls unusable is refused whole (at start: the app exits; on reload: the running
//! config stays).

use std::path::Path;

use anyhow::Context;
use lab_api::spec::{AppConfig, BoardSpec, RoleConfig};

/// Larger files are not read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and checks the config at `path`.
pub fn load(path: &Path) -> anyhow::Result<AppConfig> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    anyhow::ensure!(size <= MAX_FILE_BYTES, "{} is over 1 MiB", path.display());
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let config: AppConfig = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an app config", path.display()))?;
    let problems = problems(&config);
    anyhow::ensure!(
        problems.is_empty(),
        "{}: {}",
        path.display(),
        problems.join("; ")
    );
    Ok(config)
}

/// What makes `config` unusable: the role contract's checks, and the app's own.
pub fn problems(config: &AppConfig) -> Vec<String> {
    let spec = BoardSpec {
        board: config.board.clone(),
        epoch: 0,
        roles: vec![RoleConfig::App(config.clone())],
    };
    let mut out = spec.problems();
    if config.board.is_empty() {
        out.push("app: no board name".into());
    }
    if config.cache_ttl_secs == 0 {
        out.push("app: cache_ttl_secs must be at least 1".into());
    }
    let mut boards: Vec<&str> = config.caches.iter().map(|c| c.board.as_str()).collect();
    boards.sort_unstable();
    if boards.windows(2).any(|w| w[0] == w[1]) {
        out.push("app: a cache board appears twice".into());
    }
    out
}

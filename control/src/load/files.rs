//! Where a run's results go: the directory (`--out DIR`, or `./lab-load-<UTC time>/`) made
//! before anything is sent, and its three files: `timeline.csv`, `timeline.json` (one row per
//! second) and `summary.json`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::summary::Summary;
use super::timeline::{to_csv, Row};

pub const TIMELINE_CSV: &str = "timeline.csv";
pub const TIMELINE_JSON: &str = "timeline.json";
pub const SUMMARY_JSON: &str = "summary.json";

/// What the default directory name of every run starts with.
pub const DIR_PREFIX: &str = "lab-load-";

/// The default directory name for a run started at `now`: `lab-load-20250101T120000Z`.
pub fn default_dir_name(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{DIR_PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Make the output directory: `out` (created with its parents, may exist), or a fresh
/// `./lab-load-<time>[-N]` that no earlier run used. Also whether this call created it.
pub fn prepare_dir(out: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(dir) = out {
        let existed = dir.is_dir();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
        return Ok((dir.to_path_buf(), !existed));
    }
    let base = default_dir_name(time::OffsetDateTime::now_utc());
    for n in 1..100 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = PathBuf::from(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create the output directory ./{name}"))
            }
        }
    }
    anyhow::bail!("./{base}-1..99 all exist: pass --out DIR")
}

/// Write the three files into `dir`; their paths.
pub fn write_all(dir: &Path, rows: &[Row], summary: &Summary) -> anyhow::Result<Vec<PathBuf>> {
    let files = [
        (TIMELINE_CSV, to_csv(rows)),
        (
            TIMELINE_JSON,
            serde_json::to_string_pretty(rows).context("encoding the timeline")? + "\n",
        ),
        (
            SUMMARY_JSON,
            serde_json::to_string_pretty(summary).context("encoding the summary")? + "\n",
        ),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_sort_by_time() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_741_064_767).expect("time");
        assert_eq!(default_dir_name(t), "lab-load-20250304T050607Z");
    }
}

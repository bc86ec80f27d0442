//! `lab report`: one `lab load` run (its directory: `timeline.json`, `summary.json` with the
//! control plane's events, the replicas' lag) turned into what a student hands in: charts (`report.svg`, and
//! `report.png` rasterised from it) with a marker at every kill, promotion or partition, and
//! a one-page `report.md`.
//!
//! [`chart`] draws the SVG (pure: the same run, the same bytes); [`summary`] writes the page;
//! this module loads the run and writes the files.

pub mod chart;
pub mod summary;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::load::timeline::Row;

/// Files written into the run's directory.
pub const SVG: &str = "report.svg";
pub const PNG: &str = "report.png";
pub const MARKDOWN: &str = "report.md";

/// A recorded run.
#[derive(Debug, Clone)]
pub struct Run {
    /// One row per second.
    pub rows: Vec<Row>,
    /// The control plane's events during the run.
    pub marks: Vec<crate::load::marks::Mark>,
    /// Each replica's lag during the run (`lab serve`'s history), when there was any.
    pub lag: Vec<crate::load::lag::LagSeries>,
    /// The whole summary, for the page.
    pub summary: serde_json::Value,
}

/// Read the run in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Run> {
    let read = |name: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} a `lab load` run directory?)",
                path.display(),
                dir.display()
            )
        })
    };
    let rows: Vec<Row> = serde_json::from_str(&read(crate::load::files::TIMELINE_JSON)?)
        .context("timeline.json is not a lab load timeline")?;
    let summary: serde_json::Value = serde_json::from_str(&read(crate::load::files::SUMMARY_JSON)?)
        .context("summary.json is not JSON")?;
    let marks = match summary.get("events") {
        Some(events) => serde_json::from_value(events.clone())
            .context("summary.json's events are not lab load marks")?,
        None => Vec::new(),
    };
    let lag = match summary.get("replication_lag") {
        Some(lag) => serde_json::from_value(lag.clone())
            .context("summary.json's replication_lag is not a lag per replica")?,
        None => Vec::new(),
    };
    Ok(Run {
        rows,
        marks,
        lag,
        summary,
    })
}

/// The newest `lab-load-*` directory in `dir` (their names sort by time).
pub fn newest_run(dir: &Path) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(crate::load::files::DIR_PREFIX))
        })
        .max()
        .with_context(|| {
            format!(
                "no lab-load-* run in {}: run `lab load` first, or name a run directory",
                dir.display()
            )
        })
}

/// Write the SVG, the PNG and the page into `dir`; the paths written.
pub fn write(dir: &Path, run: &Run) -> anyhow::Result<Vec<PathBuf>> {
    let svg = chart::render(run);
    let svg_path = dir.join(SVG);
    std::fs::write(&svg_path, &svg).with_context(|| format!("writing {}", svg_path.display()))?;
    let png_path = dir.join(PNG);
    rasterise(&svg, &png_path)?;
    let page = summary::render(run, &dir.display().to_string());
    let md_path = dir.join(MARKDOWN);
    std::fs::write(&md_path, page).with_context(|| format!("writing {}", md_path.display()))?;
    Ok(vec![svg_path, png_path, md_path])
}

/// The SVG as a PNG (resvg; text in the system's fonts, DejaVu Sans from Debian).
fn rasterise(svg: &str, path: &Path) -> anyhow::Result<()> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let tree = usvg::Tree::from_str(svg, &options).context("reading back the chart's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("the chart has no area")?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .save_png(path)
        .with_context(|| format!("writing {}", path.display()))
}

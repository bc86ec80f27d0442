//! `lab report [RUN]`: a `lab load` run directory (the newest `./lab-load-*` by default) as
//! charts with the control plane's events marked (`report.svg`, `report.png`) and a one-page
//! `report.md`, written into the run's directory. See [`crate::run_report`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's directory (`lab load --out DIR`). Default: the newest ./lab-load-* here.
    pub run: Option<PathBuf>,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || {
        let dir = match args.run {
            Some(dir) => dir,
            None => crate::run_report::newest_run(std::path::Path::new("."))?,
        };
        let run = crate::run_report::load(&dir)?;
        // The PNG's text needs a font; without one (and no root to install it) the charts
        // still come out, their labels only in the SVG.
        if let Err(e) =
            crate::host_setup::ensure(&[crate::host_setup::FONTS], &mut |l| eprintln!("  {l}"))
        {
            eprintln!("note: {e:#}; report.png will have no text");
        }
        for path in crate::run_report::write(&dir, &run)? {
            println!("written: {}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    })
    .await?
}

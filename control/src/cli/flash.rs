//! `lab flash IMAGE DEVICE [--yes]`: write a prepared board image to an SD card or USB disk,
//! with progress and speed, then read it back and compare (SHA-256). Refuses a mounted disk,
//! the system's own disk, a partition, a file, or a device smaller than the image, before
//! anything is written; asks first unless `--yes`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct FlashArgs {
    /// The image to write (an uncompressed .img).
    pub image: PathBuf,
    /// The card's whole disk, e.g. /dev/sdb or /dev/mmcblk0 (`lsblk` lists them).
    pub device: PathBuf,
    /// Write without asking first.
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(args: FlashArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || flash(args))
        .await
        .context("the flash task")?
}

fn flash(args: FlashArgs) -> anyhow::Result<ExitCode> {
    let size = std::fs::metadata(&args.image)
        .with_context(|| format!("{}", args.image.display()))?
        .len();
    let disk = crate::flash::inspect(&args.device)?;
    crate::flash::check(&disk, size)?;
    let what = format!(
        "{} ({}{:.1} GB) will be overwritten with {} ({:.1} MB): everything on it is lost.",
        disk.path.display(),
        disk.model
            .as_deref()
            .map(|m| format!("{m}, "))
            .unwrap_or_default(),
        disk.size as f64 / 1e9,
        args.image.display(),
        size as f64 / 1e6
    );
    if !args.yes {
        super::board::confirm(&what)?;
    }
    let tty = std::io::stderr().is_terminal();
    let mut show = |phase: &str, p: &crate::flash::Progress| {
        let line = format!(
            "{phase} {:.1}/{:.1} MB ({:.1} MB/s)",
            p.done as f64 / 1e6,
            p.total as f64 / 1e6,
            p.rate_mb_s()
        );
        if tty {
            eprint!("\r{line}   ");
            let _ = std::io::stderr().flush();
            if p.done == p.total {
                eprintln!();
            }
        } else if p.done == p.total {
            eprintln!("{line}");
        }
    };
    let sha = crate::flash::write_and_verify(&args.image, &disk, &mut show)?;
    println!(
        "{}: written and verified (SHA-256 {sha}); eject it, put it in the board and power it on",
        disk.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

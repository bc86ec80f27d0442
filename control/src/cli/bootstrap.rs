//! `lab bootstrap`: push, configure and start the agent on every board (or the ones named).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::InventoryArg;
use crate::bootstrap::{self, BoardReport};
use crate::cluster::ClusterContext;
use crate::job::progress::Progress;

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Only these boards (default: all).
    pub boards: Vec<String>,
}

pub async fn run(args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    for b in &args.boards {
        if inv.board(b).is_none() {
            anyhow::bail!("no board `{b}` in {}", inv.path.display());
        }
    }
    let ctx = Arc::new(tokio::task::spawn_blocking(move || ClusterContext::open(inv)).await??);
    let reports = run_bootstrap(ctx, &args.boards).await;
    Ok(crate::job::summary(&reports))
}

/// Bootstrap with live progress; shared by `lab up`.
pub async fn run_bootstrap(ctx: Arc<ClusterContext>, boards: &[String]) -> Vec<BoardReport> {
    let names: Vec<&str> = ctx
        .inventory
        .boards
        .iter()
        .filter(|b| boards.is_empty() || boards.contains(&b.name))
        .map(|b| b.name.as_str())
        .collect();
    eprintln!(
        "bootstrapping {} board(s) of cluster `{}` ({} at a time)",
        names.len(),
        ctx.inventory.cluster.name,
        ctx.inventory.cluster.parallel
    );
    let progress = Arc::new(Progress::new(names));
    bootstrap::bootstrap(ctx, boards, progress).await
}

//! `lab forget-host-key BOARD`: drop a board's pinned SSH host key.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::InventoryArg;
use crate::cluster::ClusterContext;

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Board whose pinned host key to forget.
    pub board: String,
}

pub async fn run(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let Some(board) = inv.board(&args.board).cloned() else {
        bail!("no board `{}` in {}", args.board, inv.path.display());
    };
    let ctx = ClusterContext::open_existing(inv)?;
    let target = ctx.ssh_target(&board);
    let n = ctx.host_keys.forget(&target.host, target.port)?;
    println!(
        "{}: forgot {n} pinned key(s) for {}:{}; the next `lab bootstrap` pins the key it is shown",
        board.name, target.host, target.port
    );
    Ok(ExitCode::SUCCESS)
}

//! `lab kill|restart|partition|heal BOARD`: the virtual cluster's power and network switches.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::InventoryArg;
use crate::cluster::ClusterContext;

#[derive(Debug, Args)]
pub struct BoardArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Board name, as in the inventory.
    pub board: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Kill,
    Restart,
    Partition,
    Heal,
}

pub async fn run(verb: Verb, args: BoardArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    if !inv.is_virtual() {
        bail!(
            "{} has no [virtual] table: kill/restart/partition/heal drive virtual boards; \
             for a real board, pull its plug or cable",
            inv.path.display()
        );
    }
    if inv.board(&args.board).is_none() {
        bail!("no board `{}` in {}", args.board, inv.path.display());
    }
    let ctx = ClusterContext::open_existing(inv)?;
    let board = args.board.clone();
    let what = tokio::task::spawn_blocking(move || -> anyhow::Result<&'static str> {
        let spec = crate::virt::inventory::virtual_spec(&ctx)?;
        Ok(match verb {
            Verb::Kill => {
                crate::virt::kill(&spec, &board)?;
                "power cut: network cut, then every process killed"
            }
            Verb::Restart => {
                crate::virt::restart(&spec, &board)?;
                "restarted (fresh boot, disk kept); its agent comes back if it was bootstrapped"
            }
            Verb::Partition => {
                crate::virt::partition(&spec, &board)?;
                "network cut (processes still running)"
            }
            Verb::Heal => {
                crate::virt::heal(&spec, &board)?;
                "network restored"
            }
        })
    })
    .await??;
    println!("{}: {what}", args.board);
    Ok(ExitCode::SUCCESS)
}

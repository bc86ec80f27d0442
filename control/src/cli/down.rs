//! `lab down`: stop every agent. Virtual boards are destroyed outright (their processes,
//! namespaces, veths and bridge); real boards get their agent stopped and disabled over SSH.
//! The control plane (`lab serve`) is stopped first.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::InventoryArg;
use crate::bootstrap::probe::Init;
use crate::cluster::ClusterContext;
use crate::ssh::{Connection, RemoteCommand};

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Virtual clusters: also delete the boards' disks (their files under the state dir).
    #[arg(long)]
    pub purge: bool,
}

pub async fn run(args: DownArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let grace = std::time::Duration::from_secs(5);
    if let Some(pid) = super::serve::stop(&inv.cluster.state_dir, grace).await? {
        println!("control plane (lab serve, pid {pid}) stopped");
    }
    if inv.is_virtual() {
        let purge = args.purge;
        let ctx = tokio::task::spawn_blocking(move || ClusterContext::open(inv)).await??;
        let name = ctx.inventory.cluster.name.clone();
        tokio::task::spawn_blocking(move || crate::cluster::destroy_virtual_boards(&ctx, purge))
            .await??;
        println!(
            "cluster `{name}`: virtual boards destroyed{}",
            if purge {
                " and their disks removed"
            } else {
                ""
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Arc::new(ClusterContext::open_existing(inv)?);
    let mut tasks = Vec::new();
    for board in ctx.inventory.boards.clone() {
        let ctx = ctx.clone();
        tasks.push(tokio::task::spawn_blocking(
            move || -> Result<String, String> {
                let target = ctx.ssh_target(&board);
                let (conn, _) =
                    Connection::open(&target, &ctx.host_keys).map_err(|e| e.to_string())?;
                let systemd = conn
                    .run(&RemoteCommand::new("test").args(["-d", "/run/systemd/system"]))
                    .map_err(|e| e.to_string())?
                    .status
                    == 0;
                let init = if systemd { Init::Systemd } else { Init::Other };
                conn.run_ok(&crate::bootstrap::stop_command(init).sudo(target.sudo))
                    .map_err(|e| e.to_string())?;
                Ok(board.name)
            },
        ));
    }
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok(name) => println!("  {name}: agent stopped"),
            Err(e) => {
                failed += 1;
                println!("  FAILED: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! `lab down`: stop every agent. Virtual boards are destroyed outright (their processes,
//! namespaces, veths and bridge); real boards get their agent stopped and disabled over SSH.
//! The control plane (`lab serve`) is stopped first.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::InventoryArg;
use crate::bootstrap::probe::Init;
use crate::cluster::ClusterContext;
use crate::inventory::Board;
use crate::job::progress::Progress;
use crate::job::{self, FailureCause, JobFailure, Step};
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
        if !inv.cluster.state_dir.exists() && !crate::virt::inventory::objects_exist(&inv) {
            // Never brought up: a command that only stops things creates nothing.
            println!(
                "cluster `{}` is not up (no state in {}): nothing to stop",
                inv.cluster.name,
                inv.cluster.state_dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let purge = args.purge;
        let ctx = tokio::task::spawn_blocking(move || ClusterContext::open(inv)).await??;
        let name = ctx.inventory.cluster.name.clone();
        tokio::task::spawn_blocking(move || {
            crate::virt::inventory::destroy_virtual_boards(&ctx, purge)
        })
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
    let boards: Vec<(String, Board)> = ctx
        .inventory
        .boards
        .iter()
        .map(|b| (b.name.clone(), b.clone()))
        .collect();
    let progress = Arc::new(Progress::new(boards.iter().map(|(n, _)| n.as_str())));
    let parallel = ctx.inventory.cluster.parallel;
    let reports = job::for_each_board(
        boards,
        parallel,
        progress,
        |_: &()| "agent stopped".into(),
        move |board, job| {
            let ctx = ctx.clone();
            async move {
                let target = ctx.ssh_target(&board);
                job.step(Step::Connecting {
                    user: target.user.clone(),
                    host: target.host.clone(),
                    port: target.port,
                });
                tokio::task::spawn_blocking(move || -> Result<(), JobFailure> {
                    let (conn, _) = Connection::open(&target, &ctx.host_keys)?;
                    job.step(Step::StoppingAgent);
                    let systemd = conn
                        .run(&RemoteCommand::new("test").args(["-d", "/run/systemd/system"]))?
                        .status
                        == 0;
                    let init = if systemd { Init::Systemd } else { Init::Other };
                    conn.run_ok(&crate::bootstrap::stop_command(init).sudo(target.sudo))?;
                    Ok(())
                })
                .await
                .map_err(|e| JobFailure::new(FailureCause::Local, format!("task failed: {e}")))?
            }
        },
    )
    .await;
    Ok(job::summary(&reports))
}

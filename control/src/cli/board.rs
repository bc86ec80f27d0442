//! `lab kill|restart|partition|heal BOARD`: the virtual cluster's power and network switches;
//! on a real board, `kill` and `restart` stop and start its agent (and with it every engine)
//! over SSH, `kill` only after asking.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use super::InventoryArg;
use crate::bootstrap::probe::Init;
use crate::cluster::ClusterContext;
use crate::inventory::Board;
use crate::ssh::{Connection, RemoteCommand};

#[derive(Debug, Args)]
pub struct BoardArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Board name, as in the inventory.
    pub board: String,
    /// Real board: stop it without asking first.
    #[arg(long)]
    pub yes: bool,
}

/// `lab partition`'s arguments: the board, and how much of its network to cut.
#[derive(Debug, Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    pub board: BoardArgs,
    /// Cut only the board's path to the control plane (this host): the other boards still
    /// reach it. `lab serve` stops hearing it, but a primary that still serves its replicas
    /// and apps must not be replaced (the lesson: confirm before you fail over).
    #[arg(long)]
    pub from_control_plane: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Kill,
    Restart,
    Partition { from_control_plane: bool },
    Heal,
}

pub async fn run(verb: Verb, args: BoardArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let Some(board) = inv.board(&args.board).cloned() else {
        bail!("no board `{}` in {}", args.board, inv.path.display());
    };
    if !inv.is_virtual() {
        return real_board(verb, board, args.yes, inv).await;
    }
    let ctx = ClusterContext::open_existing(inv)?;
    let state_dir = ctx.state.root().to_path_buf();
    let name = board.name.clone();
    let what = tokio::task::spawn_blocking(move || -> anyhow::Result<&'static str> {
        let spec = crate::virt::inventory::virtual_spec(&ctx)?;
        let what = match verb {
            Verb::Kill => {
                crate::virt::kill(&spec, &name)?;
                "power cut: network cut, then every process killed"
            }
            Verb::Restart => {
                crate::virt::restart(&spec, &name)?;
                "restarted (fresh boot, disk kept); its agent comes back if it was bootstrapped"
            }
            Verb::Partition {
                from_control_plane: false,
            } => {
                crate::virt::partition(&spec, &name)?;
                "network cut (processes still running)"
            }
            Verb::Partition {
                from_control_plane: true,
            } => {
                crate::virt::partition_from_control_plane(&spec, &name)?;
                "cut off from the control plane only (the other boards still reach it)"
            }
            Verb::Heal => {
                crate::virt::heal(&spec, &name)?;
                "network restored"
            }
        };
        record(&state_dir, &name, verb, what);
        Ok(what)
    })
    .await??;
    println!("{}: {what}", board.name);
    Ok(ExitCode::SUCCESS)
}

/// The switch thrown, in the event log: the timeline (`lab events`, `lab load`'s marks)
/// starts at the cause, not at the first missed heartbeat. Blocking (a file append).
fn record(state_dir: &std::path::Path, board: &str, verb: Verb, what: &str) {
    let name = match verb {
        Verb::Kill => "lab kill",
        Verb::Restart => "lab restart",
        Verb::Partition { .. } => "lab partition",
        Verb::Heal => "lab heal",
    };
    let event = crate::metrics::events::Event {
        ts_ms: crate::metrics::events::now_ms(),
        board: board.to_string(),
        kind: crate::metrics::events::EventKind::Info,
        message: format!("{name}: {what}"),
    };
    if let Err(e) = crate::metrics::events::append_from_outside(state_dir, &event) {
        eprintln!("note: {name} not written to the event log: {e}");
    }
}

/// A real board: `kill` stops its agent (which stops every engine whole first), `restart`
/// starts it again; the network switches are the user's hands.
async fn real_board(
    verb: Verb,
    board: Board,
    yes: bool,
    inv: crate::inventory::Inventory,
) -> anyhow::Result<ExitCode> {
    let path = inv.path.display().to_string();
    let command = move |init: Init| match verb {
        Verb::Kill => match init {
            // Stopped, not disabled: a power cycle or `lab restart` brings it back.
            Init::Systemd => RemoteCommand::shell("systemctl stop lab-agent"),
            Init::Other => RemoteCommand::new(lab_api::board_paths::AGENT_BIN).arg("stop"),
        },
        _ => crate::bootstrap::start_command(init, true, false),
    };
    match verb {
        Verb::Partition { .. } | Verb::Heal => bail!(
            "{path} has no [virtual] table: {} is a real board; partition and heal drive \
             virtual boards. Pull its network cable (and plug it back in) instead",
            board.name
        ),
        Verb::Kill if !yes => confirm(&format!(
            "{} is a real board ({}): this stops lab-agent there and with it every engine of \
             its roles; the cluster sees a dead board. `lab restart {}` starts it again.",
            board.name, board.address, board.name
        ))?,
        _ => {}
    }
    let ctx = ClusterContext::open_existing(inv)?;
    let state_dir = ctx.state.root().to_path_buf();
    let target = ctx.ssh_target(&board);
    let host_keys = ctx.host_keys.clone();
    let name = board.name.clone();
    let what = match verb {
        Verb::Kill => "lab-agent and its engines stopped (`lab restart` starts them again)",
        _ => "lab-agent (re)started; its roles come back from its stored spec",
    };
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let (conn, _) = Connection::open(&target, &host_keys)
            .with_context(|| format!("{name}: cannot reach it over SSH"))?;
        let systemd = conn
            .run(&RemoteCommand::new("test").args(["-d", "/run/systemd/system"]))
            .with_context(|| format!("{name}: asking for its init"))?
            .status
            == 0;
        let init = if systemd { Init::Systemd } else { Init::Other };
        conn.run_ok(&command(init).sudo(target.sudo))
            .with_context(|| format!("{name}: the agent command failed"))?;
        record(&state_dir, &name, verb, what);
        Ok(())
    })
    .await??;
    println!("{}: {what}", board.name);
    Ok(ExitCode::SUCCESS)
}

/// Asks `question` on the terminal; without one, or on anything but y/yes, refuses.
pub(super) fn confirm(question: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("{question}\nNo terminal to ask on: say --yes to go ahead");
    }
    eprint!("{question}\nGo ahead? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("not confirmed: nothing was stopped"),
    }
}

//! `lab kill|restart|partition|heal BOARD`: the virtual cluster's power and network switches;
//! on a real board, `kill` and `restart` stop and start its agent (and with it every engine)
//! over SSH, `kill` only after asking. `lab partition|heal --dc D` cut and restore a whole
//! data center's WAN link.

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

/// `lab partition` and `lab heal`: a board, or a whole data center.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Board name, as in the inventory.
    #[arg(required_unless_present = "dc")]
    pub board: Option<String>,
    /// A whole data center (`dc = "west"` on its boards): its WAN link, so its boards still
    /// reach each other but nothing across. The control plane's data center: every WAN link.
    #[arg(long, conflicts_with = "board")]
    pub dc: Option<String>,
}

/// `lab partition`'s arguments: the board, and how much of its network to cut.
#[derive(Debug, Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    pub target: NetworkArgs,
    /// Cut only the board's path to the control plane (this host): the other boards still
    /// reach it. `lab serve` stops hearing it, but a primary that still serves its replicas
    /// and apps must not be replaced (the lesson: confirm before you fail over).
    #[arg(long, conflicts_with = "dc")]
    pub from_control_plane: bool,
}

/// `lab partition|heal` on a board or, with `--dc`, a data center.
pub async fn run_network(verb: Verb, args: NetworkArgs) -> anyhow::Result<ExitCode> {
    match (args.board, args.dc) {
        (Some(board), None) => {
            let args = BoardArgs {
                inventory: args.inventory,
                board,
                yes: false,
            };
            run(verb, args).await
        }
        (None, Some(dc)) => run_dc(verb, args.inventory, dc).await,
        _ => bail!("give a board or --dc, not both"),
    }
}

async fn run_dc(verb: Verb, inventory: InventoryArg, dc: String) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&inventory)?;
    if !inv.is_virtual() {
        bail!(
            "{} has no [virtual] table: --dc cuts a virtual cluster's WAN links",
            inv.path.display()
        );
    }
    let name = dc.clone();
    let what = tokio::task::spawn_blocking(move || -> anyhow::Result<&'static str> {
        let ctx = ClusterContext::open_existing(inv)?;
        let state_dir = ctx.state.root().to_path_buf();
        let spec = crate::virt::inventory::virtual_spec(&ctx)?;
        let what = match verb {
            Verb::Heal => {
                crate::virt::heal_dc(&spec, &name)?;
                "WAN link restored"
            }
            _ => {
                crate::virt::partition_dc(&spec, &name)?;
                "WAN link cut (its boards still reach each other)"
            }
        };
        record_line(
            &state_dir,
            &format!("dc {name}"),
            &format!("lab {}: {what}", verb.name()),
        );
        Ok(what)
    })
    .await??;
    println!("data center {dc}: {what}");
    Ok(ExitCode::SUCCESS)
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
    let ctx = tokio::task::spawn_blocking(move || ClusterContext::open_existing(inv)).await??;
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

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Kill => "kill",
            Verb::Restart => "restart",
            Verb::Partition { .. } => "partition",
            Verb::Heal => "heal",
        }
    }
}

/// The switch thrown, in the event log: the timeline (`lab events`, `lab load`'s marks)
/// starts at the cause, not at the first missed heartbeat. Blocking (a file append).
fn record(state_dir: &std::path::Path, board: &str, verb: Verb, what: &str) {
    record_line(state_dir, board, &format!("lab {}: {what}", verb.name()));
}

/// One line of the event log about `board` (or a data center), written from a command.
pub(super) fn record_line(state_dir: &std::path::Path, board: &str, message: &str) {
    let event = crate::metrics::events::Event {
        ts_ms: crate::metrics::events::now_ms(),
        board: board.to_string(),
        kind: crate::metrics::events::EventKind::Info,
        message: message.to_owned(),
    };
    if let Err(e) = crate::metrics::events::append_from_outside(state_dir, &event) {
        eprintln!("note: `{message}` not written to the event log: {e}");
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
    let ctx = tokio::task::spawn_blocking(move || ClusterContext::open_existing(inv)).await??;
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

//! `lab link BOARD --delay 30ms --jitter 5ms --loss 1% --rate 100mbit` (and `--clear`): what
//! a virtual board's network link does to every frame, the way a Wi-Fi hop, a long cable or
//! a Pi 3's 100 Mbit/s port would. Kept across the board's restarts; `lab status` shows it.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::InventoryArg;
use crate::cluster::ClusterContext;
use crate::virt::link::{profile, LinkProfile};

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Board name, as in the inventory.
    pub board: String,
    /// Added to every round trip (half each way), e.g. `30ms`.
    #[arg(long, value_parser = profile::parse_delay)]
    pub delay: Option<std::time::Duration>,
    /// The delay varies by up to this much either way, e.g. `5ms` (no more than the delay).
    #[arg(long, value_parser = profile::parse_delay)]
    pub jitter: Option<std::time::Duration>,
    /// Share of frames lost in each direction, e.g. `1%`.
    #[arg(long, value_parser = profile::parse_loss)]
    pub loss: Option<u32>,
    /// What the link carries in each direction, e.g. `100mbit` (a Pi 3's Ethernet).
    #[arg(long, value_parser = profile::parse_rate)]
    pub rate: Option<u64>,
    /// Back to a plain link (or to what the inventory gives the board).
    #[arg(long, conflicts_with_all = ["delay", "jitter", "loss", "rate"])]
    pub clear: bool,
}

pub async fn run(args: LinkArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let Some(board) = inv.board(&args.board).cloned() else {
        bail!("no board `{}` in {}", args.board, inv.path.display());
    };
    if !inv.is_virtual() {
        bail!(
            "{} has no [virtual] table: {} is a real board, its link is its cable (lab link \
             shapes virtual boards' links)",
            inv.path.display(),
            board.name
        );
    }
    let given = LinkProfile {
        delay: args.delay.unwrap_or_default(),
        jitter: args.jitter.unwrap_or_default(),
        loss_ppm: args.loss.unwrap_or_default(),
        rate_bps: args.rate,
    };
    if given.is_plain() && !args.clear {
        bail!(
            "say what {}'s link should do (--delay, --jitter, --loss, --rate), or --clear",
            board.name
        );
    }
    if let Some(problem) = given.problem() {
        bail!("{}: {problem}", board.name);
    }
    let name = board.name.clone();
    // Opening the cluster reads files and apt-get may run: off the runtime.
    let now = tokio::task::spawn_blocking(move || -> anyhow::Result<LinkProfile> {
        let ctx = ClusterContext::open_existing(inv)?;
        crate::host_setup::ensure(&[crate::host_setup::ETHTOOL], &mut |l| eprintln!("  {l}"))?;
        let state_dir = ctx.state.root().to_path_buf();
        let spec = crate::virt::inventory::virtual_spec(&ctx)?;
        crate::virt::set_link(&spec, &name, &given)?;
        let board = spec.board(&name)?;
        let now = crate::virt::link::effective(&spec, board);
        super::board::record_line(&state_dir, &name, &format!("lab link: {now}"));
        Ok(now)
    })
    .await??;
    println!("{}: link {now}", board.name);
    Ok(ExitCode::SUCCESS)
}

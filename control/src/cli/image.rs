//! `lab image prepare --board pi-3 --base ubuntu.img -o pi-3.img`: a copy of the base image
//! with the board's first-boot settings (hostname, login user, the cluster's SSH key, DHCP or
//! a static address) written into its FAT boot partition, from the templates in `images/`.
//! Then `lab flash pi-3.img /dev/sdX`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::InventoryArg;
use crate::image::FirstBoot;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Copy a base image and write one board's first-boot settings into it.
    Prepare(PrepareArgs),
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// The board, as named in the inventory.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub board: Option<String>,
    /// Every board of the inventory: `-o` is then a directory, one `<board>.img` each.
    #[arg(long)]
    pub all: bool,
    /// The base image (uncompressed .img with cloud-init in its boot partition).
    #[arg(long)]
    pub base: PathBuf,
    /// Where to write the board's image (must not exist); with --all, a directory.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Give the board its inventory address statically (as a /24) with this gateway,
    /// instead of DHCP.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// The SSH public key to authorise (default: the cluster's, from its ssh_key).
    #[arg(long, value_name = "FILE")]
    pub authorized_key: Option<PathBuf>,
}

pub async fn run(args: ImageArgs) -> anyhow::Result<ExitCode> {
    let ImageAction::Prepare(args) = args.action;
    tokio::task::spawn_blocking(move || prepare(args))
        .await
        .context("the image task")?
}

fn prepare(args: PrepareArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let jobs: Vec<(crate::inventory::Board, PathBuf)> = match &args.board {
        Some(name) => {
            let Some(board) = inv.board(name).cloned() else {
                bail!("no board `{name}` in {}", inv.path.display());
            };
            vec![(board, args.output.clone())]
        }
        None => inv
            .boards
            .iter()
            .map(|b| (b.clone(), args.output.join(format!("{}.img", b.name))))
            .collect(),
    };
    let ssh_key = crate::image::public_key(&inv, args.authorized_key.as_deref())?;
    crate::host_setup::ensure(&[crate::host_setup::MTOOLS], &mut |l: &str| {
        eprintln!("{l}")
    })?;
    if args.all {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
    }
    for (board, output) in &jobs {
        prepare_one(&inv, board, &args, &ssh_key, output)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One board's image at `output`.
fn prepare_one(
    inv: &crate::inventory::Inventory,
    board: &crate::inventory::Board,
    args: &PrepareArgs,
    ssh_key: &str,
    output: &std::path::Path,
) -> anyhow::Result<()> {
    let static_address = match args.gateway {
        None => None,
        Some(gateway) => {
            let ip: std::net::Ipv4Addr = board.address.parse().with_context(|| {
                format!(
                    "board `{}`: a static address needs an IPv4 `address`, not {:?}",
                    board.name, board.address
                )
            })?;
            Some((format!("{ip}/24"), gateway.to_string()))
        }
    };
    let boot = FirstBoot {
        hostname: board.name.clone(),
        user: inv
            .cluster
            .ssh_user
            .clone()
            .unwrap_or_else(|| "pi".to_string()),
        ssh_key: ssh_key.to_string(),
        static_address,
    };
    let kind = crate::image::prepare(&args.base, output, &boot)?;
    println!(
        "{}: {:?} image for {} (user {}, {}); next: lab flash {} /dev/sdX",
        output.display(),
        kind,
        boot.hostname,
        boot.user,
        match &boot.static_address {
            Some((cidr, gw)) => format!("{cidr} via {gw}"),
            None => "DHCP".to_string(),
        },
        output.display()
    );
    Ok(())
}

//! `lab image prepare --board pi-3 --base raspios.img.xz -o pi-3.img`: a copy of the base
//! image with the board's first-boot settings (hostname, login user, the cluster's SSH key,
//! DHCP or a static address, time zone, Wi-Fi, its own SSH host key) written into its FAT boot
//! partition, from the templates in `images/`. The host key is pinned for the board's address
//! in the cluster's known_hosts, so the first `lab bootstrap` is verified. Every value is
//! checked before anything is written. Then `lab flash pi-3.img /dev/sdX`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Args, Subcommand};

use super::InventoryArg;
use crate::image::{settings, FirstBoot, Prepared, StaticAddress, Wifi};
use crate::ssh::PinOutcome;

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
    /// The base image: with cloud-init in its boot partition, or Raspberry Pi OS without
    /// it; as it is or `.xz`-compressed.
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
    /// The board's time zone (a tz database name such as Europe/Berlin).
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// A Wi-Fi network to join (DHCP on wlan0); its passphrase comes from --wifi-psk-file.
    #[arg(long, value_name = "NAME", requires = "wifi_psk_file")]
    pub wifi_ssid: Option<String>,
    /// A file holding the Wi-Fi passphrase (never given on the command line).
    #[arg(long, value_name = "FILE", requires = "wifi_ssid")]
    pub wifi_psk_file: Option<PathBuf>,
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
    let common = common_settings(&inv, &args)?;
    let mut boards = Vec::new();
    for (board, output) in &jobs {
        let own = board_settings(board, &common.default_user, args.gateway)?;
        boards.push((board, own, output));
    }
    crate::host_setup::ensure(
        &[crate::host_setup::MTOOLS, crate::host_setup::SSH_KEYGEN],
        &mut |l: &str| eprintln!("{l}"),
    )?;
    if args.all {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
    }
    let state = crate::state::StateDir::new(inv.cluster.state_dir.clone());
    let pins = crate::ssh::HostKeyStore::new(state.known_hosts(), None);
    let ssh_config = crate::ssh::target::load_user_ssh_config();
    for (board, own, output) in boards {
        // `lab bootstrap` dials the board where ~/.ssh/config and the inventory say: the
        // pin is for exactly that address and port.
        let target =
            crate::ssh::target::resolve(&inv.cluster, board, &state.ssh_key(), ssh_config.as_ref());
        let boot = |host_key| FirstBoot {
            hostname: board.name.clone(),
            user: own.user,
            ssh_key: common.ssh_key.clone(),
            static_address: own.static_address,
            timezone: common.timezone.clone(),
            wifi: common.wifi.clone(),
            host_key,
        };
        prepare_board(&args.base, output, &state, &pins, &target, boot)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One board's image at `output` with its host key (made or reused), then the key pinned
/// for `target`'s address; a failed pin removes the image.
fn prepare_board(
    base: &Path,
    output: &Path,
    state: &crate::state::StateDir,
    pins: &crate::ssh::HostKeyStore,
    target: &crate::ssh::SshTarget,
    boot: impl FnOnce(crate::image::HostKey) -> FirstBoot,
) -> anyhow::Result<()> {
    let (host_key, made) = crate::image::host_key::board_host_key(state, &target.board)
        .with_context(|| format!("board `{}`'s SSH host key", target.board))?;
    let boot = boot(host_key);
    let prepared = crate::image::prepare(base, output, &boot)?;
    let pinned = pin(pins, &boot, &target.host, target.port).inspect_err(|_| {
        let _ = std::fs::remove_file(output);
    })?;
    report(output, &boot, prepared, made, &pinned);
    Ok(())
}

/// What every board's image shares: the key its user accepts, time zone, Wi-Fi, and the
/// login user of boards without a `user` of their own.
struct CommonSettings {
    default_user: String,
    ssh_key: String,
    timezone: Option<String>,
    wifi: Option<Wifi>,
}

/// The settings every board shares, each checked; nothing is written yet.
fn common_settings(
    inv: &crate::inventory::Inventory,
    args: &PrepareArgs,
) -> anyhow::Result<CommonSettings> {
    let default_user = inv
        .cluster
        .ssh_user
        .clone()
        .unwrap_or_else(|| "pi".to_string());
    let ssh_key = crate::image::public_key(inv, args.authorized_key.as_deref())?;
    if let Some(zone) = &args.timezone {
        settings::check_timezone(zone, Path::new("/usr/share/zoneinfo"))?;
    }
    let wifi = match (&args.wifi_ssid, &args.wifi_psk_file) {
        (Some(ssid), Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the Wi-Fi passphrase file {}", file.display()))?;
            Some(Wifi::new(ssid, &text, &file.display().to_string())?)
        }
        _ => None,
    };
    Ok(CommonSettings {
        default_user,
        ssh_key,
        timezone: args.timezone.clone(),
        wifi,
    })
}

/// What differs between boards, checked: the login user (the one `lab bootstrap` logs in as)
/// and the address.
struct BoardSettings {
    user: String,
    static_address: Option<StaticAddress>,
}

/// `board`'s own settings: its name as a host name, its `user` (else `default_user`), its
/// static address.
fn board_settings(
    board: &crate::inventory::Board,
    default_user: &str,
    gateway: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<BoardSettings> {
    settings::check_hostname(&board.name)?;
    let user = board
        .user
        .clone()
        .unwrap_or_else(|| default_user.to_string());
    settings::check_user(&user).with_context(|| format!("board `{}`", board.name))?;
    Ok(BoardSettings {
        user,
        static_address: static_address(board, gateway)?,
    })
}

/// `board`'s static address with `gateway` (as a /24), or DHCP without one.
fn static_address(
    board: &crate::inventory::Board,
    gateway: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<Option<StaticAddress>> {
    let Some(gateway) = gateway else {
        return Ok(None);
    };
    let ip: std::net::Ipv4Addr = board.address.parse().with_context(|| {
        format!(
            "board `{}`: a static address needs an IPv4 `address`, not {:?}",
            board.name, board.address
        )
    })?;
    Ok(Some(StaticAddress {
        cidr: format!("{ip}/24"),
        gateway: gateway.to_string(),
    }))
}

/// Pins the image's host key for the address `lab bootstrap` will dial; the line to show.
fn pin(
    pins: &crate::ssh::HostKeyStore,
    boot: &FirstBoot,
    host: &str,
    port: u16,
) -> anyhow::Result<String> {
    let Some((key_type, key)) = boot.host_key.public_parts() else {
        bail!("board `{}`: its host key has no public half", boot.hostname);
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(key)
        .with_context(|| format!("board `{}`: its host public key", boot.hostname))?;
    let fingerprint = crate::ssh::known_hosts::fingerprint(&blob);
    let entry = crate::ssh::known_hosts::host_entry_name(host, port);
    let outcome = pins
        .pin_ahead(&boot.hostname, host, port, key_type, key)
        .with_context(|| format!("pinning board `{}`'s host key", boot.hostname))?;
    Ok(match outcome {
        PinOutcome::New => format!("host key {fingerprint} pinned for {entry}"),
        PinOutcome::Unchanged => format!("host key {fingerprint} (already pinned for {entry})"),
        PinOutcome::Replaced => format!(
            "host key {fingerprint} pinned for {entry}, replacing the key pinned there before"
        ),
    })
}

fn report(output: &Path, boot: &FirstBoot, prepared: Prepared, made: bool, pinned: &str) {
    let mut extras = Vec::new();
    if let Some(zone) = &boot.timezone {
        extras.push(format!("time zone {zone}"));
    }
    if let Some(wifi) = &boot.wifi {
        extras.push(format!("Wi-Fi {:?}", wifi.ssid));
    }
    if prepared.compression == crate::image::Compression::Xz {
        extras.push("decompressed from .xz".to_string());
    }
    if prepared.schema_checked {
        extras.push("user-data passes `cloud-init schema`".to_string());
    }
    println!(
        "{}: {} image for {} (user {}, {}{}); {}{}; next: lab flash {} /dev/sdX",
        output.display(),
        prepared.kind,
        boot.hostname,
        boot.user,
        match &boot.static_address {
            Some(a) => format!("{} via {}", a.cidr, a.gateway),
            None => "DHCP".to_string(),
        },
        extras.iter().map(|e| format!(", {e}")).collect::<String>(),
        if made { "new " } else { "" },
        pinned,
        output.display()
    );
}

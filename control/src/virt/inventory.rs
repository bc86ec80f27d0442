//! The glue from the inventory to the virtual cluster: the `[virtual]` table and its boards
//! become a [`VirtualClusterSpec`]; create (host packages, arm64 root, boards) and destroy.
//! The commands call these; nothing outside `virt/` needs to know a board is virtual.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::{VirtualBoardSpec, VirtualClusterSpec};
use crate::cluster::ClusterContext;

/// Where the arm64 Debian root for emulated boards is cached.
pub fn rootfs_cache_dir() -> PathBuf {
    std::env::var_os("LAB_ROOTFS_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::rootfs::DEFAULT_CACHE_DIR))
}

/// What `lab status` says about the virtual network beyond the boards: shaped links and
/// data centers (with their WAN links' state). Empty when there is nothing to say.
pub fn network_report(
    inv: &crate::inventory::Inventory,
    state_dir: &std::path::Path,
) -> Vec<String> {
    // Reading the network's state needs no key and no binary.
    let Ok(spec) = spec_of(inv, state_dir, String::new(), PathBuf::new()) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for board in &spec.boards {
        let link = super::link::effective(&spec, board);
        if !link.is_plain() {
            lines.push(format!("link {}: {link}", board.name));
        }
    }
    let dcs = spec.dcs();
    if let Some((home, remote)) = dcs.split_first() {
        let mut text = format!("data centers: {home} (the control plane's)");
        for dc in remote {
            let cut = if super::link::wan::is_cut(&spec, dc) {
                ", WAN link CUT"
            } else {
                ""
            };
            text.push_str(&format!(
                ", {dc} ({} round trip away{cut})",
                super::link::profile::format_duration(spec.wan_delay)
            ));
        }
        lines.push(text);
    }
    lines
}

/// The virtual cluster described by the inventory's `[virtual]` table. Arm64 boards get the
/// cached arm64 root, systemd boards the cached systemd root; both must exist (see
/// [`create_virtual_boards`]).
pub fn virtual_spec(ctx: &ClusterContext) -> anyhow::Result<VirtualClusterSpec> {
    spec_of(
        &ctx.inventory,
        ctx.state.root(),
        ctx.managed_public_key()?,
        std::env::current_exe().context("locating the lab binary")?,
    )
}

/// The `[virtual]` table and its boards as a spec (the key and binary are what booting
/// needs; readers of the network's state pass anything).
fn spec_of(
    inv: &crate::inventory::Inventory,
    state_dir: &std::path::Path,
    authorized_key: String,
    lab_binary: PathBuf,
) -> anyhow::Result<VirtualClusterSpec> {
    use crate::inventory::{VirtualArch, VirtualInit};
    let Some(net) = &inv.virtual_net else {
        bail!("{} has no [virtual] table", inv.path.display());
    };
    let arm64_root = rootfs_cache_dir().join(crate::rootfs::ARM64.name);
    let systemd_root = rootfs_cache_dir().join(crate::rootfs::SYSTEMD.name);
    let mut boards = Vec::new();
    for b in &inv.boards {
        let address = b
            .address
            .parse()
            .with_context(|| format!("board `{}`: virtual boards need an IPv4 address", b.name))?;
        boards.push(VirtualBoardSpec {
            name: b.name.clone(),
            address,
            rootfs: match (b.arch, b.init) {
                (VirtualArch::Arm64, _) => Some(arm64_root.clone()),
                (_, VirtualInit::Systemd) => Some(systemd_root.clone()),
                _ => None,
            },
            size: b
                .size
                .unwrap_or(crate::inventory::BoardSize::VIRTUAL_DEFAULT),
            init: b.init,
            login_user: b.user.clone().filter(|u| u != "root"),
            link: b.link.unwrap_or_default(),
            dc: b.dc.clone(),
        });
    }
    Ok(VirtualClusterSpec {
        cluster: inv.cluster.name.clone(),
        subnet: net.subnet,
        prefix_len: net.prefix_len,
        state_dir: state_dir.to_path_buf(),
        boards,
        authorized_key,
        lab_binary,
        wan_delay: net.wan_delay,
    })
}

/// Install host packages, build the arm64 root if needed, and create/start the virtual
/// boards (idempotent).
pub fn create_virtual_boards(ctx: &ClusterContext) -> anyhow::Result<()> {
    use crate::inventory::VirtualArch;
    let mut say = |line: &str| eprintln!("  {line}");
    crate::host_setup::ensure(crate::host_setup::VIRTUAL_CLUSTER, &mut say)?;
    // Virtual boards run the host's engines (their roots are the host's, or the arm64 root).
    crate::host_setup::ensure(crate::host_setup::ENGINES, &mut say)?;
    if ctx
        .inventory
        .boards
        .iter()
        .any(|b| b.arch == VirtualArch::Arm64)
    {
        crate::host_setup::ensure(crate::host_setup::ARM64_BOARDS, &mut say)?;
        crate::rootfs::ensure_arm64_rootfs(&rootfs_cache_dir(), &mut |l: &str| {
            eprintln!("  arm64 root: {l}")
        })?;
    }
    if ctx
        .inventory
        .boards
        .iter()
        .any(|b| b.init == crate::inventory::VirtualInit::Systemd)
    {
        crate::host_setup::ensure(crate::host_setup::SYSTEMD_BOARDS, &mut say)?;
        crate::rootfs::ensure_rootfs(
            &rootfs_cache_dir(),
            &crate::rootfs::SYSTEMD,
            &mut |l: &str| eprintln!("  systemd root: {l}"),
        )?;
    }
    let spec = virtual_spec(ctx)?;
    eprintln!(
        "creating {} virtual board(s) on {}/{}",
        spec.boards.len(),
        spec.subnet,
        spec.prefix_len
    );
    super::up(&spec, &mut |board: &str, msg: &str| {
        eprintln!("  {board}: {msg}")
    })?;
    Ok(())
}

/// Destroy the virtual boards (and with `purge`, their disks).
pub fn destroy_virtual_boards(ctx: &ClusterContext, purge: bool) -> anyhow::Result<()> {
    let spec = virtual_spec(ctx)?;
    if purge {
        super::purge(&spec)?;
        // The boards' host keys went with their disks; lab made those keys itself, so their
        // pins go too (the next boards get new keys and are pinned afresh).
        for b in &ctx.inventory.boards {
            let target = ctx.ssh_target(b);
            ctx.host_keys.forget(&target.host, target.port)?;
        }
    } else {
        super::down(&spec)?;
    }
    Ok(())
}

/// Whether any kernel object of the inventory's virtual cluster (its bridge, a board's
/// namespace or host-side veth) exists on this host.
pub fn objects_exist(inv: &crate::inventory::Inventory) -> bool {
    use super::names;
    use super::net::{link_exists, netns_exists};
    let cluster = &inv.cluster.name;
    link_exists(&names::bridge_name(cluster))
        || inv.boards.iter().any(|b| {
            link_exists(&names::host_veth_name(cluster, &b.name))
                || netns_exists(&names::netns_name(cluster, &b.name))
        })
}

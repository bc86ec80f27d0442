//! Everything a command needs to act on one cluster, opened once: the inventory, its state
//! directory, the PKI, the pinned host keys, the SSH key `lab` manages, `~/.ssh/config`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::inventory::{Board, Inventory, SshKey};
use crate::pki::ClusterPki;
use crate::ssh::{HostKeyStore, SshTarget};
use crate::state::StateDir;

pub struct ClusterContext {
    pub inventory: Inventory,
    pub state: StateDir,
    pub pki: ClusterPki,
    pub host_keys: Arc<HostKeyStore>,
    ssh_config: Option<ssh2_config::SshConfig>,
}

impl ClusterContext {
    /// Open the cluster, creating its state directory, CA and managed SSH key when missing.
    pub fn open(inventory: Inventory) -> anyhow::Result<Self> {
        let state = StateDir::new(inventory.cluster.state_dir.clone());
        state.ensure()?;
        let pki = ClusterPki::load_or_create(&state.pki_dir(), &inventory.cluster.name)
            .with_context(|| {
                format!("preparing the cluster CA in {}", state.pki_dir().display())
            })?;
        if inventory.cluster.ssh_key == SshKey::Managed {
            ensure_managed_key(&state.ssh_key(), &inventory.cluster.name)?;
        }
        let user_known_hosts = crate::inventory::home_dir().map(|h| h.join(".ssh/known_hosts"));
        let forget = format!("lab forget-host-key -i {}", inventory.path.display());
        let host_keys = Arc::new(
            HostKeyStore::new(state.known_hosts(), user_known_hosts).with_forget_command(forget),
        );
        Ok(Self {
            ssh_config: crate::ssh::target::load_user_ssh_config(),
            inventory,
            state,
            pki,
            host_keys,
        })
    }

    /// Open a cluster that must already have been brought up (status, kill, ...): refuses
    /// to invent a new CA that no agent would trust.
    pub fn open_existing(inventory: Inventory) -> anyhow::Result<Self> {
        let ca = inventory.cluster.state_dir.join("pki/ca.pem");
        if !ca.exists() {
            bail!(
                "cluster `{}` has no state in {} yet: run `lab up -i {}` (or `lab bootstrap`) first",
                inventory.cluster.name,
                inventory.cluster.state_dir.display(),
                inventory.path.display()
            );
        }
        Self::open(inventory)
    }

    pub fn ssh_target(&self, board: &Board) -> SshTarget {
        crate::ssh::target::resolve(
            &self.inventory.cluster,
            board,
            &self.state.ssh_key(),
            self.ssh_config.as_ref(),
        )
    }

    /// The public half of the managed SSH key, for boards `lab` creates itself.
    pub fn managed_public_key(&self) -> anyhow::Result<String> {
        let p = PathBuf::from(format!("{}.pub", self.state.ssh_key().display()));
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(text.trim().to_string())
    }
}

fn ensure_managed_key(path: &Path, cluster: &str) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        crate::state::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // On a fresh machine this runs before the virtual cluster's host setup: make sure the
    // tool is there first (found by cross/fresh-machine-check.sh).
    crate::host_setup::ensure(&[crate::host_setup::SSH_KEYGEN], &mut |l: &str| {
        eprintln!("  {l}")
    })?;
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("lab@{cluster}"))
        .arg("-f")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .status()
        .context("running ssh-keygen (install openssh-client)")?;
    if !status.success() {
        bail!("ssh-keygen failed ({status}) creating {}", path.display());
    }
    Ok(())
}

/// Where the arm64 Debian root for emulated boards is cached.
pub fn rootfs_cache_dir() -> PathBuf {
    std::env::var_os("LAB_ROOTFS_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::rootfs::DEFAULT_CACHE_DIR))
}

/// The virtual cluster described by the inventory's `[virtual]` table. Arm64 boards get the
/// cached arm64 root, which must exist (see [`create_virtual_boards`]).
pub fn virtual_spec(ctx: &ClusterContext) -> anyhow::Result<crate::virt::VirtualClusterSpec> {
    use crate::inventory::VirtualArch;
    let inv = &ctx.inventory;
    let Some(net) = &inv.virtual_net else {
        bail!("{} has no [virtual] table", inv.path.display());
    };
    let arm64_root = rootfs_cache_dir().join(crate::rootfs::ARM64_ROOT_NAME);
    let mut boards = Vec::new();
    for b in &inv.boards {
        let address = b
            .address
            .parse()
            .with_context(|| format!("board `{}`: virtual boards need an IPv4 address", b.name))?;
        boards.push(crate::virt::VirtualBoardSpec {
            name: b.name.clone(),
            address,
            rootfs: (b.arch == VirtualArch::Arm64).then(|| arm64_root.clone()),
            size: b
                .size
                .unwrap_or(crate::inventory::BoardSize::VIRTUAL_DEFAULT),
        });
    }
    Ok(crate::virt::VirtualClusterSpec {
        cluster: inv.cluster.name.clone(),
        subnet: net.subnet,
        prefix_len: net.prefix_len,
        state_dir: ctx.state.root().to_path_buf(),
        boards,
        authorized_key: ctx.managed_public_key()?,
        lab_binary: std::env::current_exe().context("locating the lab binary")?,
    })
}

/// Install host packages, build the arm64 root if needed, and create/start the virtual
/// boards (idempotent).
pub fn create_virtual_boards(ctx: &ClusterContext) -> anyhow::Result<()> {
    use crate::inventory::VirtualArch;
    let mut say = |line: &str| eprintln!("  {line}");
    crate::host_setup::ensure(crate::host_setup::VIRTUAL_CLUSTER, &mut say)?;
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
    let spec = virtual_spec(ctx)?;
    eprintln!(
        "creating {} virtual board(s) on {}/{}",
        spec.boards.len(),
        spec.subnet,
        spec.prefix_len
    );
    crate::virt::up(&spec, &mut |board: &str, msg: &str| {
        eprintln!("  {board}: {msg}")
    })?;
    Ok(())
}

/// Destroy the virtual boards (and with `purge`, their disks).
pub fn destroy_virtual_boards(ctx: &ClusterContext, purge: bool) -> anyhow::Result<()> {
    let spec = virtual_spec(ctx)?;
    if purge {
        crate::virt::purge(&spec)?;
        // The boards' host keys went with their disks; lab made those keys itself, so their
        // pins go too (the next boards get new keys and are pinned afresh).
        for b in &ctx.inventory.boards {
            let target = ctx.ssh_target(b);
            ctx.host_keys.forget(&target.host, target.port)?;
        }
    } else {
        crate::virt::down(&spec)?;
    }
    Ok(())
}

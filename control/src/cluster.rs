//! Everything a command that reaches boards over SSH needs to act on one cluster, opened
//! once: the inventory, its state directory, the PKI, the pinned host keys, the SSH key `lab`
//! manages, `~/.ssh/config`. Commands that only talk to agents open `agents::ClusterAgents`.

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

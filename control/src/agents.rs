//! What talking to a cluster's agents over mTLS needs, and nothing SSH needs: the inventory,
//! the state dir, the cluster PKI (which must exist) and where each board's agent answers.
//! `lab serve`, `lab status` and `lab apply` open this; it creates no key, pins no host and
//! writes nothing but a control certificate that is due for renewal.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::agent_client::AgentClient;
use crate::inventory::{Board, Inventory};
use crate::pki::ClusterPki;
use crate::state::StateDir;

pub struct ClusterAgents {
    pub inventory: Inventory,
    pub state: StateDir,
    pub pki: ClusterPki,
    /// Board name -> the host its agent answers on (the SSH host: the inventory's address,
    /// or the `HostName` that ~/.ssh/config gives it, read only).
    hosts: HashMap<String, String>,
}

impl ClusterAgents {
    /// Open a cluster that was brought up; refuses one with no state yet.
    pub fn open(inventory: Inventory) -> anyhow::Result<Self> {
        let state = StateDir::new(inventory.cluster.state_dir.clone());
        if !state.pki_dir().join("ca.pem").exists() {
            bail!(
                "cluster `{}` has no state in {} yet: run `lab up -i {}` (or `lab bootstrap`) first",
                inventory.cluster.name,
                state.root().display(),
                inventory.path.display()
            );
        }
        let pki = ClusterPki::load(&state.pki_dir(), &inventory.cluster.name)
            .with_context(|| format!("loading the cluster CA in {}", state.pki_dir().display()))?;
        let ssh_config = crate::ssh::target::load_user_ssh_config();
        let hosts = inventory
            .boards
            .iter()
            .map(|b| {
                let host = crate::ssh::target::agent_host(b, ssh_config.as_ref());
                (b.name.clone(), host)
            })
            .collect();
        Ok(Self {
            inventory,
            state,
            pki,
            hosts,
        })
    }

    /// The host `board`'s agent answers on.
    pub fn host<'a>(&'a self, board: &'a Board) -> &'a str {
        self.hosts
            .get(&board.name)
            .map(String::as_str)
            .unwrap_or(board.address.as_str())
    }

    /// An mTLS client with the control plane's identity.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<AgentClient> {
        Ok(AgentClient::new(&self.pki, timeout)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVENTORY: &str = r#"
[cluster]
name = "agents-test"
state_dir = "state"
ssh_key = "managed"

[[board]]
name = "cache-1"
address = "192.0.2.10"
roles = ["cache"]
"#;

    #[test]
    fn refuses_a_cluster_never_brought_up_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inv = crate::inventory::parse(&dir.path().join("inv.toml"), INVENTORY).expect("valid");
        let err = ClusterAgents::open(inv).err().expect("no CA yet");
        assert!(err.to_string().contains("run `lab up"), "{err}");
        assert!(!dir.path().join("state").exists(), "created the state dir");
    }

    #[test]
    fn opens_without_making_an_ssh_key_or_pins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inv = crate::inventory::parse(&dir.path().join("inv.toml"), INVENTORY).expect("valid");
        let state = StateDir::new(inv.cluster.state_dir.clone());
        state.ensure().expect("state dir");
        ClusterPki::load_or_create(&state.pki_dir(), "agents-test").expect("CA");
        let agents = ClusterAgents::open(inv).expect("opens");
        assert_eq!(agents.host(&agents.inventory.boards[0]), "192.0.2.10");
        assert!(!state.ssh_key().exists(), "made the managed SSH key");
        assert!(!state.known_hosts().exists(), "made a known_hosts file");
    }
}

//! Where and as whom `lab` connects to a board: inventory settings first, then the user's
//! `~/.ssh/config` (Host alias, HostName, Port, User, IdentityFile), then defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{ParseRule, SshConfig};

use crate::inventory::{Board, Cluster, SshKey};

/// A resolved SSH destination for one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub board: String,
    /// Host to dial (HostName from ~/.ssh/config when the address is an alias).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Try the running ssh-agent first.
    pub use_agent: bool,
    /// Private key files to try, in order, after the agent.
    pub identities: Vec<PathBuf>,
    /// Run privileged steps through `sudo -n` (login user is not root).
    pub sudo: bool,
    pub connect_timeout: Duration,
    /// `ProxyJump` asked for by ~/.ssh/config (not supported yet; reported as an error).
    pub proxy_jump: Option<String>,
}

/// Parse `~/.ssh/config` if there is one. A file that does not parse is ignored with a
/// warning rather than blocking boards that do not need it.
pub fn load_user_ssh_config() -> Option<SshConfig> {
    let path = crate::inventory::home_dir()?.join(".ssh/config");
    let file = std::fs::File::open(&path).ok()?;
    let mut reader = std::io::BufReader::new(file);
    match SshConfig::default().parse(&mut reader, ParseRule::ALLOW_UNKNOWN_FIELDS) {
        Ok(cfg) => Some(cfg),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", path.display());
            None
        }
    }
}

/// The host `board` is reached on (its agent answers there too): the `HostName` that
/// ~/.ssh/config gives the inventory's address, or the address itself.
pub fn agent_host(board: &Board, ssh_config: Option<&SshConfig>) -> String {
    host_of(board, ssh_config.map(|c| c.query(&board.address)).as_ref())
}

fn host_of(board: &Board, params: Option<&ssh2_config::HostParams>) -> String {
    params
        .and_then(|p| p.host_name.clone())
        .unwrap_or_else(|| board.address.clone())
}

/// Resolve the SSH target of `board`. `managed_key` is the key `lab` keeps in the state dir.
pub fn resolve(
    cluster: &Cluster,
    board: &Board,
    managed_key: &Path,
    ssh_config: Option<&SshConfig>,
) -> SshTarget {
    let params = ssh_config.map(|c| c.query(&board.address));
    let host = host_of(board, params.as_ref());
    let port = board
        .port
        .or(cluster.ssh_port)
        .or_else(|| params.as_ref().and_then(|p| p.port))
        .unwrap_or(22);
    let user = board
        .user
        .clone()
        .or_else(|| cluster.ssh_user.clone())
        .or_else(|| params.as_ref().and_then(|p| p.user.clone()))
        .unwrap_or_else(|| "root".to_string());
    let config_ids: Vec<PathBuf> = params
        .as_ref()
        .and_then(|p| p.identity_file.clone())
        .unwrap_or_default();
    let default_ids = || -> Vec<PathBuf> {
        let Some(home) = crate::inventory::home_dir() else {
            return Vec::new();
        };
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| home.join(".ssh").join(n))
            .collect()
    };
    let (use_agent, identities) = match &cluster.ssh_key {
        SshKey::Managed => (false, vec![managed_key.to_path_buf()]),
        SshKey::Agent => (true, Vec::new()),
        SshKey::File(p) => (true, vec![p.clone()]),
        SshKey::Default => (
            true,
            if config_ids.is_empty() {
                default_ids()
            } else {
                config_ids
            },
        ),
    };
    let connect_timeout = params
        .as_ref()
        .and_then(|p| p.connect_timeout)
        .unwrap_or(Duration::from_secs(10));
    let proxy_jump = params
        .as_ref()
        .and_then(|p| p.proxy_jump.as_ref())
        .filter(|j| !j.is_empty())
        .map(|j| j.join(","));
    SshTarget {
        board: board.name.clone(),
        host,
        port,
        sudo: cluster.sudo && user != "root",
        user,
        use_agent,
        identities,
        connect_timeout,
        proxy_jump,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{RoleSpec, VirtualArch};

    fn board(address: &str) -> Board {
        Board {
            name: "pi-4".into(),
            address: address.into(),
            port: None,
            user: None,
            model: None,
            roles: RoleSpec::Auto,
            arch: VirtualArch::Native,
            init: crate::inventory::VirtualInit::Lab,
            link: None,
            dc: None,
            size: None,
            line: 1,
            weight: 1,
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            name: "c".into(),
            state_dir: "/s".into(),
            ssh_user: None,
            ssh_port: None,
            ssh_key: SshKey::Default,
            sudo: true,
            parallel: 4,
        }
    }

    #[test]
    fn ssh_config_alias_supplies_host_port_user_and_key() {
        let text =
            "Host pi-4\n  HostName 192.0.2.14\n  Port 2222\n  User pi\n  IdentityFile /keys/pi\n";
        let cfg = SshConfig::default()
            .parse(&mut text.as_bytes(), ParseRule::ALLOW_UNKNOWN_FIELDS)
            .expect("parse");
        let t = resolve(&cluster(), &board("pi-4"), Path::new("/m"), Some(&cfg));
        assert_eq!(t.host, "192.0.2.14");
        assert_eq!(t.port, 2222);
        assert_eq!(t.user, "pi");
        assert!(t.sudo, "non-root user with sudo=true");
        assert!(t.use_agent);
        assert_eq!(t.identities, vec![PathBuf::from("/keys/pi")]);
    }

    #[test]
    fn inventory_overrides_ssh_config() {
        let text = "Host pi-4\n  User pi\n  Port 2222\n";
        let cfg = SshConfig::default()
            .parse(&mut text.as_bytes(), ParseRule::ALLOW_UNKNOWN_FIELDS)
            .expect("parse");
        let mut b = board("pi-4");
        b.user = Some("root".into());
        b.port = Some(22);
        let mut c = cluster();
        c.ssh_key = SshKey::Managed;
        let t = resolve(&c, &b, Path::new("/state/ssh/id_ed25519"), Some(&cfg));
        assert_eq!((t.user.as_str(), t.port), ("root", 22));
        assert!(!t.sudo, "root needs no sudo");
        assert!(!t.use_agent);
        assert_eq!(t.identities, vec![PathBuf::from("/state/ssh/id_ed25519")]);
    }
}

//! The files bootstrap keeps on every board, rendered from the inventory and the PKI. Each is
//! a [`ManagedFile`]: destination, bytes, mode. Comparing their SHA-256 with what the probe
//! found decides what to upload: nothing, on a re-run where nothing changed.

use lab_api::{board_paths, AgentConfig};
use sha2::{Digest, Sha256};

use crate::pki::CertPair;

#[derive(Debug, Clone)]
pub struct ManagedFile {
    pub dest: &'static str,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl ManagedFile {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }
}

/// Every path bootstrap manages on a board (their hashes come back in one probe).
pub const MANAGED_PATHS: [&str; 6] = [
    board_paths::AGENT_BIN,
    board_paths::CONFIG,
    board_paths::TLS_CA,
    board_paths::TLS_CERT,
    board_paths::TLS_KEY,
    board_paths::SYSTEMD_UNIT,
];

/// The agent's config for a board whose agent binds `listen`.
pub fn agent_config(cluster: &str, board: &str, listen: &str) -> AgentConfig {
    AgentConfig {
        cluster: cluster.to_string(),
        board: board.to_string(),
        listen: listen.to_string(),
        tls_ca: board_paths::TLS_CA.to_string(),
        tls_cert: board_paths::TLS_CERT.to_string(),
        tls_key: board_paths::TLS_KEY.to_string(),
        state_dir: board_paths::STATE_DIR.to_string(),
        log_dir: board_paths::LOG_DIR.to_string(),
        collectors: Vec::new(),
    }
}

/// The systemd unit, for boards systemd runs.
pub fn systemd_unit() -> String {
    format!(
        "[Unit]\n\
         Description=lab node agent\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={bin} serve --config {cfg}\n\
         Restart=always\n\
         RestartSec=1\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        bin = board_paths::AGENT_BIN,
        cfg = board_paths::CONFIG
    )
}

/// Config and certificates (not the agent binary, which is handled on its own).
pub fn config_files(
    config: &AgentConfig,
    ca_pem: &str,
    cert: &CertPair,
    systemd: bool,
) -> Result<Vec<ManagedFile>, toml::ser::Error> {
    let mut files = vec![
        ManagedFile {
            dest: board_paths::CONFIG,
            bytes: toml::to_string(config)?.into_bytes(),
            mode: 0o644,
        },
        ManagedFile {
            dest: board_paths::TLS_CA,
            bytes: ca_pem.as_bytes().to_vec(),
            mode: 0o644,
        },
        ManagedFile {
            dest: board_paths::TLS_CERT,
            bytes: cert.cert_pem.as_bytes().to_vec(),
            mode: 0o644,
        },
        ManagedFile {
            dest: board_paths::TLS_KEY,
            bytes: cert.key_pem.as_bytes().to_vec(),
            mode: 0o600,
        },
    ];
    if systemd {
        files.push(ManagedFile {
            dest: board_paths::SYSTEMD_UNIT,
            bytes: systemd_unit().into_bytes(),
            mode: 0o644,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_the_agents_type() {
        let c = agent_config("lab", "pi-1", "10.0.0.2:7443");
        let text = toml::to_string(&c).expect("ser");
        let back: AgentConfig = toml::from_str(&text).expect("de");
        assert_eq!(back, c);
    }

    #[test]
    fn unit_runs_the_agent_binary() {
        assert!(systemd_unit()
            .contains("ExecStart=/usr/local/bin/lab-agent serve --config /etc/lab/agent.toml"));
    }
}

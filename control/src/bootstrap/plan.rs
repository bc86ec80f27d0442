//! What bootstrap does on one board, decided from what the probe found and what the board
//! should have. Pure: no I/O, tested on fixtures; `bootstrap_board` carries a plan out.

use lab_api::{board_paths, Health};

use super::files::ManagedFile;
use super::probe::Probe;

/// The changes one board needs.
#[derive(Debug)]
pub struct BoardPlan {
    /// The installed agent binary differs from the one for this board's architecture.
    pub upload_agent: bool,
    /// Managed files whose content differs (or that are missing).
    pub write: Vec<ManagedFile>,
    /// The systemd unit is among `write` (systemd must reload it).
    pub unit_changed: bool,
    pub start: StartPlan,
}

/// How the agent is brought to "running the installed build".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPlan {
    /// Something it reads changed (or a restart was forced): restart it.
    Restart,
    /// Nothing changed: ask the running agent first ([`ensure_running`]).
    EnsureRunning,
}

impl BoardPlan {
    /// Paths that will be rewritten, binary first.
    pub fn changed_paths(&self) -> Vec<&'static str> {
        let agent = self.upload_agent.then_some(board_paths::AGENT_BIN);
        agent
            .into_iter()
            .chain(self.write.iter().map(|f| f.dest))
            .collect()
    }
}

/// Compare the probe with the desired agent binary (`agent_sha256`) and files.
pub fn plan(
    probe: &Probe,
    agent_sha256: &str,
    desired: Vec<ManagedFile>,
    force_restart: bool,
) -> BoardPlan {
    let differs = |path: &str, sha: &str| probe.hashes.get(path).map(String::as_str) != Some(sha);
    let upload_agent = differs(board_paths::AGENT_BIN, agent_sha256);
    let write: Vec<ManagedFile> = desired
        .into_iter()
        .filter(|f| differs(f.dest, &f.sha256()))
        .collect();
    let unit_changed = write.iter().any(|f| f.dest == board_paths::SYSTEMD_UNIT);
    let start = if force_restart || upload_agent || !write.is_empty() {
        StartPlan::Restart
    } else {
        StartPlan::EnsureRunning
    };
    BoardPlan {
        upload_agent,
        write,
        unit_changed,
        start,
    }
}

/// What to do when nothing changed, from the running agent's health answer (`None`: it did
/// not answer). `None` back: leave it; `Some(restart)`: run the start command.
///
/// An agent answering as this board from the installed build is left alone; one answering
/// from another build (a run interrupted between upload and restart, a binary swapped by
/// hand) is restarted; anything else is started.
pub fn ensure_running(board: &str, agent_sha256: &str, health: Option<&Health>) -> Option<bool> {
    match health {
        Some(h) if h.board == board && h.binary_sha256 == agent_sha256 => None,
        Some(h) if h.board == board => Some(true),
        _ => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::probe::parse_probe;

    fn file(dest: &'static str, text: &str) -> ManagedFile {
        ManagedFile {
            dest,
            bytes: text.as_bytes().to_vec(),
            mode: 0o600,
        }
    }

    /// The agent build the board runs and should run (a SHA-256 in hex, as the probe reports).
    const AGENT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    /// The hash of a config the board has that is not the one it should have.
    const CONFIG_V1: &str = "6b8ab1f2c1e4f1b2bd8fa3b1a1f13f2e6b24e4f5b3e08ba38fe7b19dd1b6a2a0";

    fn probe_with(config_sha: &str, agent_sha: &str) -> Probe {
        let text = format!(
            "lab:arch=aarch64\nlab:os=Debian GNU/Linux 12 (bookworm)\nlab:init=other\n\
             lab:sha256={} {agent_sha}\nlab:sha256={} {config_sha}\n",
            board_paths::AGENT_BIN,
            board_paths::CONFIG
        );
        parse_probe(&text).expect("fixture parses")
    }

    #[test]
    fn a_bare_board_gets_everything_and_a_restart() {
        let probe = parse_probe("lab:arch=x86_64\nlab:os=x\nlab:init=systemd\n").expect("parse");
        let plan = plan(
            &probe,
            "aa",
            vec![
                file(board_paths::CONFIG, "config v1"),
                file(board_paths::SYSTEMD_UNIT, "[Unit]"),
            ],
            false,
        );
        assert!(plan.upload_agent);
        assert_eq!(
            plan.changed_paths(),
            [
                board_paths::AGENT_BIN,
                board_paths::CONFIG,
                board_paths::SYSTEMD_UNIT
            ]
        );
        assert!(plan.unit_changed);
        assert_eq!(plan.start, StartPlan::Restart);
    }

    #[test]
    fn an_up_to_date_board_changes_nothing() {
        let config = file(board_paths::CONFIG, "config v1");
        let sha = config.sha256();
        let plan = plan(&probe_with(&sha, AGENT), AGENT, vec![config], false);
        assert!(!plan.upload_agent);
        assert!(plan.write.is_empty());
        assert_eq!(plan.start, StartPlan::EnsureRunning);
        // A forced restart (a retry after a broken attempt) restarts all the same.
        let config = file(board_paths::CONFIG, "config v1");
        let plan = super::plan(&probe_with(&sha, AGENT), AGENT, vec![config], true);
        assert_eq!(plan.start, StartPlan::Restart);
    }

    #[test]
    fn only_what_differs_is_written() {
        let plan = plan(
            &probe_with(CONFIG_V1, AGENT),
            AGENT,
            vec![file(board_paths::CONFIG, "config v2")],
            false,
        );
        assert!(!plan.upload_agent);
        assert_eq!(plan.changed_paths(), [board_paths::CONFIG]);
        assert!(!plan.unit_changed);
        assert_eq!(plan.start, StartPlan::Restart);
    }

    fn health(board: &str, sha: &str) -> Health {
        Health {
            protocol_version: lab_api::PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            board: board.into(),
            hostname: board.into(),
            arch: "x86_64".into(),
            os: "x".into(),
            kernel: "6.1".into(),
            uptime_secs: 1,
            agent_uptime_secs: 1,
            cpu_percent: 0.0,
            cpu_count: 1,
            cpus: 1.0,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            binary_sha256: sha.into(),
            spec_epoch: None,
            roles: Vec::new(),
        }
    }

    #[test]
    fn a_running_agent_is_left_restarted_or_started() {
        assert_eq!(
            ensure_running("pi-1", "bb", Some(&health("pi-1", "bb"))),
            None
        );
        assert_eq!(
            ensure_running("pi-1", "bb", Some(&health("pi-1", "old"))),
            Some(true)
        );
        assert_eq!(
            ensure_running("pi-1", "bb", Some(&health("pi-2", "bb"))),
            Some(false)
        );
        assert_eq!(ensure_running("pi-1", "bb", None), Some(false));
    }
}

//! What a board is and what it already has, learned in one SSH round trip: architecture,
//! OS, init system and the SHA-256 of every file bootstrap manages.

use std::collections::HashMap;

use crate::ssh::RemoteCommand;

/// How the agent is kept running on a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// systemd runs the board: the agent is a unit.
    Systemd,
    /// Anything else (a shell init, the virtual board's init): `lab-agent start` supervises.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `uname -m`.
    pub machine: String,
    pub os: String,
    pub init: Init,
    /// path -> hex SHA-256, for the managed files that exist.
    pub hashes: HashMap<String, String>,
    /// The engine binaries (of [`super::engines::requirement`]) the board has.
    pub engines: Vec<String>,
    /// The board has `apt-get` (engine packages can be installed).
    pub apt: bool,
}

pub fn probe_command(paths: &[&str], sudo: bool) -> RemoteCommand {
    let script = r#"echo "lab:arch=$(uname -m)"
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "lab:os=${PRETTY_NAME:-unknown}"
if [ -d /run/systemd/system ]; then echo lab:init=systemd; else echo lab:init=other; fi
for f in "$@"; do
  case "$f" in
    engine:*) if [ -x "${f#engine:}" ]; then echo "lab:engine=${f#engine:}"; fi ;;
    *) if [ -f "$f" ]; then echo "lab:sha256=$f $(sha256sum "$f" | cut -d' ' -f1)"; fi ;;
  esac
done
if command -v apt-get >/dev/null 2>&1; then echo lab:apt=yes; fi"#;
    RemoteCommand::shell(script)
        .arg("lab-probe")
        .args(paths.iter().copied())
        .args(
            lab_api::Engine::ALL
                .into_iter()
                .filter_map(super::engines::requirement)
                .map(|r| format!("engine:{}", r.provides)),
        )
        .sudo(sudo)
}

pub fn parse_probe(output: &str) -> Result<Probe, String> {
    let mut machine = None;
    let mut os = "unknown".to_string();
    let mut init = Init::Other;
    let mut hashes = HashMap::new();
    let mut engines = Vec::new();
    let mut apt = false;
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("lab:") else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        match key {
            "arch" if !value.is_empty() => machine = Some(value.to_string()),
            "os" => os = value.to_string(),
            "init" => {
                init = if value == "systemd" {
                    Init::Systemd
                } else {
                    Init::Other
                }
            }
            "engine" => engines.push(value.to_string()),
            "apt" => apt = value == "yes",
            "sha256" => {
                if let Some((path, hash)) = value.rsplit_once(' ') {
                    if hash.len() == 64 {
                        hashes.insert(path.to_string(), hash.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let machine = machine.ok_or_else(|| {
        format!(
            "the board did not report its architecture (`uname -m`); output was: {}",
            crate::report::last_lines(output, 5)
        )
    })?;
    Ok(Probe {
        machine,
        os,
        init,
        hashes,
        engines,
        apt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_raspberry_pi_answer() {
        let out = "motd noise\nlab:arch=aarch64\nlab:os=Debian GNU/Linux 12 (bookworm)\nlab:init=systemd\nlab:sha256=/usr/local/bin/lab-agent 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\nlab:engine=/usr/bin/memcached\nlab:apt=yes\n";
        let p = parse_probe(out).expect("probe");
        assert_eq!(p.engines, vec!["/usr/bin/memcached".to_string()]);
        assert!(p.apt);
        assert_eq!(p.machine, "aarch64");
        assert_eq!(p.os, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(p.init, Init::Systemd);
        assert_eq!(p.hashes.len(), 1);
        assert!(p.hashes.contains_key("/usr/local/bin/lab-agent"));
    }

    #[test]
    fn missing_arch_is_an_error() {
        assert!(parse_probe("sh: uname: not found\n").is_err());
    }

    #[test]
    fn command_passes_paths_as_arguments() {
        let c = probe_command(&["/etc/lab/agent.toml"], true).to_shell();
        assert!(c.starts_with("sudo -n -- sh -c "), "{c}");
        assert!(
            c.ends_with(" lab-probe /etc/lab/agent.toml engine:/usr/sbin/nginx engine:/usr/bin/memcached engine:/usr/sbin/mariadbd engine:/usr/sbin/keepalived"),
            "{c}"
        );
    }
}

//! The vip role: keepalived (VRRP) holding the lb boards' floating address on one of them.
//! The config is rendered from the spec into `<state>/vip/keepalived.conf` ([`render_config`],
//! pure) and keepalived runs in the foreground, VRRP only, logging to the role's log. Every lb
//! board starts as BACKUP with `nopreempt`: the first to come up takes the address (the
//! highest priority when they start together), and a board that comes back never takes it
//! back (no second move). Adverts go unicast to the
//! other lb boards, so clusters sharing a LAN (or a host's bridges) cannot disturb each other.
//! Ready once the VRRP process has written its pid file; the message says whether this board
//! holds the address now (refreshed: it moves without the agent doing anything).

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use lab_api::spec::VipConfig;

use crate::engine::{EngineCommand, StopSignals};

/// The binary Debian's `keepalived` package installs.
pub const BINARY: &str = "/usr/sbin/keepalived";
/// How long keepalived may take to start its VRRP process.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// A stop (TERM) releases the address; then the group is killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Time between two adverts (VRRPv3 allows less than a second): a dead holder is replaced
/// after about three of them.
const ADVERT_SECS: &str = "0.5";

/// One vip role.
pub struct Vip {
    pub config: VipConfig,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Vip {
    pub fn new(config: VipConfig, state_dir: &Path, log: PathBuf) -> Vip {
        Vip {
            config,
            dir: state_dir.join("vip"),
            log,
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("keepalived.conf")
    }

    fn vrrp_pid(&self) -> PathBuf {
        self.dir.join("vrrp.pid")
    }

    /// Finds the interface holding the board's own address, writes the config; the command.
    pub async fn prepare(&self) -> anyhow::Result<EngineCommand> {
        if tokio::fs::metadata(BINARY).await.is_err() {
            bail!("keepalived not found ({BINARY}): install the keepalived package");
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("creating {}", self.dir.display()))?;
        for stale in [self.vrrp_pid(), self.dir.join("keepalived.pid")] {
            let _ = tokio::fs::remove_file(stale).await;
        }
        let interface = interface_of(&self.config.own).await?;
        let text = render_config(&self.config, &interface);
        crate::roles::store::write_atomically_off_runtime(self.conf(), text.into_bytes())
            .await
            .with_context(|| format!("writing {}", self.conf().display()))?;
        Ok(EngineCommand::new("keepalived", BINARY, StopSignals::TERM)
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .args(["--no-syslog", "-f"])
            .arg(self.conf())
            .arg("-p")
            .arg(self.dir.join("keepalived.pid"))
            .arg("-r")
            .arg(self.vrrp_pid())
            .log_to(&self.log))
    }

    /// One probe: the VRRP process is up (it wrote its pid file).
    pub async fn ready(&self) -> anyhow::Result<()> {
        tokio::fs::metadata(self.vrrp_pid())
            .await
            .map(|_| ())
            .context("the VRRP process has not started yet")
    }

    /// What health says: whether this board holds the floating address now.
    pub fn message(&self) -> String {
        let address = &self.config.address;
        if holds(address) {
            format!("holding {address} (clients' way in)")
        } else {
            format!("standing by for {address}")
        }
    }
}

/// Whether `address` is one of this host's addresses now: a socket can bind to it.
pub fn holds(address: &str) -> bool {
    address
        .parse::<Ipv4Addr>()
        .is_ok_and(|ip| UdpSocket::bind((ip, 0)).is_ok())
}

/// The interface whose IPv4 addresses include `own` (from `ip -o -4 addr show`).
async fn interface_of(own: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), out)
        .await
        .context("ip addr did not answer")?
        .context("running `ip -o -4 addr show` (iproute2)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    interface_in(&text, own)
        .with_context(|| format!("no interface holds this board's address {own}"))
}

/// The interface of `own` in `ip -o -4 addr show` output (`2: eth0    inet 10.0.0.5/24 ...`).
fn interface_in(ip_output: &str, own: &str) -> Option<String> {
    ip_output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let _index = words.next()?;
        let name = words.next()?;
        let (family, cidr) = (words.next()?, words.next()?);
        let address = cidr.split('/').next()?;
        (family == "inet" && address == own).then(|| name.split('@').next().unwrap_or(name).into())
    })
}

/// keepalived.conf for `config` on `interface`.
pub fn render_config(config: &VipConfig, interface: &str) -> String {
    let peers: String = config
        .peers
        .iter()
        .map(|p| format!("        {p}\n"))
        .collect();
    format!(
        "# Written by lab-agent from the board's spec; changes are overwritten.\n\
         global_defs {{\n\
         \x20   router_id lab-vip-{own}\n\
         \x20   vrrp_version 3\n\
         \x20   vrrp_garp_master_repeat 3\n\
         \x20   vrrp_garp_master_refresh 10\n\
         }}\n\
         vrrp_instance lab_lb {{\n\
         \x20   state BACKUP\n\
         \x20   nopreempt\n\
         \x20   interface {interface}\n\
         \x20   virtual_router_id {router_id}\n\
         \x20   priority {priority}\n\
         \x20   advert_int {ADVERT_SECS}\n\
         \x20   unicast_src_ip {own}\n\
         \x20   unicast_peer {{\n{peers}    }}\n\
         \x20   virtual_ipaddress {{\n\
         \x20       {address}/{prefix} dev {interface}\n\
         \x20   }}\n\
         }}\n",
        own = config.own,
        router_id = config.router_id,
        priority = config.priority,
        address = config.address,
        prefix = config.prefix_len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VipConfig {
        VipConfig {
            address: "10.77.0.254".into(),
            prefix_len: 24,
            own: "10.77.0.10".into(),
            peers: vec!["10.77.0.11".into(), "10.77.0.12".into()],
            priority: 150,
            router_id: 42,
        }
    }

    #[test]
    fn config_names_the_address_the_peers_and_never_preempts() {
        let text = render_config(&config(), "eth0");
        for want in [
            "state BACKUP",
            "nopreempt",
            "interface eth0",
            "virtual_router_id 42",
            "priority 150",
            "unicast_src_ip 10.77.0.10",
            "        10.77.0.11\n        10.77.0.12\n",
            "10.77.0.254/24 dev eth0",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn the_interface_is_found_by_the_boards_address() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   2: eth0@if9    inet 10.77.0.10/24 brd 10.77.0.255 scope global eth0\n\
                   3: wlan0    inet 192.168.1.5/24 brd 192.168.1.255 scope global wlan0\n";
        assert_eq!(interface_in(out, "10.77.0.10").as_deref(), Some("eth0"));
        assert_eq!(interface_in(out, "192.168.1.5").as_deref(), Some("wlan0"));
        assert_eq!(interface_in(out, "10.77.0.1"), None);
    }

    #[test]
    fn loopback_is_held_and_a_foreign_address_is_not() {
        assert!(holds("127.0.0.1"));
        assert!(!holds("192.0.2.77"));
        assert!(!holds("not an address"));
    }
}

//! The cloud-init files of a board (pure): the templates of `images/cloud-init/` (compiled
//! in, so the binary works without the checkout) filled from its [`FirstBoot`].

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use super::settings::yaml_quote;
use super::{BootFiles, FirstBoot};

/// Where Debian's `cloud-init` package puts the program (its schema check is used when there).
pub const CLOUD_INIT_PROGRAM: &str = "/usr/bin/cloud-init";

const USER_DATA: &str = include_str!("../../../images/cloud-init/user-data");
const META_DATA: &str = include_str!("../../../images/cloud-init/meta-data");
const NETWORK_CONFIG: &str = include_str!("../../../images/cloud-init/network-config");

/// `user-data`, `meta-data` and `network-config` for `boot`: (name, content).
pub fn files(boot: &FirstBoot) -> BootFiles {
    let fill = |t: &str| {
        t.replace("{{hostname}}", &boot.hostname)
            .replace("{{user}}", &boot.user)
            .replace("{{ssh_key}}", &yaml_quote(boot.ssh_key.trim()))
            .replace("{{timezone}}", &timezone(boot))
            .replace("{{host_key_private}}", &indented(&boot.host_key.private, 4))
            .replace("{{host_key_public}}", boot.host_key.public.trim())
            .replace("{{network}}", &ethernet(boot))
            .replace("{{wifi}}", &wifi(boot))
    };
    vec![
        ("user-data", fill(USER_DATA)),
        ("meta-data", fill(META_DATA)),
        ("network-config", fill(NETWORK_CONFIG)),
    ]
}

/// Runs cloud-init's own schema check (`cloud-init schema --config-file`) on the user-data
/// of `files` where the `cloud-init` program is installed; whether it ran. A user-data it
/// refuses is an error with its words.
pub fn check_schema(files: &[(&'static str, String)], board: &str) -> anyhow::Result<bool> {
    let program = Path::new(CLOUD_INIT_PROGRAM);
    let Some((_, user_data)) = files.iter().find(|(n, _)| *n == "user-data") else {
        return Ok(false);
    };
    if !program.exists() {
        return Ok(false);
    }
    let staging = super::fat::staging_dir(&format!("{board}-schema"))?;
    let checked = (|| -> anyhow::Result<()> {
        let file = staging.join("user-data");
        crate::state::write_atomic(&file, user_data.as_bytes(), crate::state::SECRET_MODE)?;
        let out = Command::new(program)
            .args(["schema", "--config-file"])
            .arg(&file)
            .output()
            .context("running cloud-init schema")?;
        if !out.status.success() {
            bail!(
                "cloud-init schema refuses board {board}'s user-data: {}",
                String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).trim()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    checked.map(|()| true)
}

fn timezone(boot: &FirstBoot) -> String {
    match &boot.timezone {
        Some(zone) => format!("timezone: {zone}"),
        None => "# timezone: the image's own (lab image prepare --timezone sets one)".into(),
    }
}

/// eth0's settings, indented for its place under `ethernets: eth0:`.
fn ethernet(boot: &FirstBoot) -> String {
    match &boot.static_address {
        None => "    dhcp4: true".to_string(),
        Some(a) => format!(
            "    dhcp4: false\n    addresses: [{}]\n    routes:\n      - to: default\n        via: {}\n    nameservers:\n      addresses: [{}]",
            a.cidr, a.gateway, a.gateway
        ),
    }
}

/// A `wifis:` section (DHCP on wlan0), or a comment saying there is none.
fn wifi(boot: &FirstBoot) -> String {
    match &boot.wifi {
        None => "# wifis: none (lab image prepare --wifi-ssid NAME --wifi-psk-file FILE)".into(),
        Some(w) => format!(
            "wifis:\n  wlan0:\n    dhcp4: true\n    optional: true\n    access-points:\n      {}:\n        password: {}",
            yaml_quote(&w.ssid),
            yaml_quote(&w.passphrase)
        ),
    }
}

/// `text`'s lines each indented by `by` spaces (a YAML block scalar's body).
fn indented(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.trim_end()
        .lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::super::tests::board;
    use super::super::{settings::Wifi, StaticAddress};
    use super::*;

    fn text(files: &[(&str, String)], name: &str) -> String {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }

    #[test]
    fn templates_are_filled_for_dhcp() {
        let files = files(&board());
        let user_data = text(&files, "user-data");
        assert!(user_data.starts_with("#cloud-config\n"));
        assert!(user_data.contains("hostname: pi-3\n"));
        assert!(user_data.contains("      - \"ssh-ed25519 AAAAC3 lab@cluster\"\n"));
        assert!(user_data.contains(
            "  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    b3Blbg==\n    -----END OPENSSH PRIVATE KEY-----\n  ed25519_public: ssh-ed25519 AAAAhost root@pi-3\n"
        ), "{user_data}");
        assert!(user_data.contains("# timezone:"));
        assert!(text(&files, "meta-data").contains("instance-id: lab-pi-3"));
        let net = text(&files, "network-config");
        assert!(
            net.contains("dhcp4: true") && !net.contains("\nwifis:"),
            "{net}"
        );
        assert!(files.iter().all(|(_, t)| !t.contains("{{")), "{files:?}");
    }

    #[test]
    fn static_address_time_zone_and_wifi() {
        let mut boot = board();
        boot.static_address = Some(StaticAddress {
            cidr: "192.168.1.13/24".into(),
            gateway: "192.168.1.1".into(),
        });
        boot.timezone = Some("Europe/Berlin".into());
        boot.wifi = Some(Wifi {
            ssid: "Home 5G".into(),
            passphrase: r#"pass"word\"#.into(),
        });
        let files = files(&boot);
        let net = text(&files, "network-config");
        assert!(net.contains("addresses: [192.168.1.13/24]") && net.contains("via: 192.168.1.1"));
        assert!(
            net.contains("\nwifis:\n  wlan0:\n    dhcp4: true\n    optional: true\n    access-points:\n      \"Home 5G\":\n        password: \"pass\\\"word\\\\\""),
            "{net}"
        );
        assert!(text(&files, "user-data").contains("\ntimezone: Europe/Berlin\n"));
    }
}

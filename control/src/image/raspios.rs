//! The first-boot files of a Raspberry Pi OS image without cloud-init: `ssh` (empty: sshd on),
//! `userconf.txt` (the login user with a random password nobody knows, SHA-512-crypt hashed:
//! logins are by key only), `firstrun.sh` (the template `images/raspios/firstrun.sh`, compiled
//! in, with the board's values at its top) and `cmdline.txt` with the hook that runs it once.

use super::kind::{hook_cmdline, BootMount};
use super::settings::shell_quote;
use super::{BootFiles, FirstBoot};

const FIRSTRUN: &str = include_str!("../../../images/raspios/firstrun.sh");

/// The files to write for `boot`: (name, content). `cmdline` is the base's `cmdline.txt`,
/// `password_hash` the `$6$` hash for `userconf.txt`.
pub fn files(
    boot: &FirstBoot,
    mount: BootMount,
    cmdline: &str,
    password_hash: &str,
) -> Result<BootFiles, String> {
    Ok(vec![
        ("ssh", String::new()),
        ("userconf.txt", format!("{}:{password_hash}\n", boot.user)),
        ("firstrun.sh", firstrun(boot)),
        ("cmdline.txt", hook_cmdline(cmdline, mount)?),
    ])
}

/// `firstrun.sh` with `boot`'s values, each one shell word.
pub fn firstrun(boot: &FirstBoot) -> String {
    let (address, gateway) = match &boot.static_address {
        Some(a) => (a.cidr.as_str(), a.gateway.as_str()),
        None => ("", ""),
    };
    let psk = boot.wifi.as_ref().map(|w| w.psk_hex()).unwrap_or_default();
    let q = |v: &str| shell_quote(v.trim_end());
    FIRSTRUN
        .replacen("{{hostname}}", &boot.hostname, 1)
        .replace("{{hostname}}", &q(&boot.hostname))
        .replace("{{user}}", &q(&boot.user))
        .replace("{{ssh_key}}", &q(&boot.ssh_key))
        .replace("{{address}}", &q(address))
        .replace("{{gateway}}", &q(gateway))
        .replace("{{timezone}}", &q(boot.timezone.as_deref().unwrap_or("")))
        .replace(
            "{{wifi_ssid}}",
            &q(boot.wifi.as_ref().map(|w| w.ssid.as_str()).unwrap_or("")),
        )
        .replace("{{wifi_psk}}", &q(&psk))
        .replace("{{host_key_public}}", &q(&boot.host_key.public))
        .replace("{{host_key_private}}", &q(&boot.host_key.private))
}

/// A `$6$` (SHA-512-crypt) hash of a random 32-byte password that is thrown away.
pub fn random_password_hash() -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("no randomness from the system for the login password"))?;
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|e| anyhow::anyhow!("SHA-512-crypt parameters: {e:?}"))?;
    sha_crypt::sha512_simple(&hex::encode(secret), &params)
        .map_err(|e| anyhow::anyhow!("hashing the login password: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::board;
    use super::super::{settings::Wifi, StaticAddress};
    use super::*;

    #[test]
    fn the_files_carry_the_boards_settings() {
        let mut boot = board();
        boot.static_address = Some(StaticAddress {
            cidr: "192.168.1.13/24".into(),
            gateway: "192.168.1.1".into(),
        });
        boot.wifi = Some(Wifi {
            ssid: "IEEE".into(),
            passphrase: "password".into(),
        });
        boot.timezone = Some("Europe/Berlin".into());
        let files = files(
            &boot,
            BootMount::Boot,
            "root=/dev/mmcblk0p2 rootwait\n",
            "$6$s$h",
        )
        .expect("files");
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["ssh", "userconf.txt", "firstrun.sh", "cmdline.txt"]);
        assert_eq!(files[0].1, "");
        assert_eq!(files[1].1, "pi:$6$s$h\n");
        let script = &files[2].1;
        assert!(script.starts_with("#!/bin/bash\n# First boot of board pi-3 "));
        for line in [
            "NEW_HOSTNAME='pi-3'\n",
            "LOGIN_USER='pi'\n",
            "AUTHORIZED_KEY='ssh-ed25519 AAAAC3 lab@cluster'\n",
            "STATIC_ADDRESS='192.168.1.13/24'",
            "GATEWAY='192.168.1.1'",
            "TIMEZONE='Europe/Berlin'\n",
            "WIFI_SSID='IEEE'\n",
            "WIFI_PSK='f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e'",
            "HOST_KEY_PUBLIC='ssh-ed25519 AAAAhost root@pi-3'\n",
            "HOST_KEY_PRIVATE='-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----'\n",
        ] {
            assert!(script.contains(line), "{line} in\n{script}");
        }
        assert!(!script.contains("{{"), "{script}");
        assert!(
            !script.contains("'password'"),
            "the passphrase stays off the board"
        );
        assert_eq!(
            files[3].1,
            "root=/dev/mmcblk0p2 rootwait systemd.run=/boot/firstrun.sh \
             systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n"
        );
    }

    #[test]
    fn the_script_is_valid_shell() {
        let mut boot = board();
        boot.ssh_key = "ssh-ed25519 AAAA it's $(reboot)".into();
        let script = std::env::temp_dir().join(format!("lab-firstrun-{}.sh", std::process::id()));
        std::fs::write(&script, firstrun(&boot)).expect("write");
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .expect("run bash -n");
        let _ = std::fs::remove_file(&script);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(firstrun(&boot).contains(r"AUTHORIZED_KEY='ssh-ed25519 AAAA it'\''s $(reboot)'"));
    }

    #[test]
    fn the_password_hash_is_sha512_crypt_of_a_secret_nobody_keeps() {
        let one = random_password_hash().expect("hash");
        let two = random_password_hash().expect("hash");
        assert!(
            one.starts_with("$6$") && one.split('$').count() == 4,
            "{one}"
        );
        assert_ne!(one, two);
        assert!(sha_crypt::sha512_check("", &one).is_err());
    }
}

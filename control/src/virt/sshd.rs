//! The board's OpenSSH server: where its files live inside the board, and the rendered
//! `sshd_config`. Everything sshd reads at run time sits on the board's fresh `/run`, copied
//! there at every boot from the board's disk (where the host key persists across boots).

use std::net::Ipv4Addr;

/// Directory inside the board (on its `/run` tmpfs) holding sshd's config, key and keys file.
pub const RUN_DIR: &str = "/run/lab-sshd";
/// Privilege-separation directory Debian's sshd requires.
pub const PRIVSEP_DIR: &str = "/run/sshd";
/// The sshd binary, inside the board.
pub const SSHD: &str = "/usr/sbin/sshd";
/// File names inside [`RUN_DIR`].
pub const CONFIG_FILE: &str = "sshd_config";
/// Host key file name (private half; `.pub` next to it).
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// Authorized keys file name.
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";

/// `path` inside [`RUN_DIR`].
pub fn run_path(file: &str) -> String {
    format!("{RUN_DIR}/{file}")
}

/// The `sshd_config` of a board listening on `address:22`.
pub fn render_config(address: Ipv4Addr) -> String {
    let lines = [
        "# Rendered by `lab board-init` at every boot; edits are lost.".to_owned(),
        format!("ListenAddress {address}:22"),
        format!("HostKey {}", run_path(HOST_KEY_FILE)),
        format!("PidFile {}", run_path("sshd.pid")),
        format!("AuthorizedKeysFile {}", run_path(AUTHORIZED_KEYS_FILE)),
        "PermitRootLogin prohibit-password".to_owned(),
        "PubkeyAuthentication yes".to_owned(),
        "PasswordAuthentication no".to_owned(),
        "KbdInteractiveAuthentication no".to_owned(),
        "UsePAM no".to_owned(),
        "StrictModes yes".to_owned(),
        "X11Forwarding no".to_owned(),
        "PrintMotd no".to_owned(),
        "AcceptEnv LANG LC_*".to_owned(),
        "Subsystem sftp internal-sftp".to_owned(),
    ];
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The command line that runs sshd in the foreground, logging to stderr (the boot log).
pub fn command_args() -> Vec<String> {
    vec![
        "-D".to_owned(),
        "-e".to_owned(),
        "-f".to_owned(),
        run_path(CONFIG_FILE),
    ]
}

/// `authorized_keys` content for one public key line.
pub fn render_authorized_keys(key: &str) -> String {
    format!("{}\n", key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_exact() {
        let expected = "\
# Rendered by `lab board-init` at every boot; edits are lost.
ListenAddress 10.77.0.11:22
HostKey /run/lab-sshd/ssh_host_ed25519_key
PidFile /run/lab-sshd/sshd.pid
AuthorizedKeysFile /run/lab-sshd/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
";
        assert_eq!(render_config(Ipv4Addr::new(10, 77, 0, 11)), expected);
    }

    #[test]
    fn sshd_runs_in_foreground_with_our_config() {
        assert_eq!(
            command_args(),
            ["-D", "-e", "-f", "/run/lab-sshd/sshd_config"]
        );
    }

    #[test]
    fn authorized_keys_is_one_line() {
        assert_eq!(
            render_authorized_keys("  ssh-ed25519 AAAA me@host \n"),
            "ssh-ed25519 AAAA me@host\n"
        );
    }
}

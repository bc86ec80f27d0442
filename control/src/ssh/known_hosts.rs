//! Pinned SSH host keys. On first contact a board's host key is stored in the cluster's own
//! `known_hosts` (OpenSSH format, so `ssh -o UserKnownHostsFile=...` can use it too) and its
//! fingerprint shown; from then on a different key refuses that board, naming both
//! fingerprints and the command that forgets the old one. The user's `~/.ssh/known_hosts`
//! (hashed or not) is consulted as well: a mismatch there refuses the board too. A key can
//! also be pinned ahead of the first contact ([`HostKeyStore::pin_ahead`]): `lab image
//! prepare` does so for the host key it puts into a board's image.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest, Sha256};
use ssh2::{CheckResult, HostKeyType, KnownHostFileKind, KnownHostKeyFormat, Session};

use super::SshError;

/// What verification concluded about a board's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// Already pinned (or in the user's known_hosts) and matching.
    Known,
    /// First contact: pinned now. Carries the fingerprint to show.
    PinnedNow { fingerprint: String },
}

/// The cluster's pinned host keys; one lock serialises the read-modify-write of the file
/// when many boards are contacted in parallel.
#[derive(Debug)]
pub struct HostKeyStore {
    path: PathBuf,
    user_file: Option<PathBuf>,
    forget_command: String,
    lock: Mutex<()>,
}

/// `SHA256:<base64 without padding>` of a public key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(key_blob: &[u8]) -> String {
    let digest = Sha256::digest(key_blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The name OpenSSH uses in known_hosts for a host and port.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl HostKeyStore {
    /// `path`: the cluster's pin file. `user_file`: the user's known_hosts to consult, if any.
    pub fn new(path: impl Into<PathBuf>, user_file: Option<PathBuf>) -> Self {
        Self {
            path: path.into(),
            user_file,
            forget_command: "lab forget-host-key".to_string(),
            lock: Mutex::new(()),
        }
    }

    /// The command a user runs to forget a pin (shown in the refusal), e.g. with `-i FILE`.
    pub fn with_forget_command(mut self, command: impl Into<String>) -> Self {
        self.forget_command = command.into();
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Check the key `sess` was offered by `host:port` against the pins; pin it on first
    /// contact.
    pub fn verify(
        &self,
        sess: &Session,
        board: &str,
        host: &str,
        port: u16,
    ) -> Result<HostKeyVerdict, SshError> {
        let (key, key_type) = sess.host_key().ok_or_else(|| SshError::NoHostKey {
            board: board.to_string(),
        })?;
        let presented = fingerprint(key);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let store_err = |path: &Path, source| SshError::KnownHostsFile {
            path: path.to_path_buf(),
            source,
        };
        let mut ours = sess.known_hosts().map_err(|e| store_err(&self.path, e))?;
        if self.path.exists() {
            ours.read_file(&self.path, KnownHostFileKind::OpenSSH)
                .map_err(|e| store_err(&self.path, e))?;
        }
        match ours.check_port(host, port, key) {
            CheckResult::Match => return Ok(HostKeyVerdict::Known),
            CheckResult::Mismatch => {
                return Err(SshError::HostKeyChanged(Box::new(super::HostKeyChange {
                    board: board.to_string(),
                    addr: host_entry_name(host, port),
                    pinned: pinned_fingerprints(&ours, host, port).join(", "),
                    presented,
                    file: self.path.clone(),
                    forget: self.forget_command.clone(),
                })))
            }
            CheckResult::NotFound | CheckResult::Failure => {}
        }
        if let Some(user_file) = self.user_file.as_deref().filter(|p| p.exists()) {
            let mut theirs = sess.known_hosts().map_err(|e| store_err(user_file, e))?;
            // An unreadable user file is not ours to judge; only a readable mismatch refuses.
            if theirs
                .read_file(user_file, KnownHostFileKind::OpenSSH)
                .is_ok()
                && matches!(theirs.check_port(host, port, key), CheckResult::Mismatch)
            {
                return Err(SshError::HostKeyChanged(Box::new(super::HostKeyChange {
                    board: board.to_string(),
                    addr: host_entry_name(host, port),
                    pinned: "(hashed entry)".to_string(),
                    presented,
                    file: user_file.to_path_buf(),
                    forget: format!(
                        "ssh-keygen -R {}; {}",
                        host_entry_name(host, port),
                        self.forget_command
                    ),
                })));
            }
        }
        let format = match key_type {
            HostKeyType::Rsa => KnownHostKeyFormat::SshRsa,
            HostKeyType::Dss => KnownHostKeyFormat::SshDss,
            HostKeyType::Ecdsa256 => KnownHostKeyFormat::Ecdsa256,
            HostKeyType::Ecdsa384 => KnownHostKeyFormat::Ecdsa384,
            HostKeyType::Ecdsa521 => KnownHostKeyFormat::Ecdsa521,
            HostKeyType::Ed25519 => KnownHostKeyFormat::Ed25519,
            HostKeyType::Unknown => {
                return Err(SshError::NoHostKey {
                    board: board.to_string(),
                })
            }
        };
        ours.add(&host_entry_name(host, port), key, board, format)
            .map_err(|e| store_err(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            crate::state::create_private_dir(dir).map_err(|e| SshError::KnownHostsIo {
                path: self.path.clone(),
                source: e,
            })?;
        }
        let tmp = self.path.with_extension("tmp");
        ours.write_file(&tmp, KnownHostFileKind::OpenSSH)
            .map_err(|e| store_err(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| SshError::KnownHostsIo {
            path: self.path.clone(),
            source: e,
        })?;
        Ok(HostKeyVerdict::PinnedNow {
            fingerprint: presented,
        })
    }

    /// Pin `board`'s host key for `host:port` before it is ever contacted (`lab image
    /// prepare` made the key): whatever was pinned for that address is replaced, since the
    /// board is about to be flashed with this key. `key_type` and `key_base64` are the
    /// public key's first two words.
    pub fn pin_ahead(
        &self,
        board: &str,
        host: &str,
        port: u16,
        key_type: &str,
        key_base64: &str,
    ) -> Result<PinOutcome, SshError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let io_err = |source| SshError::KnownHostsIo {
            path: self.path.clone(),
            source,
        };
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(e)),
        };
        let name = host_entry_name(host, port);
        let (text, outcome) = with_pin(&text, &name, key_type, key_base64, board);
        if outcome != PinOutcome::Unchanged {
            crate::state::write_atomic(&self.path, text.as_bytes(), crate::state::PUBLIC_MODE)
                .map_err(|e| io_err(e.source))?;
        }
        Ok(outcome)
    }

    /// Forget the pinned key(s) of `host:port`. Returns how many entries were removed.
    pub fn forget(&self, host: &str, port: u16) -> Result<usize, SshError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.path.exists() {
            return Ok(0);
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| SshError::KnownHostsIo {
            path: self.path.clone(),
            source: e,
        })?;
        let name = host_entry_name(host, port);
        let (gone, kept): (Vec<&str>, Vec<&str>) = text
            .lines()
            .partition(|l| l.split_whitespace().next() == Some(name.as_str()));
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        crate::state::write_atomic(&self.path, out.as_bytes(), crate::state::PUBLIC_MODE).map_err(
            |e| SshError::KnownHostsIo {
                path: self.path.clone(),
                source: e.source,
            },
        )?;
        Ok(gone.len())
    }
}

/// What [`HostKeyStore::pin_ahead`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// Nothing was pinned for the address.
    New,
    /// Exactly this key was pinned already.
    Unchanged,
    /// Other keys were pinned for the address; they are gone.
    Replaced,
}

/// The known_hosts `text` with `name`'s entries replaced by one for the key (pure).
fn with_pin(
    text: &str,
    name: &str,
    key_type: &str,
    key_base64: &str,
    comment: &str,
) -> (String, PinOutcome) {
    let is_ours = |l: &&str| l.split_whitespace().next() == Some(name);
    let ours: Vec<&str> = text.lines().filter(is_ours).collect();
    let same = |l: &&str| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.get(1) == Some(&key_type) && w.get(2) == Some(&key_base64)
    };
    if ours.len() == 1 && ours.iter().all(same) {
        return (text.to_string(), PinOutcome::Unchanged);
    }
    let mut out: String = text
        .lines()
        .filter(|l| !is_ours(l))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{name} {key_type} {key_base64} {comment}\n"));
    let outcome = if ours.is_empty() {
        PinOutcome::New
    } else {
        PinOutcome::Replaced
    };
    (out, outcome)
}

fn pinned_fingerprints(kh: &ssh2::KnownHosts, host: &str, port: u16) -> Vec<String> {
    let name = host_entry_name(host, port);
    let Ok(hosts) = kh.hosts() else {
        return vec!["(unreadable)".into()];
    };
    hosts
        .iter()
        .filter(|h| h.name() == Some(name.as_str()))
        .filter_map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.key())
                .ok()
                .map(|blob| fingerprint(&blob))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_follow_openssh() {
        assert_eq!(host_entry_name("10.0.0.2", 22), "10.0.0.2");
        assert_eq!(host_entry_name("10.0.0.2", 2222), "[10.0.0.2]:2222");
    }

    #[test]
    fn a_pin_ahead_replaces_the_addresss_entries_once() {
        let old = "10.0.0.2 ecdsa-sha2-nistp256 AAAAold pi-2\n10.0.0.3 ssh-ed25519 AAAAx pi-3\n";
        let (text, outcome) = with_pin(old, "10.0.0.3", "ssh-ed25519", "AAAAnew", "pi-3");
        assert_eq!(outcome, PinOutcome::Replaced);
        assert_eq!(
            text,
            "10.0.0.2 ecdsa-sha2-nistp256 AAAAold pi-2\n10.0.0.3 ssh-ed25519 AAAAnew pi-3\n"
        );
        let (again, outcome) = with_pin(&text, "10.0.0.3", "ssh-ed25519", "AAAAnew", "pi-3");
        assert_eq!(
            (again.as_str(), outcome),
            (text.as_str(), PinOutcome::Unchanged)
        );
        let (fresh, outcome) = with_pin("", "[10.0.0.4]:2222", "ssh-ed25519", "AAAAy", "pi-4");
        assert_eq!(outcome, PinOutcome::New);
        assert_eq!(fresh, "[10.0.0.4]:2222 ssh-ed25519 AAAAy pi-4\n");
    }

    #[test]
    fn fingerprint_matches_ssh_keygen_shape() {
        let fp = fingerprint(b"blob");
        assert!(fp.starts_with("SHA256:"));
        assert!(!fp.ends_with('='));
        assert_eq!(fp.len(), "SHA256:".len() + 43);
    }
}

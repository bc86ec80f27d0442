//! Each board's SSH host key, made by `lab image prepare` before the board ever boots so that
//! `lab` can pin it and verify even the first contact. Kept in the state directory
//! (`image/host-keys/<board>/ssh_host_ed25519_key`, 0600, and its `.pub`) and reused: every
//! image prepared for a board carries the same key, so re-flashing a board keeps its pin.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::state::{StateDir, PUBLIC_MODE, SECRET_MODE};

/// An ed25519 host key in OpenSSH's formats.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` ...
    pub private: String,
    /// `ssh-ed25519 AAAA... root@<board>`
    pub public: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("public", &self.public)
            .field("private", &"(hidden)")
            .finish()
    }
}

impl HostKey {
    /// The public key's type and base64 blob (`ssh-ed25519`, `AAAA...`).
    pub fn public_parts(&self) -> Option<(&str, &str)> {
        let mut words = self.public.split_whitespace();
        Some((words.next()?, words.next()?))
    }
}

/// Where `board`'s host key is kept.
pub fn key_path(state: &StateDir, board: &str) -> PathBuf {
    state
        .root()
        .join("image/host-keys")
        .join(board)
        .join("ssh_host_ed25519_key")
}

/// `board`'s host key, made with ssh-keygen the first time; whether it was made now.
pub fn board_host_key(state: &StateDir, board: &str) -> anyhow::Result<(HostKey, bool)> {
    let path = key_path(state, board);
    let public_path = path.with_extension("pub");
    if path.exists() && public_path.exists() {
        return Ok((read(&path, &public_path)?, false));
    }
    let key = generate(&path, board)?;
    // The public half first: a key file without its .pub is never taken as complete.
    crate::state::write_atomic(&public_path, key.public.as_bytes(), PUBLIC_MODE)?;
    crate::state::write_atomic(&path, key.private.as_bytes(), SECRET_MODE)?;
    Ok((key, true))
}

fn read(path: &Path, public_path: &Path) -> anyhow::Result<HostKey> {
    let private = std::fs::read_to_string(path)
        .with_context(|| format!("reading the host key {}", path.display()))?;
    let public = std::fs::read_to_string(public_path)
        .with_context(|| format!("reading the host key {}", public_path.display()))?;
    let key = HostKey { private, public };
    if !key.private.contains("OPENSSH PRIVATE KEY")
        || key.public_parts().map(|(t, _)| t) != Some("ssh-ed25519")
    {
        bail!(
            "{} is not an ed25519 host key in OpenSSH format: remove it (and its .pub) to get a new one",
            path.display()
        );
    }
    Ok(key)
}

/// A new key from ssh-keygen, made in a private directory beside `path` that is removed after.
fn generate(path: &Path, board: &str) -> anyhow::Result<HostKey> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let scratch = parent.with_file_name(format!(".new-{board}-{}", std::process::id()));
    crate::state::create_private_dir(&scratch)
        .with_context(|| format!("creating {}", scratch.display()))?;
    let made = (|| -> anyhow::Result<HostKey> {
        let file = scratch.join("key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("root@{board}"))
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .context("running ssh-keygen (install openssh-client)")?;
        if !out.status.success() {
            bail!(
                "ssh-keygen failed ({}) making board `{board}`'s host key: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        read(&file, &file.with_extension("pub"))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_boards_key_is_made_once_and_kept_private() {
        if !Path::new("/usr/bin/ssh-keygen").exists() {
            eprintln!("skipped: no ssh-keygen");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let (first, made) = board_host_key(&state, "pi-3").expect("made");
        assert!(made);
        assert!(first.public.starts_with("ssh-ed25519 AAAA") && first.public.contains("root@pi-3"));
        let (again, made) = board_host_key(&state, "pi-3").expect("kept");
        assert!(!made);
        assert_eq!(again, first);
        let (other, _) = board_host_key(&state, "pi-4").expect("made");
        assert_ne!(other.public, first.public);
        let mode = std::fs::metadata(key_path(&state, "pi-3"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("image/host-keys"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(leftovers.len(), 2, "no scratch left: {leftovers:?}");
    }
}

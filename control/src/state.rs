//! The cluster's state directory on the control machine, and the one way files get written
//! into it: write to a temporary file beside the target, set its mode, fsync, rename. A crash
//! leaves either the old file or the new one, never half of either; secrets are 0600 from
//! their first byte.
//!
//! Layout under the state directory:
//! - `known_hosts`          pinned SSH host keys (OpenSSH format)
//! - `pki/`                 cluster CA, control client cert, `boards/<name>.{pem,key}`
//! - `ssh/id_ed25519`       the key `lab` made for boards it created itself (virtual boards)
//! - `image/host-keys/<board>/ssh_host_ed25519_key`  a board's SSH host key, made by `lab
//!   image prepare` and pinned in `known_hosts` before the board first boots
//! - `virtual/<board>/`     a virtual board's disk (owned by [`crate::virt`])

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File mode for secrets (keys, passwords).
pub const SECRET_MODE: u32 = 0o600;
/// File mode for everything else.
pub const PUBLIC_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Atomically replace `path` with `bytes`, created with `mode`. Parent directories are
/// created (0700) when missing.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let wrap = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(wrap)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(wrap)
}

/// Create `dir` (and parents) with mode 0700 for the parts that are new.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The state directory of one cluster.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn ssh_key(&self) -> PathBuf {
        self.root.join("ssh").join("id_ed25519")
    }
    pub fn ensure(&self) -> Result<(), WriteError> {
        create_private_dir(&self.root).map_err(|source| WriteError {
            path: self.root.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a/b/secret.key");
        write_atomic(&p, b"one", SECRET_MODE).expect("write");
        write_atomic(&p, b"two", SECRET_MODE).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(p.parent().expect("parent"))
            .expect("readdir")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }
}

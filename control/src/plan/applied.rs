//! The last applied desired state: every board's full spec as `lab apply` computed it (no
//! board left out), kept in `<state>/applied.json` (0600: specs carry the roles' secrets).
//! The failover manager in `lab serve` works from this file, not from the inventory, so an
//! inventory edited but not yet applied is never applied behind the user's back.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use lab_api::spec::BoardSpec;

use crate::state::write_atomic;

/// File name in the state dir.
pub const APPLIED_FILE: &str = "applied.json";

/// Board name -> its full spec.
pub type AppliedSpecs = BTreeMap<String, BoardSpec>;

/// The stored specs; `None` before the first apply.
pub fn load(state_dir: &Path) -> anyhow::Result<Option<AppliedSpecs>> {
    let path = state_dir.join(APPLIED_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is corrupt (run `lab apply` to write it again)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Lock file in the state dir: held by `lab apply` from saving the specs until it has sent
/// them, and by the failover manager from reading them until it has sent its own, so the
/// manager never sends a spec that an apply has just replaced.
pub const APPLY_LOCK_FILE: &str = "applied.lock";

/// Held while the applied specs are written and sent; released on drop.
pub struct ApplyLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Take the lock (waiting for whoever holds it). Blocking: call off the async runtime.
pub fn lock(state_dir: &Path) -> anyhow::Result<ApplyLock> {
    let path = state_dir.join(APPLY_LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| std::io::Error::from(errno))
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(ApplyLock { _lock: lock })
}

/// Stores `specs` atomically, readable by the owner only.
pub fn save(state_dir: &Path, specs: &AppliedSpecs) -> anyhow::Result<()> {
    let path = state_dir.join(APPLIED_FILE);
    let mut bytes = serde_json::to_vec_pretty(specs)?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes, 0o600).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trips_private_and_absent_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("load").is_none());
        let mut specs = AppliedSpecs::new();
        specs.insert(
            "cache-1".into(),
            BoardSpec {
                board: "cache-1".into(),
                epoch: 2,
                roles: vec![],
            },
        );
        save(dir.path(), &specs).expect("save");
        assert_eq!(load(dir.path()).expect("load"), Some(specs));
        let mode = std::fs::metadata(dir.path().join(APPLIED_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(APPLIED_FILE), b"{").expect("write");
        let err = load(dir.path()).expect_err("corrupt");
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
    }
}

//! One operation at a time per cluster: an exclusive `flock` on `<state_dir>/virtual.lock`, so
//! two `lab` processes never create or destroy the same boards at once. The second waits.

use std::fs::{self, File, OpenOptions};

use nix::fcntl::{Flock, FlockArg};

use super::error::{Target, VirtError};
use super::spec::VirtualClusterSpec;

/// Held for the duration of an operation; released on drop.
pub(crate) struct ClusterLock {
    _lock: Flock<File>,
}

/// The lock file of the cluster.
pub(crate) fn lock_path(spec: &VirtualClusterSpec) -> std::path::PathBuf {
    spec.state_dir.join("virtual.lock")
}

/// Take the cluster's lock, waiting for whoever holds it.
pub(crate) fn lock(spec: &VirtualClusterSpec) -> Result<ClusterLock, VirtError> {
    let target = Target::cluster(&spec.cluster);
    let path = lock_path(spec);
    let io = |action: &'static str| VirtError::io(&target, action, &path);
    fs::create_dir_all(&spec.state_dir).map_err(VirtError::io(
        &target,
        "create",
        &spec.state_dir,
    ))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open"))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| io("lock")(std::io::Error::from(errno)))?;
    Ok(ClusterLock { _lock: lock })
}

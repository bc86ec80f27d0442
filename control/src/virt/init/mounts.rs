//! The board's view of the file system, built by its init inside the board's private mount
//! namespace (nothing here propagates to the host): the board's own disk directories over the
//! agent's paths, fresh tmpfs on `/tmp` and `/run`, and a `/proc` of the board's PID namespace.
//! A board with a rootfs gets all of that inside a read-only bind of the rootfs, with the host's
//! `/dev` and `/sys` bound in, which it then chroots into.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};

use super::args::{CgroupJoin, InitArgs};
use crate::virt::spec::{BoardDir, DISK_MOUNTS};
use crate::virt::sshd;

/// Mount points created inside a rootfs before it is made read-only.
const ROOTFS_MOUNT_POINTS: [&str; 5] = ["tmp", "run", "proc", "dev", "sys"];

/// Build the board's mounts; returns the directory that is the board's `/` (the host's `/`, or
/// the rootfs mount the caller must chroot into).
pub(super) fn setup(args: &InitArgs) -> Result<PathBuf> {
    make_private()?;
    let dir = BoardDir {
        root: args.dir.clone(),
    };
    let root = match &args.rootfs {
        Some(rootfs) => mount_rootfs(rootfs, &dir.rootfs_mount())?,
        None => PathBuf::from("/"),
    };
    for (sub, board_path) in DISK_MOUNTS {
        let source = dir.disk().join(sub);
        fs::create_dir_all(&source).with_context(|| format!("create {}", source.display()))?;
        let target = inside(&root, board_path);
        // On the host userland a missing mount point (e.g. /etc/lab) is created as an empty
        // directory of the host: a mount needs an existing directory to cover.
        fs::create_dir_all(&target).with_context(|| format!("create {}", target.display()))?;
        bind(&source, &target, false)?;
    }
    tmpfs(&inside(&root, "/tmp"), "1777")?;
    tmpfs(&inside(&root, "/run"), "0755")?;
    for run_dir in [sshd::PRIVSEP_DIR, sshd::RUN_DIR] {
        let path = inside(&root, run_dir);
        fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    if args.rootfs.is_some() {
        bind(Path::new("/dev"), &inside(&root, "/dev"), true)?;
        // The host's /sys, as a board on the host userland sees it: the agent reads its
        // cgroup limits (and sensors) there.
        bind(Path::new("/sys"), &inside(&root, "/sys"), true)?;
    }
    mount_proc(&inside(&root, "/proc"))?;
    Ok(root)
}

/// Every mount of this namespace private. `unshare --propagation private` already did this;
/// being explicit is what keeps every mount made after it off the host.
pub(super) fn make_private() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("make all mounts private")
}

/// A `/proc` of this PID namespace on `dir`.
pub(super) fn mount_proc(dir: &Path) -> Result<()> {
    mount(
        Some("proc"),
        dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .with_context(|| format!("mount proc on {}", dir.display()))
}

/// Bind `rootfs` on `mount_point`, create the mount points the board needs inside it, then
/// make the bind read-only so boards sharing the rootfs cannot write into each other.
fn mount_rootfs(rootfs: &Path, mount_point: &Path) -> Result<PathBuf> {
    let sshd_path = inside(rootfs, sshd::SSHD);
    if fs::symlink_metadata(&sshd_path).is_err() {
        bail!(
            "rootfs {} has no {} (build it with openssh-server included)",
            rootfs.display(),
            sshd::SSHD
        );
    }
    fs::create_dir_all(mount_point).with_context(|| format!("create {}", mount_point.display()))?;
    bind(rootfs, mount_point, true)?;
    let points = ROOTFS_MOUNT_POINTS
        .iter()
        .copied()
        .chain(DISK_MOUNTS.iter().map(|(_, p)| p.trim_start_matches('/')));
    for point in points {
        let path = mount_point.join(point);
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
    }
    mount(
        None::<&str>,
        mount_point,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .with_context(|| format!("remount {} read-only", mount_point.display()))?;
    Ok(mount_point.to_path_buf())
}

/// Where the host mounts its cgroup hierarchies (a tmpfs holding one directory per hierarchy,
/// or the v2 hierarchy itself).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Mount the board's cgroup hierarchies where the host has them (the board's fresh `/sys`
/// has none) and move this process, and so everything it will start, into the board's group
/// in each. Writing `0` to `cgroup.procs` moves the writer (its PID here, 1, means nothing
/// to the host's files). The mounts are made before the rest of the board's, in the board's
/// own mount namespace, and are what the agent reads its limits from.
pub(super) fn join_cgroups(joins: &[CgroupJoin]) -> Result<()> {
    let root = Path::new(CGROUP_ROOT);
    if joins.iter().any(|j| j.mountpoint != root) {
        tmpfs(root, "0755")?;
    }
    for join in joins {
        let mounted = fs::read_to_string("/proc/self/mountinfo")
            .context("read /proc/self/mountinfo")?
            .lines()
            .any(|l| l.split(' ').nth(4) == join.mountpoint.to_str());
        if !mounted {
            fs::create_dir_all(&join.mountpoint)
                .with_context(|| format!("create {}", join.mountpoint.display()))?;
            let (fstype, options) = if join.controllers.is_empty() {
                ("cgroup2", None)
            } else {
                ("cgroup", Some(join.controllers.as_str()))
            };
            mount(
                Some(fstype),
                &join.mountpoint,
                Some(fstype),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                options,
            )
            .with_context(|| {
                format!(
                    "mount {fstype} ({}) on {}",
                    join.controllers,
                    join.mountpoint.display()
                )
            })?;
        }
        let procs = join.dir.join("cgroup.procs");
        fs::write(&procs, "0").with_context(|| format!("join cgroup {}", join.dir.display()))?;
    }
    Ok(())
}

/// `board_path` (absolute, as seen by the board) below `root`.
fn inside(root: &Path, board_path: &str) -> PathBuf {
    root.join(board_path.trim_start_matches('/'))
}

fn bind(source: &Path, target: &Path, recursive: bool) -> Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("bind-mount {} on {}", source.display(), target.display()))
}

pub(super) fn tmpfs(target: &Path, mode: &str) -> Result<()> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode={mode}").as_str()),
    )
    .with_context(|| format!("mount tmpfs on {}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_paths_map_below_root() {
        assert_eq!(
            inside(Path::new("/"), "/etc/lab"),
            PathBuf::from("/etc/lab")
        );
        assert_eq!(
            inside(Path::new("/s/virtual/b1/root"), "/usr/local/bin"),
            PathBuf::from("/s/virtual/b1/root/usr/local/bin")
        );
    }
}

//! A virtual board's size: one cgroup per board holding its memory limit and CPU quota.
//!
//! Made at boot, before the init starts; the init mounts the hierarchies in the board (whose
//! `/sys`, made fresh by `ip netns exec`, has none) and joins its group first thing
//! (`--cgroup`, one per hierarchy), so everything the board ever runs is inside, and limited,
//! and the agent finds its limits under `/sys/fs/cgroup` as on any machine. The directories
//! are recorded in the board's `cgroups` file before they are made, so `kill`, `restart` and
//! `down` find and remove them whichever process made them.
//!
//! Where: cgroup v1 (one hierarchy per controller) gets the board's group below the group
//! `lab` itself runs in, `<own>/lab/<cluster>/<board>` in the `memory`, `cpu` and `cpuacct`
//! hierarchies, so the boards stay inside whatever limits and accounting `lab`'s caller set.
//! cgroup v2 forbids enabling controllers in a group that has processes, so there the board
//! goes to `/sys/fs/cgroup/lab/<cluster>/<board>` with `memory` and `cpu` enabled down the
//! path. A controller bound to v1 is used there even when a v2 hierarchy is also mounted.
//!
//! Limits: memory (`memory.limit_in_bytes` / `memory.max`) with swap held to nothing
//! (`memory.memsw.limit_in_bytes` equal to it, or `memory.swap.max = 0`, where the kernel
//! accounts swap; `memory.swappiness = 0` on v1 otherwise), so a board is OOM-killed at its
//! size instead of swapping past it; CPU as a CFS quota per 100 ms period
//! (`cpu.cfs_quota_us` / `cpu.max`). These are ceilings, not reservations.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab_api::cgroup::{self as layout, GroupDir, Version};

use super::error::{Target, VirtError};
use super::init::args::CgroupJoin;
use super::spec::{VirtualBoardSpec, VirtualClusterSpec};
use crate::inventory::BoardSize;

/// CFS period, in microseconds.
const CFS_PERIOD_US: u64 = 100_000;
/// How long a dead board's group may stay busy before `rmdir` gives up.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Directory below which every cluster's groups live.
const TOP: &str = "lab";

/// Where this host's cgroups are, as seen by this process.
#[derive(Debug, Clone)]
struct Hierarchies {
    memory: GroupDir,
    cpu: GroupDir,
    /// v1 only, when `cpuacct` is not co-mounted with `cpu`.
    cpuacct: Option<GroupDir>,
}

fn target(spec: &VirtualClusterSpec, board: &str) -> Target {
    Target::board(&spec.cluster, board)
}

fn io_error(
    target: &Target,
    action: &'static str,
    path: &Path,
    source: std::io::Error,
) -> VirtError {
    VirtError::Io {
        target: target.clone(),
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn hierarchies(target: &Target) -> Result<Hierarchies, VirtError> {
    let read = |path: &str| {
        fs::read_to_string(path).map_err(|source| io_error(target, "read", Path::new(path), source))
    };
    let memberships = layout::parse_proc_cgroup(&read("/proc/self/cgroup")?);
    let mounts = layout::parse_mounts(&read("/proc/self/mountinfo")?);
    let v2_controllers: Vec<String> = layout::unified(&memberships, &mounts)
        .and_then(|g| fs::read_to_string(g.mountpoint.join("cgroup.controllers")).ok())
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let find = |controller: &'static str| {
        layout::locate(&memberships, &mounts, controller, &v2_controllers).ok_or_else(|| {
            VirtError::NoCgroup {
                target: target.clone(),
                controller,
            }
        })
    };
    let memory = find("memory")?;
    let cpu = find("cpu")?;
    let cpuacct = match cpu.version {
        Version::V1 => Some(find("cpuacct")?).filter(|acct| acct.mountpoint != cpu.mountpoint),
        Version::V2 => None,
    };
    Ok(Hierarchies {
        memory,
        cpu,
        cpuacct,
    })
}

/// Where this process puts `cluster`'s groups: `.../lab/<cluster>` in each hierarchy (for
/// checks that nothing is left).
pub fn cluster_dirs(cluster: &str) -> Result<Vec<PathBuf>, VirtError> {
    let h = hierarchies(&Target::cluster(cluster))?;
    let mut dirs: Vec<PathBuf> = [Some(&h.memory), Some(&h.cpu), h.cpuacct.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|own| {
            board_group(own, cluster, "x")
                .parent()
                .map(Path::to_path_buf)
        })
        .collect();
    dirs.dedup();
    Ok(dirs)
}

/// The group directory of `board` in the hierarchy where this process is in `own`.
pub(crate) fn board_group(own: &GroupDir, cluster: &str, board: &str) -> PathBuf {
    let base = match own.version {
        Version::V1 => &own.dir,
        Version::V2 => &own.mountpoint,
    };
    base.join(TOP).join(cluster).join(board)
}

/// Make `board`'s groups with its limits (replacing any left from an earlier boot) and return
/// them, for the init to mount and join.
pub(crate) fn create(
    spec: &VirtualClusterSpec,
    board: &VirtualBoardSpec,
) -> Result<Vec<CgroupJoin>, VirtError> {
    let target = target(spec, &board.name);
    remove(spec, &board.name)?;
    let h = hierarchies(&target)?;
    let memory = board_group(&h.memory, &spec.cluster, &board.name);
    let cpu = board_group(&h.cpu, &spec.cluster, &board.name);
    let mut joins: Vec<CgroupJoin> = Vec::new();
    for own in [Some(&h.memory), Some(&h.cpu), h.cpuacct.as_ref()]
        .into_iter()
        .flatten()
    {
        let dir = board_group(own, &spec.cluster, &board.name);
        if joins.iter().all(|j| j.dir != dir) {
            joins.push(CgroupJoin {
                controllers: own.controllers.join(","),
                mountpoint: own.mountpoint.clone(),
                dir,
            });
        }
    }
    let dirs: Vec<PathBuf> = joins.iter().map(|j| j.dir.clone()).collect();
    record(spec, &board.name, &dirs)?;
    for (group, dir, controller) in [(&h.memory, &memory, "memory"), (&h.cpu, &cpu, "cpu")] {
        if group.version == Version::V2 {
            enable_controller(&target, &group.mountpoint, dir, controller)?;
        }
    }
    for dir in &dirs {
        make_dir(&target, dir)?;
    }
    let size = board.size;
    for (name, value) in memory_settings(h.memory.version, size, |name| memory.join(name).exists())
    {
        write(&target, &memory.join(name), &value)?;
    }
    for (name, value) in cpu_settings(h.cpu.version, size) {
        write(&target, &cpu.join(name), &value)?;
    }
    Ok(joins)
}

/// The files to write, in order, to size a memory group; `exists(file)` says whether the
/// kernel offers an optional one (swap accounting).
pub(crate) fn memory_settings(
    version: Version,
    size: BoardSize,
    exists: impl Fn(&str) -> bool,
) -> Vec<(&'static str, String)> {
    let bytes = size.memory_bytes.to_string();
    let mut out = Vec::new();
    match version {
        Version::V1 => {
            // memsw must stay >= the memory limit at every step: lift it, set, lower it.
            let memsw = exists("memory.memsw.limit_in_bytes");
            if memsw {
                out.push(("memory.memsw.limit_in_bytes", "-1".to_owned()));
            }
            out.push(("memory.limit_in_bytes", bytes.clone()));
            if memsw {
                out.push(("memory.memsw.limit_in_bytes", bytes));
            } else {
                out.push(("memory.swappiness", "0".to_owned()));
            }
        }
        Version::V2 => {
            out.push(("memory.max", bytes));
            if exists("memory.swap.max") {
                out.push(("memory.swap.max", "0".to_owned()));
            }
        }
    }
    out
}

/// The files to write, in order, to give a CPU group its quota.
pub(crate) fn cpu_settings(version: Version, size: BoardSize) -> Vec<(&'static str, String)> {
    let quota = u64::from(size.millicpus) * CFS_PERIOD_US / 1000;
    match version {
        Version::V1 => vec![
            ("cpu.cfs_period_us", CFS_PERIOD_US.to_string()),
            ("cpu.cfs_quota_us", quota.to_string()),
        ],
        Version::V2 => vec![("cpu.max", format!("{quota} {CFS_PERIOD_US}"))],
    }
}

/// v2: a controller must be enabled in every parent's `cgroup.subtree_control`, top down.
fn enable_controller(
    target: &Target,
    mountpoint: &Path,
    dir: &Path,
    controller: &str,
) -> Result<(), VirtError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let mut chain: Vec<&Path> = parent
        .ancestors()
        .take_while(|p| p.starts_with(mountpoint))
        .collect();
    chain.reverse();
    for group in chain {
        make_dir(target, group)?;
        write(
            target,
            &group.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        )?;
    }
    Ok(())
}

fn make_dir(target: &Target, dir: &Path) -> Result<(), VirtError> {
    // Another cluster's `down` may remove the shared top directory between two steps: retry.
    fs::create_dir_all(dir)
        .or_else(|_| fs::create_dir_all(dir))
        .map_err(|source| io_error(target, "create cgroup", dir, source))
}

fn write(target: &Target, path: &Path, value: &str) -> Result<(), VirtError> {
    fs::write(path, value).map_err(|source| io_error(target, "write", path, source))
}

/// Record the board's group directories (before they exist, so a crash leaves nothing
/// unrecorded).
fn record(spec: &VirtualClusterSpec, board: &str, dirs: &[PathBuf]) -> Result<(), VirtError> {
    let target = target(spec, board);
    let path = spec.board_dir(board).cgroups();
    let tmp = path.with_extension("tmp");
    let text: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
    fs::write(&tmp, text).map_err(|source| io_error(&target, "write", &tmp, source))?;
    fs::rename(&tmp, &path).map_err(|source| io_error(&target, "replace", &path, source))
}

/// The group directories recorded for `board` (none if it never booted).
pub fn recorded(spec: &VirtualClusterSpec, board: &str) -> Vec<PathBuf> {
    fs::read_to_string(spec.board_dir(board).cgroups())
        .map(|text| {
            text.lines()
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Remove `board`'s groups (its processes must be dead: a group with processes cannot be
/// removed, and this waits a little for the last ones to leave) and their record.
pub(crate) fn remove(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    let target = target(spec, board);
    for dir in recorded(spec, board) {
        remove_group(&target, &dir)?;
    }
    let path = spec.board_dir(board).cgroups();
    match fs::remove_file(&path) {
        Err(source) if source.kind() != ErrorKind::NotFound => {
            Err(io_error(&target, "remove", &path, source))
        }
        _ => Ok(()),
    }
}

/// After every board's groups are gone: remove the cluster's own directory, and the shared
/// top one if no other cluster uses it. `dirs` are any board groups the cluster had.
pub(crate) fn remove_cluster_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        let cluster_dir = dir.parent();
        let top = cluster_dir.and_then(Path::parent);
        for parent in [cluster_dir, top].into_iter().flatten() {
            // Not empty (other boards or clusters) or already gone: both fine.
            let _ = fs::remove_dir(parent);
        }
    }
}

fn remove_group(target: &Target, dir: &Path) -> Result<(), VirtError> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(nix::libc::EBUSY) => {
                std::thread::sleep(POLL_INTERVAL);
            }
            Err(source) => return Err(io_error(target, "remove cgroup", dir, source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: BoardSize = BoardSize {
        millicpus: 1500,
        memory_bytes: 256 << 20,
    };

    #[test]
    fn groups_nest_below_own_on_v1_and_at_the_top_on_v2() {
        let v1 = GroupDir {
            dir: "/sys/fs/cgroup/memory/process_api/a4".into(),
            mountpoint: "/sys/fs/cgroup/memory".into(),
            version: Version::V1,
            controllers: vec!["memory".into()],
        };
        assert_eq!(
            board_group(&v1, "demo", "pi-1"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/a4/lab/demo/pi-1")
        );
        let v2 = GroupDir {
            dir: "/sys/fs/cgroup/user.slice/session-1.scope".into(),
            mountpoint: "/sys/fs/cgroup".into(),
            version: Version::V2,
            controllers: Vec::new(),
        };
        assert_eq!(
            board_group(&v2, "demo", "pi-1"),
            PathBuf::from("/sys/fs/cgroup/lab/demo/pi-1")
        );
    }

    #[test]
    fn limits_are_written_in_a_valid_order() {
        let with_swap = memory_settings(Version::V1, SIZE, |_| true);
        assert_eq!(
            with_swap,
            vec![
                ("memory.memsw.limit_in_bytes", "-1".to_owned()),
                ("memory.limit_in_bytes", "268435456".to_owned()),
                ("memory.memsw.limit_in_bytes", "268435456".to_owned()),
            ]
        );
        assert_eq!(
            memory_settings(Version::V1, SIZE, |_| false),
            vec![
                ("memory.limit_in_bytes", "268435456".to_owned()),
                ("memory.swappiness", "0".to_owned()),
            ]
        );
        assert_eq!(
            memory_settings(Version::V2, SIZE, |_| true),
            vec![
                ("memory.max", "268435456".to_owned()),
                ("memory.swap.max", "0".to_owned()),
            ]
        );
        assert_eq!(
            cpu_settings(Version::V1, SIZE),
            vec![
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", "150000".to_owned()),
            ]
        );
        assert_eq!(
            cpu_settings(Version::V2, SIZE),
            vec![("cpu.max", "150000 100000".to_owned())]
        );
    }
}

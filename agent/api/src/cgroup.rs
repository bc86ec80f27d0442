//! Where a process's cgroups are on disk: pure parsers of `/proc/<pid>/cgroup` and
//! `/proc/<pid>/mountinfo`, shared by the control plane (which makes each virtual board's group
//! below its own) and the agent (which reads the limits its board runs under). Both sides must
//! agree on the layout, hence one copy here.
//!
//! cgroup v1 mounts one hierarchy per controller (or a few co-mounted, `cpu,cpuacct`), e.g.
//! `/sys/fs/cgroup/memory`; cgroup v2 one unified hierarchy. A host may have both (Debian 11's
//! "hybrid" layout, or v1 controllers beside an empty v2): a controller is looked up in v1
//! first, where it is bound if a v1 hierarchy mounts it, then in v2 if the unified hierarchy
//! offers it (`cgroup.controllers`). A virtual board has no cgroup namespace: the paths in
//! its `/proc/self/cgroup` are the host's, and `/sys/fs/cgroup` is the host's mount.

use std::path::{Path, PathBuf};

/// cgroup version of a hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One line of `/proc/<pid>/cgroup`: `4:memory:/lab/c/b` (v1) or `0::/lab/c/b` (v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// v1: the controllers of the hierarchy (`["cpu", "cpuacct"]`); v2: empty.
    pub controllers: Vec<String>,
    /// Path of the group from the hierarchy's root, starting with `/`.
    pub path: String,
    pub version: Version,
}

/// One cgroup file system mounted in this mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mountpoint: PathBuf,
    /// Which group of the hierarchy the mount shows at its top (`/` unless bind-mounted or in
    /// a cgroup namespace).
    pub root: String,
    pub version: Version,
    /// v1: the controllers bound to it (from the super options); v2: empty (read
    /// `cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// A process's group for one controller, located on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDir {
    /// The group's directory (`/sys/fs/cgroup/memory/lab/c/b`).
    pub dir: PathBuf,
    /// The top of the mounted hierarchy the group is in: limits are inherited from every
    /// directory from `dir` up to here.
    pub mountpoint: PathBuf,
    pub version: Version,
    /// v1: the controllers of the hierarchy (mount options that mount it again); v2: empty.
    pub controllers: Vec<String>,
}

impl GroupDir {
    /// `dir` and its parents up to and including `mountpoint`, innermost first.
    pub fn ancestors(&self) -> impl Iterator<Item = &Path> {
        self.dir
            .ancestors()
            .take_while(move |p| p.starts_with(&self.mountpoint))
    }
}

/// Parse `/proc/<pid>/cgroup`; malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            if !path.starts_with('/') {
                return None;
            }
            let version = if id == "0" && controllers.is_empty() {
                Version::V2
            } else {
                Version::V1
            };
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
                version,
            })
        })
        .collect()
}

/// The cgroup mounts of `/proc/<pid>/mountinfo`.
pub fn parse_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let super_options = right.next().unwrap_or("");
            let root = unescape(left.get(3)?);
            let mountpoint = PathBuf::from(unescape(left.get(4)?));
            let (version, controllers) = match fstype {
                "cgroup2" => (Version::V2, Vec::new()),
                "cgroup" => (
                    Version::V1,
                    super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => return None,
            };
            Some(CgroupMount {
                mountpoint,
                root,
                version,
                controllers,
            })
        })
        .collect()
}

/// Controller names that may appear among a v1 mount's super options.
const V1_CONTROLLERS: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
];

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4).unwrap_or(&[]);
        if bytes[i] == b'\\'
            && digits.len() == 3
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(value) = u8::try_from(value) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of this process's group for `controller`: in a v1 hierarchy that mounts it,
/// else in the v2 hierarchy if `v2_controllers` (the unified root's `cgroup.controllers`)
/// lists it. `None` when neither has it, or the group is outside what is mounted.
pub fn locate(
    memberships: &[Membership],
    mounts: &[CgroupMount],
    controller: &str,
    v2_controllers: &[String],
) -> Option<GroupDir> {
    let v1 = memberships
        .iter()
        .filter(|m| m.version == Version::V1 && m.controllers.iter().any(|c| c == controller))
        .find_map(|m| {
            mounts
                .iter()
                .filter(|mount| {
                    mount.version == Version::V1
                        && mount.controllers.iter().any(|c| c == controller)
                })
                .find_map(|mount| group_dir(mount, &m.path))
        });
    if v1.is_some() {
        return v1;
    }
    if !v2_controllers.iter().any(|c| c == controller) {
        return None;
    }
    unified(memberships, mounts)
}

/// This process's group in the v2 hierarchy, whatever controllers it offers.
pub fn unified(memberships: &[Membership], mounts: &[CgroupMount]) -> Option<GroupDir> {
    let member = memberships.iter().find(|m| m.version == Version::V2)?;
    mounts
        .iter()
        .filter(|mount| mount.version == Version::V2)
        .find_map(|mount| group_dir(mount, &member.path))
}

fn group_dir(mount: &CgroupMount, path: &str) -> Option<GroupDir> {
    let rest = if mount.root == "/" {
        path
    } else {
        let rest = path.strip_prefix(mount.root.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let rest = rest.trim_start_matches('/');
    let dir = if rest.is_empty() {
        mount.mountpoint.clone()
    } else {
        mount.mountpoint.join(rest)
    };
    Some(GroupDir {
        dir,
        mountpoint: mount.mountpoint.clone(),
        version: mount.version,
        controllers: mount.controllers.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's layout: v1 controllers beside an empty cgroup2 (captured).
    const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/a4/lab/demo/pi-1
2:cpuacct:/lab/demo/pi-1
1:cpu:/lab/demo/pi-1
0::/
";
    /// Debian 12 / Ubuntu: pure v2 under systemd.
    const V2_MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const V2_CGROUP: &str = "0::/lab/demo/pi-1\n";

    #[test]
    fn parses_memberships() {
        let m = parse_proc_cgroup(HYBRID_CGROUP);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].controllers, vec!["memory"]);
        assert_eq!(m[1].path, "/process_api/a4/lab/demo/pi-1");
        assert_eq!(m[4].version, Version::V2);
        assert_eq!(m[0].version, Version::V1);
        let co = parse_proc_cgroup("3:cpu,cpuacct:/x\n");
        assert_eq!(co[0].controllers, vec!["cpu", "cpuacct"]);
    }

    #[test]
    fn finds_v1_controllers_beside_an_empty_v2() {
        let m = parse_proc_cgroup(HYBRID_CGROUP);
        let mounts = parse_mounts(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 5, "{mounts:?}");
        let memory = locate(&m, &mounts, "memory", &[]).expect("memory");
        assert_eq!(
            memory.dir,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/a4/lab/demo/pi-1")
        );
        assert_eq!(memory.version, Version::V1);
        let ancestors: Vec<&Path> = memory.ancestors().collect();
        assert_eq!(ancestors.len(), 6);
        assert_eq!(ancestors[5], Path::new("/sys/fs/cgroup/memory"));
        let cpu = locate(&m, &mounts, "cpu", &[]).expect("cpu");
        assert_eq!(cpu.dir, PathBuf::from("/sys/fs/cgroup/cpu/lab/demo/pi-1"));
        let cpuacct = locate(&m, &mounts, "cpuacct", &[]).expect("cpuacct");
        assert_eq!(
            cpuacct.dir,
            PathBuf::from("/sys/fs/cgroup/cpuacct/lab/demo/pi-1")
        );
        assert!(locate(&m, &mounts, "pids", &[]).is_none());
    }

    #[test]
    fn finds_the_unified_hierarchy() {
        let m = parse_proc_cgroup(V2_CGROUP);
        let mounts = parse_mounts(V2_MOUNTINFO);
        let offered = vec!["cpu".to_owned(), "memory".to_owned()];
        let memory = locate(&m, &mounts, "memory", &offered).expect("memory");
        assert_eq!(memory.dir, PathBuf::from("/sys/fs/cgroup/lab/demo/pi-1"));
        assert_eq!(memory.version, Version::V2);
        assert!(locate(&m, &mounts, "memory", &[]).is_none());
        let root = parse_proc_cgroup("0::/\n");
        assert_eq!(
            unified(&root, &mounts).expect("root").dir,
            PathBuf::from("/sys/fs/cgroup")
        );
    }

    #[test]
    fn strips_a_bind_mounted_root_and_unescapes() {
        let mounts = parse_mounts(
            "50 40 0:32 /docker/abc /sys/fs/cgroup/memory\\040x rw - cgroup cgroup rw,memory\n",
        );
        assert_eq!(mounts[0].root, "/docker/abc");
        assert_eq!(
            mounts[0].mountpoint,
            PathBuf::from("/sys/fs/cgroup/memory x")
        );
        let m = parse_proc_cgroup("4:memory:/docker/abc/inner\n");
        let dir = locate(&m, &mounts, "memory", &[]).expect("memory");
        assert_eq!(dir.dir, PathBuf::from("/sys/fs/cgroup/memory x/inner"));
        let outside = parse_proc_cgroup("4:memory:/docker/abcd\n");
        assert!(locate(&outside, &mounts, "memory", &[]).is_none());
    }
}

//! The arguments of `lab board-init`: rendered by the host side when it spawns a board, parsed
//! by the board's init. Both directions live here so they cannot drift apart.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// What a board's init needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitArgs {
    /// The board's host directory (`<state_dir>/virtual/<board>`).
    pub dir: PathBuf,
    /// Hostname to set in the board's UTS namespace.
    pub hostname: String,
    /// Address sshd listens on.
    pub address: Ipv4Addr,
    /// Root file system to chroot into, if not the host's.
    pub rootfs: Option<PathBuf>,
    /// The board's cgroups (one per hierarchy), which the init mounts and joins before
    /// anything else.
    pub cgroups: Vec<CgroupJoin>,
    /// Boot systemd (in `rootfs`, through an overlay) instead of running sshd itself.
    pub systemd: Option<SystemdBoot>,
}

/// What a board that boots systemd needs beyond the common arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdBoot {
    /// The board's network namespace (`/run/netns/<netns>`), joined by the init itself.
    pub netns: String,
    /// A login user other than root to create (with passwordless sudo), if any.
    pub login_user: Option<String>,
}

/// One cgroup hierarchy of the board. `ip netns exec` gives the board a fresh `/sys` without
/// the host's cgroup mounts, so the init mounts the hierarchy again at the host's mount point
/// (the same hierarchy: same controllers) and joins `dir` there. Rendered as
/// `CONTROLLERS:MOUNTPOINT:DIR`, CONTROLLERS empty for cgroup v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupJoin {
    /// v1: the hierarchy's controllers, comma-separated (`memory`, `cpu,cpuacct`); v2: empty.
    pub controllers: String,
    /// Where the host mounts the hierarchy (`/sys/fs/cgroup/memory`).
    pub mountpoint: PathBuf,
    /// The board's group in it.
    pub dir: PathBuf,
}

impl CgroupJoin {
    fn render(&self) -> String {
        format!(
            "{}:{}:{}",
            self.controllers,
            self.mountpoint.display(),
            self.dir.display()
        )
    }

    fn parse(value: &str) -> Result<Self, String> {
        let mut parts = value.splitn(3, ':');
        let (Some(controllers), Some(mountpoint), Some(dir)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "--cgroup {value}: expected CONTROLLERS:MOUNTPOINT:DIR"
            ));
        };
        let (mountpoint, dir) = (PathBuf::from(mountpoint), PathBuf::from(dir));
        if !mountpoint.is_absolute() || !dir.starts_with(&mountpoint) {
            return Err(format!("--cgroup {value}: DIR must be below MOUNTPOINT"));
        }
        Ok(Self {
            controllers: controllers.to_owned(),
            mountpoint,
            dir,
        })
    }
}

impl InitArgs {
    /// The arguments following `board-init`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--dir".to_owned(),
            self.dir.display().to_string(),
            "--hostname".to_owned(),
            self.hostname.clone(),
            "--address".to_owned(),
            self.address.to_string(),
        ];
        if let Some(rootfs) = &self.rootfs {
            args.push("--rootfs".to_owned());
            args.push(rootfs.display().to_string());
        }
        for join in &self.cgroups {
            args.push("--cgroup".to_owned());
            args.push(join.render());
        }
        if let Some(boot) = &self.systemd {
            args.push("--systemd-netns".to_owned());
            args.push(boot.netns.clone());
            if let Some(user) = &boot.login_user {
                args.push("--login-user".to_owned());
                args.push(user.clone());
            }
        }
        args
    }

    /// Parse the arguments following `board-init`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut dir = None;
        let mut hostname = None;
        let mut address = None;
        let mut rootfs = None;
        let mut cgroups = Vec::new();
        let mut netns = None;
        let mut login_user = None;
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--dir" => dir = Some(PathBuf::from(value)),
                "--hostname" => hostname = Some(value.clone()),
                "--address" => {
                    address = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--address {value}: not an IPv4 address"))?,
                    );
                }
                "--rootfs" => rootfs = Some(PathBuf::from(value)),
                "--cgroup" => cgroups.push(CgroupJoin::parse(value)?),
                "--systemd-netns" => netns = Some(value.clone()),
                "--login-user" => login_user = Some(value.clone()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        let systemd = match (netns, login_user) {
            (Some(netns), login_user) => Some(SystemdBoot { netns, login_user }),
            (None, None) => None,
            (None, Some(_)) => return Err("--login-user needs --systemd-netns".to_owned()),
        };
        if systemd.is_some() && rootfs.is_none() {
            return Err("--systemd-netns needs --rootfs (the root systemd boots)".to_owned());
        }
        Ok(Self {
            dir: dir.ok_or("--dir is required")?,
            hostname: hostname.ok_or("--hostname is required")?,
            address: address.ok_or("--address is required")?,
            rootfs,
            cgroups,
            systemd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trips() {
        for rootfs in [None, Some(PathBuf::from("/var/cache/lab/rootfs/arm64"))] {
            let args = InitArgs {
                dir: "/s/virtual/pi-1".into(),
                hostname: "pi-1".into(),
                address: Ipv4Addr::new(10, 77, 0, 11),
                rootfs,
                cgroups: vec![
                    CgroupJoin {
                        controllers: "memory".into(),
                        mountpoint: "/sys/fs/cgroup/memory".into(),
                        dir: "/sys/fs/cgroup/memory/lab/c/pi-1".into(),
                    },
                    CgroupJoin {
                        controllers: String::new(),
                        mountpoint: "/sys/fs/cgroup".into(),
                        dir: "/sys/fs/cgroup/lab/c/pi-1".into(),
                    },
                ],
                systemd: None,
            };
            assert_eq!(InitArgs::parse(&args.to_args()), Ok(args));
        }
        let args = InitArgs {
            dir: "/s/virtual/sd-1".into(),
            hostname: "sd-1".into(),
            address: Ipv4Addr::new(10, 77, 0, 12),
            rootfs: Some("/var/cache/lab/rootfs/bookworm-systemd".into()),
            cgroups: Vec::new(),
            systemd: Some(SystemdBoot {
                netns: "lab-c_sd-1".into(),
                login_user: Some("pi".into()),
            }),
        };
        assert_eq!(InitArgs::parse(&args.to_args()), Ok(args));
    }

    #[test]
    fn renders_exact_arguments() {
        let args = InitArgs {
            dir: "/s/virtual/pi-1".into(),
            hostname: "pi-1".into(),
            address: Ipv4Addr::new(10, 77, 0, 11),
            rootfs: None,
            cgroups: Vec::new(),
            systemd: None,
        };
        assert_eq!(
            args.to_args(),
            strings(&[
                "--dir",
                "/s/virtual/pi-1",
                "--hostname",
                "pi-1",
                "--address",
                "10.77.0.11"
            ])
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            InitArgs::parse(&strings(&["--dir"])),
            Err("--dir needs a value".to_owned())
        );
        assert_eq!(
            InitArgs::parse(&strings(&["--dir", "/d", "--hostname", "h"])),
            Err("--address is required".to_owned())
        );
        assert!(InitArgs::parse(&strings(&["--address", "nope"]))
            .is_err_and(|e| e.contains("not an IPv4")));
        assert!(InitArgs::parse(&strings(&["--bogus", "x"])).is_err_and(|e| e.contains("unknown")));
        assert!(InitArgs::parse(&strings(&["--cgroup", "memory:/a:/b"]))
            .is_err_and(|e| e.contains("below MOUNTPOINT")));
        assert!(InitArgs::parse(&strings(&[
            "--dir",
            "/d",
            "--hostname",
            "h",
            "--address",
            "10.0.0.2",
            "--systemd-netns",
            "ns"
        ]))
        .is_err_and(|e| e.contains("needs --rootfs")));
    }
}

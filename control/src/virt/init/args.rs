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
        args
    }

    /// Parse the arguments following `board-init`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut dir = None;
        let mut hostname = None;
        let mut address = None;
        let mut rootfs = None;
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
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(Self {
            dir: dir.ok_or("--dir is required")?,
            hostname: hostname.ok_or("--hostname is required")?,
            address: address.ok_or("--address is required")?,
            rootfs,
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
            };
            assert_eq!(InitArgs::parse(&args.to_args()), Ok(args));
        }
    }

    #[test]
    fn renders_exact_arguments() {
        let args = InitArgs {
            dir: "/s/virtual/pi-1".into(),
            hostname: "pi-1".into(),
            address: Ipv4Addr::new(10, 77, 0, 11),
            rootfs: None,
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
    }
}

//! What a virtual cluster is made of ([`VirtualClusterSpec`], [`VirtualBoardSpec`]), where its
//! files live on the host, and the checks run before anything on the host is touched.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cidr::Ipv4Net;
use super::error::{Target, VirtError};
use super::link::LinkProfile;
use crate::inventory::{BoardSize, VirtualInit};
use std::time::Duration;

/// Longest cluster or board name accepted (a hostname label is at most 63 bytes).
pub const MAX_NAME_LEN: usize = 63;

/// Smallest and largest accepted prefix length of the cluster subnet.
pub const PREFIX_RANGE: std::ops::RangeInclusive<u8> = 16..=28;

/// A virtual cluster: boards on one host, each a set of Linux namespaces with a real sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualClusterSpec {
    /// Cluster name, `[a-z0-9-]`, from the inventory.
    pub cluster: String,
    /// Network address of the cluster subnet, e.g. 10.77.0.0; the host gets the first address
    /// (10.77.0.1) on the cluster's bridge.
    pub subnet: Ipv4Addr,
    /// Prefix length of the subnet, 16..=28.
    pub prefix_len: u8,
    /// The cluster's state directory; boards' "disks" live under `<state_dir>/virtual/<board>/`.
    pub state_dir: PathBuf,
    /// The boards.
    pub boards: Vec<VirtualBoardSpec>,
    /// One OpenSSH public key line allowed to log in as root on every board.
    pub authorized_key: String,
    /// The `lab` binary whose hidden `board-init` subcommand becomes each board's PID 1
    /// (`std::env::current_exe()` in the CLI, `env!("CARGO_BIN_EXE_lab")` in tests).
    pub lab_binary: PathBuf,
    /// A round trip between two data centers is this much slower than within one.
    pub wan_delay: Duration,
}

/// One virtual board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualBoardSpec {
    /// Board name, `[a-z0-9-]`; also its hostname.
    pub name: String,
    /// Its address in the cluster subnet.
    pub address: Ipv4Addr,
    /// `None`: the host's own userland. `Some(dir)`: a (possibly foreign-arch) Debian root the
    /// board chroots into, mounted read-only so boards may share it.
    pub rootfs: Option<PathBuf>,
    /// The CPU and memory its cgroup allows it.
    pub size: BoardSize,
    /// Its PID 1: `lab board-init` with sshd, or systemd (then `rootfs` is the systemd root,
    /// under the board's own writable layer).
    pub init: VirtualInit,
    /// A login user other than root, created with passwordless sudo (systemd boards only).
    pub login_user: Option<String>,
    /// What its link does to frames (the inventory's `link`, or its model's); `lab link`
    /// overrides it until `--clear`.
    pub link: LinkProfile,
    /// Its data center, if the cluster has several.
    pub dc: Option<String>,
}

/// Sub-directories of a board's disk, and the board path each is bind-mounted over.
pub const DISK_MOUNTS: [(&str, &str); 4] = [
    ("etc-lab", lab_api::board_paths::ETC_DIR),
    ("var-lib-lab", lab_api::board_paths::STATE_DIR),
    ("usr-local-bin", "/usr/local/bin"),
    ("var-log-lab", lab_api::board_paths::LOG_DIR),
];

/// Where one board's files live on the host (all under `<state_dir>/virtual/<board>/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardDir {
    /// `<state_dir>/virtual/<board>`.
    pub root: PathBuf,
}

impl BoardDir {
    /// The directory whose sub-directories are bind-mounted over the board paths.
    pub fn disk(&self) -> PathBuf {
        self.root.join("disk")
    }
    /// SSH host key and authorized_keys (kept across boots).
    pub fn ssh(&self) -> PathBuf {
        self.root.join("ssh")
    }
    /// The board's ed25519 host key (private half; `.pub` next to it).
    pub fn host_key(&self) -> PathBuf {
        self.ssh().join("ssh_host_ed25519_key")
    }
    /// The authorized_keys file copied into the board at boot.
    pub fn authorized_keys(&self) -> PathBuf {
        self.ssh().join("authorized_keys")
    }
    /// Mount point of a board's rootfs (rootfs boards only; empty on the host).
    pub fn rootfs_mount(&self) -> PathBuf {
        self.root.join("root")
    }
    /// stdout and stderr of the board's init and sshd for the current boot.
    pub fn boot_log(&self) -> PathBuf {
        self.root.join("boot.log")
    }
    /// The previous boot's log.
    pub fn previous_boot_log(&self) -> PathBuf {
        self.root.join("boot.log.prev")
    }
    /// Host PID of the board's init, written by the init itself.
    pub fn init_pid(&self) -> PathBuf {
        self.root.join("init.pid")
    }
    /// The board's cgroup directories, one per line, written before they are made.
    pub fn cgroups(&self) -> PathBuf {
        self.root.join("cgroups")
    }
    /// A systemd board's writable layer over the shared root (its "disk").
    pub fn systemd_upper(&self) -> PathBuf {
        self.root.join("systemd/upper")
    }
    /// The overlay's work directory (same file system as the upper layer).
    pub fn systemd_work(&self) -> PathBuf {
        self.root.join("systemd/work")
    }
    /// Where a systemd board's root is mounted (inside its own mount namespace only).
    pub fn systemd_root(&self) -> PathBuf {
        self.root.join("systemd/root")
    }
}

impl VirtualClusterSpec {
    /// `<state_dir>/virtual`.
    pub fn virtual_dir(&self) -> PathBuf {
        self.state_dir.join("virtual")
    }

    /// The host directory holding `board`'s files.
    pub fn board_dir(&self, board: &str) -> BoardDir {
        BoardDir {
            root: self.virtual_dir().join(board),
        }
    }

    /// The cluster subnet.
    pub fn net(&self) -> Ipv4Net {
        Ipv4Net {
            addr: self.subnet,
            prefix_len: self.prefix_len,
        }
    }

    /// The host's address on the cluster bridge (first address of the subnet).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet).wrapping_add(1))
    }

    /// The data centers, in the order their first board appears (empty: just one).
    pub fn dcs(&self) -> Vec<&str> {
        let mut dcs: Vec<&str> = Vec::new();
        for dc in self.boards.iter().filter_map(|b| b.dc.as_deref()) {
            if !dcs.contains(&dc) {
                dcs.push(dc);
            }
        }
        dcs
    }

    /// The data centers other than the control plane's (the first board's), which get their
    /// own bridge and a WAN link.
    pub fn remote_dcs(&self) -> Vec<&str> {
        self.dcs().into_iter().skip(1).collect()
    }

    /// The board called `name`.
    pub fn board(&self, name: &str) -> Result<&VirtualBoardSpec, VirtError> {
        self.boards
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| VirtError::UnknownBoard {
                target: Target::board(&self.cluster, name),
            })
    }

    /// Check the whole spec; nothing on the host is touched before this passes.
    pub fn validate(&self) -> Result<(), VirtError> {
        self.problem().map_or(Ok(()), |reason| {
            Err(VirtError::InvalidSpec {
                target: Target::cluster(&self.cluster),
                reason,
            })
        })
    }

    /// The first problem found in the spec, if any.
    fn problem(&self) -> Option<String> {
        if let Some(p) = name_problem("cluster name", &self.cluster) {
            return Some(p);
        }
        if !PREFIX_RANGE.contains(&self.prefix_len) {
            return Some(format!(
                "prefix length /{} is not supported (use /{} to /{})",
                self.prefix_len,
                PREFIX_RANGE.start(),
                PREFIX_RANGE.end()
            ));
        }
        let net = self.net();
        if net.network() != self.subnet {
            return Some(format!(
                "{}/{} is not a network address (did you mean {}/{}?)",
                self.subnet,
                self.prefix_len,
                net.network(),
                self.prefix_len
            ));
        }
        if let Some(p) = absolute_utf8_problem("state_dir", &self.state_dir) {
            return Some(p);
        }
        if let Some(p) = absolute_utf8_problem("lab_binary", &self.lab_binary) {
            return Some(p);
        }
        let key = self.authorized_key.trim();
        if key.is_empty() || key.contains('\n') || !key.contains(' ') {
            return Some("authorized_key must be one OpenSSH public key line".to_owned());
        }
        if self.boards.is_empty() {
            return Some("the cluster has no boards".to_owned());
        }
        let with_dc = self.boards.iter().filter(|b| b.dc.is_some()).count();
        if with_dc != 0 && with_dc != self.boards.len() {
            let missing: Vec<&str> = self
                .boards
                .iter()
                .filter(|b| b.dc.is_none())
                .map(|b| b.name.as_str())
                .collect();
            return Some(format!(
                "some boards have a data center (dc) and {} do not: give every board one",
                missing.join(", ")
            ));
        }
        for dc in self.dcs() {
            if let Some(p) = name_problem("data center", dc) {
                return Some(p);
            }
        }
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        for board in &self.boards {
            if let Some(p) = name_problem("board name", &board.name) {
                return Some(p);
            }
            if !names.insert(board.name.as_str()) {
                return Some(format!("board `{}` appears twice", board.name));
            }
            if !addresses.insert(board.address) {
                return Some(format!(
                    "address {} is given to more than one board",
                    board.address
                ));
            }
            if !net.contains(board.address)
                || board.address == net.network()
                || board.address == net.broadcast()
                || board.address == self.gateway()
            {
                return Some(format!(
                    "board `{}`: address {} is not a usable board address in {} \
                     ({} is the host's)",
                    board.name,
                    board.address,
                    net,
                    self.gateway()
                ));
            }
            if let Some(rootfs) = &board.rootfs {
                if let Some(p) = absolute_utf8_problem("rootfs", rootfs) {
                    return Some(format!("board `{}`: {p}", board.name));
                }
            }
            if let Some(p) = self.systemd_problem(board) {
                return Some(format!("board `{}`: {p}", board.name));
            }
            if let Some(p) = board.link.problem() {
                return Some(format!("board `{}`: link: {p}", board.name));
            }
            let size = board.size;
            if !(BoardSize::MIN_MILLICPUS..=BoardSize::MAX_MILLICPUS).contains(&size.millicpus)
                || !(BoardSize::MIN_MEMORY..=BoardSize::MAX_MEMORY).contains(&size.memory_bytes)
            {
                return Some(format!(
                    "board `{}`: size {size} is outside {} to {} CPUs and {} to {}",
                    board.name,
                    f64::from(BoardSize::MIN_MILLICPUS) / 1000.0,
                    BoardSize::MAX_MILLICPUS / 1000,
                    crate::inventory::format_bytes(BoardSize::MIN_MEMORY),
                    crate::inventory::format_bytes(BoardSize::MAX_MEMORY),
                ));
            }
        }
        None
    }
}

impl VirtualClusterSpec {
    /// What stops `board` from booting systemd (or having a login user), if anything.
    fn systemd_problem(&self, board: &VirtualBoardSpec) -> Option<String> {
        if board.init != VirtualInit::Systemd {
            return board
                .login_user
                .as_ref()
                .map(|u| format!("login user `{u}` needs init = \"systemd\""));
        }
        let Some(rootfs) = &board.rootfs else {
            return Some("init = \"systemd\" needs the systemd root (rootfs)".to_owned());
        };
        // The overlay's mount options are `key=path,key=path`: a path with `,` or `:` would
        // be read as something else.
        let dir = self.board_dir(&board.name).root;
        for path in [rootfs, &dir] {
            if path.to_string_lossy().contains([',', ':']) {
                return Some(format!(
                    "{} cannot hold a systemd board (`,` or `:` in the path)",
                    path.display()
                ));
            }
        }
        None
    }
}

/// Why `name` is not an acceptable cluster or board name, if it is not.
pub fn name_problem(what: &str, name: &str) -> Option<String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || name.starts_with('-') {
        return Some(format!(
            "{what} `{name}` must be 1 to {MAX_NAME_LEN} characters of [a-z0-9-], \
             not starting with `-`"
        ));
    }
    None
}

fn absolute_utf8_problem(what: &str, path: &Path) -> Option<String> {
    if !path.is_absolute() || path.to_str().is_none() {
        return Some(format!(
            "{what} {} must be an absolute UTF-8 path",
            path.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VirtualClusterSpec {
        VirtualClusterSpec {
            cluster: "demo".into(),
            subnet: Ipv4Addr::new(10, 77, 0, 0),
            prefix_len: 24,
            state_dir: "/var/lib/lab-state/demo".into(),
            boards: vec![
                VirtualBoardSpec {
                    name: "pi-1".into(),
                    address: Ipv4Addr::new(10, 77, 0, 11),
                    rootfs: None,
                    size: BoardSize::VIRTUAL_DEFAULT,
                    init: VirtualInit::Lab,
                    login_user: None,
                    link: LinkProfile::default(),
                    dc: None,
                },
                VirtualBoardSpec {
                    name: "pi-2".into(),
                    address: Ipv4Addr::new(10, 77, 0, 12),
                    rootfs: Some("/var/cache/lab/rootfs/bookworm-arm64".into()),
                    size: BoardSize::VIRTUAL_DEFAULT,
                    init: VirtualInit::Lab,
                    login_user: None,
                    link: LinkProfile::default(),
                    dc: None,
                },
            ],
            authorized_key: "ssh-ed25519 AAAAC3Nza lab@host".into(),
            lab_binary: "/usr/local/bin/lab".into(),
            wan_delay: Duration::ZERO,
        }
    }

    fn reason(spec: &VirtualClusterSpec) -> String {
        match spec.validate() {
            Err(VirtError::InvalidSpec { reason, .. }) => reason,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn a_good_spec_passes() {
        spec().validate().expect("valid");
        assert_eq!(spec().gateway(), Ipv4Addr::new(10, 77, 0, 1));
    }

    #[test]
    fn board_paths_live_under_state_dir() {
        let dir = spec().board_dir("pi-1");
        assert_eq!(
            dir.host_key(),
            PathBuf::from("/var/lib/lab-state/demo/virtual/pi-1/ssh/ssh_host_ed25519_key")
        );
        assert_eq!(
            dir.disk().join(DISK_MOUNTS[0].0),
            PathBuf::from("/var/lib/lab-state/demo/virtual/pi-1/disk/etc-lab")
        );
    }

    #[test]
    fn rejects_bad_names() {
        let mut s = spec();
        s.cluster = "Demo".into();
        assert!(reason(&s).contains("cluster name `Demo`"));
        let mut s = spec();
        s.boards[0].name = "pi_1".into();
        assert!(reason(&s).contains("board name `pi_1`"));
        let mut s = spec();
        s.boards[1].name = "pi-1".into();
        assert!(reason(&s).contains("appears twice"));
    }

    #[test]
    fn rejects_addresses_outside_or_reserved() {
        for bad in [
            Ipv4Addr::new(10, 77, 1, 5),
            Ipv4Addr::new(10, 77, 0, 0),
            Ipv4Addr::new(10, 77, 0, 1),
            Ipv4Addr::new(10, 77, 0, 255),
        ] {
            let mut s = spec();
            s.boards[0].address = bad;
            assert!(reason(&s).contains("not a usable board address"), "{bad}");
        }
        let mut s = spec();
        s.boards[1].address = s.boards[0].address;
        assert!(reason(&s).contains("more than one board"));
    }

    #[test]
    fn rejects_bad_subnets() {
        let mut s = spec();
        s.prefix_len = 30;
        assert!(reason(&s).contains("/30 is not supported"));
        let mut s = spec();
        s.subnet = Ipv4Addr::new(10, 77, 0, 4);
        assert!(reason(&s).contains("did you mean 10.77.0.0/24"));
    }

    #[test]
    fn wider_subnets_work() {
        let mut s = spec();
        s.prefix_len = 16;
        s.boards[0].address = Ipv4Addr::new(10, 77, 3, 4);
        s.validate().expect("valid /16");
    }

    #[test]
    fn rejects_relative_paths_and_bad_keys() {
        let mut s = spec();
        s.state_dir = "state".into();
        assert!(reason(&s).contains("state_dir"));
        let mut s = spec();
        s.authorized_key = "".into();
        assert!(reason(&s).contains("authorized_key"));
        let mut s = spec();
        s.boards[1].rootfs = Some("rootfs".into());
        assert!(reason(&s).contains("board `pi-2`: rootfs"));
    }

    #[test]
    fn rejects_sizes_out_of_range() {
        let mut s = spec();
        s.boards[0].size.memory_bytes = 1 << 20;
        assert!(reason(&s).contains("board `pi-1`: size 1 CPU, 1 MiB is outside"));
        let mut s = spec();
        s.boards[1].size.millicpus = 0;
        assert!(reason(&s).contains("board `pi-2`: size"));
    }

    #[test]
    fn unknown_board_is_an_error() {
        assert!(matches!(
            spec().board("nope"),
            Err(VirtError::UnknownBoard { .. })
        ));
    }
}

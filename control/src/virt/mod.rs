//! The virtual cluster (ARCHITECTURE.md, "The virtual cluster"): boards as Linux namespaces on one host, each
//! running a real OpenSSH sshd that `lab` reaches exactly as it would a Raspberry Pi.
//!
//! Every board has its own network namespace (an address on the cluster's bridge, where the
//! host holds the subnet's first address), hostname, PID namespace (killing its PID 1 kills
//! everything it ran), IPC namespace and private mount namespace, where a per-board directory
//! under `<state_dir>/virtual/<board>/disk/` covers each of `/etc/lab`, `/var/lib/lab`,
//! `/usr/local/bin` and `/var/log/lab`, and fresh tmpfs cover `/tmp` and `/run`.
//!
//! The functions here are synchronous (they run `ip`, mount, spawn); async callers wrap them in
//! `spawn_blocking`. Module map:
//! - [`spec`]: the cluster and board specs, their validation and on-disk layout.
//! - [`names`]: bridge, veth and namespace names derived from (cluster, board).
//! - `net` (private): bridge, veth and netns plumbing; partition and heal.
//! - `board` (private): disk preparation, spawning, readiness and power cut of one board.
//! - [`cgroup`]: the board's size: its cgroup (memory limit, CPU quota), made at boot and
//!   removed when it dies.
//! - [`init`]: `lab board-init`, the board's PID 1 (mounts, hostname, sshd supervision).
//! - [`sshd`]: the board's sshd configuration.
//! - [`error`]: [`VirtError`] and what it carries.
//! - `cidr`, `cmd`, `procfs`, `lock` (private): subnet arithmetic, running host tools, reading
//!   /proc, one operation at a time per cluster.

mod board;
pub mod cgroup;
mod cidr;
mod cmd;
pub mod error;
pub mod init;
pub mod inventory;
pub mod link;
mod lock;
pub mod names;
mod net;
mod procfs;
pub mod spec;
pub mod sshd;

use std::fs;
use std::net::Ipv4Addr;

pub use self::error::{BootLog, Target, VirtError};
pub use self::init::board_init_main;
pub use self::spec::{VirtualBoardSpec, VirtualClusterSpec};

/// What [`status`] reports for one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualBoardState {
    /// Board name.
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// Whether its init is alive.
    pub running: bool,
    /// Whether its link is cut (host-side veth exists and is down: after `partition`, and
    /// after `kill` until the next boot) or only its path to the control plane.
    pub partitioned: bool,
    /// Host PID of its init, when running.
    pub init_pid: Option<u32>,
    /// Its network namespace (`ip netns exec <netns> ...`).
    pub netns: String,
    /// The host end of its veth.
    pub host_veth: String,
    /// What its link does to frames (`plain`: nothing).
    pub link: link::LinkProfile,
    /// Its data center, and whether that data center's WAN link is cut.
    pub dc: Option<(String, bool)>,
}

/// Bring the cluster up: create what is missing (bridge, namespaces, links, disks), boot
/// boards that are not running, leave running ones untouched, and return once every booted or
/// running, connected board's sshd accepts TCP on `address:22`. `progress(board, message)`
/// reports each step. Idempotent; a failure leaves state that [`down`] cleans.
pub fn up(
    spec: &VirtualClusterSpec,
    progress: &mut dyn FnMut(&str, &str),
) -> Result<(), VirtError> {
    spec.validate()?;
    let _lock = lock::lock(spec)?;
    net::ensure_bridge(spec)?;
    link::wan::ensure(spec)?;
    let mut waiting = Vec::new();
    for board in &spec.boards {
        match board::running_pid(spec, &board.name) {
            Some(pid) if is_partitioned(spec, &board.name) => progress(
                &board.name,
                &format!("running (init pid {pid}), partitioned: left as is"),
            ),
            Some(pid) => {
                progress(&board.name, &format!("running (init pid {pid})"));
                waiting.push(board);
            }
            None => {
                boot(spec, board, progress)?;
                waiting.push(board);
            }
        }
    }
    board::wait_ready(spec, &waiting, progress)
}

/// Destroy everything of the cluster on this host: board processes (and with them their
/// mounts, which live only in the boards' mount namespaces), veths, namespaces and the bridge.
/// Also covers board directories left under `<state_dir>/virtual` by boards no longer in the
/// spec. Keeps the boards' disks (see [`purge`]). Idempotent; works on a half-created
/// cluster; tries every step and returns the first error.
pub fn down(spec: &VirtualClusterSpec) -> Result<(), VirtError> {
    spec.validate()?;
    let _lock = lock::lock(spec)?;
    down_locked(spec)
}

fn down_locked(spec: &VirtualClusterSpec) -> Result<(), VirtError> {
    let mut first_error = None;
    let mut note = |result: Result<(), VirtError>| {
        if let Err(err) = result {
            first_error.get_or_insert(err);
        }
    };
    let mut cgroup_dirs = Vec::new();
    for board in known_boards(spec) {
        if net::link_exists(&names::host_veth_name(&spec.cluster, &board)) {
            note(net::set_board_link(spec, &board, false));
        }
        note(board::kill_processes(spec, &board, true));
        cgroup_dirs.extend(cgroup::recorded(spec, &board));
        note(cgroup::remove(spec, &board));
        note(net::remove_board_link(spec, &board));
        let pid_file = spec.board_dir(&board).init_pid();
        if let Err(source) = fs::remove_file(&pid_file) {
            if source.kind() != std::io::ErrorKind::NotFound {
                note(Err(VirtError::Io {
                    target: Target::board(&spec.cluster, &board),
                    action: "remove",
                    path: pid_file,
                    source,
                }));
            }
        }
    }
    cgroup::remove_cluster_dirs(&cgroup_dirs);
    note(link::wan::remove_all(spec));
    note(net::remove_bridge(spec));
    first_error.map_or(Ok(()), Err)
}

/// [`down`], then delete `<state_dir>/virtual` (the boards' disks, keys and logs). Refuses if
/// anything is still mounted below it on the host.
pub fn purge(spec: &VirtualClusterSpec) -> Result<(), VirtError> {
    spec.validate()?;
    let _lock = lock::lock(spec)?;
    down_locked(spec)?;
    let target = Target::cluster(&spec.cluster);
    let dir = spec.virtual_dir();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|source| VirtError::Io {
        target: target.clone(),
        action: "read",
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    if let Some(mount) = procfs::mounts_below(&mountinfo, &dir.display().to_string())
        .into_iter()
        .next()
    {
        return Err(VirtError::StillMounted {
            target,
            path: dir,
            mount,
        });
    }
    remove_if_present(&target, &dir, |p| fs::remove_dir_all(p))?;
    remove_if_present(&target, &lock::lock_path(spec), |p| fs::remove_file(p))
}

/// Remove `path` with `remove`; one that is not there is no error.
pub(crate) fn remove_if_present(
    target: &Target,
    path: &std::path::Path,
    remove: fn(&std::path::Path) -> std::io::Result<()>,
) -> Result<(), VirtError> {
    match remove(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(VirtError::Io {
            target: target.clone(),
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

/// Power cut: cut the board's link first (so no FIN or RST reaches anyone), then SIGKILL its
/// PID 1, which makes the kernel kill every process of the board at once. The link stays cut
/// until the board boots again. Harmless on a board that is not running.
pub fn kill(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    spec.validate()?;
    spec.board(board)?;
    let _lock = lock::lock(spec)?;
    kill_locked(spec, board)
}

fn kill_locked(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    if net::link_exists(&names::host_veth_name(&spec.cluster, board)) {
        net::set_board_link(spec, board, false)?;
    }
    board::kill_processes(spec, board, false)?;
    cgroup::remove(spec, board)
}

/// Fresh boot: power-cut the board if it runs, give it a new network namespace and link, start
/// it again (disk kept, `/tmp` and `/run` fresh) and wait for its sshd.
pub fn restart(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    spec.validate()?;
    let board = spec.board(board)?;
    let _lock = lock::lock(spec)?;
    kill_locked(spec, &board.name)?;
    net::ensure_bridge(spec)?;
    let mut quiet = |_: &str, _: &str| {};
    boot(spec, board, &mut quiet)?;
    board::wait_ready(spec, &[board], &mut quiet)
}

/// Cut the board's network (host-side veth down); its processes keep running.
pub fn partition(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    spec.validate()?;
    spec.board(board)?;
    let _lock = lock::lock(spec)?;
    net::set_board_link(spec, board, false)
}

/// Cut only the board's path to the control plane (the host): the other boards still reach
/// it and it them. This is how a board that "lost only the control plane" looks.
pub fn partition_from_control_plane(
    spec: &VirtualClusterSpec,
    board: &str,
) -> Result<(), VirtError> {
    spec.validate()?;
    spec.board(board)?;
    let _lock = lock::lock(spec)?;
    net::set_control_plane_route(spec, board, true)
}

/// Restore the board's network after [`partition`] or [`partition_from_control_plane`].
pub fn heal(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    spec.validate()?;
    spec.board(board)?;
    let _lock = lock::lock(spec)?;
    net::set_control_plane_route(spec, board, false)?;
    net::set_board_link(spec, board, true)
}

/// Give `board`'s link `profile` (delay, jitter, loss, rate; a plain profile clears it).
/// Kept across restarts of the board; gone with `lab down`.
pub fn set_link(
    spec: &VirtualClusterSpec,
    board: &str,
    profile: &link::LinkProfile,
) -> Result<(), VirtError> {
    spec.validate()?;
    let board = spec.board(board)?;
    let _lock = lock::lock(spec)?;
    if profile.is_plain() {
        // Back to what the inventory says (plain unless it gives the board a link).
        link::set_board(spec, &board.name, profile)?;
        return link::restore_board(spec, board);
    }
    link::set_board(spec, &board.name, profile)
}

/// Cut data center `dc` off (its WAN link down; the control plane's: every WAN link).
pub fn partition_dc(spec: &VirtualClusterSpec, dc: &str) -> Result<(), VirtError> {
    spec.validate()?;
    let _lock = lock::lock(spec)?;
    link::wan::set_cut(spec, dc, true)
}

/// Undo [`partition_dc`].
pub fn heal_dc(spec: &VirtualClusterSpec, dc: &str) -> Result<(), VirtError> {
    spec.validate()?;
    let _lock = lock::lock(spec)?;
    link::wan::set_cut(spec, dc, false)
}

/// Per board: running, partitioned, init PID, network names.
pub fn status(spec: &VirtualClusterSpec) -> Result<Vec<VirtualBoardState>, VirtError> {
    spec.validate()?;
    Ok(spec
        .boards
        .iter()
        .map(|board| {
            let init_pid = board::running_pid(spec, &board.name);
            VirtualBoardState {
                name: board.name.clone(),
                address: board.address,
                running: init_pid.is_some(),
                partitioned: is_partitioned(spec, &board.name),
                init_pid,
                netns: names::netns_name(&spec.cluster, &board.name),
                host_veth: names::host_veth_name(&spec.cluster, &board.name),
                link: link::effective(spec, board),
                dc: board.dc.clone().map(|dc| {
                    let cut = link::wan::is_cut(spec, &dc);
                    (dc, cut)
                }),
            }
        })
        .collect())
}

/// Fresh network, disk prepared, init spawned.
fn boot(
    spec: &VirtualClusterSpec,
    board: &VirtualBoardSpec,
    progress: &mut dyn FnMut(&str, &str),
) -> Result<(), VirtError> {
    progress(&board.name, "preparing disk");
    board::prepare_disk(spec, &board.name)?;
    progress(
        &board.name,
        &format!("creating network {}/{}", board.address, spec.prefix_len),
    );
    net::create_board_link(spec, board)?;
    let shaped = link::effective(spec, board);
    if !shaped.is_plain() {
        progress(&board.name, &format!("link: {shaped}"));
        link::restore_board(spec, board)?;
    }
    progress(&board.name, &format!("sizing: {}", board.size));
    let cgroups = cgroup::create(spec, board)?;
    let pid = board::spawn(spec, board, cgroups)?;
    progress(
        &board.name,
        &format!("booted (init pid {pid}), waiting for sshd"),
    );
    Ok(())
}

/// Link cut, or only the path to the control plane cut.
fn is_partitioned(spec: &VirtualClusterSpec, board: &str) -> bool {
    let veth = names::host_veth_name(&spec.cluster, board);
    net::link_exists(&veth) && (!net::link_is_up(&veth) || net::control_plane_cut(spec, board))
}

/// Boards of the spec, plus any board directory under `<state_dir>/virtual` with a valid
/// board name (a board removed from the inventory while it was up).
fn known_boards(spec: &VirtualClusterSpec) -> Vec<String> {
    let mut boards: Vec<String> = spec.boards.iter().map(|b| b.name.clone()).collect();
    if let Ok(entries) = fs::read_dir(spec.virtual_dir()) {
        for entry in entries.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && spec::name_problem("board", &name).is_none() && !boards.contains(&name) {
                boards.push(name);
            }
        }
    }
    boards
}

//! Shaped links: a board's link with a delay, jitter, loss or rate (`lab link`, or `link` in
//! the inventory), and the WAN links between data centers (`dc`, `[virtual] wan_delay`).
//!
//! A shaped board link is re-plumbed on the host: the board's own veth leaves the bridge, an
//! extra veth pair takes its place as the bridge's port, and a `lab link-shaper` process
//! ([`shaper`]) moves frames between the two with the [`LinkProfile`]'s timing ([`pacer`]).
//! A data center other than the control plane's gets its own bridge, joined to the main one
//! the same way by a WAN shaper. Partition, heal and power cut work on the board's own veth,
//! as before, so they do not care whether a shaper is in the path.
//!
//! The interfaces that transmit into a shaper have their checksum and segmentation offloads
//! off (ethtool), and the shaper's ends answer no ARP and carry no IPv6: the host must not
//! answer a board's "who has the gateway" on a shaper's port instead of on the bridge.
//!
//! State: `<board dir>/link.json` holds the profile `lab link` set (kept across restarts,
//! removed by `--clear`); each shaper's PID is in `link-shaper.pid` next to its log.

pub mod pacer;
pub mod profile;
pub mod shaper;
pub mod wan;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use self::profile::LinkProfile;
pub use self::shaper::link_shaper_main;

use super::cmd::{self, run};
use super::error::{Target, VirtError};
use super::names::{link_veth_names, netns_name, BOARD_IFACE};
use super::net::link_exists;
use super::procfs;
use super::spec::{VirtualBoardSpec, VirtualClusterSpec};

/// The hidden subcommand that runs a shaper.
pub const SHAPER_ARG: &str = "link-shaper";
/// A board's profile as `lab link` set it.
const LINK_FILE: &str = "link.json";
const SHAPER_PID: &str = "link-shaper.pid";
const SHAPER_LOG: &str = "link-shaper.log";
/// How long a new shaper gets to open its sockets and say so in its log.
const SHAPER_START: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// The profile `lab link` gave the board, if any.
pub fn stored(spec: &VirtualClusterSpec, board: &str) -> Option<LinkProfile> {
    let path = spec.board_dir(board).root.join(LINK_FILE);
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Give `board`'s link `profile` (a plain profile clears it) and keep it across restarts.
pub(crate) fn set_board(
    spec: &VirtualClusterSpec,
    board: &str,
    profile: &LinkProfile,
) -> Result<(), VirtError> {
    let target = Target::board(&spec.cluster, board);
    if let Some(reason) = profile.problem() {
        return Err(VirtError::InvalidSpec { target, reason });
    }
    let dir = spec.board_dir(board).root;
    let path = dir.join(LINK_FILE);
    if profile.is_plain() {
        unplumb_board(spec, board)?;
        return remove_file(&target, &path);
    }
    plumb_board(spec, board, profile)?;
    let text = serde_json::to_string(profile).unwrap_or_default();
    crate::state::write_atomic(&path, text.as_bytes(), crate::state::PUBLIC_MODE)
        .map_err(|e| VirtError::io(&target, "write", &path)(e.source))
}

/// The profile the board's link has: what `lab link` set, else the inventory's.
pub fn effective(spec: &VirtualClusterSpec, board: &VirtualBoardSpec) -> LinkProfile {
    stored(spec, &board.name).unwrap_or(board.link)
}

/// After a boot made the board's link afresh: shape it as [`effective`] says.
pub(crate) fn restore_board(
    spec: &VirtualClusterSpec,
    board: &VirtualBoardSpec,
) -> Result<(), VirtError> {
    let profile = effective(spec, board);
    if profile.is_plain() {
        return Ok(());
    }
    plumb_board(spec, &board.name, &profile)
}

/// Put a shaper with `profile` between the board's veth and the bridge (re-plumbing only
/// what is missing; the shaper is always started afresh with the new profile).
fn plumb_board(
    spec: &VirtualClusterSpec,
    board: &str,
    profile: &LinkProfile,
) -> Result<(), VirtError> {
    let target = Target::board(&spec.cluster, board);
    let host_veth = super::names::host_veth_name(&spec.cluster, board);
    if !link_exists(&host_veth) {
        return Err(VirtError::NotCreated {
            target,
            device: host_veth,
        });
    }
    let (shaper_end, bridge_port) = link_veth_names(&spec.cluster, board);
    let bridge = super::net::board_bridge(spec, board);
    if !link_exists(&shaper_end) {
        run(
            &target,
            "ip",
            &[
                "link",
                "add",
                &shaper_end,
                "type",
                "veth",
                "peer",
                "name",
                &bridge_port,
            ],
        )?;
    }
    quiet_shaper_end(&target, &shaper_end)?;
    quiet_shaper_end(&target, &host_veth)?;
    offloads_off(&target, None, &bridge_port)?;
    offloads_off(
        &target,
        Some(&netns_name(&spec.cluster, board)),
        BOARD_IFACE,
    )?;
    run(&target, "ip", &["link", "set", &host_veth, "nomaster"])?;
    run(
        &target,
        "ip",
        &["link", "set", &bridge_port, "master", &bridge],
    )?;
    run(&target, "ip", &["link", "set", &shaper_end, "up"])?;
    run(&target, "ip", &["link", "set", &bridge_port, "up"])?;
    start_shaper(
        spec,
        &target,
        &spec.board_dir(board).root,
        (&host_veth, &shaper_end),
        &profile.per_direction(),
    )
}

/// Take the shaper out: stop it, delete the extra pair, the board's veth back on the bridge.
/// Harmless when the link is not shaped; the stored profile is left alone.
pub(crate) fn unplumb_board(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    let target = Target::board(&spec.cluster, board);
    stop_shaper(&target, &spec.board_dir(board).root)?;
    let (shaper_end, _) = link_veth_names(&spec.cluster, board);
    if link_exists(&shaper_end) {
        run(&target, "ip", &["link", "del", &shaper_end])?;
    }
    let host_veth = super::names::host_veth_name(&spec.cluster, board);
    if link_exists(&host_veth) {
        let bridge = super::net::board_bridge(spec, board);
        run(
            &target,
            "ip",
            &["link", "set", &host_veth, "master", &bridge],
        )?;
    }
    Ok(())
}

/// A shaper's end answers no ARP and speaks no IPv6 (see the module doc).
pub(crate) fn quiet_shaper_end(target: &Target, device: &str) -> Result<(), VirtError> {
    for (path, value) in [
        (format!("/proc/sys/net/ipv4/conf/{device}/arp_ignore"), "8"),
        (
            format!("/proc/sys/net/ipv6/conf/{device}/disable_ipv6"),
            "1",
        ),
    ] {
        match fs::write(&path, value) {
            // A host without IPv6 has no such file: nothing to quiet.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(VirtError::io(target, "write", Path::new(&path))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whole, checksummed frames from `device` (in `netns`, or on the host).
pub(crate) fn offloads_off(
    target: &Target,
    netns: Option<&str>,
    device: &str,
) -> Result<(), VirtError> {
    let ethtool = ["ethtool", "-K", device, "tx", "off", "gso", "off"];
    match netns {
        Some(ns) => {
            let args: Vec<&str> = ["netns", "exec", ns].into_iter().chain(ethtool).collect();
            run(target, "ip", &args)?;
        }
        None => {
            run(target, "ethtool", &ethtool[1..])?;
        }
    }
    Ok(())
}

/// Start a shaper between `ends` for the thing whose directory is `dir` (stopping the one
/// that runs there first) and return once it is running.
pub(crate) fn start_shaper(
    spec: &VirtualClusterSpec,
    target: &Target,
    dir: &Path,
    ends: (&str, &str),
    profile: &LinkProfile,
) -> Result<(), VirtError> {
    stop_shaper(target, dir)?;
    let io = |action, path: &Path| VirtError::io(target, action, path);
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let log_path = dir.join(SHAPER_LOG);
    let log = fs::File::create(&log_path).map_err(io("create", &log_path))?;
    let log_err = log.try_clone().map_err(io("open", &log_path))?;
    let args = shaper::ShaperArgs {
        dir: dir.display().to_string(),
        a: ends.0.to_owned(),
        b: ends.1.to_owned(),
        profile: *profile,
    };
    let command = cmd::CommandLine::new(
        &spec.lab_binary.display().to_string(),
        std::iter::once(SHAPER_ARG.to_owned()).chain(args.to_args()),
    );
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C meant for `lab` does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|source| VirtError::Spawn {
                target: target.clone(),
                command: command.display(),
                source,
            })?
    };
    let pid_path = dir.join(SHAPER_PID);
    fs::write(&pid_path, format!("{}\n", child.id())).map_err(io("write", &pid_path))?;
    // Running once its log says both sockets are open; exited or silent past the deadline is
    // a failed start.
    let deadline = Instant::now() + SHAPER_START;
    loop {
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        if log.lines().any(|l| l.starts_with(shaper::READY)) {
            break;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(&pid_path);
            return Err(VirtError::CommandFailed {
                target: target.clone(),
                command: command.display(),
                status: exited.map_or_else(
                    || format!("not forwarding after {} s", SHAPER_START.as_secs()),
                    |s| s.to_string(),
                ),
                stderr_tail: cmd::tail(&log, 8),
            });
        }
        std::thread::sleep(POLL);
    }
    // Someone must reap it when it is stopped while this process still runs.
    let _ = std::thread::Builder::new()
        .name("reap-link-shaper".to_owned())
        .spawn(move || child.wait());
    Ok(())
}

/// Stop the shaper recorded in `dir` (SIGKILL: it holds nothing worth a goodbye) and wait
/// until it is gone. Harmless when none runs.
pub(crate) fn stop_shaper(target: &Target, dir: &Path) -> Result<(), VirtError> {
    let pid_path = dir.join(SHAPER_PID);
    let Some(pid) = fs::read_to_string(&pid_path)
        .ok()
        .and_then(|t| procfs::parse_pid(&t))
    else {
        return remove_file(target, &pid_path);
    };
    let dir_text = dir.display().to_string();
    if is_shaper(pid, &dir_text) {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while procfs::is_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
    remove_file(target, &pid_path)
}

/// Whether `pid` is a shaper serving `dir` (not a recycled PID).
fn is_shaper(pid: u32, dir: &str) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| procfs::parse_cmdline(&raw))
        .is_ok_and(|args| {
            args.get(1).map(String::as_str) == Some(SHAPER_ARG) && procfs::mentions(&args, dir)
        })
}

fn remove_file(target: &Target, path: &Path) -> Result<(), VirtError> {
    super::remove_if_present(target, path, |p| fs::remove_file(p))
}

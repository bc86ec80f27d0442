//! One board's life as seen from the host: prepare its disk, spawn its init in fresh
//! namespaces, find the init's host PID, wait for its sshd, and cut its power.
//!
//! The init is started as
//! `setsid ip netns exec <netns> unshare --pid --fork --mount --uts --ipc --propagation private
//! <lab> board-init ...`, detached, with stdout and stderr going to the board's `boot.log`;
//! the init writes its own host PID to `init.pid`.

use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cmd::{self, CommandLine};
use super::error::{BootLog, Target, VirtError};
use super::init::args::{CgroupJoin, InitArgs, SystemdBoot};
use super::names::netns_name;
use super::procfs;
use super::spec::{BoardDir, VirtualBoardSpec, VirtualClusterSpec, DISK_MOUNTS};
use super::sshd;
use crate::inventory::VirtualInit;

/// How long a board gets from spawn until its sshd accepts connections.
pub(crate) const BOOT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a killed board's processes get to disappear.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a killed process may stay a zombie before we stop waiting for its parent.
const REAP_GRACE: Duration = Duration::from_secs(1);
/// Interval between polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Connect timeout of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Boot log lines shown in errors.
const LOG_TAIL_LINES: usize = 20;
/// PATH of the processes that start a board.
const SPAWN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn target(spec: &VirtualClusterSpec, board: &str) -> Target {
    Target::board(&spec.cluster, board)
}

/// The board directory as the string that appears in its init's command line.
fn dir_arg(dir: &BoardDir) -> String {
    dir.root.display().to_string()
}

/// The host PID of the board's init, if it is running.
pub(crate) fn running_pid(spec: &VirtualClusterSpec, board: &str) -> Option<u32> {
    let dir = spec.board_dir(board);
    procfs::running_init(&dir.init_pid(), &dir_arg(&dir))
}

/// The board's boot log and its last lines, for error messages.
pub(crate) fn boot_log(spec: &VirtualClusterSpec, board: &str) -> Box<BootLog> {
    let path = spec.board_dir(board).boot_log();
    let tail = match fs::read_to_string(&path) {
        Ok(text) => cmd::tail(&text, LOG_TAIL_LINES),
        Err(err) => format!("(unreadable: {err})"),
    };
    Box::new(BootLog { path, tail })
}

/// Create the board's disk directories, its SSH host key (once; it survives restarts) and its
/// authorized_keys (rewritten every time, so a changed key applies at the next boot).
pub(crate) fn prepare_disk(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    let target = target(spec, board);
    let dir = spec.board_dir(board);
    let io = |action, path: &Path| VirtError::io(&target, action, path);
    for (sub, _) in DISK_MOUNTS {
        let path = dir.disk().join(sub);
        fs::create_dir_all(&path).map_err(io("create", &path))?;
    }
    let ssh = dir.ssh();
    fs::create_dir_all(&ssh).map_err(io("create", &ssh))?;
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).map_err(io("chmod", &ssh))?;
    let key = dir.host_key();
    if !key.exists() {
        let key_arg = key.display().to_string();
        let comment = format!("root@{board}");
        cmd::run(
            &target,
            "ssh-keygen",
            &[
                "-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f", &key_arg,
            ],
        )?;
    }
    let keys = dir.authorized_keys();
    let tmp = keys.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            std::io::Write::write_all(
                &mut f,
                sshd::render_authorized_keys(&spec.authorized_key).as_bytes(),
            )
        })
        .map_err(io("write", &tmp))?;
    fs::rename(&tmp, &keys).map_err(io("replace", &keys))?;
    Ok(())
}

/// Start the board's init (its network must exist) and return its host PID once the init has
/// recorded it.
pub(crate) fn spawn(
    spec: &VirtualClusterSpec,
    board: &VirtualBoardSpec,
    cgroups: Vec<CgroupJoin>,
) -> Result<u32, VirtError> {
    let target = target(spec, &board.name);
    let dir = spec.board_dir(&board.name);
    let io = |action, path: &Path| VirtError::io(&target, action, path);
    let log_path = dir.boot_log();
    if log_path.exists() {
        fs::rename(&log_path, dir.previous_boot_log()).map_err(io("rotate", &log_path))?;
    }
    match fs::remove_file(dir.init_pid()) {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            return Err(io("remove", &dir.init_pid())(err));
        }
        _ => {}
    }
    let log = fs::File::create(&log_path).map_err(io("create", &log_path))?;
    let log_err = log.try_clone().map_err(io("open", &log_path))?;
    let command = spawn_command(spec, board, cgroups);
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .env_clear()
        .env("PATH", SPAWN_PATH)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|source| VirtError::Spawn {
            target: target.clone(),
            command: command.display(),
            source,
        })?;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        if let Some(pid) = running_pid(spec, &board.name) {
            // Someone must reap `unshare` when the board dies: a thread that waits for it.
            // If this process exits first, the orphan goes to the host's init as usual.
            let _ = std::thread::Builder::new()
                .name(format!("reap-{}", board.name))
                .spawn(move || child.wait());
            return Ok(pid);
        }
        let exited = child
            .try_wait()
            .map_err(io("wait for", Path::new(&command.program)))?;
        if exited.is_some() {
            return Err(VirtError::BootFailed {
                target,
                log: boot_log(spec, &board.name),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VirtError::Timeout {
                target,
                what: "init did not record its PID".to_owned(),
                seconds: BOOT_TIMEOUT.as_secs(),
                log: boot_log(spec, &board.name),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The command line that starts `board`'s init.
pub(crate) fn spawn_command(
    spec: &VirtualClusterSpec,
    board: &VirtualBoardSpec,
    cgroups: Vec<CgroupJoin>,
) -> CommandLine {
    let netns = netns_name(&spec.cluster, &board.name);
    let systemd = (board.init == VirtualInit::Systemd).then(|| SystemdBoot {
        netns: netns.clone(),
        login_user: board.login_user.clone(),
    });
    let init = InitArgs {
        dir: spec.board_dir(&board.name).root,
        hostname: board.name.clone(),
        address: board.address,
        rootfs: board.rootfs.clone(),
        cgroups,
        systemd,
    };
    // A systemd board's init joins the network namespace itself: `ip netns exec` would give
    // it a fresh /sys without the host's cgroup hierarchies, which systemd-nspawn needs.
    let enter_netns: &[&str] = if init.systemd.is_some() {
        &[]
    } else {
        &["ip", "netns", "exec", &netns]
    };
    let mut args: Vec<String> = enter_netns
        .iter()
        .copied()
        .chain([
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
        ])
        .map(str::to_owned)
        .collect();
    args.push(spec.lab_binary.display().to_string());
    args.push(procfs::BOARD_INIT_ARG.to_owned());
    args.extend(init.to_args());
    CommandLine::new("setsid", args)
}

/// Whether something accepts TCP connections on `address:22`.
fn sshd_accepts(address: std::net::Ipv4Addr) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((address, 22)), PROBE_TIMEOUT).is_ok()
}

/// Poll until every board's sshd accepts TCP on its address, failing fast when a board's init
/// dies and naming the board (with its boot log) on timeout.
pub(crate) fn wait_ready(
    spec: &VirtualClusterSpec,
    boards: &[&VirtualBoardSpec],
    progress: &mut dyn FnMut(&str, &str),
) -> Result<(), VirtError> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut pending: Vec<&VirtualBoardSpec> = boards.to_vec();
    loop {
        let mut still = Vec::with_capacity(pending.len());
        for board in pending {
            if sshd_accepts(board.address) {
                progress(
                    &board.name,
                    &format!("sshd accepting on {}:22", board.address),
                );
            } else if running_pid(spec, &board.name).is_none() {
                return Err(VirtError::BootFailed {
                    target: target(spec, &board.name),
                    log: boot_log(spec, &board.name),
                });
            } else {
                still.push(board);
            }
        }
        pending = still;
        let Some(first) = pending.first() else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(VirtError::Timeout {
                target: target(spec, &first.name),
                what: format!("sshd did not accept connections on {}:22", first.address),
                seconds: BOOT_TIMEOUT.as_secs(),
                log: boot_log(spec, &first.name),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// SIGKILL the board's init (the kernel then kills every process of its PID namespace) and
/// wait until it is gone. With `strays`, also any other init of this board directory (one that
/// never recorded its PID) and then whatever still names the directory (an `unshare` that
/// outlived its init). Inits go first, so their `unshare` parents can reap them. The caller
/// cuts the link first.
pub(crate) fn kill_processes(
    spec: &VirtualClusterSpec,
    board: &str,
    strays: bool,
) -> Result<(), VirtError> {
    let dir_arg = dir_arg(&spec.board_dir(board));
    let mut inits: Vec<u32> = running_pid(spec, board).into_iter().collect();
    if strays {
        inits.extend(procfs::board_inits(&dir_arg));
        inits.dedup();
    }
    sigkill_and_wait(spec, board, &inits)?;
    if strays {
        sigkill_and_wait(spec, board, &procfs::processes_mentioning(&dir_arg))?;
    }
    Ok(())
}

fn sigkill_and_wait(spec: &VirtualClusterSpec, board: &str, pids: &[u32]) -> Result<(), VirtError> {
    for &pid in pids {
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        match kill(Pid::from_raw(raw), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(VirtError::Signal {
                    target: target(spec, board),
                    pid,
                    signal: "SIGKILL",
                    source,
                })
            }
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|pid| procfs::is_alive(*pid))
            .collect();
        if alive.is_empty() {
            wait_reaped(pids);
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(VirtError::Timeout {
                target: target(spec, board),
                what: format!("processes {alive:?} did not exit after SIGKILL"),
                seconds: STOP_TIMEOUT.as_secs(),
                log: boot_log(spec, board),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Give the dead a moment to be reaped by their parents (a killed init stays a zombie until
/// its `unshare` collects it), so that nothing of the board is left in `/proc` on return.
/// Best effort: a zombie whose parent never reaps it is not waited for beyond the grace.
fn wait_reaped(pids: &[u32]) {
    let deadline = Instant::now() + REAP_GRACE;
    while pids.iter().any(|pid| procfs::exists(*pid)) && Instant::now() < deadline {
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn spawn_command_is_exact() {
        let board = VirtualBoardSpec {
            name: "pi-1".into(),
            address: Ipv4Addr::new(10, 77, 0, 11),
            rootfs: None,
            size: crate::inventory::BoardSize::VIRTUAL_DEFAULT,
            init: crate::inventory::VirtualInit::Lab,
            login_user: None,
            link: Default::default(),
            dc: None,
        };
        let spec = VirtualClusterSpec {
            cluster: "demo".into(),
            subnet: Ipv4Addr::new(10, 77, 0, 0),
            prefix_len: 24,
            state_dir: "/s".into(),
            boards: vec![board.clone()],
            authorized_key: "ssh-ed25519 AAAA x".into(),
            lab_binary: "/bin/lab".into(),
            wan_delay: std::time::Duration::ZERO,
        };
        assert_eq!(
            spawn_command(
                &spec,
                &board,
                vec![CgroupJoin {
                    controllers: "memory".into(),
                    mountpoint: "/cg/memory".into(),
                    dir: "/cg/memory/lab/demo/pi-1".into()
                }]
            )
            .display(),
            "setsid ip netns exec lab-demo_pi-1 unshare --pid --fork --mount --uts --ipc \
             --propagation private /bin/lab board-init --dir /s/virtual/pi-1 --hostname pi-1 \
             --address 10.77.0.11 --cgroup memory:/cg/memory:/cg/memory/lab/demo/pi-1"
        );
    }
}

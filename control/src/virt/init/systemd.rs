//! `lab board-init` for a board that boots systemd (`init = "systemd"`): still PID 1 of the
//! board's own PID namespace (so a power cut is the same SIGKILL as for every other board:
//! the kernel takes the container with it), it prepares the board's root and hands the rest
//! to systemd-nspawn, which it supervises.
//!
//! Before the boot: join the board's cgroups (in place: the host's hierarchies are visible
//! here), record the host PID, join the board's network namespace, fresh `/run` and `/proc`,
//! the board's root as an overlay (the cached systemd root below, the board's own writable
//! layer `<board>/systemd/upper` above: what bootstrap installs survives restarts), and into
//! it the board's host key, root's authorized keys, the hostname and the login user (with
//! passwordless sudo) when there is one. Every mount lives in the board's mount namespace and
//! goes when the board dies.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::args::{InitArgs, SystemdBoot};
use super::mounts;
use crate::virt::spec::BoardDir;

/// How long systemd gets to power the board off after a SIGTERM of its init.
const POWEROFF_GRACE: Duration = Duration::from_secs(10);
/// PATH of the tools run here (chroot, useradd, systemd-nspawn).
const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Prepare the board and run systemd-nspawn until the board stops.
pub(super) fn run(args: &InitArgs, boot: &SystemdBoot, signals: &SigSet) -> Result<()> {
    let Some(lower) = &args.rootfs else {
        bail!("a systemd board needs its root (--rootfs)");
    };
    let dir = BoardDir {
        root: args.dir.clone(),
    };
    for join in &args.cgroups {
        let procs = join.dir.join("cgroup.procs");
        fs::write(&procs, "0").with_context(|| format!("join cgroup {}", join.dir.display()))?;
    }
    super::record_host_pid(&dir)?;
    mounts::make_private()?;
    join_netns(&boot.netns)?;
    mounts::tmpfs(Path::new("/run"), "0755")?;
    mounts::mount_proc(Path::new("/proc"))?;
    let root = dir.systemd_root();
    mount_overlay(lower, &dir)?;
    install_board_files(&dir, &root, &args.hostname)?;
    if let Some(user) = &boot.login_user {
        ensure_login_user(&dir, &root, user)?;
    }
    eprintln!(
        "lab board-init [{}]: root ready, booting systemd (systemd-nspawn) on {}",
        args.hostname, args.address
    );
    let nspawn = Command::new("systemd-nspawn")
        .arg("--directory")
        .arg(&root)
        .args([
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            "--machine",
            &args.hostname,
        ])
        .env_clear()
        .env("PATH", TOOL_PATH)
        .stdin(Stdio::null())
        .spawn()
        .context("start systemd-nspawn (Debian package systemd-container)")?;
    let pid = Pid::from_raw(i32::try_from(nspawn.id()).context("nspawn pid out of range")?);
    supervise(pid, signals)
}

/// Wait until systemd-nspawn exits (the board powered off or its systemd died); on SIGTERM
/// ask it for a clean poweroff and give it [`POWEROFF_GRACE`].
fn supervise(nspawn: Pid, signals: &SigSet) -> Result<()> {
    let mut poweroff_deadline: Option<Instant> = None;
    loop {
        if let Some(deadline) = poweroff_deadline {
            if reaped(nspawn)? || Instant::now() >= deadline {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let signal = signals.wait().context("wait for signals")?;
        if signal == Signal::SIGCHLD {
            if reaped(nspawn)? {
                eprintln!("lab board-init: systemd-nspawn exited: the board is off");
                return Ok(());
            }
            continue;
        }
        eprintln!("lab board-init: {signal}, powering the board off");
        // systemd-nspawn turns SIGTERM into a clean poweroff of the container.
        let _ = kill(nspawn, Signal::SIGTERM);
        poweroff_deadline = Some(Instant::now() + POWEROFF_GRACE);
    }
}

/// Reap every exited child; whether `nspawn` was among them.
fn reaped(nspawn: Pid) -> Result<bool> {
    let mut gone = false;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(gone),
            Ok(status) => gone |= status.pid() == Some(nspawn),
            Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err).context("waitpid"),
        }
    }
}

fn join_netns(netns: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(netns);
    let file = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("join network namespace {netns}"))
}

/// The board's root: `lower` (read-only, shared by every systemd board) under the board's
/// own writable layer.
fn mount_overlay(lower: &Path, dir: &BoardDir) -> Result<()> {
    let (upper, work, root) = (dir.systemd_upper(), dir.systemd_work(), dir.systemd_root());
    for path in [&upper, &work, &root] {
        fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .with_context(|| format!("mount the board's root (overlay {options})"))
}

/// The board's host key (the one `lab` pins), root's authorized keys, the hostname and
/// /etc/hosts, rewritten at every boot like a plain board's.
fn install_board_files(dir: &BoardDir, root: &Path, hostname: &str) -> Result<()> {
    let read = |path: &Path| fs::read(path).with_context(|| format!("read {}", path.display()));
    let host_key = read(&dir.host_key())?;
    let host_key_pub = read(&dir.host_key().with_extension("pub"))?;
    let authorized_keys = read(&dir.authorized_keys())?;
    let hostname_line = format!("{hostname}\n");
    // Without its own name in /etc/hosts, sudo waits 20 s for DNS on every call.
    let hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    );
    let root_ssh = root.join("root/.ssh");
    fs::create_dir_all(&root_ssh).with_context(|| format!("create {}", root_ssh.display()))?;
    fs::set_permissions(&root_ssh, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", root_ssh.display()))?;
    let files: [(&str, &[u8], u32); 5] = [
        ("etc/hosts", hosts.as_bytes(), 0o644),
        ("etc/ssh/ssh_host_ed25519_key", &host_key, 0o600),
        ("etc/ssh/ssh_host_ed25519_key.pub", &host_key_pub, 0o644),
        ("root/.ssh/authorized_keys", &authorized_keys, 0o600),
        ("etc/hostname", hostname_line.as_bytes(), 0o644),
    ];
    for (path, content, mode) in files {
        replace_file(&root.join(path), content, mode)?;
    }
    Ok(())
}

/// Create `user` in the board's root unless it exists (useradd in a chroot of the root), give
/// it passwordless sudo and the cluster's key: the way a stock Raspberry Pi OS board is
/// reached (`pi` + sudo).
fn ensure_login_user(dir: &BoardDir, root: &Path, user: &str) -> Result<()> {
    let passwd = root.join("etc/passwd");
    let known = fs::read_to_string(&passwd)
        .with_context(|| format!("read {}", passwd.display()))?
        .lines()
        .any(|l| l.split(':').next() == Some(user));
    if !known {
        let status = Command::new("chroot")
            .arg(root)
            .args(["useradd", "--create-home", "--shell", "/bin/bash", user])
            .env_clear()
            .env("PATH", TOOL_PATH)
            .stdin(Stdio::null())
            .status()
            .context("run useradd in the board's root")?;
        if !status.success() {
            bail!("useradd {user} in the board's root: {status}");
        }
    }
    let (uid, gid) = ids_of(&passwd, user)?;
    replace_file(
        &root.join(format!("etc/sudoers.d/lab-{user}")),
        format!("{user} ALL=(ALL) NOPASSWD:ALL\n").as_bytes(),
        0o440,
    )?;
    let home_ssh = root.join(format!("home/{user}/.ssh"));
    fs::create_dir_all(&home_ssh).with_context(|| format!("create {}", home_ssh.display()))?;
    fs::set_permissions(&home_ssh, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", home_ssh.display()))?;
    let keys = home_ssh.join("authorized_keys");
    let content = fs::read(dir.authorized_keys())
        .with_context(|| format!("read {}", dir.authorized_keys().display()))?;
    replace_file(&keys, &content, 0o600)?;
    for path in [&home_ssh, &keys] {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// `user`'s uid and gid from a passwd file.
fn ids_of(passwd: &Path, user: &str) -> Result<(u32, u32)> {
    let text = fs::read_to_string(passwd).with_context(|| format!("read {}", passwd.display()))?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .with_context(|| format!("{user} has no usable entry in {}", passwd.display()))
}

/// Replace `path` whole with `content`, `mode` from the first byte (the state dir's
/// atomic write; the root's directories it writes into exist already).
fn replace_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    Ok(crate::state::write_atomic(path, content, mode)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_users_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = dir.path().join("passwd");
        fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1001::/home/pi:/bin/bash\n",
        )
        .expect("write");
        assert_eq!(ids_of(&passwd, "pi").expect("pi"), (1000, 1001));
        assert!(ids_of(&passwd, "nobody").is_err());
    }
}

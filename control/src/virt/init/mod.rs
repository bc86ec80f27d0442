//! `lab board-init`: PID 1 of a virtual board. Started by the host side inside fresh network,
//! PID, mount, UTS and IPC namespaces, it joins the board's cgroups (its size), records its
//! host PID, sets the hostname, builds the
//! board's mounts (`mounts`), installs sshd's files, chroots into the rootfs if the board has
//! one, then behaves like an init: runs sshd, reaps every child, restarts sshd when it dies,
//! and on SIGTERM stops everything and exits (which makes the kernel kill whatever is left in
//! the board's PID namespace). Like an enabled unit on a real board, an installed agent is
//! started at boot. A board with `init = "systemd"` goes through [`systemd`] instead: the
//! init prepares its root and supervises systemd-nspawn, and systemd does the rest.

pub mod args;
mod mounts;
mod systemd;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, chroot, getpid, sethostname, Pid};

use self::args::InitArgs;
use super::spec::BoardDir;
use super::sshd;

/// An sshd that exits sooner than this after its start counts as a failed start.
const QUICK_EXIT: Duration = Duration::from_secs(2);
/// Consecutive failed starts after which the board gives up (and its init exits).
const MAX_QUICK_EXITS: u32 = 5;
/// Back-off unit between restarts after failed starts.
const RESTART_BACKOFF: Duration = Duration::from_millis(200);
/// How long processes get to exit after SIGTERM at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// PATH given to sshd (and so to the login sessions it starts).
const SSHD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Entry point of the hidden `lab board-init` subcommand: PID 1 of a virtual board.
pub fn board_init_main(args: Vec<String>) -> ExitCode {
    let args = match InitArgs::parse(&args) {
        Ok(args) => args,
        Err(reason) => {
            eprintln!("lab board-init: {reason}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lab board-init [{}]: {err:#}", args.hostname);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &InitArgs) -> Result<()> {
    if getpid().as_raw() != 1 {
        bail!("must be PID 1 of a new PID namespace (the virtual cluster starts it)");
    }
    // Blocked signals are queued even for a namespace's PID 1, and are read with sigwait
    // below; std resets the mask in the children it spawns.
    let signals = supervised_signals();
    signals.thread_block().context("block signals")?;
    if let Some(boot) = &args.systemd {
        return systemd::run(args, boot, &signals);
    }
    let dir = BoardDir {
        root: args.dir.clone(),
    };
    mounts::join_cgroups(&args.cgroups)?;
    record_host_pid(&dir)?;
    sethostname(&args.hostname).with_context(|| format!("set hostname {}", args.hostname))?;
    let files = SshdFiles::load(&dir, args)?;
    let root = mounts::setup(args)?;
    files.install(&root)?;
    if args.rootfs.is_some() {
        chroot(&root).with_context(|| format!("chroot {}", root.display()))?;
        chdir("/").context("chdir / after chroot")?;
    }
    eprintln!(
        "lab board-init [{}]: namespaces ready, starting sshd on {}:22",
        args.hostname, args.address
    );
    supervise(&signals)
}

fn supervised_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(signal);
    }
    set
}

/// Write this process's PID as the host sees it into the board's `init.pid`. The inherited
/// `/proc` still belongs to the host's PID namespace until [`mounts::setup`] mounts the
/// board's own, so `/proc/self` names the host PID.
fn record_host_pid(dir: &BoardDir) -> Result<()> {
    let link = fs::read_link("/proc/self").context("read /proc/self")?;
    let pid = link.to_string_lossy().into_owned();
    if pid.parse::<u32>().is_err() {
        bail!("/proc/self points to {pid:?}, not a PID");
    }
    let path = dir.init_pid();
    let tmp = path.with_extension("pid.tmp");
    fs::write(&tmp, format!("{pid}\n")).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))
}

/// sshd's run-time files, read from the board's disk before the mounts hide it (rootfs).
struct SshdFiles {
    config: String,
    host_key: Vec<u8>,
    host_key_pub: Vec<u8>,
    authorized_keys: Vec<u8>,
}

impl SshdFiles {
    fn load(dir: &BoardDir, args: &InitArgs) -> Result<Self> {
        let read = |path: &Path| fs::read(path).with_context(|| format!("read {}", path.display()));
        Ok(Self {
            config: sshd::render_config(args.address),
            host_key: read(&dir.host_key())?,
            host_key_pub: read(&dir.host_key().with_extension("pub"))?,
            authorized_keys: read(&dir.authorized_keys())?,
        })
    }

    fn install(&self, root: &Path) -> Result<()> {
        let run_dir = root.join(sshd::RUN_DIR.trim_start_matches('/'));
        let files: [(&str, &[u8], u32); 4] = [
            (sshd::CONFIG_FILE, self.config.as_bytes(), 0o644),
            (sshd::HOST_KEY_FILE, &self.host_key, 0o600),
            ("ssh_host_ed25519_key.pub", &self.host_key_pub, 0o644),
            (sshd::AUTHORIZED_KEYS_FILE, &self.authorized_keys, 0o600),
        ];
        for (name, content, mode) in files {
            let path = run_dir.join(name);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .and_then(|mut f| f.write_all(content))
                .with_context(|| format!("write {}", path.display()))?;
        }
        Ok(())
    }
}

struct Sshd {
    pid: Pid,
    started: Instant,
}

fn start_sshd() -> Result<Sshd> {
    let child = Command::new(sshd::SSHD)
        .args(sshd::command_args())
        .env_clear()
        .env("PATH", SSHD_PATH)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", sshd::SSHD))?;
    let pid = i32::try_from(child.id()).context("sshd pid out of range")?;
    // Dropping the handle neither waits nor kills; the reaper loop collects sshd.
    Ok(Sshd {
        pid: Pid::from_raw(pid),
        started: Instant::now(),
    })
}

/// What an enabled service does on a real board at boot: if bootstrap installed an agent and
/// its config, start it (it detaches and supervises itself; this init reaps what it leaves).
/// A board that was never bootstrapped has neither file and boots bare.
fn start_boot_services() {
    let bin = Path::new(lab_api::board_paths::AGENT_BIN);
    let config = Path::new(lab_api::board_paths::CONFIG);
    if !(bin.exists() && config.exists()) {
        return;
    }
    let started = Command::new(bin)
        .args(["start", "--config", lab_api::board_paths::CONFIG])
        .env_clear()
        .env("PATH", SSHD_PATH)
        .stdin(Stdio::null())
        .status();
    match started {
        Ok(status) if status.success() => eprintln!("lab board-init: started lab-agent"),
        Ok(status) => eprintln!("lab board-init: lab-agent start exited with {status}"),
        Err(e) => eprintln!("lab board-init: cannot start lab-agent: {e}"),
    }
}

/// The init loop: wait for signals, reap children, keep sshd running, stop on request.
fn supervise(signals: &SigSet) -> Result<()> {
    let mut sshd = start_sshd()?;
    start_boot_services();
    let mut quick_exits = 0u32;
    loop {
        let signal = signals.wait().context("wait for signals")?;
        if signal != Signal::SIGCHLD {
            eprintln!("lab board-init: {signal}, shutting down");
            shutdown();
            return Ok(());
        }
        for status in reap_all()? {
            if status.pid() != Some(sshd.pid) {
                continue;
            }
            eprintln!("lab board-init: sshd exited ({status:?})");
            if sshd.started.elapsed() < QUICK_EXIT {
                quick_exits += 1;
            } else {
                quick_exits = 0;
            }
            if quick_exits >= MAX_QUICK_EXITS {
                bail!("sshd exited right after starting {quick_exits} times; giving up");
            }
            // Back-off between failing starts, not synchronisation.
            std::thread::sleep(RESTART_BACKOFF * quick_exits);
            sshd = start_sshd()?;
        }
    }
}

/// Collect every child that has exited.
fn reap_all() -> Result<Vec<WaitStatus>> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(reaped),
            Ok(status) => reaped.push(status),
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err).context("waitpid"),
        }
    }
}

/// SIGTERM every process of the board, reap them for a grace period; whatever is left dies
/// with this PID 1.
fn shutdown() {
    // -1: every process this init may signal, i.e. the whole board.
    if let Err(err) = kill(Pid::from_raw(-1), Signal::SIGTERM) {
        if err != Errno::ESRCH {
            eprintln!("lab board-init: kill(-1, SIGTERM): {err}");
        }
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while Instant::now() < deadline {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

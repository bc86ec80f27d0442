//! Cached Debian bookworm root filesystems for virtual boards, each described by a
//! [`RootRecipe`]:
//! - [`ARM64`]: an arm64 root, so aarch64 agents can be run (under qemu-user through
//!   binfmt_misc) against a real arm64 userland with OpenSSH, on an x86_64 host;
//! - [`SYSTEMD`]: a root of the host's architecture with systemd, dbus, OpenSSH and sudo, that
//!   `init = "systemd"` boards boot with systemd-nspawn (each through its own overlay).
//!
//! [`ensure_rootfs`] returns `<cache>/<recipe name>`, building it once with
//! `debootstrap [--arch=..] --variant=minbase --include=<packages> bookworm` from the
//! Debian mirror the host's apt already uses. The build:
//! - checks its prerequisites first (root, `debootstrap`, `chroot`, for arm64 qemu-aarch64
//!   registered and enabled in binfmt_misc, mounting binfmt_misc or running `update-binfmts`
//!   if needed) and says exactly what to install when one is missing;
//! - holds an exclusive `flock` on `<cache>/.<name>.lock`, so concurrent callers wait
//!   for one build instead of racing;
//! - runs in `<cache>/.<name>.tmp-<pid>`, proves the result (`chroot DIR uname -m`
//!   says the recipe's machine, `sshd -V` and `ssh -V` run), writes a marker file last, then renames the
//!   directory into place; a failed or interrupted build leaves nothing that looks finished
//!   (leftover temp dirs are unmounted and removed by the next build).
//!
//! Fully blocking (a few minutes on the first call); use `spawn_blocking` from async code.
//! The arm64 root keeps the `/etc/ssh` host keys of openssh-server's postinst (its boards bring
//! their own); the systemd root has none (each board's key is put into its overlay at boot).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

/// Default cache directory for `lab`'s root filesystems.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/lab/rootfs";
/// Name of the arm64 root inside the cache directory.
pub const ARM64_ROOT_NAME: &str = "bookworm-arm64";

/// One cached root: what debootstrap installs and what the result must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootRecipe {
    /// Directory name inside the cache.
    pub name: &'static str,
    /// debootstrap's `--arch` (`None`: the host's).
    pub arch: Option<&'static str>,
    /// `uname -m` inside the root when it runs (`None`: whatever the host says).
    pub machine: Option<&'static str>,
    /// debootstrap's `--include` list.
    pub include: &'static str,
    /// What the build costs, for the progress line.
    pub takes: &'static str,
}

/// The arm64 root of emulated boards.
pub const ARM64: RootRecipe = RootRecipe {
    name: ARM64_ROOT_NAME,
    arch: Some("arm64"),
    machine: Some("aarch64"),
    include: "openssh-server",
    takes: "about 2 minutes",
};

/// The root `init = "systemd"` boards boot (DESIGN.md section 9: ~35 s, ~274 MB).
pub const SYSTEMD: RootRecipe = RootRecipe {
    name: "bookworm-systemd",
    arch: None,
    machine: None,
    include: "systemd,systemd-sysv,dbus,openssh-server,iproute2,sudo,procps",
    takes: "about a minute",
};
/// File written last into a finished root; its presence means "complete".
pub const ROOTFS_MARKER: &str = ".lab-rootfs-complete";
/// Debian release of the root.
pub const SUITE: &str = "bookworm";
/// Mirror used when the host's apt sources name no bookworm mirror.
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";
/// Environment variable overriding the mirror.
pub const MIRROR_ENV: &str = "LAB_DEBIAN_MIRROR";

const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
const INSTALL_HINT: &str = "apt-get install qemu-user-static binfmt-support";

/// Why a root could not be provided. Each variant says what to do.
#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("building a board root filesystem needs root (debootstrap and chroot); run as root or with sudo")]
    NotRoot,
    #[error("`{tool}` not found; install it: apt-get install {package}")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error(
        "qemu-aarch64 is not usable through binfmt_misc: {detail}; install and register it: \
         `{INSTALL_HINT}` then `update-binfmts --enable qemu-aarch64`"
    )]
    Binfmt { detail: String },
    #[error("{what} ({})", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("`{command}` failed ({status}); last output:\n{tail}")]
    Command {
        command: String,
        status: String,
        tail: String,
    },
    #[error("the new root at {} failed its check `{check}`: {found}", path.display())]
    Verify {
        path: PathBuf,
        check: String,
        found: String,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Return `<cache_dir>/bookworm-arm64`, building it first if it is not complete.
pub fn ensure_arm64_rootfs(
    cache_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, RootfsError> {
    ensure_rootfs(cache_dir, &ARM64, progress)
}

/// Return `<cache_dir>/<recipe.name>`, building it first if it is not complete.
///
/// `progress` receives one line per step (and debootstrap's own output while it runs).
pub fn ensure_rootfs(
    cache_dir: &Path,
    recipe: &RootRecipe,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, RootfsError> {
    let root = cache_dir.join(recipe.name);
    if root.join(ROOTFS_MARKER).is_file() {
        return Ok(root);
    }

    check_prerequisites(recipe, progress)?;
    fs::create_dir_all(cache_dir).map_err(io_err("cannot create the rootfs cache", cache_dir))?;

    let lock_path = cache_dir.join(format!(".{}.lock", recipe.name));
    let _lock = lock_exclusive(&lock_path, progress)?;
    // Someone else may have finished while we waited for the lock.
    if root.join(ROOTFS_MARKER).is_file() {
        progress(&format!("{} was built by another process", root.display()));
        return Ok(root);
    }
    remove_leftovers(cache_dir, recipe, &root, progress)?;

    let tmp = cache_dir.join(format!(".{}.tmp-{}", recipe.name, std::process::id()));
    let result = build_into(&tmp, recipe, progress).and_then(|()| {
        fs::rename(&tmp, &root).map_err(io_err("cannot move the new root into place", &root))?;
        if let Ok(dir) = File::open(cache_dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    });
    if let Err(e) = result {
        progress(&format!("build failed; removing {}", tmp.display()));
        let _ = remove_tree(&tmp);
        return Err(e);
    }
    Ok(root)
}

fn build_into(
    tmp: &Path,
    recipe: &RootRecipe,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RootfsError> {
    let mirror = choose_mirror();
    let started = Instant::now();
    let arch = recipe.arch.unwrap_or("host");
    progress(&format!(
        "debootstrap {SUITE} {arch} (minbase + {}) from {mirror} into {} ({})",
        recipe.include,
        tmp.display(),
        recipe.takes
    ));
    let tmp_arg = tmp.to_string_lossy().into_owned();
    let include = format!("--include={}", recipe.include);
    let arch_arg = recipe.arch.map(|a| format!("--arch={a}"));
    let mut args: Vec<&str> = arch_arg.iter().map(String::as_str).collect();
    args.extend(["--variant=minbase", &include, SUITE, &tmp_arg, &mirror]);
    run_streaming("debootstrap", &args, progress)?;
    progress(&format!(
        "debootstrap finished in {} s",
        started.elapsed().as_secs()
    ));

    // The downloaded .debs are ~60 MB the root never needs again.
    let archives = tmp.join("var/cache/apt/archives");
    if let Ok(entries) = fs::read_dir(&archives) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "deb") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    if recipe == &SYSTEMD {
        prepare_systemd_root(tmp)?;
    }
    verify_root(tmp, recipe, progress)?;

    let marker = tmp.join(ROOTFS_MARKER);
    let mut f = File::create(&marker).map_err(io_err("cannot write the marker", &marker))?;
    writeln!(
        f,
        "suite={SUITE}\narch={arch}\nvariant=minbase\ninclude={}\nmirror={mirror}\nbuild_seconds={}",
        recipe.include,
        started.elapsed().as_secs()
    )
    .and_then(|()| f.sync_all())
    .map_err(io_err("cannot write the marker", &marker))?;
    Ok(())
}

/// What the systemd root needs beyond its packages: no host keys of its own (every board's
/// overlay gets the board's key at boot; a shared key would make boards indistinguishable),
/// key-only logins, and no units that wait for hardware a container does not have.
fn prepare_systemd_root(dir: &Path) -> Result<(), RootfsError> {
    let ssh_dir = dir.join("etc/ssh");
    if let Ok(entries) = fs::read_dir(&ssh_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                fs::remove_file(entry.path())
                    .map_err(io_err("cannot remove a shared host key", &entry.path()))?;
            }
        }
    }
    let conf = dir.join("etc/ssh/sshd_config.d/lab.conf");
    fs::create_dir_all(dir.join("etc/ssh/sshd_config.d"))
        .map_err(io_err("cannot create", &ssh_dir))?;
    fs::write(
        &conf,
        "# Written by lab when it built this root: key logins only, one host key per board.\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n",
    )
    .map_err(io_err("cannot write", &conf))?;
    // A container has no consoles to log in on besides nspawn's own.
    for unit in ["getty@tty1.service", "console-getty.service"] {
        let link = dir.join("etc/systemd/system").join(unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link).map_err(io_err("cannot mask", &link))?;
    }
    Ok(())
}

/// Prove the root runs code of its machine and has a working OpenSSH.
fn verify_root(
    dir: &Path,
    recipe: &RootRecipe,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RootfsError> {
    let uname = chroot_output(dir, &["uname", "-m"])?;
    if let Some(machine) = recipe.machine {
        if uname.trim() != machine {
            return Err(RootfsError::Verify {
                path: dir.to_path_buf(),
                check: "chroot DIR uname -m".into(),
                found: format!("printed {:?}, expected {machine:?}", uname.trim()),
            });
        }
    }
    // `sshd -V` prints its version (and exits non-zero on older releases); either way it ran.
    for (check, argv) in [
        (
            "chroot DIR /usr/sbin/sshd -V",
            &["/usr/sbin/sshd", "-V"][..],
        ),
        ("chroot DIR ssh -V", &["ssh", "-V"][..]),
    ] {
        let out = chroot_output(dir, argv)?;
        if !out.contains("OpenSSH") {
            return Err(RootfsError::Verify {
                path: dir.to_path_buf(),
                check: check.into(),
                found: format!("printed {:?}", out.trim()),
            });
        }
        progress(&format!("{check}: {}", first_line(&out)));
    }
    progress(&format!("chroot DIR uname -m: {}", uname.trim()));
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// Run a command in the root; stdout and stderr together, whatever the exit status.
fn chroot_output(dir: &Path, argv: &[&str]) -> Result<String, RootfsError> {
    let command = format!("chroot {} {}", dir.display(), argv.join(" "));
    let out = Command::new("chroot")
        .arg(dir)
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RootfsError::Command {
            command: command.clone(),
            status: format!("could not start: {e}"),
            tail: String::new(),
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

// ------------------------------------------------------------------------------ prerequisites

fn check_prerequisites(
    recipe: &RootRecipe,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RootfsError> {
    if !crate::host_setup::running_as_root() {
        return Err(RootfsError::NotRoot);
    }
    for (tool, package) in [("debootstrap", "debootstrap"), ("chroot", "coreutils")] {
        if find_in_path(tool).is_none() {
            return Err(RootfsError::MissingTool { tool, package });
        }
    }
    if recipe.machine == Some("aarch64") {
        ensure_binfmt_aarch64(progress)?;
    }
    Ok(())
}

/// Search `$PATH` plus the sbin directories (not on a user's PATH on Debian).
fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// What a binfmt_misc entry says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinfmtEntry {
    pub enabled: bool,
    pub interpreter: Option<String>,
    pub flags: String,
}

/// Parse `/proc/sys/fs/binfmt_misc/<name>`.
pub fn parse_binfmt_entry(text: &str) -> BinfmtEntry {
    let mut entry = BinfmtEntry {
        enabled: false,
        interpreter: None,
        flags: String::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        if line == "enabled" {
            entry.enabled = true;
        } else if let Some(i) = line.strip_prefix("interpreter ") {
            entry.interpreter = Some(i.trim().to_string());
        } else if let Some(f) = line.strip_prefix("flags:") {
            entry.flags = f.trim().to_string();
        }
    }
    entry
}

fn read_binfmt_aarch64() -> Option<BinfmtEntry> {
    fs::read_to_string(Path::new(BINFMT_DIR).join("qemu-aarch64"))
        .ok()
        .map(|t| parse_binfmt_entry(&t))
}

/// Make sure arm64 binaries run through qemu inside a chroot.
fn ensure_binfmt_aarch64(progress: &mut dyn FnMut(&str)) -> Result<(), RootfsError> {
    if !Path::new(BINFMT_DIR).join("status").exists() {
        progress(&format!("mounting binfmt_misc on {BINFMT_DIR}"));
        let out = Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(RootfsError::Binfmt {
                    detail: format!(
                        "binfmt_misc is not mounted and `mount -t binfmt_misc binfmt_misc {BINFMT_DIR}` failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                })
            }
            Err(e) => {
                return Err(RootfsError::Binfmt {
                    detail: format!("binfmt_misc is not mounted and `mount` could not run: {e}"),
                })
            }
        }
    }
    if !read_binfmt_aarch64().is_some_and(|e| e.enabled) {
        if find_in_path("update-binfmts").is_none() {
            return Err(RootfsError::Binfmt {
                detail: "qemu-aarch64 is not registered and update-binfmts is missing".into(),
            });
        }
        progress("registering qemu-aarch64: update-binfmts --enable qemu-aarch64");
        let out = Command::new("update-binfmts")
            .args(["--enable", "qemu-aarch64"])
            .output();
        if let Ok(o) = &out {
            if !o.status.success() {
                progress(&format!(
                    "update-binfmts: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
    }
    let entry = read_binfmt_aarch64().ok_or_else(|| RootfsError::Binfmt {
        detail: format!("{BINFMT_DIR}/qemu-aarch64 does not exist"),
    })?;
    if !entry.enabled {
        return Err(RootfsError::Binfmt {
            detail: format!("{BINFMT_DIR}/qemu-aarch64 is disabled"),
        });
    }
    // Without F (fix-binary) the kernel looks the interpreter up inside the chroot, where it
    // does not exist.
    if !entry.flags.contains('F') {
        return Err(RootfsError::Binfmt {
            detail: format!(
                "qemu-aarch64 is registered without the F (fix binary) flag (flags: {:?}), so it \
                 cannot run inside a chroot; Debian's qemu-user-static registers it with F",
                entry.flags
            ),
        });
    }
    Ok(())
}

// ------------------------------------------------------------------------------ mirror

/// The host's bookworm mirror, from `$LAB_DEBIAN_MIRROR`, then apt's sources, then
/// [`FALLBACK_MIRROR`].
fn choose_mirror() -> String {
    if let Some(m) = std::env::var_os(MIRROR_ENV).filter(|m| !m.is_empty()) {
        return m.to_string_lossy().into_owned();
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| {
            let text = fs::read_to_string(f).ok()?;
            let deb822 = f.extension().is_some_and(|e| e == "sources");
            debian_mirror_from_sources(&text, deb822)
        })
        .next()
        .unwrap_or_else(|| FALLBACK_MIRROR.to_string())
}

/// The first mirror serving the `bookworm` suite itself (not -security or -updates) in an apt
/// sources file, one-line (`deb URI SUITE ...`) or deb822 (`URIs:`/`Suites:` stanzas).
pub fn debian_mirror_from_sources(text: &str, deb822: bool) -> Option<String> {
    let serves = |suites: &str| suites.split_whitespace().any(|s| s == SUITE);
    if !deb822 {
        return text.lines().find_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                return None;
            }
            let mut uri = words.next()?;
            if uri.starts_with('[') {
                // Skip an options block: `[arch=amd64 signed-by=...]`.
                while !uri.ends_with(']') {
                    uri = words.next()?;
                }
                uri = words.next()?;
            }
            serves(words.next()?).then(|| uri.trim_end_matches('/').to_string())
        });
    }
    for stanza in text.split("\n\n") {
        let mut uris = None;
        let mut suites = None;
        let mut is_deb = true;
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                match key.trim().to_ascii_lowercase().as_str() {
                    "uris" => uris = Some(value.trim().to_string()),
                    "suites" => suites = Some(value.trim().to_string()),
                    "types" => is_deb = value.split_whitespace().any(|t| t == "deb"),
                    _ => {}
                }
            }
        }
        if let (true, Some(u), Some(s)) = (is_deb, uris, suites) {
            if serves(&s) {
                if let Some(first) = u.split_whitespace().next() {
                    return Some(first.trim_end_matches('/').to_string());
                }
            }
        }
    }
    None
}

// ------------------------------------------------------------------------------ locking, cleanup

fn lock_exclusive(path: &Path, progress: &mut dyn FnMut(&str)) -> Result<Flock<File>, RootfsError> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(path)
            .map_err(io_err("cannot open the lock file", path))
    };
    match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            progress(&format!(
                "another process is building this root; waiting for {}",
                path.display()
            ));
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, source)| RootfsError::Lock {
                path: path.to_path_buf(),
                source,
            })
        }
        Err((_, source)) => Err(RootfsError::Lock {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Under the lock: remove temp dirs of interrupted builds, and an unfinished final root.
fn remove_leftovers(
    cache_dir: &Path,
    recipe: &RootRecipe,
    root: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RootfsError> {
    let prefix = format!(".{}.tmp-", recipe.name);
    let entries = fs::read_dir(cache_dir).map_err(io_err("cannot list", cache_dir))?;
    let mut stale: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    if root.exists() {
        stale.push(root.to_path_buf());
    }
    for dir in stale {
        progress(&format!("removing unfinished {}", dir.display()));
        remove_tree(&dir).map_err(io_err("cannot remove an unfinished root", &dir))?;
    }
    Ok(())
}

/// Unmount whatever an interrupted debootstrap left mounted below `dir` (proc, sys, ...),
/// deepest first, then delete the tree. Never follows a mount out of `dir`.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let mut mounts = fs::read_to_string("/proc/self/mountinfo")
        .map(|t| mounts_below(&t, dir))
        .unwrap_or_default();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in &mounts {
        nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo` text.
pub fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        if b[i] == b'\\' {
            if let Some(v) = octal.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ------------------------------------------------------------------------------ processes

/// Run a command, handing each output line (stdout and stderr) to `progress`; on failure the
/// error carries the last lines.
fn run_streaming(
    program: &str,
    args: &[&str],
    progress: &mut dyn FnMut(&str),
) -> Result<(), RootfsError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RootfsError::Command {
            command: command.clone(),
            status: format!("could not start: {e}"),
            tail: String::new(),
        })?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_line_reader(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_line_reader(err, tx.clone()));
    }
    drop(tx);
    let mut tail = std::collections::VecDeque::with_capacity(30);
    for line in rx {
        progress(&line);
        if tail.len() == 30 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(|e| RootfsError::Command {
        command: command.clone(),
        status: format!("could not wait: {e}"),
        tail: String::new(),
    })?;
    if !status.success() {
        return Err(RootfsError::Command {
            command,
            status: status.to_string(),
            tail: Vec::from(tail).join("\n"),
        });
    }
    Ok(())
}

fn spawn_line_reader(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binfmt_entry_parses() {
        let text = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n";
        let e = parse_binfmt_entry(text);
        assert!(e.enabled);
        assert_eq!(
            e.interpreter.as_deref(),
            Some("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        assert_eq!(e.flags, "POCF");
        assert!(!parse_binfmt_entry("disabled\nflags: F\n").enabled);
    }

    #[test]
    fn mirror_from_deb822_skips_security() {
        let text = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            debian_mirror_from_sources(text, true).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let only_security =
            "Types: deb\nURIs: http://x/debian-security\nSuites: bookworm-security\n";
        assert_eq!(debian_mirror_from_sources(only_security, true), None);
        let src_only = "Types: deb-src\nURIs: http://x/debian\nSuites: bookworm\n";
        assert_eq!(debian_mirror_from_sources(src_only, true), None);
    }

    #[test]
    fn mirror_from_one_line_format() {
        let text = "# deb http://old/debian bookworm main\ndeb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n";
        assert_eq!(
            debian_mirror_from_sources(text, false).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            debian_mirror_from_sources("deb http://archive.ubuntu.com/ubuntu jammy main\n", false),
            None
        );
    }

    #[test]
    fn mounts_below_finds_only_nested_mounts() {
        let info = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
90 30 0:21 / /var/cache/lab/rootfs/.bookworm-arm64.tmp-7/proc rw - proc proc rw
91 30 0:22 / /var/cache/lab/rootfs/.bookworm-arm64.tmp-7/sys rw - sysfs sysfs rw
92 30 0:23 / /var/cache/lab/rootfs/.bookworm-arm64.tmp-70/proc rw - proc proc rw
93 30 0:24 / /var/cache/lab/rootfs/.bookworm-arm64.tmp-7/with\\040space rw - tmpfs t rw
";
        let dir = Path::new("/var/cache/lab/rootfs/.bookworm-arm64.tmp-7");
        assert_eq!(
            mounts_below(info, dir),
            vec![dir.join("proc"), dir.join("sys"), dir.join("with space")]
        );
    }

    #[test]
    fn finished_root_is_returned_without_building() {
        let cache = tempfile::tempdir().expect("tempdir");
        let root = cache.path().join(ARM64_ROOT_NAME);
        fs::create_dir_all(&root).expect("mkdir");
        fs::write(root.join(ROOTFS_MARKER), "done\n").expect("write");
        let mut lines = Vec::new();
        let got = ensure_arm64_rootfs(cache.path(), &mut |l| lines.push(l.to_string()))
            .expect("cached root");
        assert_eq!(got, root);
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn remove_tree_deletes_plain_dirs() {
        let d = tempfile::tempdir().expect("tempdir");
        let t = d.path().join(".bookworm-arm64.tmp-1");
        fs::create_dir_all(t.join("a/b")).expect("mkdir");
        fs::write(t.join("a/b/c"), "x").expect("write");
        remove_tree(&t).expect("removed");
        assert!(!t.exists());
        remove_tree(&t).expect("missing is fine");
    }

    /// Builds the real root into [`DEFAULT_CACHE_DIR`] (root, network, ~2 minutes):
    /// `cargo test -p lab --lib rootfs::tests::build_real_arm64_rootfs -- --ignored --nocapture`
    #[test]
    #[ignore = "needs root, network and ~2 minutes"]
    fn build_real_arm64_rootfs() {
        let started = Instant::now();
        let root = ensure_arm64_rootfs(Path::new(DEFAULT_CACHE_DIR), &mut |l| {
            eprintln!("[rootfs] {l}")
        })
        .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "[rootfs] ready at {} after {:.1} s",
            root.display(),
            started.elapsed().as_secs_f64()
        );
        let uname = chroot_output(&root, &["uname", "-m"]).expect("chroot");
        assert_eq!(uname.trim(), "aarch64");
    }
}

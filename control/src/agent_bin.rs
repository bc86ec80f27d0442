//! Find (or build) the static `lab-agent` binary that matches a board's architecture.
//!
//! A board reports its architecture with `uname -m`; [`target_for_uname`] maps that to the
//! Rust target triple we build the agent for (static musl for x86_64 and aarch64; armv7
//! gnueabihf linked against glibc 2.28 for 32-bit Raspberry Pi OS, see
//! `cross/build-agents.sh`). [`locate_agent`] finds the binary for a triple in this order:
//!
//! 1. `$LAB_AGENT_DIR/<triple>/lab-agent`
//! 2. `<dir of the running lab>/agents/<triple>/lab-agent` (an installed release)
//! 3. `<workspace>/target/<triple>/release/lab-agent` (a source checkout; `$CARGO_TARGET_DIR`
//!    is honoured first when set), where the workspace is found by walking up from the running
//!    executable and from the current directory.
//!
//! [`ensure_agent`] additionally runs `cross/build-agents.sh --target <triple>` when nothing is
//! found but a checkout is present. Every candidate is checked with [`read_elf_info`] so the
//! wrong binary never reaches a board: an aarch64 agent on an armv7 Pi fails here, with the
//! path, not there with "Exec format error".
//!
//! All functions block (file reads, and a cargo build in [`ensure_agent`]); call them from
//! `spawn_blocking` in async code.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use thiserror::Error;

/// File name of the agent binary, in every search location.
pub const AGENT_BIN_NAME: &str = "lab-agent";
/// Environment variable naming a directory with `<triple>/lab-agent` files; searched first.
pub const AGENT_DIR_ENV: &str = "LAB_AGENT_DIR";
/// The build script, relative to the workspace root.
pub const BUILD_SCRIPT: &str = "cross/build-agents.sh";

/// Static x86_64 agent (PCs, NUCs, the virtual cluster on an x86_64 host).
pub const TARGET_X86_64: &str = "x86_64-unknown-linux-musl";
/// Static aarch64 agent (Raspberry Pi 3/4/5 with a 64-bit OS, Jetson).
pub const TARGET_AARCH64: &str = "aarch64-unknown-linux-musl";
/// armv7 agent with a glibc 2.28 floor (32-bit Raspberry Pi OS).
pub const TARGET_ARMV7: &str = "armv7-unknown-linux-gnueabihf";
/// Every triple `lab` can push, in the order the build script builds them.
pub const SUPPORTED_TARGETS: [&str; 3] = [TARGET_AARCH64, TARGET_X86_64, TARGET_ARMV7];

/// `uname -m` values we know, with the triple each maps to.
const UNAME_TABLE: [(&str, &str); 7] = [
    ("x86_64", TARGET_X86_64),
    ("amd64", TARGET_X86_64),
    ("aarch64", TARGET_AARCH64),
    ("arm64", TARGET_AARCH64),
    ("armv7l", TARGET_ARMV7),
    ("armv7", TARGET_ARMV7),
    // A 32-bit userland on a 64-bit CPU (Raspberry Pi OS 32-bit on a Pi 3/4) reports armv8l.
    ("armv8l", TARGET_ARMV7),
];

/// The board's architecture has no agent build.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "no lab-agent build for architecture `{machine}` (from `uname -m`); supported: \
     x86_64/amd64, aarch64/arm64, armv7l/armv7/armv8l (32-bit ARM with hard float){hint}",
    hint = unknown_arch_hint(machine)
)]
pub struct UnknownArch {
    /// What the board reported.
    pub machine: String,
}

fn unknown_arch_hint(machine: &str) -> &'static str {
    if machine.starts_with("armv6") {
        "; ARMv6 boards (Raspberry Pi 1/Zero) are not supported"
    } else {
        ""
    }
}

/// Map a board's `uname -m` to the Rust target triple of the agent it needs.
///
/// Surrounding whitespace (the newline from `uname`) and ASCII case are ignored.
pub fn target_for_uname(machine: &str) -> Result<&'static str, UnknownArch> {
    let m = machine.trim();
    UNAME_TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(m))
        .map(|(_, triple)| *triple)
        .ok_or_else(|| UnknownArch {
            machine: m.to_string(),
        })
}

/// Errors from finding, building or checking an agent binary. Each names the triple.
#[derive(Debug, Error)]
pub enum AgentBinError {
    /// The triple is not one we build.
    #[error("`{triple}` is not a lab-agent target; supported: {}", SUPPORTED_TARGETS.join(", "))]
    UnsupportedTarget { triple: String },
    /// No binary in any search location.
    #[error(
        "no lab-agent binary for {triple}; looked in:\n{}\nbuild it with `{BUILD_SCRIPT} --target {triple}` \
         in a lab checkout, or point {AGENT_DIR_ENV} at a directory holding {triple}/{AGENT_BIN_NAME}",
        list_paths(searched)
    )]
    NotFound {
        triple: String,
        searched: Vec<PathBuf>,
    },
    /// A candidate exists but could not be read.
    #[error("cannot read the lab-agent binary for {triple} at {}", path.display())]
    Read {
        triple: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A candidate exists but is not a usable ELF file.
    #[error("{} is not an ELF executable ({triple} agent expected)", path.display())]
    NotElf {
        triple: String,
        path: PathBuf,
        #[source]
        source: ElfError,
    },
    /// A candidate exists but was built for another architecture.
    #[error("{} is a {found} binary, but {triple} needs {expected}; rebuild with `{BUILD_SCRIPT} --target {triple}`", path.display())]
    WrongArch {
        triple: String,
        path: PathBuf,
        found: ElfInfo,
        expected: ElfInfo,
    },
    /// The build script could not be started.
    #[error("cannot run `{command}` to build the {triple} agent")]
    BuildSpawn {
        triple: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The build script failed.
    #[error("`{command}` failed ({status}) building the {triple} agent; last output:\n{tail}")]
    BuildFailed {
        triple: String,
        command: String,
        status: std::process::ExitStatus,
        tail: String,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

// ------------------------------------------------------------------------------------- ELF

/// ELF `EI_CLASS`: word size of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// ELF `e_machine`, the few we care about by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfMachine {
    /// `EM_X86_64` (62).
    X86_64,
    /// `EM_AARCH64` (183).
    Aarch64,
    /// `EM_ARM` (40), 32-bit ARM.
    Arm,
    /// Anything else, with its raw number.
    Other(u16),
}

impl ElfMachine {
    /// `EM_X86_64`.
    pub const EM_X86_64: u16 = 62;
    /// `EM_AARCH64`.
    pub const EM_AARCH64: u16 = 183;
    /// `EM_ARM`.
    pub const EM_ARM: u16 = 40;

    /// From the raw `e_machine` value.
    pub fn from_raw(raw: u16) -> Self {
        match raw {
            Self::EM_X86_64 => Self::X86_64,
            Self::EM_AARCH64 => Self::Aarch64,
            Self::EM_ARM => Self::Arm,
            other => Self::Other(other),
        }
    }
}

/// What the first 20 bytes of an ELF file say about where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfInfo {
    pub class: ElfClass,
    pub machine: ElfMachine,
}

impl fmt::Display for ElfInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = match self.class {
            ElfClass::Elf32 => 32,
            ElfClass::Elf64 => 64,
        };
        match self.machine {
            ElfMachine::X86_64 => write!(f, "{bits}-bit x86-64"),
            ElfMachine::Aarch64 => write!(f, "{bits}-bit AArch64"),
            ElfMachine::Arm => write!(f, "{bits}-bit ARM"),
            ElfMachine::Other(n) => write!(f, "{bits}-bit e_machine {n}"),
        }
    }
}

/// Why bytes are not an ELF header we understand.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ElfError {
    #[error("file is {0} bytes, shorter than an ELF header (20)")]
    TooShort(usize),
    #[error("no ELF magic (\\x7fELF) at the start")]
    BadMagic,
    #[error("unknown ELF class {0}")]
    BadClass(u8),
    #[error("unknown ELF data encoding {0}")]
    BadEncoding(u8),
}

/// Number of leading bytes [`parse_elf_header`] needs.
pub const ELF_HEADER_PREFIX: usize = 20;

/// Parse the class and machine from the start of an ELF file (at least 20 bytes).
pub fn parse_elf_header(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    if bytes.len() < ELF_HEADER_PREFIX {
        return Err(ElfError::TooShort(bytes.len()));
    }
    if bytes[..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    let class = match bytes[4] {
        1 => ElfClass::Elf32,
        2 => ElfClass::Elf64,
        other => return Err(ElfError::BadClass(other)),
    };
    // e_machine sits at offset 18 in both classes, in the file's byte order (EI_DATA).
    let raw = [bytes[18], bytes[19]];
    let machine = match bytes[5] {
        1 => u16::from_le_bytes(raw),
        2 => u16::from_be_bytes(raw),
        other => return Err(ElfError::BadEncoding(other)),
    };
    Ok(ElfInfo {
        class,
        machine: ElfMachine::from_raw(machine),
    })
}

/// Read the ELF class and machine of a file on disk.
pub fn read_elf_info(path: &Path) -> std::io::Result<Result<ElfInfo, ElfError>> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(ELF_HEADER_PREFIX);
    file.by_ref()
        .take(ELF_HEADER_PREFIX as u64)
        .read_to_end(&mut buf)?;
    Ok(parse_elf_header(&buf))
}

/// The ELF class and machine an agent for `triple` must have, if the triple is supported.
pub fn expected_elf(triple: &str) -> Option<ElfInfo> {
    let (class, machine) = match triple {
        TARGET_X86_64 => (ElfClass::Elf64, ElfMachine::X86_64),
        TARGET_AARCH64 => (ElfClass::Elf64, ElfMachine::Aarch64),
        TARGET_ARMV7 => (ElfClass::Elf32, ElfMachine::Arm),
        _ => return None,
    };
    Some(ElfInfo { class, machine })
}

/// Check that `path` is an ELF binary for `triple`.
pub fn check_agent_binary(triple: &str, path: &Path) -> Result<ElfInfo, AgentBinError> {
    let expected = expected_elf(triple).ok_or_else(|| AgentBinError::UnsupportedTarget {
        triple: triple.to_string(),
    })?;
    let found = read_elf_info(path)
        .map_err(|source| AgentBinError::Read {
            triple: triple.to_string(),
            path: path.to_path_buf(),
            source,
        })?
        .map_err(|source| AgentBinError::NotElf {
            triple: triple.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
    if found != expected {
        return Err(AgentBinError::WrongArch {
            triple: triple.to_string(),
            path: path.to_path_buf(),
            found,
            expected,
        });
    }
    Ok(found)
}

// ------------------------------------------------------------------------------------- search

/// Where to look, gathered from the environment once; separate so tests can fake it.
#[derive(Debug, Clone, Default)]
pub struct SearchRoots {
    /// `$LAB_AGENT_DIR`.
    pub agent_dir: Option<PathBuf>,
    /// The running executable.
    pub current_exe: Option<PathBuf>,
    /// The current directory.
    pub current_dir: Option<PathBuf>,
    /// `$CARGO_TARGET_DIR` (relative values are taken from the workspace root).
    pub cargo_target_dir: Option<PathBuf>,
}

impl SearchRoots {
    /// From this process's environment.
    pub fn from_env() -> Self {
        let non_empty = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
        SearchRoots {
            agent_dir: non_empty(std::env::var_os(AGENT_DIR_ENV)),
            current_exe: std::env::current_exe().ok(),
            current_dir: std::env::current_dir().ok(),
            cargo_target_dir: non_empty(std::env::var_os("CARGO_TARGET_DIR")),
        }
    }

    /// Workspace roots reachable from the executable and the current directory, deduplicated.
    pub fn workspace_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = Vec::new();
        let starts = [
            self.current_exe.as_deref().and_then(Path::parent),
            self.current_dir.as_deref(),
        ];
        for start in starts.into_iter().flatten() {
            if let Some(root) = find_workspace_root(start) {
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
        }
        roots
    }

    /// Every path [`locate_agent`] tries for `triple`, in order.
    pub fn candidates(&self, triple: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(dir) = &self.agent_dir {
            out.push(dir.join(triple).join(AGENT_BIN_NAME));
        }
        if let Some(exe_dir) = self.current_exe.as_deref().and_then(Path::parent) {
            out.push(exe_dir.join("agents").join(triple).join(AGENT_BIN_NAME));
        }
        for root in self.workspace_roots() {
            if let Some(t) = &self.cargo_target_dir {
                out.push(
                    root.join(t)
                        .join(triple)
                        .join("release")
                        .join(AGENT_BIN_NAME),
                );
            }
            out.push(
                root.join("target")
                    .join(triple)
                    .join("release")
                    .join(AGENT_BIN_NAME),
            );
        }
        let mut seen = Vec::new();
        out.retain(|p| {
            let fresh = !seen.contains(p);
            if fresh {
                seen.push(p.clone());
            }
            fresh
        });
        out
    }

    /// Find the agent for `triple`; the first existing candidate must be the right ELF.
    pub fn locate(&self, triple: &str) -> Result<PathBuf, AgentBinError> {
        if expected_elf(triple).is_none() {
            return Err(AgentBinError::UnsupportedTarget {
                triple: triple.to_string(),
            });
        }
        let searched = self.candidates(triple);
        for path in &searched {
            if path.is_file() {
                check_agent_binary(triple, path)?;
                return Ok(path.clone());
            }
        }
        Err(AgentBinError::NotFound {
            triple: triple.to_string(),
            searched,
        })
    }
}

/// Whether `dir` is the root of a lab checkout: a `Cargo.toml` with a `[workspace]` table
/// and the agent build script.
pub fn is_workspace_root(dir: &Path) -> bool {
    if !dir.join(BUILD_SCRIPT).is_file() {
        return false;
    }
    match std::fs::read_to_string(dir.join("Cargo.toml")) {
        Ok(text) => text.lines().any(|l| l.trim() == "[workspace]"),
        Err(_) => false,
    }
}

/// Walk up from `start` (inclusive) to the first lab checkout root.
pub fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| is_workspace_root(dir))
        .map(Path::to_path_buf)
}

/// Find the agent binary for `triple` (see the module docs for the search order).
pub fn locate_agent(triple: &str) -> Result<PathBuf, AgentBinError> {
    SearchRoots::from_env().locate(triple)
}

/// Serialises builds from concurrent bootstrap tasks: one cargo run at a time, the others
/// find its result.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// An exclusive `flock` on `<workspace>/target/.build-agents.lock`, waited for; None when the
/// file cannot be made (the build then runs unguarded, as before).
fn build_lock(workspace: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let dir = workspace.join("target");
    std::fs::create_dir_all(&dir).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".build-agents.lock"))
        .ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// Like [`locate_agent`], but when nothing is found and a lab checkout is present, build it
/// with `cross/build-agents.sh --target <triple>` (output streamed to stderr, each line
/// prefixed with `[build-agents <triple>]`) and locate it again.
pub fn ensure_agent(triple: &str) -> Result<PathBuf, AgentBinError> {
    SearchRoots::from_env().ensure(triple)
}

impl SearchRoots {
    /// [`ensure_agent`] with these roots.
    pub fn ensure(&self, triple: &str) -> Result<PathBuf, AgentBinError> {
        let workspace = self.workspace_roots().into_iter().next();
        let usable = |found: &Result<PathBuf, AgentBinError>| match (found, &workspace) {
            (Err(AgentBinError::NotFound { .. }), _) => false,
            // A binary built in this checkout must not be older than the agent's sources.
            (Ok(path), Some(ws)) if path.starts_with(ws) => !is_stale(path, ws),
            _ => true,
        };
        let found = self.locate(triple);
        if usable(&found) {
            return found;
        }
        let Some(workspace) = workspace.clone() else {
            return found;
        };
        // A poisoned lock only means another build panicked; building again is still correct.
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // And one build across processes (parallel `lab up`s, parallel tests): two
        // `rustup target add`s or apt-gets at once fail each other.
        let _across = build_lock(&workspace);
        let found = self.locate(triple);
        if usable(&found) {
            return found;
        }
        run_build_script(&workspace, triple)?;
        let path = self.locate(triple)?;
        // A no-op cargo build leaves the old mtime; mark the binary as checked now.
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        Ok(path)
    }
}

/// Whether `binary` is older than the newest agent source of the checkout at `workspace`
/// (`agent/**/*.rs`, `agent/**/Cargo.toml`, `Cargo.lock`).
fn is_stale(binary: &Path, workspace: &Path) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return true;
    };
    newest_source(workspace).is_some_and(|newest| newest > built)
}

fn newest_source(workspace: &Path) -> Option<std::time::SystemTime> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut newest = mtime(&workspace.join("Cargo.lock"));
    let mut dirs = vec![workspace.join("agent")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                || path.file_name().is_some_and(|n| n == "Cargo.toml")
            {
                newest = newest.max(mtime(&path));
            }
        }
    }
    newest
}

/// Run the build script for one triple, streaming its output to stderr.
fn run_build_script(workspace: &Path, triple: &str) -> Result<(), AgentBinError> {
    let script = workspace.join(BUILD_SCRIPT);
    let command = format!("{} --target {triple}", script.display());
    let prefix = format!("[build-agents {triple}]");
    eprintln!("{prefix} agent for {triple} not found; running {command}");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg("--target")
        .arg(triple)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| AgentBinError::BuildSpawn {
            triple: triple.to_string(),
            command: command.clone(),
            source,
        })?;
    let tail = Mutex::new(Tail::new(20));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|s| {
        if let Some(out) = stdout {
            s.spawn(|| relay(out, &prefix, &tail));
        }
        if let Some(err) = stderr {
            relay(err, &prefix, &tail);
        }
    });
    let status = child.wait().map_err(|source| AgentBinError::BuildSpawn {
        triple: triple.to_string(),
        command: command.clone(),
        source,
    })?;
    if !status.success() {
        let tail = tail.into_inner().unwrap_or_else(|e| e.into_inner());
        return Err(AgentBinError::BuildFailed {
            triple: triple.to_string(),
            command,
            status,
            tail: Vec::from(tail.lines).join("\n"),
        });
    }
    Ok(())
}

/// The last `cap` lines of a child's output, for the error message.
struct Tail {
    cap: usize,
    lines: std::collections::VecDeque<String>,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Tail {
            cap,
            lines: Default::default(),
        }
    }

    fn push(&mut self, line: String) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

fn relay(stream: impl Read, prefix: &str, tail: &Mutex<Tail>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                eprintln!("{prefix} {line}");
                tail.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_maps_to_triples() {
        for (m, t) in [
            ("x86_64", TARGET_X86_64),
            ("amd64", TARGET_X86_64),
            ("aarch64", TARGET_AARCH64),
            ("arm64", TARGET_AARCH64),
            ("armv7l", TARGET_ARMV7),
            ("armv7", TARGET_ARMV7),
            ("armv8l", TARGET_ARMV7),
            ("aarch64\n", TARGET_AARCH64),
            ("  X86_64 ", TARGET_X86_64),
        ] {
            assert_eq!(target_for_uname(m), Ok(t), "uname -m {m:?}");
        }
    }

    #[test]
    fn unknown_uname_lists_supported() {
        let err = target_for_uname("mips\n").expect_err("mips is not supported");
        assert_eq!(err.machine, "mips");
        let msg = err.to_string();
        assert!(msg.contains("`mips`"), "{msg}");
        assert!(msg.contains("aarch64/arm64"), "{msg}");
        assert!(msg.contains("armv7l"), "{msg}");
        let armv6 = target_for_uname("armv6l")
            .expect_err("armv6 is not supported")
            .to_string();
        assert!(armv6.contains("Raspberry Pi 1/Zero"), "{armv6}");
        assert!(target_for_uname("").is_err());
    }

    #[test]
    fn every_supported_triple_has_an_elf_expectation() {
        for t in SUPPORTED_TARGETS {
            assert!(expected_elf(t).is_some(), "{t}");
        }
        for (_, t) in UNAME_TABLE {
            assert!(SUPPORTED_TARGETS.contains(&t));
        }
    }

    /// A 20-byte ELF header prefix.
    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        h[6] = 1;
        h[16] = 2; // ET_EXEC
        let m = if data == 2 {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn elf_header_machines() {
        let x86 = parse_elf_header(&header(2, 1, 62)).expect("x86_64 header");
        assert_eq!(x86, expected_elf(TARGET_X86_64).expect("x86_64"));
        let a64 = parse_elf_header(&header(2, 1, 183)).expect("aarch64 header");
        assert_eq!(a64, expected_elf(TARGET_AARCH64).expect("aarch64"));
        let arm = parse_elf_header(&header(1, 1, 40)).expect("arm header");
        assert_eq!(arm, expected_elf(TARGET_ARMV7).expect("armv7"));
        assert_eq!(arm.to_string(), "32-bit ARM");
        // Big-endian files store e_machine big-endian (e.g. MIPS = 8).
        let mips = parse_elf_header(&header(1, 2, 8)).expect("mips header");
        assert_eq!(mips.machine, ElfMachine::Other(8));
    }

    #[test]
    fn elf_header_rejects_garbage() {
        assert_eq!(parse_elf_header(b"\x7fELF"), Err(ElfError::TooShort(4)));
        assert_eq!(
            parse_elf_header(b"#!/bin/sh\necho hello world\n"),
            Err(ElfError::BadMagic)
        );
        assert_eq!(
            parse_elf_header(&header(3, 1, 62)),
            Err(ElfError::BadClass(3))
        );
        assert_eq!(
            parse_elf_header(&header(2, 0, 62)),
            Err(ElfError::BadEncoding(0))
        );
    }

    #[test]
    fn reads_the_running_test_binary() {
        let exe = std::env::current_exe().expect("current exe");
        let info = read_elf_info(&exe).expect("readable").expect("ELF");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Some(info), expected_elf(TARGET_X86_64));
        }
    }

    /// A fake checkout: Cargo.toml with [workspace], the build script, and a fake exe.
    fn fake_workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").expect("write");
        std::fs::create_dir_all(root.join("cross")).expect("mkdir");
        std::fs::write(root.join(BUILD_SCRIPT), "#!/bin/sh\nexit 1\n").expect("write");
        std::fs::create_dir_all(root.join("target/debug")).expect("mkdir");
        dir
    }

    fn put(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn search_order_and_not_found_message() {
        let ws = fake_workspace();
        let root = ws.path();
        let agents = tempfile::tempdir().expect("tempdir");
        let roots = SearchRoots {
            agent_dir: Some(agents.path().to_path_buf()),
            current_exe: Some(root.join("target/debug/lab")),
            current_dir: Some(root.join("target")),
            cargo_target_dir: None,
        };
        let want = [
            agents.path().join(TARGET_AARCH64).join("lab-agent"),
            root.join("target/debug/agents")
                .join(TARGET_AARCH64)
                .join("lab-agent"),
            root.join("target")
                .join(TARGET_AARCH64)
                .join("release/lab-agent"),
        ];
        assert_eq!(roots.candidates(TARGET_AARCH64), want);

        let err = roots.locate(TARGET_AARCH64).expect_err("nothing built");
        let msg = err.to_string();
        assert!(
            msg.contains("cross/build-agents.sh --target aarch64-unknown-linux-musl"),
            "{msg}"
        );
        assert!(msg.contains(&want[2].display().to_string()), "{msg}");

        // The workspace build is found; an installed copy next to the exe wins over it;
        // $LAB_AGENT_DIR wins over both.
        let a64 = header(2, 1, 183);
        put(&want[2], &a64);
        assert_eq!(roots.locate(TARGET_AARCH64).expect("found"), want[2]);
        put(&want[1], &a64);
        assert_eq!(roots.locate(TARGET_AARCH64).expect("found"), want[1]);
        put(&want[0], &a64);
        assert_eq!(roots.locate(TARGET_AARCH64).expect("found"), want[0]);
    }

    #[test]
    fn wrong_architecture_is_refused() {
        let ws = fake_workspace();
        let roots = SearchRoots {
            current_dir: Some(ws.path().to_path_buf()),
            ..Default::default()
        };
        let path = ws
            .path()
            .join("target")
            .join(TARGET_ARMV7)
            .join("release/lab-agent");
        put(&path, &header(2, 1, 183));
        match roots.locate(TARGET_ARMV7) {
            Err(AgentBinError::WrongArch {
                found, expected, ..
            }) => {
                assert_eq!(found.machine, ElfMachine::Aarch64);
                assert_eq!(expected.machine, ElfMachine::Arm);
            }
            other => panic!("expected WrongArch, got {other:?}"),
        }
        put(&path, b"#!/bin/sh\n# not a binary at all\n");
        assert!(matches!(
            roots.locate(TARGET_ARMV7),
            Err(AgentBinError::NotElf { .. })
        ));
    }

    #[test]
    fn unsupported_triple_and_cargo_target_dir() {
        let ws = fake_workspace();
        let roots = SearchRoots {
            current_dir: Some(ws.path().join("cross")),
            cargo_target_dir: Some(PathBuf::from("out")),
            ..Default::default()
        };
        assert!(matches!(
            roots.locate("mips-unknown-linux-gnu"),
            Err(AgentBinError::UnsupportedTarget { .. })
        ));
        let c = roots.candidates(TARGET_X86_64);
        assert_eq!(
            c[0],
            ws.path()
                .join("out")
                .join(TARGET_X86_64)
                .join("release/lab-agent")
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn workspace_root_needs_both_markers() {
        let ws = fake_workspace();
        assert_eq!(
            find_workspace_root(&ws.path().join("target/debug")),
            Some(ws.path().to_path_buf())
        );
        std::fs::write(ws.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").expect("write");
        assert!(!is_workspace_root(ws.path()));
    }

    /// A fake build script that "builds" a 20-byte x86_64 ELF header, or fails.
    fn fake_build_script(root: &Path, fail: bool) {
        let body = if fail {
            "echo compiling; echo 'error: linker not found' >&2; exit 3\n"
        } else {
            "echo \"building $2\"; mkdir -p \"target/$2/release\"\n\
             printf '\\177ELF\\002\\001\\001\\000\\000\\000\\000\\000\\000\\000\\000\\000\\002\\000\\076\\000' \
             > \"target/$2/release/lab-agent\"\n"
        };
        std::fs::write(root.join(BUILD_SCRIPT), format!("set -eu\n{body}")).expect("write");
    }

    #[test]
    fn ensure_runs_the_build_script_when_missing() {
        let ws = fake_workspace();
        fake_build_script(ws.path(), false);
        let roots = SearchRoots {
            current_dir: Some(ws.path().to_path_buf()),
            ..Default::default()
        };
        let path = roots
            .ensure(TARGET_X86_64)
            .expect("built by the fake script");
        assert_eq!(
            path,
            ws.path()
                .join("target")
                .join(TARGET_X86_64)
                .join("release/lab-agent")
        );
        // Found now: no second build.
        fake_build_script(ws.path(), true);
        assert_eq!(roots.ensure(TARGET_X86_64).expect("cached"), path);
    }

    #[test]
    fn ensure_reports_a_failed_build_with_its_output() {
        let ws = fake_workspace();
        fake_build_script(ws.path(), true);
        let roots = SearchRoots {
            current_dir: Some(ws.path().to_path_buf()),
            ..Default::default()
        };
        match roots.ensure(TARGET_AARCH64) {
            Err(e @ AgentBinError::BuildFailed { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("--target aarch64-unknown-linux-musl"), "{msg}");
                assert!(msg.contains("error: linker not found"), "{msg}");
                assert!(msg.contains("exit status: 3"), "{msg}");
            }
            other => panic!("expected BuildFailed, got {other:?}"),
        }
        // Without a checkout there is nothing to build: the NotFound hint stands.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let roots = SearchRoots {
            current_dir: Some(elsewhere.path().to_path_buf()),
            ..Default::default()
        };
        assert!(matches!(
            roots.ensure(TARGET_AARCH64),
            Err(AgentBinError::NotFound { .. })
        ));
    }

    #[test]
    fn tail_keeps_last_lines() {
        let mut t = Tail::new(2);
        for l in ["a", "b", "c"] {
            t.push(l.to_string());
        }
        assert_eq!(t.lines, ["b", "c"]);
    }
}

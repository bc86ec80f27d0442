//! Shared harness for integration tests that bring up a real virtual cluster through the real
//! `lab` binary: unique names and subnets per test, an inventory in a temp dir, and a guard
//! that tears everything down (`lab down --purge`) even when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const LAB: &str = env!("CARGO_BIN_EXE_lab");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name and a /24 no other test in this run (or a parallel test binary) uses.
pub fn unique(prefix: &str) -> (String, u8, u8) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    let a = 100 + (pid % 100) as u8;
    let b = ((pid / 100) as u8).wrapping_add((n as u8).wrapping_mul(37));
    (format!("{prefix}{}x{n}", pid % 100000), a, b)
}

pub fn require_root() {
    assert!(
        lab::host_setup::running_as_root(),
        "virtual-cluster tests need root (network namespaces, bridges): run the suite as root"
    );
}

/// A virtual cluster under test. Dropping it runs `lab down --purge`.
pub struct TestCluster {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub inventory: PathBuf,
    pub boards: Vec<(String, String)>,
}

impl TestCluster {
    /// Write an inventory for `boards` (name, arch) on a fresh subnet.
    pub fn new(prefix: &str, boards: &[(&str, &str)]) -> Self {
        let plain: Vec<(&str, &str, &str)> = boards.iter().map(|(n, a)| (*n, *a, "")).collect();
        Self::with_board_lines(prefix, &plain)
    }

    /// Like [`TestCluster::new`], each board with extra inventory lines (e.g. `cpus = 0.5`).
    pub fn with_board_lines(prefix: &str, boards: &[(&str, &str, &str)]) -> Self {
        require_root();
        let (name, a, b) = unique(prefix);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = format!(
            "[cluster]\nname = \"{name}\"\nssh_key = \"managed\"\nssh_user = \"root\"\nstate_dir = \"state\"\n\n[virtual]\nsubnet = \"10.{a}.{b}.0/24\"\n"
        );
        let mut list = Vec::new();
        for (i, (board, arch, extra)) in boards.iter().enumerate() {
            let addr = format!("10.{a}.{b}.{}", 10 + i);
            text.push_str(&format!(
                "\n[[board]]\nname = \"{board}\"\naddress = \"{addr}\"\nroles = \"auto\"\narch = \"{arch}\"\n{extra}"
            ));
            list.push((board.to_string(), addr));
        }
        let inventory = dir.path().join("inventory.toml");
        std::fs::write(&inventory, text).expect("write inventory");
        Self {
            name,
            dir,
            inventory,
            boards: list,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Run `lab <args> -i <inventory>`.
    pub fn lab(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(LAB);
        cmd.args(args)
            .arg("-i")
            .arg(&self.inventory)
            .env_remove("SSH_AUTH_SOCK");
        cmd.output().expect("run lab")
    }

    pub fn lab_ok(&self, args: &[&str]) -> String {
        let out = self.lab(args);
        let text = describe(&out);
        assert!(out.status.success(), "lab {args:?} failed:\n{text}");
        text
    }

    /// Run `command` on the board at `addr` with the real OpenSSH client and the cluster's
    /// managed key (throwaway boards: no host key checking).
    pub fn ssh(&self, addr: &str, command: &str) -> Output {
        Command::new("ssh")
            .arg("-i")
            .arg(self.state_dir().join("ssh/id_ed25519"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=error",
                &format!("root@{addr}"),
                command,
            ])
            .output()
            .expect("run ssh")
    }

    /// `lab up` with the control plane on a free loopback port; returns its address.
    pub fn up_with_serve(&self) -> String {
        let out = Command::new(LAB)
            .args(["up", "-i"])
            .arg(&self.inventory)
            .env("LAB_SERVE_LISTEN", "127.0.0.1:0")
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("run lab up");
        assert!(out.status.success(), "lab up failed:\n{}", describe(&out));
        let addr = std::fs::read_to_string(self.state_dir().join("serve.addr"))
            .expect("lab up records the control plane's address in <state>/serve.addr");
        let addr = addr.trim().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "serve on loopback: {addr}");
        addr
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self.lab(&["status", "--json"]);
        assert!(out.status.success(), "status failed:\n{}", describe(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let out = self.lab(&["down", "--purge"]);
        if !out.status.success() {
            eprintln!("cleanup: lab down --purge failed:\n{}", describe(&out));
        }
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Poll `f` until it returns Some, or fail after `timeout` with the last status seen.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last status: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Interfaces and namespaces on this host whose names mention `needle`.
pub fn host_leftovers(cluster: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.contains(cluster) {
                found.push(format!("netns {l}"));
            }
        }
    }
    if let Ok(out) = Command::new("pgrep").args(["-af", cluster]).output() {
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if !l.contains("cargo") && !l.contains("pgrep") {
                found.push(format!("process {l}"));
            }
        }
    }
    found
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

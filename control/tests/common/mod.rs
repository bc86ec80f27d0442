//! Shared harness for integration tests that bring up a real virtual cluster through the real
//! `lab` binary: unique names and subnets per test, an inventory in a temp dir, and a guard
//! that tears everything down (`lab down --purge`) even when the test fails.
#![allow(dead_code)]

pub mod http;

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

    /// Like [`TestCluster::new`], each board with extra inventory lines (e.g. `cpus = 0.5`,
    /// `roles = ["db"]`; without a `roles` line a board has none).
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
            // No roles unless the test gives some: the foundation tests run bare agents
            // (`lab up` applies the plan, and "auto" would start databases).
            let roles = if extra.contains("roles =") {
                ""
            } else {
                "roles = []\n"
            };
            text.push_str(&format!(
                "\n[[board]]\nname = \"{board}\"\naddress = \"{addr}\"\n{roles}arch = \"{arch}\"\n{extra}"
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

    /// The address of board `name` (panics on a name the test did not give).
    pub fn addr(&self, name: &str) -> String {
        self.boards
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no board {name} in this test cluster"))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// What this cluster left on the host (see [`host_leftovers`]); empty when clean.
    pub fn leftovers(&self) -> Vec<String> {
        let boards: Vec<&str> = self.boards.iter().map(|(name, _)| name.as_str()).collect();
        host_leftovers(&self.name, &boards, self.dir.path())
    }

    /// Run `lab <args> -i <inventory>`.
    pub fn lab(&self, args: &[&str]) -> Output {
        self.lab_env(args, &[])
    }

    /// Run `lab <args> -i <inventory>` with extra environment variables.
    pub fn lab_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(LAB);
        cmd.args(args)
            .arg("-i")
            .arg(&self.inventory)
            .env_remove("SSH_AUTH_SOCK")
            .envs(env.iter().copied());
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
        self.ssh_as("root", addr, command)
    }

    /// [`TestCluster::ssh`] as `user` (a systemd board's login, e.g. `pi`).
    pub fn ssh_as(&self, user: &str, addr: &str, command: &str) -> Output {
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
                &format!("{user}@{addr}"),
                command,
            ])
            .output()
            .expect("run ssh")
    }

    /// Appends `text` to the inventory (a table after the boards, e.g. `[db]`).
    pub fn append_inventory(&self, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.inventory)
            .expect("open the inventory");
        writeln!(f, "{text}").expect("append to the inventory");
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

/// Everything cluster `cluster` (boards `boards`, files under `dir`: its inventory and state
/// dir) could have left on this host, one readable line each; empty when clean:
///
/// - network namespaces `lab-<cluster>_*`, the cluster's bridge and its boards' host veths
///   (names from `lab::virt::names`, which hashes the cluster name into them);
/// - mounts of this namespace that mention `dir` or the cluster's namespaces;
/// - live processes of this cluster, whatever they are (board inits, sshd, lab-agent, `lab
///   serve`, engines such as `nginx: master`/`nginx: worker`, memcached, mariadbd): those whose
///   command line mentions `dir` or `lab-<cluster>_`, those in one of the cluster's network
///   namespaces, and those in a mount namespace that has `dir` mounted (a board's private
///   view). Scoped by the cluster's own names and paths, so parallel tests never see each
///   other's processes.
///
/// Panics when it cannot look (`ip` missing or failing, `/proc` unreadable): a check that
/// cannot look must not report "nothing left".
pub fn host_leftovers(cluster: &str, boards: &[&str], dir: &Path) -> Vec<String> {
    use lab::virt::names;

    let mut found = Vec::new();
    let netns_prefix = format!("lab-{cluster}_");
    let dir_text = dir.display().to_string();

    let netns = ip(&["netns", "list"]);
    let namespaces: Vec<String> = netns
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(&netns_prefix))
        .map(str::to_string)
        .collect();
    found.extend(namespaces.iter().map(|ns| format!("netns {ns}")));

    let links = ip(&["-o", "link", "show"]);
    let link_names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .collect();
    let bridge = names::bridge_name(cluster);
    if link_names.contains(&bridge.as_str()) {
        found.push(format!("bridge {bridge}"));
    }
    for board in boards {
        let veth = names::host_veth_name(cluster, board);
        if link_names.contains(&veth.as_str()) {
            found.push(format!("veth {veth} (board {board})"));
        }
    }

    let own_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_else(|err| panic!("reading /proc/self/mountinfo: {err}"));
    found.extend(
        own_mounts
            .lines()
            .filter(|l| l.contains(&dir_text) || l.contains(&format!("/run/netns/{netns_prefix}")))
            .map(|l| format!("mount {l}")),
    );

    // Network namespaces still present, by inode (a process inside shows `net:[<inode>]`).
    let netns_links: Vec<(String, String)> = namespaces
        .iter()
        .filter_map(|ns| {
            use std::os::unix::fs::MetadataExt;
            let inode = std::fs::metadata(format!("/run/netns/{ns}")).ok()?.ino();
            Some((format!("net:[{inode}]"), ns.clone()))
        })
        .collect();
    // Bind mounts show their source as a path inside its file system: look for `dir` as the
    // mountinfo `root` field would show it.
    let dir_in_fs = path_in_its_filesystem(dir, &own_mounts);
    let own_mnt_ns = std::fs::read_link("/proc/self/ns/mnt")
        .unwrap_or_else(|err| panic!("reading /proc/self/ns/mnt: {err}"));
    let mut mnt_ns_has_dir: std::collections::HashMap<PathBuf, bool> = Default::default();
    let me = std::process::id();
    let entries = std::fs::read_dir("/proc").unwrap_or_else(|err| panic!("listing /proc: {err}"));
    for entry in entries {
        let entry = entry.unwrap_or_else(|err| panic!("listing /proc: {err}"));
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Unreadable: the process exited during the scan. Zombies hold nothing and show no
        // command line or namespaces.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if state == Some('Z') {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let net = std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let mut why = Vec::new();
        if cmdline.contains(&dir_text) {
            why.push(format!("mentions {dir_text}"));
        }
        if cmdline.contains(&netns_prefix) {
            why.push(format!("mentions {netns_prefix}"));
        }
        if let Some((_, ns)) = netns_links.iter().find(|(link, _)| *link == net) {
            why.push(format!("in netns {ns}"));
        }
        if let Ok(mnt) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
            if mnt != own_mnt_ns {
                let has_dir = *mnt_ns_has_dir.entry(mnt).or_insert_with(|| {
                    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                        .is_ok_and(|info| info.lines().any(|l| mounts_from(l, &dir_in_fs)))
                });
                if has_dir {
                    why.push(format!("in a mount namespace with {dir_text} mounted"));
                }
            }
        }
        if !why.is_empty() {
            found.push(format!("process {pid} ({}): {cmdline}", why.join("; ")));
        }
    }
    found
}

/// Output of `ip <args>`; panics when `ip` cannot run or fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run `ip {}`: {err}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed, cannot check for leftovers:\n{}",
        args.join(" "),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `path` as a bind mount of it shows in the `root` field (4th) of mountinfo: relative to the
/// file system holding it, i.e. with the mount point of that file system replaced by the
/// mount's own root. `path` itself when it lives on `/`.
fn path_in_its_filesystem(path: &Path, mountinfo: &str) -> PathBuf {
    mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let (root, mount_point) = (fields.get(3)?, fields.get(4)?);
            let rest = path.strip_prefix(mount_point).ok()?;
            Some((mount_point.len(), Path::new(root).join(rest)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
        .unwrap_or_else(|| path.to_path_buf())
}

/// Whether the mountinfo line `line` mounts something from under `dir_in_fs`.
fn mounts_from(line: &str, dir_in_fs: &Path) -> bool {
    line.split(' ')
        .nth(3)
        .is_some_and(|root| Path::new(root).starts_with(dir_in_fs))
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// The cluster's generated database passwords (the state dir keeps them, 0600).
pub fn app_password(cluster: &TestCluster) -> String {
    let text = std::fs::read_to_string(cluster.state_dir().join("secrets/db.json"))
        .expect("lab keeps the db passwords in <state>/secrets/db.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["app"].as_str().expect("app password").to_string()
}

/// Run SQL as the app user over the cluster network with the real `mariadb` client.
pub fn sql(cluster: &TestCluster, addr: &str, query: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args([
            "-h",
            addr,
            "-P",
            "3306",
            "-u",
            "lab_app",
            "--batch",
            "--skip-column-names",
        ])
        .args(["--connect-timeout=3", "-e", query])
        .env("MYSQL_PWD", app_password(cluster))
        .output()
        .map_err(|e| format!("running the mariadb client: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(describe(&out))
    }
}

/// Replaces the `roles = ...` line of `board` in the cluster's inventory.
pub fn rewrite_roles(cluster: &TestCluster, board: &str, roles: &str) {
    let text = std::fs::read_to_string(&cluster.inventory).expect("inventory");
    let marker = format!("name = \"{board}\"\n");
    let start = text.find(&marker).expect("board in inventory");
    let roles_at = start + text[start..].find("roles = ").expect("roles line");
    let end = roles_at + text[roles_at..].find('\n').expect("line end");
    let new = format!("{}roles = {roles}{}", &text[..roles_at], &text[end..]);
    std::fs::write(&cluster.inventory, new).expect("write inventory");
}

//! `lab::virt` against the real thing: network namespaces, a bridge, veths, PID and mount
//! namespaces and OpenSSH's sshd on this host, checked with real tools (`ip`, `nsenter`,
//! `ssh`, `ssh-keyscan`, `/proc`). Needs root (fails otherwise, never skips). Every test uses
//! its own cluster name and /24, so they run in parallel, and a guard tears the cluster down
//! and deletes its files even when the test fails.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lab::inventory::BoardSize;
use lab::virt::{self, VirtError, VirtualBoardSpec, VirtualClusterSpec};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A cluster spec with its temp state dir; purged on drop.
struct Cluster {
    spec: VirtualClusterSpec,
    key: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Show what the boards said before their logs are deleted.
            for board in &self.spec.boards {
                let log = self.spec.board_dir(&board.name).boot_log();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!("--- {} ---\n{text}", log.display());
            }
        }
        if let Err(err) = virt::purge(&self.spec) {
            eprintln!("cleanup of {} failed: {err}", self.spec.cluster);
        }
    }
}

/// The virtual cluster needs root; without it these tests fail (they never pass by skipping).
fn require_root() {
    assert!(
        lab::host_setup::running_as_root(),
        "virtual-cluster tests need root (network namespaces, bridges): run the suite as root"
    );
    // sshd, ssh-keygen, ip, ... installed by name, as `lab up` does; not left to whichever
    // test binary happened to run first.
    lab::host_setup::ensure(lab::host_setup::VIRTUAL_CLUSTER, &mut |l: &str| {
        eprintln!("{l}")
    })
    .expect("installing the virtual cluster's host packages");
}

/// A unique cluster of `boards` boards (with the given rootfs each) on a unique /24 in
/// 10.200.0.0-10.249.255.0, derived from the process id and a counter.
fn cluster(tag: &str, rootfs: &[Option<PathBuf>]) -> Cluster {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    let second = 200 + (pid % 50) as u8;
    let third = (((pid / 50) % 40) * 6 + n % 6) as u8;
    let subnet = Ipv4Addr::new(10, second, third, 0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let boards = rootfs
        .iter()
        .enumerate()
        .map(|(i, rootfs)| VirtualBoardSpec {
            name: format!("b{i}"),
            address: Ipv4Addr::new(10, second, third, 11 + i as u8),
            rootfs: rootfs.clone(),
            size: BoardSize::VIRTUAL_DEFAULT,
            init: lab::inventory::VirtualInit::Lab,
            login_user: None,
            link: Default::default(),
            dc: None,
        })
        .collect();
    Cluster {
        spec: VirtualClusterSpec {
            cluster: format!("t{pid}-{n}-{tag}"),
            subnet,
            prefix_len: 24,
            state_dir: tmp.path().join("state"),
            boards,
            authorized_key: public,
            lab_binary: PathBuf::from(env!("CARGO_BIN_EXE_lab")),
            wan_delay: std::time::Duration::ZERO,
        },
        key,
        _tmp: tmp,
    }
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn up(cluster: &Cluster) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    virt::up(&cluster.spec, &mut |board, msg| {
        lines.push((board.to_owned(), msg.to_owned()))
    })
    .unwrap_or_else(|err| panic!("up failed: {}", chain(&err)));
    lines
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn init_pids(cluster: &Cluster) -> Vec<u32> {
    virt::status(&cluster.spec)
        .expect("status")
        .iter()
        .map(|b| b.init_pid.expect("running"))
        .collect()
}

fn ssh_addr(address: Ipv4Addr) -> SocketAddr {
    SocketAddr::from((address, 22))
}

/// Connect and read the SSH identification line.
fn banner(address: Ipv4Addr) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&ssh_addr(address), Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

fn assert_openssh(address: Ipv4Addr) {
    let line = banner(address).unwrap_or_else(|e| panic!("no banner from {address}: {e}"));
    assert!(line.starts_with("SSH-2.0-OpenSSH"), "{address}: {line:?}");
}

/// Poll `cond` until true or `timeout`; panic with `what` otherwise.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `args` inside the board whose init is `pid` (all its namespaces and its root).
fn in_board(pid: u32, args: &[&str]) -> Output {
    Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-m",
            "-u",
            "-n",
            "-p",
            "-i",
            "-r",
            "-w",
            "--",
        ])
        .args(args)
        .output()
        .expect("nsenter")
}

fn ns_of(pid: u32, kind: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn processes_in_pid_ns(ns: &Path) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|p| ns_of(*p, "pid").as_deref() == Some(ns))
        .collect()
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    pids()
        .into_iter()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| cmd.contains(needle))
        .collect()
}

fn host_key(address: Ipv4Addr) -> String {
    let out = run_ok(Command::new("ssh-keyscan").args([
        "-T",
        "3",
        "-t",
        "ed25519",
        &address.to_string(),
    ]));
    let text = stdout(&out);
    let key = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no key from {address}: {text:?}"));
    key.to_owned()
}

/// Everything this cluster could have left on the host, as readable lines; empty when clean.
fn leftovers(cluster: &Cluster) -> Vec<String> {
    let spec = &cluster.spec;
    let links = stdout(&run_ok(Command::new("ip").args(["-o", "link", "show"])));
    let netns = stdout(&run_ok(Command::new("ip").args(["netns", "list"])));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let state = spec.state_dir.display().to_string();
    let mut found = Vec::new();
    let bridge = virt::names::bridge_name(&spec.cluster);
    if links.contains(&bridge) {
        found.push(format!("bridge {bridge}"));
    }
    for board in &spec.boards {
        let veth = virt::names::host_veth_name(&spec.cluster, &board.name);
        if links.contains(&veth) {
            found.push(format!("veth {veth}"));
        }
        let ns = virt::names::netns_name(&spec.cluster, &board.name);
        if netns
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&ns))
        {
            found.push(format!("netns {ns}"));
        }
    }
    found.extend(
        processes_mentioning(&state)
            .into_iter()
            .map(|p| format!("process {p}")),
    );
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&state))
            .map(|l| format!("mount {l}")),
    );
    let cgroups = virt::cgroup::cluster_dirs(&spec.cluster).expect("cgroup layout");
    found.extend(
        cgroups
            .iter()
            .filter(|d| d.exists())
            .map(|d| format!("cgroup {}", d.display())),
    );
    found
}

/// The board's memory group (as recorded at boot), checked to hold `pid` and the board's size.
fn memory_group(cluster: &Cluster, board: &str, pid: u32) -> Vec<PathBuf> {
    let dirs = virt::cgroup::recorded(&cluster.spec, board);
    assert!(!dirs.is_empty(), "{board} has no cgroup recorded");
    for dir in &dirs {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "init {pid} of {board} not in {}: {procs}",
            dir.display()
        );
    }
    let limit = ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .find_map(|f| {
            dirs.iter()
                .find_map(|d| std::fs::read_to_string(d.join(f)).ok())
        })
        .expect("a memory limit file");
    assert_eq!(
        limit.trim(),
        BoardSize::VIRTUAL_DEFAULT.memory_bytes.to_string()
    );
    dirs
}

#[test]
fn boards_boot_are_isolated_survive_power_cuts_and_leave_nothing() {
    require_root();
    let c = cluster("life", &[None, None, None]);
    let spec = &c.spec;

    // (1) Up: every board answers with OpenSSH, has its own hostname and its own files.
    let progress = up(&c);
    for board in &spec.boards {
        assert!(
            progress
                .iter()
                .any(|(b, m)| b == &board.name && m.contains("sshd accepting")),
            "{progress:?}"
        );
    }
    let pids = init_pids(&c);
    for (board, pid) in spec.boards.iter().zip(&pids) {
        assert_openssh(board.address);
        let out = run_ok(Command::new("nsenter").args(["-t", &pid.to_string(), "-u", "hostname"]));
        assert_eq!(stdout(&out), board.name);
    }
    // Each board runs in its own cgroup, sized.
    let b1_groups = memory_group(&c, "b1", pids[1]);
    // A real login with the authorized key, as bootstrap will do it.
    let out = run_ok(Command::new("ssh").arg("-i").arg(&c.key).args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        &format!("root@{}", spec.boards[0].address),
        "hostname; test -d /run/sshd && echo run-ok",
    ]));
    assert_eq!(stdout(&out), "b0\nrun-ok");

    let probe = format!("probe-{}", spec.cluster);
    let write = in_board(
        pids[0],
        &["sh", "-c", &format!("echo hello > /etc/lab/{probe}")],
    );
    assert!(write.status.success(), "{write:?}");
    let disk_copy = spec.board_dir("b0").disk().join("etc-lab").join(&probe);
    assert_eq!(
        std::fs::read_to_string(&disk_copy).expect("file on b0's disk"),
        "hello\n"
    );
    let seen_by_b1 = in_board(pids[1], &["test", "-e", &format!("/etc/lab/{probe}")]);
    assert!(!seen_by_b1.status.success(), "b1 sees b0's file");
    assert!(!Path::new("/etc/lab").join(&probe).exists(), "host sees it");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&spec.state_dir.display().to_string()),
        "a board mount propagated to the host"
    );

    // (2) Up again changes nothing.
    up(&c);
    assert_eq!(init_pids(&c), pids);

    // (3) Power cut of b1: no FIN/RST to an open connection, every process of the board gone,
    // the others untouched; restart gives a new init with the same host key.
    let key_before = host_key(spec.boards[1].address);
    let mut conn =
        TcpStream::connect_timeout(&ssh_addr(spec.boards[1].address), Duration::from_secs(1))
            .expect("connect b1");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    let n = conn.read(&mut buf).expect("banner");
    assert!(n > 0);
    let marks = in_board(
        pids[1],
        &[
            "sh",
            "-c",
            "echo d > /var/lib/lab/mark && echo r > /run/mark && echo t > /tmp/mark",
        ],
    );
    assert!(marks.status.success(), "{marks:?}");
    let pid_ns = ns_of(pids[1], "pid").expect("b1 pid ns");
    assert!(processes_in_pid_ns(&pid_ns).len() >= 2, "init and sshd");

    virt::kill(spec, "b1").expect("kill b1");
    assert!(processes_in_pid_ns(&pid_ns).is_empty());
    let kept: Vec<&PathBuf> = b1_groups.iter().filter(|d| d.exists()).collect();
    assert!(kept.is_empty(), "a killed board left its cgroups: {kept:?}");
    assert!(!Path::new(&format!("/proc/{}", pids[1])).exists());
    conn.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    match conn.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("a dead board must send nothing, got {other:?}"),
    }
    let states = virt::status(spec).expect("status");
    assert!(!states[1].running && states[1].partitioned, "{states:?}");
    assert!(states[0].running && states[2].running);
    assert_openssh(spec.boards[0].address);
    assert_openssh(spec.boards[2].address);

    virt::restart(spec, "b1").expect("restart b1");
    let after = init_pids(&c);
    assert_ne!(after[1], pids[1]);
    memory_group(&c, "b1", after[1]);
    assert_eq!((after[0], after[2]), (pids[0], pids[2]));
    assert_openssh(spec.boards[1].address);
    assert_eq!(host_key(spec.boards[1].address), key_before);
    // Disk kept, /run and /tmp fresh, same MAC (so neighbours' ARP caches stay right).
    let look = in_board(
        after[1],
        &[
            "sh",
            "-c",
            "cat /var/lib/lab/mark; ls /run/mark /tmp/mark 2>/dev/null; true",
        ],
    );
    assert_eq!(stdout(&look), "d");
    let ns = virt::names::netns_name(&spec.cluster, "b1");
    let link = run_ok(Command::new("ip").args(["-n", &ns, "-o", "link", "show", "eth0"]));
    assert!(stdout(&link).contains(&virt::names::board_mac(&spec.cluster, "b1")));

    // (5) Down leaves nothing.
    virt::down(spec).expect("down");
    let left = leftovers(&c);
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert!(virt::status(spec)
        .expect("status")
        .iter()
        .all(|b| !b.running));
    virt::down(spec).expect("down is idempotent");
}

#[test]
fn partition_cuts_the_network_and_heal_restores_it() {
    require_root();
    let c = cluster("part", &[None]);
    let spec = &c.spec;
    up(&c);
    let pid = init_pids(&c)[0];
    let address = spec.boards[0].address;
    assert_openssh(address);

    virt::partition(spec, "b0").expect("partition");
    assert!(
        TcpStream::connect_timeout(&ssh_addr(address), Duration::from_millis(700)).is_err(),
        "connect must fail while partitioned"
    );
    let state = &virt::status(spec).expect("status")[0];
    assert!(state.running && state.partitioned && state.init_pid == Some(pid));

    virt::heal(spec, "b0").expect("heal");
    wait_for("sshd after heal", Duration::from_secs(5), || {
        banner(address).is_ok_and(|l| l.starts_with("SSH-2.0-OpenSSH"))
    });
    let state = &virt::status(spec).expect("status")[0];
    assert!(state.running && !state.partitioned);

    // A partitioned, running board is left alone by `up`.
    virt::partition(spec, "b0").expect("partition");
    up(&c);
    assert_eq!(init_pids(&c), vec![pid]);
    assert!(virt::status(spec).expect("status")[0].partitioned);
    virt::heal(spec, "b0").expect("heal");

    // The init restarts a dead sshd.
    let sshd_pid = || {
        let ns = ns_of(pid, "pid");
        processes_in_pid_ns(ns.as_deref().expect("pid ns"))
            .into_iter()
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sshd")
            })
    };
    let first = sshd_pid().expect("sshd runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill sshd");
    wait_for("a new sshd", Duration::from_secs(5), || {
        sshd_pid().is_some_and(|p| p != first)
            && banner(address).is_ok_and(|l| l.starts_with("SSH-2.0-OpenSSH"))
    });

    // SIGTERM stops the board cleanly; `up` boots a stopped board again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM init");
    wait_for("init to exit on SIGTERM", Duration::from_secs(5), || {
        !virt::status(spec).expect("status")[0].running
    });
    up(&c);
    assert_ne!(init_pids(&c), vec![pid]);
    assert_openssh(address);
}

#[test]
fn down_cleans_a_half_created_cluster() {
    require_root();
    let empty_root = tempfile::tempdir().expect("tempdir");
    let c = cluster("half", &[None, Some(empty_root.path().to_path_buf())]);
    let err = virt::up(&c.spec, &mut |_, _| {}).expect_err("b1 cannot boot");
    match &err {
        VirtError::BootFailed { target, log } => {
            assert_eq!(target.board.as_deref(), Some("b1"));
            assert!(log.tail.contains("has no /usr/sbin/sshd"), "{}", log.tail);
        }
        other => panic!("unexpected error: {}", chain(other)),
    }
    assert!(virt::status(&c.spec).expect("status")[0].running);
    virt::down(&c.spec).expect("down");
    let left = leftovers(&c);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn refuses_a_subnet_routed_elsewhere() {
    require_root();
    let c = cluster("busy", &[None]);
    let squatter = format!("lt{:08x}", std::process::id());
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    run_ok(Command::new("ip").args(["link", "add", &squatter, "type", "bridge"]));
    let _guard = DelLink(squatter.clone());
    let cidr = format!("{}/24", Ipv4Addr::from(u32::from(c.spec.subnet) + 200));
    run_ok(Command::new("ip").args(["addr", "add", &cidr, "dev", &squatter]));
    run_ok(Command::new("ip").args(["link", "set", &squatter, "up"]));

    let err = virt::up(&c.spec, &mut |_, _| {}).expect_err("subnet is taken");
    assert!(
        matches!(&err, VirtError::SubnetInUse { route, .. } if route.contains(&squatter)),
        "{}",
        chain(&err)
    );
    assert!(leftovers(&c).is_empty());
}

#[test]
fn arm64_rootfs_board_runs_its_own_sshd() {
    require_root();
    // Build (or reuse) the cached arm64 root exactly as `lab up` does: never skip.
    let mut say = |l: &str| eprintln!("arm64 root: {l}");
    lab::host_setup::ensure(lab::host_setup::VIRTUAL_CLUSTER, &mut say).expect("host packages");
    lab::host_setup::ensure(lab::host_setup::ARM64_BOARDS, &mut say).expect("arm64 packages");
    let rootfs =
        lab::rootfs::ensure_arm64_rootfs(Path::new(lab::rootfs::DEFAULT_CACHE_DIR), &mut say)
            .expect("build the arm64 root");
    let rootfs = rootfs.as_path();
    assert!(
        rootfs.join("usr/sbin/sshd").exists(),
        "the arm64 root at {} has no sshd",
        rootfs.display()
    );
    let c = cluster(
        "arm",
        &[Some(rootfs.to_path_buf()), Some(rootfs.to_path_buf())],
    );
    up(&c);
    let pids = init_pids(&c);
    for (board, pid) in c.spec.boards.iter().zip(&pids) {
        assert_openssh(board.address);
        let arch = run_ok(Command::new("nsenter").args([
            "-t",
            &pid.to_string(),
            "-m",
            "-r",
            "-w",
            "uname",
            "-m",
        ]));
        assert_eq!(stdout(&arch), "aarch64");
    }
    let probe = format!("/etc/lab/probe-{}", c.spec.cluster);
    assert!(
        in_board(pids[0], &["sh", "-c", &format!("echo x > {probe}")])
            .status
            .success()
    );
    assert!(!in_board(pids[1], &["test", "-e", &probe]).status.success());
    assert!(
        !in_board(pids[0], &["touch", "/lab-probe"]).status.success(),
        "the shared rootfs must be read-only"
    );
    virt::down(&c.spec).expect("down");
    let left = leftovers(&c);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

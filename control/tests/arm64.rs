//! Issue 3's proof on this machine: a virtual board can be an arm64 board (an arm64 Debian
//! root run through qemu-user-static), and a mixed cluster bootstraps with the right static
//! agent on each board: the arm64 board runs the aarch64 agent and answers over mTLS.

mod common;

use std::process::Command;

use common::TestCluster;
use lab::agent_bin::{self, TARGET_AARCH64};

/// `e_machine` of an ELF file (bytes 18..20, little endian for both our targets).
fn elf_machine(path: &std::path::Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", path.display());
    u16::from_le_bytes([bytes[18], bytes[19]])
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

#[test]
fn mixed_cluster_runs_the_aarch64_agent_on_the_arm64_board() {
    let cluster = TestCluster::new("m", &[("x86-a", "native"), ("pi-a", "arm64")]);
    let out = cluster.lab_ok(&["up"]);
    assert!(out.contains("2/2 boards ok"), "{out}");

    let status = cluster.status_json();
    let boards = status.as_array().expect("array");
    let by_name = |n: &str| {
        boards
            .iter()
            .find(|b| b["board"] == n)
            .unwrap_or_else(|| panic!("{n} missing: {status}"))
    };
    let pi = by_name("pi-a");
    assert_eq!(pi["up"], true, "{status}");
    assert_eq!(
        pi["health"]["arch"], "aarch64",
        "the agent answering is the aarch64 build"
    );
    assert_eq!(by_name("x86-a")["health"]["arch"], std::env::consts::ARCH);

    // The binaries on the boards' disks are the static agents for their architectures.
    let disk_bin = |b: &str| {
        cluster
            .state_dir()
            .join("virtual")
            .join(b)
            .join("disk/usr-local-bin/lab-agent")
    };
    assert_eq!(elf_machine(&disk_bin("pi-a")), EM_AARCH64);
    assert_eq!(elf_machine(&disk_bin("x86-a")), EM_X86_64);

    // `uname -m` over SSH on the arm64 board says aarch64.
    let addr = &cluster.boards[1].1;
    let ssh = cluster.ssh(addr, "uname -m");
    assert_eq!(
        String::from_utf8_lossy(&ssh.stdout).trim(),
        "aarch64",
        "{}",
        String::from_utf8_lossy(&ssh.stderr)
    );
}

#[test]
fn aarch64_agent_runs_under_qemu() {
    common::require_root();
    lab::host_setup::ensure(lab::host_setup::ARM64_BOARDS, &mut |l: &str| {
        eprintln!("{l}")
    })
    .expect("host packages for arm64 emulation");
    let agent = agent_bin::ensure_agent(TARGET_AARCH64).expect("aarch64 agent");
    let out = Command::new("qemu-aarch64-static")
        .arg(&agent)
        .arg("--version")
        .output()
        .expect("qemu-aarch64-static (apt-get install qemu-user-static)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.trim(),
        format!("lab-agent {} (aarch64)", env!("CARGO_PKG_VERSION"))
    );
}

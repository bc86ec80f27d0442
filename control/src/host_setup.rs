//! Make sure this host has the Debian packages a command needs, installing the missing ones
//! with apt-get and saying so. Checked by looking for each package's key binary, so a host
//! that has the tool from elsewhere is left alone.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// A package and the file that proves it is installed.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    pub package: &'static str,
    pub provides: &'static str,
    pub why: &'static str,
}

/// `ssh-keygen`, which makes the key `lab` logs in with on boards it creates.
pub const SSH_KEYGEN: Requirement = Requirement {
    package: "openssh-client",
    provides: "/usr/bin/ssh-keygen",
    why: "host and login keys",
};

/// A real sshd: every virtual board runs one (and the image test serves a prepared host key
/// with one).
pub const SSHD: Requirement = Requirement {
    package: "openssh-server",
    provides: "/usr/sbin/sshd",
    why: "every virtual board runs a real sshd",
};

/// What the virtual cluster needs on the host.
pub const VIRTUAL_CLUSTER: &[Requirement] = &[
    SSHD,
    SSH_KEYGEN,
    ETHTOOL,
    Requirement {
        package: "iproute2",
        provides: "/usr/sbin/ip",
        why: "network namespaces, veths and the lab bridge",
    },
    Requirement {
        package: "util-linux",
        provides: "/usr/bin/unshare",
        why: "PID, mount and UTS namespaces",
    },
    Requirement {
        package: "procps",
        provides: "/usr/bin/pgrep",
        why: "process inspection",
    },
];

/// What an emulated arm64 board needs on the host.
pub const ARM64_BOARDS: &[Requirement] = &[
    Requirement {
        package: "qemu-user-static",
        provides: "/usr/bin/qemu-aarch64-static",
        why: "runs the arm64 board's programs",
    },
    Requirement {
        package: "binfmt-support",
        provides: "/usr/sbin/update-binfmts",
        why: "registers qemu for arm64 binaries",
    },
    Requirement {
        package: "debootstrap",
        provides: "/usr/sbin/debootstrap",
        why: "builds the arm64 Debian root",
    },
];

/// Install whatever of `reqs` is missing. `say` receives one line per action.
pub fn ensure(reqs: &[Requirement], say: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    // One installer at a time in this process; apt-get itself waits for other processes.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&Requirement> = reqs
        .iter()
        .filter(|r| !Path::new(r.provides).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for r in &missing {
        say(&format!(
            "installing Debian package {} ({})",
            r.package, r.why
        ));
    }
    if !running_as_root() {
        let names: Vec<&str> = missing.iter().map(|r| r.package).collect();
        bail!(
            "missing packages: {}; run `sudo apt-get install -y {}` or run lab as root",
            names.join(", "),
            names.join(" ")
        );
    }
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300", "-y", "-q"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    let mut install = vec!["install", "--no-install-recommends"];
    install.extend(missing.iter().map(|r| r.package));
    if run(&install).is_err() {
        say("package lists may be stale: running apt-get update");
        run(&["update"])?;
        run(&install)?;
    }
    // Debian starts and enables a server package's service on install. lab runs its engines
    // itself, on the boards: the host's own copies (nginx on :80 of every interface, a
    // MariaDB, ...) would only be left running behind the user's back.
    if Path::new("/run/systemd/system").exists() {
        for service in missing.iter().filter_map(|r| host_service(r.package)) {
            let stopped = Command::new("systemctl")
                .args(["disable", "--now", "--quiet", service])
                .status();
            match stopped {
                Ok(s) if s.success() => say(&format!(
                    "stopped and disabled this host's own {service} service (lab runs its engines on the boards)"
                )),
                _ => say(&format!("could not stop this host's {service} service: `systemctl disable --now {service}`")),
            }
        }
    }
    Ok(())
}

/// The systemd service a package starts on install, for the packages lab installs only to
/// run their programs itself.
fn host_service(package: &str) -> Option<&'static str> {
    match package {
        "nginx-light" => Some("nginx"),
        "memcached" => Some("memcached"),
        "mariadb-server" => Some("mariadb"),
        "prometheus" => Some("prometheus"),
        _ => None,
    }
}

/// Whether this process runs with effective uid 0 (what the virtual cluster and apt need).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
        == Some(0)
}

/// The effective uid from `/proc/self/status` text (`Uid: real effective saved fs`).
pub fn effective_uid(proc_status: &str) -> Option<u32> {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
}

/// The role engines boards run (ARCHITECTURE.md, "Roles"), from the distribution.
pub const ENGINES: &[Requirement] = &[
    Requirement {
        package: "nginx-light",
        provides: "/usr/sbin/nginx",
        why: "the load balancer role",
    },
    Requirement {
        package: "memcached",
        provides: "/usr/bin/memcached",
        why: "the cache role",
    },
    Requirement {
        package: "mariadb-server",
        provides: "/usr/sbin/mariadbd",
        why: "the database roles",
    },
    Requirement {
        package: "keepalived",
        provides: "/usr/sbin/keepalived",
        why: "the lb boards' floating address (VRRP) when there are two or more",
    },
    Requirement {
        package: "mariadb-client",
        provides: "/usr/bin/mariadb",
        why: "the `mariadb` client (talk to a board's database by hand; the tests use it)",
    },
];

/// What `init = "systemd"` virtual boards need on the host: a root to boot, and the tool
/// that boots it in the board's namespaces.
pub const SYSTEMD_BOARDS: &[Requirement] = &[
    Requirement {
        package: "systemd-container",
        provides: "/usr/bin/systemd-nspawn",
        why: "boots the systemd boards (systemd-nspawn)",
    },
    Requirement {
        package: "debootstrap",
        provides: "/usr/sbin/debootstrap",
        why: "builds the systemd boards' Debian root once",
    },
];

/// ethtool: a shaped link (`lab link`, data centers) turns the offloads off on the
/// interfaces that feed its shaper, so it handles whole frames.
pub const ETHTOOL: Requirement = Requirement {
    package: "ethtool",
    provides: "/usr/sbin/ethtool",
    why: "shaped virtual links (lab link, data centers) need whole frames",
};

/// A font for the text of `lab report`'s PNG charts.
pub const FONTS: Requirement = Requirement {
    package: "fonts-dejavu-core",
    provides: "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    why: "the text in lab report's PNG charts",
};

/// mtools: `lab image prepare` writes into an image's FAT boot partition without mounting it.
pub const MTOOLS: Requirement = Requirement {
    package: "mtools",
    provides: "/usr/bin/mcopy",
    why: "writes first-boot files into an image's boot partition (lab image prepare)",
};

/// `mkfs.fat` and `fsck.fat`: the image test builds and checks a FAT32 boot partition.
pub const DOSFSTOOLS: Requirement = Requirement {
    package: "dosfstools",
    provides: "/usr/sbin/mkfs.fat",
    why: "makes and checks FAT boot partitions (lab image prepare's test)",
};

/// `xz`: the image test compresses a base image the way distributions ship them.
pub const XZ_UTILS: Requirement = Requirement {
    package: "xz-utils",
    provides: "/usr/bin/xz",
    why: "makes an .xz base image (lab image prepare's test)",
};

/// cloud-init's own schema check, which `lab image prepare` runs on the user-data it writes
/// where the program is installed (the image test makes sure it is).
pub const CLOUD_INIT: Requirement = Requirement {
    package: "cloud-init",
    provides: crate::image::cloud_init::CLOUD_INIT_PROGRAM,
    why: "checks the cloud-init user-data lab image prepare writes (`cloud-init schema`)",
};

/// netplan, which Ubuntu's cloud-init hands a v2 network-config to: the image test renders
/// the network-config lab image prepare writes with it (into a root of its own).
pub const NETPLAN: Requirement = Requirement {
    package: "netplan.io",
    provides: "/usr/sbin/netplan",
    why: "renders the network-config lab image prepare writes (lab image prepare's test)",
};

/// `mkfs.ext4` and `losetup`: the flash test makes a mounted card out of a loop device.
pub const E2FSPROGS: Requirement = Requirement {
    package: "e2fsprogs",
    provides: "/usr/sbin/mkfs.ext4",
    why: "makes a filesystem on a test card (lab flash's test)",
};

/// Prometheus' `promtool`, which checks the Prometheus exposition.
pub const PROMTOOL: Requirement = Requirement {
    package: "prometheus",
    provides: "/usr/bin/promtool",
    why: "checks the Prometheus exposition",
};

/// A real browser, to load the dashboard as a user does.
pub const CHROMIUM: Requirement = Requirement {
    package: "chromium",
    provides: "/usr/bin/chromium",
    why: "loads the dashboard in a real browser",
};

/// A real terminal multiplexer, to drive `lab top` as a user does.
pub const TMUX: Requirement = Requirement {
    package: "tmux",
    provides: "/usr/bin/tmux",
    why: "runs `lab top` in a real terminal",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_field() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name: x\n"), None);
    }
}

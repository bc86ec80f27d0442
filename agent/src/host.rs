//! Facts about the board the agent runs on: hostname, OS, kernel, architecture and how long
//! the board has been up.
//!
//! On a virtual board the agent runs in the board's own PID and UTS namespaces, so PID 1 is
//! the board's init and the hostname is the board's: the same code reports the board, not
//! the host, without knowing it is virtual.

use std::time::{Duration, Instant};

use crate::procfs;

/// What the agent reports about its board that does not change while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// Kernel hostname (`uname -n`).
    pub hostname: String,
    /// `PRETTY_NAME` from `/etc/os-release`, or "unknown".
    pub os: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Architecture this binary was built for.
    pub arch: &'static str,
    /// SHA-256 (hex) of the executable this process runs, read once at start: lets `lab`
    /// tell a running agent from a newer binary installed after it started.
    pub binary_sha256: String,
}

impl HostFacts {
    /// Reads the facts; anything unreadable becomes "unknown" (a health answer with a gap is
    /// more useful than no answer).
    pub fn read() -> Self {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
            .unwrap_or_else(unknown);
        let os = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .ok()
            .and_then(|text| procfs::os_pretty_name(&text))
            .unwrap_or_else(unknown);
        let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(unknown);
        HostFacts {
            hostname,
            os,
            kernel,
            arch: std::env::consts::ARCH,
            binary_sha256: own_binary_sha256().unwrap_or_else(unknown),
        }
    }
}

/// Hash of `/proc/self/exe`: the file this process was started from, even if it has since
/// been replaced on disk.
fn own_binary_sha256() -> Option<String> {
    let bytes = std::fs::read("/proc/self/exe").ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

fn unknown() -> String {
    "unknown".to_string()
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The board's uptime, measured once and then advanced with the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    age_at_start: Duration,
    measured_at: Instant,
}

impl BootClock {
    /// Measures the board's age now: the age of PID 1 as this process sees it (the board's
    /// init on a virtual board), else the kernel's uptime, else zero.
    pub fn measure() -> Self {
        let age = init_age_secs()
            .or_else(|| read_trimmed("/proc/uptime").and_then(|t| procfs::uptime_secs(&t)))
            .unwrap_or(0.0);
        BootClock {
            age_at_start: Duration::try_from_secs_f64(age).unwrap_or_default(),
            measured_at: Instant::now(),
        }
    }

    /// Whole seconds since the board booted.
    pub fn uptime_secs(&self) -> u64 {
        (self.age_at_start + self.measured_at.elapsed()).as_secs()
    }
}

fn init_age_secs() -> Option<f64> {
    let stat = procfs::parse_stat(&std::fs::read_to_string("/proc/1/stat").ok()?)?;
    let uptime = procfs::uptime_secs(&std::fs::read_to_string("/proc/uptime").ok()?)?;
    Some(procfs::process_age_secs(
        uptime,
        stat.starttime_ticks,
        clock_ticks_per_sec(),
    ))
}

/// `sysconf(_SC_CLK_TCK)`; 100 (the Linux `USER_HZ` on every architecture we build for) if
/// it cannot be read.
pub fn clock_ticks_per_sec() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_filled() {
        let facts = HostFacts::read();
        assert!(!facts.hostname.is_empty());
        assert!(!facts.os.is_empty());
        assert!(!facts.kernel.is_empty());
        assert_eq!(facts.arch, std::env::consts::ARCH);
    }

    #[test]
    fn boot_clock_advances_from_measurement() {
        let clock = BootClock {
            age_at_start: Duration::from_secs(100),
            measured_at: Instant::now(),
        };
        assert!(clock.uptime_secs() >= 100);
    }
}

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
            .or_else(|| read_trimmed("/proc/sys/kernel/hostname"));
        let os_release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .ok();
        let kernel = read_trimmed("/proc/sys/kernel/osrelease");
        Self::from_sources(hostname, os_release.as_deref(), kernel, own_binary_sha256())
    }

    /// The facts from what was read; anything missing becomes "unknown".
    fn from_sources(
        hostname: Option<String>,
        os_release: Option<&str>,
        kernel: Option<String>,
        binary_sha256: Option<String>,
    ) -> Self {
        let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_string());
        HostFacts {
            hostname: hostname.and_then(non_empty).unwrap_or_else(unknown),
            os: os_release
                .and_then(procfs::os_pretty_name)
                .unwrap_or_else(unknown),
            kernel: kernel.and_then(non_empty).unwrap_or_else(unknown),
            arch: std::env::consts::ARCH,
            binary_sha256: binary_sha256.unwrap_or_else(unknown),
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
    fn facts_come_from_their_sources() {
        let os_release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        let facts = HostFacts::from_sources(
            Some("pi-3\n".into()),
            Some(os_release),
            Some("6.1.0-rpi7-rpi-v8".into()),
            Some("ab12".into()),
        );
        assert_eq!(facts.hostname, "pi-3");
        assert_eq!(facts.os, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(facts.kernel, "6.1.0-rpi7-rpi-v8");
        assert_eq!(facts.binary_sha256, "ab12");
    }

    #[test]
    fn missing_facts_read_unknown() {
        let facts = HostFacts::from_sources(Some("  ".into()), Some("ID=debian\n"), None, None);
        assert_eq!(facts.hostname, "unknown");
        assert_eq!(facts.os, "unknown");
        assert_eq!(facts.kernel, "unknown");
        assert_eq!(facts.binary_sha256, "unknown");
    }

    #[test]
    fn own_binary_hash_is_the_executable_on_disk() {
        // Independent of the code under test: hash the test binary's own file with ring here.
        let exe = std::env::current_exe().expect("current_exe");
        let bytes = std::fs::read(exe).expect("read own executable");
        let expected = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let hex: String = expected
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(own_binary_sha256().as_deref(), Some(hex.as_str()));
        assert_eq!(hex.len(), 64);
    }

    #[test]
    fn boot_clock_adds_the_time_since_it_was_measured() {
        let five_seconds_ago = Instant::now()
            .checked_sub(Duration::from_secs(5))
            .expect("the monotonic clock started more than 5 s ago");
        let clock = BootClock {
            age_at_start: Duration::from_secs(100),
            measured_at: five_seconds_ago,
        };
        assert_eq!(clock.uptime_secs(), 105);
    }
}

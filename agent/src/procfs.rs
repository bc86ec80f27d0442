//! Pure parsers for the few `/proc` and `/etc` files the agent reads.
//!
//! Nothing here touches the filesystem: callers read the text and these functions interpret
//! it, so each one is unit tested on text captured from real machines.

/// `PRETTY_NAME` from an `os-release` file, unquoted; `None` when absent or empty.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.trim().strip_prefix("PRETTY_NAME=")?;
        let value = unquote(value.trim());
        (!value.is_empty()).then_some(value)
    })
}

/// Removes shell-style quotes from an `os-release` value (`"Debian GNU/Linux 12"`).
fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    let quoted = bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0];
    if !quoted {
        return value.to_string();
    }
    let inner = &value[1..value.len() - 1];
    if bytes[0] == b'\'' {
        return inner.to_string();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Seconds since boot: the first field of `/proc/uptime` (`"12345.67 4567.89"`).
pub fn uptime_secs(proc_uptime: &str) -> Option<f64> {
    let secs: f64 = proc_uptime.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

/// The fields of `/proc/<pid>/stat` the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), ...
    pub state: char,
    /// Field 4: parent pid.
    pub ppid: i32,
    /// Field 5: process group id (an engine and every process it forks share one).
    pub pgrp: i32,
    /// Field 22: start time after boot, in clock ticks.
    pub starttime_ticks: u64,
}

impl ProcStat {
    /// Running in any sense: not a zombie (`Z`) or dead (`X`), which have exited and hold
    /// nothing but their parent's bookkeeping.
    pub fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 of the man page, so field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let starttime_ticks = fields.get(19)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        starttime_ticks,
    })
}

/// Age in seconds of a process that started `starttime_ticks` after boot, given the current
/// uptime; never negative.
pub fn process_age_secs(uptime_secs: f64, starttime_ticks: u64, ticks_per_sec: u64) -> f64 {
    if ticks_per_sec == 0 {
        return uptime_secs;
    }
    let started = starttime_ticks as f64 / ticks_per_sec as f64;
    (uptime_secs - started).max(0.0)
}

/// Whether `/proc/<pid>/cmdline` (NUL-separated) is `.../lab-agent supervise ...`: the
/// detached supervisor, and not some other process that got its pid after it died.
pub fn is_supervisor_cmdline(cmdline: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0);
    let Some(argv0) = args.next() else {
        return false;
    };
    let name = argv0.rsplit(|b| *b == b'/').next().unwrap_or(argv0);
    name == lab_api::SERVICE_NAME.as_bytes() && args.next() == Some(b"supervise".as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the supervisor's group sweep and the engine stop count as a group member.
    #[test]
    fn reads_the_group_of_live_processes_only() {
        let tail = "0 -1 4194560 99 0 0 0 1 2 0 0 20 0 1 0 5000 1000 100";
        let live = parse_stat(&format!("1234 (lab-agent serve) S 1 1200 1200 {tail}"));
        assert_eq!(live.filter(ProcStat::is_live).map(|s| s.pgrp), Some(1200));
        let zombie = parse_stat(&format!("1234 (a) b)) Z 1 1200 1200 {tail}"));
        assert_eq!(zombie.map(|s| s.pgrp), Some(1200));
        assert_eq!(zombie.filter(ProcStat::is_live), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    const DEBIAN_OS_RELEASE: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;

    const RASPIOS_OS_RELEASE: &str = "ID=debian\nPRETTY_NAME='Raspbian GNU/Linux 11 (bullseye)'\n";

    #[test]
    fn pretty_name_is_unquoted() {
        assert_eq!(
            os_pretty_name(DEBIAN_OS_RELEASE).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            os_pretty_name(RASPIOS_OS_RELEASE).as_deref(),
            Some("Raspbian GNU/Linux 11 (bullseye)")
        );
        assert_eq!(
            os_pretty_name("PRETTY_NAME=Alpine\n").as_deref(),
            Some("Alpine")
        );
        assert_eq!(
            os_pretty_name(r#"PRETTY_NAME="say \"hi\"""#).as_deref(),
            Some(r#"say "hi""#)
        );
    }

    #[test]
    fn pretty_name_missing_or_empty() {
        assert_eq!(os_pretty_name("ID=debian\n"), None);
        assert_eq!(os_pretty_name("PRETTY_NAME=\"\"\n"), None);
        assert_eq!(os_pretty_name(""), None);
    }

    #[test]
    fn uptime_first_field() {
        assert_eq!(uptime_secs("350735.47 234388.90\n"), Some(350735.47));
        assert_eq!(uptime_secs(""), None);
        assert_eq!(uptime_secs("abc 1"), None);
        assert_eq!(uptime_secs("-1 1"), None);
    }

    // Captured from `cat /proc/1/stat` on a Raspberry Pi 4 (systemd as init).
    const PI_INIT_STAT: &str = "1 (systemd) S 0 1 1 0 -1 4194560 41396 2291532 110 1240 \
        301 455 4563 2103 20 0 1 0 5 34873344 2661 18446744073709551615 1 1 0 0 0 0 \
        671173123 4096 1260 0 0 0 17 3 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    // A process whose name contains spaces and a parenthesis, started 123456 ticks after boot.
    const ODD_NAME_STAT: &str = "4242 (we ird) name) Z 17 4242 4242 0 -1 4194304 0 0 0 0 \
        0 0 0 0 20 0 1 0 123456 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields() {
        assert_eq!(
            parse_stat(PI_INIT_STAT),
            Some(ProcStat {
                state: 'S',
                ppid: 0,
                pgrp: 1,
                starttime_ticks: 5
            })
        );
        assert_eq!(
            parse_stat(ODD_NAME_STAT),
            Some(ProcStat {
                state: 'Z',
                ppid: 17,
                pgrp: 4242,
                starttime_ticks: 123456
            })
        );
    }

    #[test]
    fn stat_truncated() {
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn age_of_pid_one() {
        // Host up 1000 s; the board's init started 400 s after boot: the board is 600 s old.
        assert_eq!(process_age_secs(1000.0, 40_000, 100), 600.0);
        // Clock skew never yields a negative age.
        assert_eq!(process_age_secs(1.0, 500, 100), 0.0);
        assert_eq!(process_age_secs(7.5, 10, 0), 7.5);
    }

    #[test]
    fn supervisor_cmdline() {
        assert!(is_supervisor_cmdline(
            b"/usr/local/bin/lab-agent\0supervise\0--config\0/etc/lab/agent.toml\0"
        ));
        assert!(is_supervisor_cmdline(b"lab-agent\0supervise\0"));
        assert!(!is_supervisor_cmdline(
            b"/usr/local/bin/lab-agent\0serve\0--config\0x\0"
        ));
        assert!(!is_supervisor_cmdline(b"/usr/bin/bash\0supervise\0"));
        assert!(!is_supervisor_cmdline(
            b"/usr/bin/not-lab-agent\0supervise\0"
        ));
        // A zombie's cmdline is empty.
        assert!(!is_supervisor_cmdline(b""));
    }
}

//! Logging setup: journald when systemd runs the agent, otherwise one line per record on
//! stderr (`2026-01-31T12:00:00.123Z INFO message`), which the detached supervisor appends
//! to `/var/log/lab/agent.log`.
//!
//! The level comes from [`LEVEL_ENV`] (`error`, `warn`, `info`, `debug`, `trace`, `off`);
//! the default is `info`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// Environment variable holding the log level.
pub const LEVEL_ENV: &str = "LAB_AGENT_LOG";

/// Installs the logger. Never fails: if journald cannot be reached, logs go to stderr.
pub fn init() {
    let (level, bad_level) = match std::env::var(LEVEL_ENV) {
        Ok(text) => match parse_level(&text) {
            Some(level) => (level, None),
            None => (LevelFilter::Info, Some(text)),
        },
        Err(_) => (LevelFilter::Info, None),
    };
    log::set_max_level(level);

    let mut journal_error = None;
    // `connected_to_journal` checks JOURNAL_STREAM against our actual stderr, so a process
    // that merely inherited the variable (stderr redirected to a file) logs to that file.
    let installed_journal = systemd_journal_logger::connected_to_journal()
        && match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => journal
                .with_syslog_identifier(lab_api::SERVICE_NAME.to_string())
                .install()
                .is_ok(),
            Err(err) => {
                journal_error = Some(err);
                false
            }
        };
    if !installed_journal {
        // Fails only if a logger is already installed, in which case that one stays.
        let _ = log::set_boxed_logger(Box::new(StderrLogger { level }));
    }
    if let Some(err) = journal_error {
        log::warn!("cannot log to journald ({err}); logging to stderr");
    }
    if let Some(text) = bad_level {
        log::warn!("{LEVEL_ENV}={text:?} is not a log level (error, warn, info, debug, trace, off); using info");
    }
}

/// Parses a level name, case-insensitively.
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    text.trim().parse().ok()
}

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(
            SystemTime::now(),
            std::process::id(),
            record.level(),
            record.target(),
            record.args(),
        );
        // One write per line, so lines from the supervisor and its child do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// One log line: time, level, pid (the supervisor and its server share a log file) and the
/// message; records from other crates (rustls) are prefixed with their module path.
pub fn format_line(
    time: SystemTime,
    pid: u32,
    level: log::Level,
    target: &str,
    message: &std::fmt::Arguments<'_>,
) -> String {
    let timestamp = format_timestamp(time);
    if target.starts_with(env!("CARGO_CRATE_NAME")) {
        format!("{timestamp} {level:<5} [{pid}] {message}\n")
    } else {
        format!("{timestamp} {level:<5} [{pid}] {target}: {message}\n")
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn format_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    lab_api::time::rfc3339_utc_ms(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(951_782_400_000 + 3_723_456);
        assert_eq!(format_timestamp(leap_day), "2000-02-29T01:02:03.456Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(format_timestamp(later), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn lines() {
        let line = format_line(
            UNIX_EPOCH,
            42,
            log::Level::Info,
            "lab_agent::server",
            &format_args!("hello {}", 1),
        );
        assert_eq!(line, "1970-01-01T00:00:00.000Z INFO  [42] hello 1\n");
        let line = format_line(
            UNIX_EPOCH,
            42,
            log::Level::Debug,
            "rustls::server::hs",
            &format_args!("suite"),
        );
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z DEBUG [42] rustls::server::hs: suite\n"
        );
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level(" WARN "), Some(LevelFilter::Warn));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("loud"), None);
    }
}

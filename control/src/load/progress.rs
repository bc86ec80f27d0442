//! The live line `lab load` shows once a second while it runs (on stderr): rate, errors,
//! p50/p99 over that second, requests in flight. On a terminal the line is redrawn in place;
//! elsewhere (a pipe, CI) each second is a plain line of its own.

use std::io::Write;

use super::timeline::Row;

pub struct Progress {
    terminal: bool,
    /// A line is on screen without its newline yet.
    open_line: bool,
}

impl Progress {
    pub fn new(terminal: bool) -> Self {
        Progress {
            terminal,
            open_line: false,
        }
    }

    /// Show second `row` of the run with `in_flight` requests outstanding now.
    pub fn second(&mut self, row: &Row, in_flight: u64) {
        let text = line(row, in_flight);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{text}");
            self.open_line = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    /// A message of its own, below the live line.
    pub fn say(&mut self, text: &str) {
        self.end_line();
        eprintln!("{text}");
    }

    /// Leave the live line as it is and go to the next.
    pub fn end_line(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }
}

/// Whether `text` is [`line`]'s for the run's first second: the measured run has begun
/// (what `lab exercise check` times a drill's actions from, reading `lab load`'s stderr).
pub fn is_first_second(text: &str) -> bool {
    text.trim_start().starts_with("1s ")
}

/// One second in words.
pub fn line(row: &Row, in_flight: u64) -> String {
    let mut text = format!(
        "{:>4}s  {:>8.0} req/s  ok {:<7} errors {:<5} p50 {:>8.3} ms  p99 {:>8.3} ms  in flight {}",
        row.t, row.rate, row.ok, row.errors, row.p50_ms, row.p99_ms, in_flight
    );
    let cached = row.hits + row.misses;
    if cached > 0 {
        text.push_str(&format!(
            "  cache hits {:.0}%",
            100.0 * row.hits as f64 / cached as f64
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::timeline::Window;

    #[test]
    fn a_second_reads_as_one_line() {
        let mut w = Window {
            sent: 200,
            ok: 199,
            errors: 1,
            hits: 3,
            misses: 1,
            ..Window::default()
        };
        w.latency.record(1500);
        let text = line(&w.take_row(7, 1.0), 4);
        assert!(text.starts_with("   7s"), "{text}");
        for part in [
            "200 req/s",
            "ok 199",
            "errors 1",
            "p50    1.500 ms",
            "in flight 4",
            "cache hits 75%",
        ] {
            assert!(text.contains(part), "`{part}` missing from `{text}`");
        }
        assert!(!text.contains('\n'));
    }

    #[test]
    fn the_first_seconds_line_is_told_apart() {
        let row = |t| Row {
            t,
            ..Row::default()
        };
        assert!(is_first_second(&line(&row(1), 0)));
        for t in [2, 11, 21, 100] {
            assert!(!is_first_second(&line(&row(t), 0)), "{t}");
        }
    }
}

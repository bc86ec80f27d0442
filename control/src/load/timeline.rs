//! The run second by second: one [`Row`] per second of the measured run, written as CSV (for
//! a spreadsheet or gnuplot) and JSON. Requests are counted in the second they were sent
//! (`sent`) or answered (everything else); answers still coming after the end are counted
//! in the last second.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Seconds since the start at the end of this second (1, 2, ...).
    pub t: u64,
    /// Requests started.
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Failed: no answer, or a status other than 2xx.
    pub errors: u64,
    /// Requests completed per second (ok + errors over this second's length).
    pub rate: f64,
    /// Latency of the requests completed, from when each was due (milliseconds).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// `X-Cache: HIT` / `MISS` answers.
    pub hits: u64,
    pub misses: u64,
}

/// What one second accumulates before it becomes a [`Row`].
#[derive(Debug, Default)]
pub struct Window {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub latency: Histogram,
    pub hits: u64,
    pub misses: u64,
}

impl Window {
    /// The row for second `t` (1-based) lasting `length_secs` (1, or less for the last second
    /// of a run whose duration is not whole); empties the window.
    pub fn take_row(&mut self, t: u64, length_secs: f64) -> Row {
        let done = self.ok + self.errors;
        let row = Row {
            t,
            sent: self.sent,
            ok: self.ok,
            errors: self.errors,
            rate: if length_secs > 0.0 {
                done as f64 / length_secs
            } else {
                0.0
            },
            p50_ms: micros_to_ms(self.latency.percentile(50.0)),
            p99_ms: micros_to_ms(self.latency.percentile(99.0)),
            max_ms: micros_to_ms(self.latency.max()),
            hits: self.hits,
            misses: self.misses,
        };
        self.sent = 0;
        self.ok = 0;
        self.errors = 0;
        self.hits = 0;
        self.misses = 0;
        self.latency.clear();
        row
    }
}

pub fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The CSV header line's fields, in [`Row`] order.
pub const CSV_HEADER: &str = "t,sent,ok,errors,rate,p50_ms,p99_ms,max_ms,hits,misses";

/// The rows as CSV with a header line.
pub fn to_csv(rows: &[Row]) -> String {
    let mut out = String::with_capacity(64 * (rows.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.1},{:.3},{:.3},{:.3},{},{}",
            r.t, r.sent, r.ok, r.errors, r.rate, r.p50_ms, r.p99_ms, r.max_ms, r.hits, r.misses
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_becomes_a_row_and_starts_again_empty() {
        let mut w = Window {
            sent: 200,
            ok: 198,
            errors: 2,
            hits: 150,
            misses: 48,
            ..Window::default()
        };
        for v in 1..=200u64 {
            w.latency.record(v * 10); // 10 µs .. 2 ms
        }
        let row = w.take_row(1, 1.0);
        assert_eq!((row.t, row.sent, row.ok, row.errors), (1, 200, 198, 2));
        assert!((row.rate - 200.0).abs() < 1e-9);
        assert!((row.p50_ms - 1.0).abs() < 0.01, "{}", row.p50_ms);
        assert!((row.p99_ms - 1.98).abs() < 0.02, "{}", row.p99_ms);
        assert!((row.max_ms - 2.0).abs() < 1e-9);
        let empty = w.take_row(2, 1.0);
        assert_eq!((empty.sent, empty.ok, empty.hits), (0, 0, 0));
        assert_eq!(empty.p99_ms, 0.0);
    }

    #[test]
    fn a_short_last_second_reports_its_rate_per_second() {
        let mut w = Window {
            ok: 50,
            ..Window::default()
        };
        let row = w.take_row(3, 0.5);
        assert!((row.rate - 100.0).abs() < 1e-9);
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let rows = vec![
            Window {
                sent: 3,
                ok: 3,
                ..Window::default()
            }
            .take_row(1, 1.0),
            Window::default().take_row(2, 1.0),
        ];
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "1,3,3,0,3.0,0.000,0.000,0.000,0,0");
        assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
        let json = serde_json::to_string(&rows).expect("json");
        let back: Vec<Row> = serde_json::from_str(&json).expect("parse back");
        assert_eq!(back, rows);
    }
}

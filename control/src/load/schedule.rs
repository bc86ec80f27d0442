//! The open loop's timetable and its honesty: request `k` of a run at `R` requests/s is due
//! `k / R` seconds after the start, whatever happened to the requests before it. Workers take
//! the next ticket in order, wait for its time, send; a ticket whose time has passed is sent at
//! once and its latency still counts from the time it was due (no coordinated omission).
//!
//! When every connection is busy or the generator itself is too slow, tickets start late or
//! not at all before the end: [`Punctuality`] counts both and [`Punctuality::shortfall`] says
//! whether the run delivered what was asked. Pure, apart from the shared ticket counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// A request that starts more than this after its time counts as late. Well above timer
/// slack (1 ms), well below anything a person would call "on time" at these rates.
pub const LATE_AFTER: Duration = Duration::from_millis(25);

/// Part of the scheduled requests that may be late or never started before the run is
/// reported as a shortfall.
pub const TOLERATED_FRACTION: f64 = 0.01;

/// A ticket: the `index`-th request of the run, due `due` after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub index: u64,
    pub due: Duration,
}

/// The timetable of an open-loop run: `rate` requests/s for `duration`.
#[derive(Debug)]
pub struct Schedule {
    rate: f64,
    total: u64,
    next: AtomicU64,
}

impl Schedule {
    /// `rate` must be positive and finite (the command line checks).
    pub fn new(rate: f64, duration: Duration) -> Self {
        Schedule {
            rate,
            total: due_within(rate, duration),
            next: AtomicU64::new(0),
        }
    }

    /// Requests the whole run asks for.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When request `index` is due, after the start.
    pub fn due(&self, index: u64) -> Duration {
        Duration::from_secs_f64(index as f64 / self.rate)
    }

    /// The next ticket in order, or `None` once the timetable is used up.
    pub fn take(&self) -> Option<Ticket> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.total).then(|| Ticket {
            index,
            due: self.due(index),
        })
    }

    /// Requests due before `elapsed` (all of them once the run is over): what was asked of a
    /// run cut short.
    pub fn due_before(&self, elapsed: Duration) -> u64 {
        due_within(self.rate, elapsed).min(self.total)
    }
}

/// Number of `k >= 0` with `k / rate < duration`.
fn due_within(rate: f64, duration: Duration) -> u64 {
    let exact = rate * duration.as_secs_f64();
    // Guard against 599.9999999 for 200/s over 3 s.
    let rounded = exact.round();
    if (exact - rounded).abs() < 1e-6 {
        rounded as u64
    } else {
        exact.ceil() as u64
    }
}

/// How punctual an open-loop run was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Punctuality {
    /// Requests due during the run.
    pub scheduled: u64,
    /// Requests started (on time or not).
    pub started: u64,
    /// Started more than [`LATE_AFTER`] after their time.
    pub late: u64,
    /// Of the late ones, those taken up while every other connection was busy: the
    /// concurrency limit (or a slow target), not the generator, held them back.
    pub late_at_limit: u64,
}

/// What a run that did not deliver what was asked is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shortfall {
    pub scheduled: u64,
    pub started: u64,
    pub not_started: u64,
    pub late: u64,
    /// Late + not started, as a part of scheduled.
    pub fraction: f64,
    /// Why, in a few words: "concurrency limit" or "generator too slow".
    pub cause: &'static str,
}

impl Punctuality {
    pub fn not_started(&self) -> u64 {
        self.scheduled.saturating_sub(self.started)
    }

    /// Requests that did not start on time: late ones and those never started.
    pub fn behind(&self) -> u64 {
        self.late + self.not_started()
    }

    /// `Some` when more than [`TOLERATED_FRACTION`] of the scheduled requests were late or
    /// never started.
    pub fn shortfall(&self) -> Option<Shortfall> {
        if self.scheduled == 0 {
            return None;
        }
        let fraction = self.behind() as f64 / self.scheduled as f64;
        if fraction <= TOLERATED_FRACTION {
            return None;
        }
        // Never-started requests pile up behind busy connections; late ones taken up while
        // others were idle point at the generator.
        let at_limit = self.late_at_limit + self.not_started();
        let cause = if at_limit * 2 >= self.behind() {
            "concurrency limit"
        } else {
            "generator too slow"
        };
        Some(Shortfall {
            scheduled: self.scheduled,
            started: self.started,
            not_started: self.not_started(),
            late: self.late,
            fraction,
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_evenly_spaced_and_end_with_the_duration() {
        let s = Schedule::new(200.0, Duration::from_secs(3));
        assert_eq!(s.total(), 600);
        let first = s.take().expect("first");
        assert_eq!(
            first,
            Ticket {
                index: 0,
                due: Duration::ZERO
            }
        );
        let second = s.take().expect("second");
        assert_eq!(second.due, Duration::from_millis(5));
        let mut last = second;
        while let Some(t) = s.take() {
            assert!(t.due > last.due);
            last = t;
        }
        assert_eq!(last.index, 599);
        assert!(last.due < Duration::from_secs(3));
        assert!(s.take().is_none(), "stays used up");
    }

    #[test]
    fn fractional_rates_and_durations_round_up_to_whole_requests() {
        assert_eq!(Schedule::new(0.5, Duration::from_secs(3)).total(), 2); // t = 0, 2
        assert_eq!(Schedule::new(3.0, Duration::from_millis(1500)).total(), 5); // 0 .. 1.33
        assert_eq!(
            Schedule::new(1e6, Duration::from_secs(2)).total(),
            2_000_000
        );
        let s = Schedule::new(100.0, Duration::from_secs(10));
        assert_eq!(s.due_before(Duration::from_secs(2)), 200);
        assert_eq!(s.due_before(Duration::from_secs(60)), 1000);
    }

    #[test]
    fn on_time_runs_have_no_shortfall() {
        let p = Punctuality {
            scheduled: 1000,
            started: 1000,
            late: 10, // 1%: tolerated
            late_at_limit: 0,
        };
        assert_eq!(p.shortfall(), None);
        assert_eq!(Punctuality::default().shortfall(), None);
    }

    #[test]
    fn a_run_held_back_by_busy_connections_reports_a_shortfall() {
        let p = Punctuality {
            scheduled: 2_000_000,
            started: 40,
            late: 39,
            late_at_limit: 39,
        };
        let s = p.shortfall().expect("shortfall");
        assert_eq!(s.not_started, 1_999_960);
        assert_eq!(s.cause, "concurrency limit");
        assert!(s.fraction > 0.99);
    }

    #[test]
    fn late_starts_with_idle_connections_blame_the_generator() {
        let p = Punctuality {
            scheduled: 1000,
            started: 1000,
            late: 200,
            late_at_limit: 10,
        };
        let s = p.shortfall().expect("shortfall");
        assert_eq!(s.cause, "generator too slow");
        assert_eq!(s.not_started, 0);
        assert!((s.fraction - 0.2).abs() < 1e-9);
    }
}

//! Exponential backoff, the one copy both binaries use: the agent between restarts of a
//! supervised process, the control plane between reconnects to an agent's stream.
//!
//! The first wait is `min`, each following one twice as long up to `max`; [`Backoff::reset`]
//! (after a success) or [`Backoff::delay_after`] (after a run long enough to count as
//! healthy) starts the sequence over.

use std::time::Duration;

/// A delay sequence: `min`, doubling, capped at `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt; the one after is twice as long (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Start over at `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The wait before restarting a process that ran for `ran_for`: a run of at least
    /// `healthy_after` counts as a success and starts the sequence over first.
    pub fn delay_after(&mut self, ran_for: Duration, healthy_after: Duration) -> Duration {
        if ran_for >= healthy_after {
            self.reset();
        }
        self.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(ms(100), ms(2000));
        let waits: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), ms(100));
    }

    #[test]
    fn a_long_run_starts_over() {
        let (one, thirty) = (Duration::from_secs(1), Duration::from_secs(30));
        let mut b = Backoff::new(one, Duration::from_secs(10));
        for _ in 0..5 {
            b.delay_after(one, thirty);
        }
        assert_eq!(
            b.delay_after(Duration::from_secs(29), thirty),
            Duration::from_secs(10)
        );
        assert_eq!(b.delay_after(thirty, thirty), one);
        assert_eq!(
            b.delay_after(Duration::from_secs(2), thirty),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_cap_below_the_start_is_the_start() {
        let mut b = Backoff::new(ms(500), ms(100));
        assert_eq!(b.next_delay(), ms(500));
        assert_eq!(b.next_delay(), ms(500));
    }
}

//! Restart delays for a supervised process.
//!
//! The first restart waits [`Backoff::INITIAL`], each following one twice as long up to
//! [`Backoff::MAX`]; a run that lasted at least [`Backoff::RESET_AFTER`] counts as healthy
//! and starts the sequence over.

use std::time::Duration;

/// Delay sequence for restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// First delay.
    pub const INITIAL: Duration = Duration::from_secs(1);
    /// Longest delay.
    pub const MAX: Duration = Duration::from_secs(10);
    /// A run at least this long resets the sequence.
    pub const RESET_AFTER: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff {
            next: Self::INITIAL,
        }
    }

    /// How long to wait before restarting a process that ran for `ran_for`.
    pub fn delay_after(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= Self::RESET_AFTER {
            self.next = Self::INITIAL;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.delay_after(secs(0)).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10, 10]);
    }

    #[test]
    fn a_long_run_resets() {
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.delay_after(secs(1));
        }
        assert_eq!(backoff.delay_after(secs(29)), secs(10));
        assert_eq!(backoff.delay_after(secs(30)), secs(1));
        assert_eq!(backoff.delay_after(secs(2)), secs(2));
    }
}

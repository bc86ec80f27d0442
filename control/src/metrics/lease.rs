//! Liveness as a lease: every sample renews a board's lease for [`HEARTBEAT_TTL`]; a board
//! whose lease ran out is down. Pure state over `Instant`s, so it is tested without waiting.

use std::time::{Duration, Instant};

/// How long one sample keeps a board up (agents send one per second).
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(3);

/// What a renewal or a check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// First sample ever, or first after the lease had run out.
    Up,
    /// The lease ran out.
    Down,
}

#[derive(Debug, Clone)]
pub struct Lease {
    ttl: Duration,
    expires: Option<Instant>,
    /// The state last reported (so each change is reported once).
    up: bool,
}

impl Lease {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            expires: None,
            up: false,
        }
    }

    /// A sample arrived at `now`.
    pub fn renew(&mut self, now: Instant) -> Transition {
        self.expires = Some(now + self.ttl);
        if self.up {
            Transition::None
        } else {
            self.up = true;
            Transition::Up
        }
    }

    /// Check the lease at `now`; reports `Down` once when it has run out.
    pub fn check(&mut self, now: Instant) -> Transition {
        match self.expires {
            Some(t) if self.up && now >= t => {
                self.up = false;
                Transition::Down
            }
            _ => Transition::None,
        }
    }

    /// Whether the board counts as up (as of the last renew/check).
    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_on_first_sample_down_once_after_ttl_up_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Lease::new(HEARTBEAT_TTL);
        assert!(!l.is_up());
        assert_eq!(
            l.check(t0),
            Transition::None,
            "never seen: not a transition"
        );
        assert_eq!(l.renew(t0), Transition::Up);
        assert_eq!(l.renew(t0 + s), Transition::None);
        assert_eq!(l.check(t0 + 3 * s), Transition::None, "renewed at t0+1s");
        assert_eq!(l.check(t0 + 4 * s), Transition::Down);
        assert_eq!(l.check(t0 + 5 * s), Transition::None, "reported once");
        assert!(!l.is_up());
        assert_eq!(l.renew(t0 + 6 * s), Transition::Up);
        assert!(l.is_up());
    }
}

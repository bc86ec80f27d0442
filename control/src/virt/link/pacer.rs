//! When each frame may leave a shaped link ([`Pacer`]): pure arithmetic over a
//! [`LinkProfile`], so the shaper's timing is tested without a network.
//!
//! A frame is dropped with the profile's loss rate; otherwise it is serialised at the rate (a
//! frame starts when the one before it has finished, as on a wire), then delayed by the delay
//! plus a uniform jitter. Frames never overtake each other (a jittered frame that would
//! leave before its predecessor leaves with it), which keeps TCP free of spurious reordering.
//! A frame that would wait longer than [`MAX_QUEUE_WAIT`] for the wire is dropped (a full
//! queue, as tbf's `latency`).

use std::time::{Duration, Instant};

use super::profile::LinkProfile;

/// Longest a frame waits for its turn on a rate-limited wire before it is dropped.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(200);

/// A small deterministic generator (xorshift64*): enough for loss and jitter draws.
#[derive(Debug, Clone)]
pub struct Draws(u64);

impl Draws {
    /// A generator from `seed` (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One direction of a shaped link.
#[derive(Debug, Clone)]
pub struct Pacer {
    profile: LinkProfile,
    draws: Draws,
    /// When the wire is free again (rate-limited links).
    wire_free: Option<Instant>,
    /// When the last admitted frame leaves.
    last_due: Option<Instant>,
}

impl Pacer {
    /// A pacer for `profile`, drawing loss and jitter from `seed`.
    pub fn new(profile: LinkProfile, seed: u64) -> Self {
        Self {
            profile,
            draws: Draws::new(seed),
            wire_free: None,
            last_due: None,
        }
    }

    /// When a frame of `len` bytes arriving at `now` leaves, or `None` when it is dropped.
    pub fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let profile = self.profile;
        if profile.loss_ppm > 0 && self.draws.unit() < profile.loss() {
            return None;
        }
        let start = self.wire_free.map_or(now, |free| free.max(now));
        if start.duration_since(now) > MAX_QUEUE_WAIT {
            return None;
        }
        let on_wire = profile.rate_bps.map_or(Duration::ZERO, |bps| {
            Duration::from_secs_f64((len as f64 * 8.0) / bps as f64)
        });
        let sent = start + on_wire;
        if profile.rate_bps.is_some() {
            self.wire_free = Some(sent);
        }
        let mut due = sent + profile.delay;
        if !profile.jitter.is_zero() {
            let signed = self.draws.unit() * 2.0 - 1.0;
            let offset = profile.jitter.mul_f64(signed.abs());
            // Never before `sent`: jitter is at most the delay (LinkProfile::problem).
            due = if signed < 0.0 {
                due.checked_sub(offset.min(profile.delay)).unwrap_or(sent)
            } else {
                due + offset
            };
        }
        let due = self.last_due.map_or(due, |last| due.max(last));
        self.last_due = Some(due);
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(delay_ms: u64, jitter_ms: u64, loss_ppm: u32, rate: Option<u64>) -> LinkProfile {
        LinkProfile {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss_ppm,
            rate_bps: rate,
        }
    }

    #[test]
    fn a_plain_delay_shifts_every_frame() {
        let mut pacer = Pacer::new(profile(30, 0, 0, None), 1);
        let now = Instant::now();
        for i in 0..10 {
            let at = now + Duration::from_millis(i);
            assert_eq!(pacer.admit(at, 1500), Some(at + Duration::from_millis(30)));
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_keeps_order() {
        let mut pacer = Pacer::new(profile(30, 5, 0, None), 7);
        let now = Instant::now();
        let mut last = now;
        for i in 0..1000 {
            let at = now + Duration::from_micros(i * 100);
            let due = pacer.admit(at, 100).expect("no loss");
            assert!(due >= last, "frame {i} overtook");
            assert!(due >= at + Duration::from_millis(25), "frame {i} early");
            // Order keeping can hold a frame behind its predecessor, never past its bound.
            assert!(due <= at + Duration::from_millis(35) + Duration::from_micros(100) * 100);
            last = due;
        }
    }

    #[test]
    fn loss_drops_about_its_share() {
        let mut pacer = Pacer::new(profile(0, 0, 100_000, None), 42);
        let now = Instant::now();
        let kept = (0..10_000)
            .filter(|_| pacer.admit(now, 64).is_some())
            .count();
        assert!(
            (8_800..=9_200).contains(&kept),
            "kept {kept} of 10000 at 10% loss"
        );
    }

    #[test]
    fn a_rate_serialises_frames_and_drops_past_the_queue() {
        // 1 Mbit/s: a 1250-byte frame takes 10 ms on the wire.
        let mut pacer = Pacer::new(profile(0, 0, 0, Some(1_000_000)), 3);
        let now = Instant::now();
        let first = pacer.admit(now, 1250).expect("sent");
        let second = pacer.admit(now, 1250).expect("sent");
        assert_eq!(first, now + Duration::from_millis(10));
        assert_eq!(second, now + Duration::from_millis(20));
        // A burst: everything beyond 200 ms of queue is dropped.
        let kept = (0..100)
            .filter(|_| pacer.admit(now, 1250).is_some())
            .count();
        assert!((18..=20).contains(&kept), "kept {kept}");
    }
}

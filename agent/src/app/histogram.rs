//! Latency over the last [`WINDOW_SECS`] seconds, for the p50/p99 the stats page shows: one
//! small log-linear histogram per second in a ring of [`WINDOW_SECS`] slots. Recording is a
//! lock, an index computation and an increment (no allocation); a slot older than the window
//! is cleared when its second comes round again. Buckets: exact below 16 µs, then 8 per
//! doubling (a value is reported within 1/16 of itself, as its bucket's middle).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds of history the percentiles cover.
pub const WINDOW_SECS: u64 = 10;
const SUB_BUCKETS: u64 = 8;
const LINEAR_BELOW: u64 = 16;
/// Up to 2^30 µs (about 18 min); longer is counted as that.
const MAX_EXPONENT: u64 = 29;
const BUCKETS: usize = (LINEAR_BELOW + (MAX_EXPONENT - 3) * SUB_BUCKETS) as usize;

/// The bucket of `micros`.
pub fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR_BELOW {
        return micros as usize;
    }
    let exponent = u64::from(63 - micros.leading_zeros()).min(MAX_EXPONENT);
    if exponent == MAX_EXPONENT && micros >> MAX_EXPONENT > 1 {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exponent - 3)) & (SUB_BUCKETS - 1);
    (LINEAR_BELOW + (exponent - 4) * SUB_BUCKETS + sub) as usize
}

/// The middle of bucket `index`, in microseconds.
pub fn bucket_middle(index: usize) -> f64 {
    let i = index as u64;
    if i < LINEAR_BELOW {
        return i as f64;
    }
    let exponent = (i - LINEAR_BELOW) / SUB_BUCKETS + 4;
    let sub = (i - LINEAR_BELOW) % SUB_BUCKETS;
    let width = 1u64 << (exponent - 3);
    let lower = (SUB_BUCKETS + sub) * width;
    lower as f64 + width as f64 / 2.0
}

struct Slot {
    second: u64,
    counts: [u32; BUCKETS],
}

/// The ring of per-second histograms.
pub struct LatencyWindow {
    origin: Instant,
    slots: Mutex<[Slot; WINDOW_SECS as usize]>,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow::new()
    }
}

impl LatencyWindow {
    pub fn new() -> LatencyWindow {
        LatencyWindow {
            origin: Instant::now(),
            slots: Mutex::new(std::array::from_fn(|_| Slot {
                second: u64::MAX,
                counts: [0; BUCKETS],
            })),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs()
    }

    /// Counts one request that took `took`, finished at `at`.
    pub fn record_at(&self, took: Duration, at: Instant) {
        let second = self.second(at);
        let bucket = bucket_of(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let slot = &mut slots[(second % WINDOW_SECS) as usize];
        if slot.second != second {
            slot.second = second;
            slot.counts = [0; BUCKETS];
        }
        slot.counts[bucket] = slot.counts[bucket].saturating_add(1);
    }

    pub fn record(&self, took: Duration) {
        self.record_at(took, Instant::now());
    }

    /// The `quantiles` (0..=1) in milliseconds over the window ending at `at`; zeros when no
    /// request finished in it.
    pub fn quantiles_ms_at<const N: usize>(&self, quantiles: [f64; N], at: Instant) -> [f64; N] {
        let now = self.second(at);
        let mut merged = [0u64; BUCKETS];
        if let Ok(slots) = self.slots.lock() {
            for slot in slots.iter() {
                if slot.second != u64::MAX && slot.second <= now && now - slot.second < WINDOW_SECS
                {
                    for (m, c) in merged.iter_mut().zip(slot.counts.iter()) {
                        *m += u64::from(*c);
                    }
                }
            }
        }
        let total: u64 = merged.iter().sum();
        let mut out = [0.0; N];
        if total == 0 {
            return out;
        }
        for (value, q) in out.iter_mut().zip(quantiles) {
            // The smallest bucket holding at least q of the requests.
            let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (index, count) in merged.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    *value = bucket_middle(index) / 1000.0;
                    break;
                }
            }
        }
        out
    }

    pub fn quantiles_ms<const N: usize>(&self, quantiles: [f64; N]) -> [f64; N] {
        self.quantiles_ms_at(quantiles, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_close_to_it() {
        for micros in (0..5000).chain([65_535, 1_000_000, 123_456_789]) {
            let middle = bucket_middle(bucket_of(micros));
            let error = (middle - micros as f64).abs();
            assert!(error <= micros as f64 / 16.0 + 0.5, "{micros} -> {middle}");
        }
        // Buckets are ordered like the values.
        let mut last = 0;
        for micros in 0..100_000 {
            let b = bucket_of(micros);
            assert!(b >= last);
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let window = LatencyWindow::new();
        let at = window.origin + Duration::from_millis(500);
        // 1..=100 ms, once each: p50 is 50 ms, p99 is 99 ms.
        for ms in 1..=100 {
            window.record_at(Duration::from_millis(ms), at);
        }
        let [p50, p99] = window.quantiles_ms_at([0.5, 0.99], at);
        assert!((p50 - 50.0).abs() <= 50.0 / 16.0, "{p50}");
        assert!((p99 - 99.0).abs() <= 99.0 / 16.0, "{p99}");
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let window = LatencyWindow::new();
        let start = window.origin;
        window.record_at(Duration::from_millis(500), start);
        window.record_at(Duration::from_millis(2), start + Duration::from_secs(5));
        let [p99] = window.quantiles_ms_at([0.99], start + Duration::from_secs(9));
        assert!(p99 > 400.0, "both seconds in the window: {p99}");
        let [p99] = window.quantiles_ms_at([0.99], start + Duration::from_secs(10));
        assert!(p99 < 3.0, "the slow second left it: {p99}");
        // The slot of second 0 is reused for second 10 and starts empty.
        window.record_at(Duration::from_millis(1), start + Duration::from_secs(10));
        let [p99] = window.quantiles_ms_at([0.99], start + Duration::from_secs(10));
        assert!(p99 < 3.0, "{p99}");
        assert_eq!(
            window.quantiles_ms_at([0.5], start + Duration::from_secs(100)),
            [0.0],
            "idle"
        );
    }
}

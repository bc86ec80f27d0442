//! A log-linear latency histogram in the manner of HdrHistogram: fixed memory (3,840 counters,
//! 30 KiB), values in microseconds from 0 to about 19 hours, every value kept within 1/128
//! (< 0.8%) of what was recorded. Percentiles, merging and the exact maximum; nothing else.
//!
//! Layout: values below 256 µs have one counter each; above, every power of two is split into
//! 128 equal sub-buckets, so the width of a bucket is at most 1/128 of the values in it.

/// Sub-buckets per power of two above the linear part: the precision (1/128).
const SUB_BITS: u32 = 7;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Values below this have a counter of their own.
const LINEAR_LIMIT: u64 = 1 << (SUB_BITS + 1);
/// Highest power of two tracked (2^36 µs is about 19 hours); larger values are clamped.
const TOP_BITS: u32 = 36;
const BUCKETS: usize =
    LINEAR_LIMIT as usize + ((TOP_BITS - SUB_BITS - 1) as usize) * SUB_COUNT as usize;
/// Largest value a bucket can hold; anything above is counted as this.
pub const MAX_TRACKABLE_MICROS: u64 = (1 << TOP_BITS) - 1;

/// Counts of recorded values (microseconds).
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, micros: u64) {
        let v = micros.min(MAX_TRACKABLE_MICROS);
        self.counts[index_of(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest value recorded, exactly (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Smallest value recorded, exactly (0 when empty).
    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at percentile `p` (0..=100): the smallest recorded value with at least `p`%
    /// of the values at or below it, within the precision (0 when empty).
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let p = if p.is_finite() {
            p.clamp(0.0, 100.0)
        } else {
            100.0
        };
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return representative(i).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Add every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Empty it again, keeping the memory.
    pub fn clear(&mut self) {
        if self.total == 0 {
            return;
        }
        self.counts.fill(0);
        self.total = 0;
        self.min = u64::MAX;
        self.max = 0;
        self.sum = 0;
    }
}

fn index_of(v: u64) -> usize {
    if v < LINEAR_LIMIT {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) - SUB_COUNT; // 0..SUB_COUNT
    LINEAR_LIMIT as usize + ((msb - SUB_BITS - 1) as usize) * SUB_COUNT as usize + sub as usize
}

/// The middle of bucket `i`'s range (the value itself in the linear part).
fn representative(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR_LIMIT {
        return i;
    }
    let rest = i - LINEAR_LIMIT;
    let msb = (rest / SUB_COUNT) as u32 + SUB_BITS + 1;
    let sub = rest % SUB_COUNT + SUB_COUNT;
    let shift = msb - SUB_BITS;
    let low = sub << shift;
    low + ((1u64 << shift) - 1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::rng::Rng;

    fn exact(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank - 1]
    }

    fn within_precision(got: u64, want: u64) -> bool {
        let tolerance = (want as f64 / 100.0).max(1.0);
        (got as f64 - want as f64).abs() <= tolerance
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            255,
            256,
            257,
            511,
            512,
            1000,
            1 << 20,
            MAX_TRACKABLE_MICROS,
        ] {
            let i = index_of(v);
            assert!(i >= last, "{v} went backwards");
            assert!(i < BUCKETS, "{v} out of range");
            last = i;
        }
        assert_eq!(index_of(MAX_TRACKABLE_MICROS), BUCKETS - 1);
        // Every bucket's representative falls back into that bucket.
        for i in 0..BUCKETS {
            assert_eq!(index_of(representative(i)), i, "bucket {i}");
        }
    }

    #[test]
    fn percentiles_match_sorted_values_within_one_percent() {
        let mut rng = Rng::new(7);
        // A long-tailed mix: mostly ~1 ms, some 10-100 ms, a few seconds.
        let mut values: Vec<u64> = (0..200_000)
            .map(|_| {
                let u = rng.next_f64();
                if u < 0.9 {
                    300 + rng.below(1500)
                } else if u < 0.999 {
                    10_000 + rng.below(90_000)
                } else {
                    1_000_000 + rng.below(4_000_000)
                }
            })
            .collect();
        let mut h = Histogram::new();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        for p in [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0] {
            let (got, want) = (h.percentile(p), exact(&values, p));
            assert!(within_precision(got, want), "p{p}: got {got}, exact {want}");
        }
        assert_eq!(h.max(), *values.last().unwrap_or(&0));
        assert_eq!(h.min(), values[0]);
        assert_eq!(h.count(), values.len() as u64);
    }

    #[test]
    fn small_values_are_exact_and_empty_is_zero() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(50.0), 0);
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.max(), 100);
        h.clear();
        assert_eq!(h.count(), 0);
        assert_eq!(h.max(), 0);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 0..10_000u64 {
            let v = v * 37 % 50_000;
            if v % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        for p in [50.0, 90.0, 99.0, 99.9] {
            assert_eq!(a.percentile(p), all.percentile(p));
        }
        assert_eq!(a.count(), all.count());
        assert_eq!(a.max(), all.max());
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = Histogram::new();
        h.record(u64::MAX);
        assert_eq!(h.count(), 1);
        assert_eq!(h.max(), MAX_TRACKABLE_MICROS);
    }
}

//! A small, fast, seedable pseudo-random generator (SplitMix64) for choosing requests: one per
//! worker, no locking, reproducible with `--seed`. Not for anything secret.

/// SplitMix64 (Steele, Lea, Flood 2014): passes BigCrush, one add and a few mixes per number.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// An independent stream for worker `n` of a run seeded with `seed`.
    pub fn for_worker(seed: u64, n: u64) -> Self {
        let mut base = Rng::new(seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407));
        Rng::new(base.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (0 when n is 0). Lemire's multiply-shift; the bias is below 2^-32 for
    /// the sizes used here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_workers_differ() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(
            Rng::for_worker(42, 0).next_u64(),
            Rng::for_worker(42, 1).next_u64()
        );
    }

    #[test]
    fn floats_and_bounded_draws_stay_in_range() {
        let mut r = Rng::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            buckets[r.below(10) as usize] += 1;
        }
        // Uniform enough: every tenth within 5% of 10,000.
        for b in buckets {
            assert!((9_500..=10_500).contains(&b), "{buckets:?}");
        }
        assert_eq!(r.below(0), 0);
    }
}

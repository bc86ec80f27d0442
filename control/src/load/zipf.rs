//! Which post a read asks for: ranks 1..=K drawn from a Zipf distribution with exponent `s`
//! (P(k) ∝ 1/k^s), so a few posts are hot and most are cold, as in real traffic; `s = 0` is
//! uniform. Exact inverse-CDF sampling over a precomputed table (K is at most
//! [`MAX_KEYS`]): one binary search per draw.

use super::rng::Rng;

/// Largest number of keys a sampler takes (its table is 8 bytes per key).
pub const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Zipf {
    /// cdf[i] = P(rank <= i + 1); the last is 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// A sampler over ranks 1..=keys. `keys` must be 1..=MAX_KEYS and `exponent` finite and
    /// not negative (the command line checks both).
    pub fn new(keys: usize, exponent: f64) -> Self {
        let keys = keys.clamp(1, MAX_KEYS);
        let exponent = if exponent.is_finite() {
            exponent.max(0.0)
        } else {
            1.0
        };
        let mut cdf = Vec::with_capacity(keys);
        let mut sum = 0.0;
        for k in 1..=keys {
            sum += (k as f64).powf(-exponent);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Zipf { cdf }
    }

    pub fn keys(&self) -> usize {
        self.cdf.len()
    }

    /// Probability of rank `k` (1-based).
    pub fn probability(&self, k: usize) -> f64 {
        match k {
            0 => 0.0,
            1 => self.cdf[0],
            k if k <= self.cdf.len() => self.cdf[k - 1] - self.cdf[k - 2],
            _ => 0.0,
        }
    }

    /// A rank, 1..=keys.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
            + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_one_frequency_matches_the_harmonic_number() {
        let zipf = Zipf::new(100, 1.0);
        let harmonic: f64 = (1..=100).map(|k| 1.0 / k as f64).sum();
        let expected = 1.0 / harmonic; // ~0.1928
        assert!((zipf.probability(1) - expected).abs() < 1e-12);
        let mut rng = Rng::new(3);
        let n = 200_000;
        let mut counts = vec![0u32; 101];
        for _ in 0..n {
            let k = zipf.sample(&mut rng);
            assert!((1..=100).contains(&k), "{k}");
            counts[k] += 1;
        }
        let f1 = f64::from(counts[1]) / n as f64;
        assert!(
            (f1 - expected).abs() < 0.005,
            "rank 1 drawn {f1}, expected {expected}"
        );
        // Rank 2 about half as often as rank 1 with s = 1.
        let ratio = f64::from(counts[1]) / f64::from(counts[2]);
        assert!((1.85..=2.15).contains(&ratio), "rank1/rank2 = {ratio}");
    }

    #[test]
    fn exponent_zero_is_uniform_and_one_key_is_always_it() {
        let zipf = Zipf::new(4, 0.0);
        for k in 1..=4 {
            assert!((zipf.probability(k) - 0.25).abs() < 1e-12);
        }
        let one = Zipf::new(1, 1.0);
        let mut rng = Rng::new(9);
        for _ in 0..100 {
            assert_eq!(one.sample(&mut rng), 1);
        }
    }
}

//! Bounded per-board history: one ring of timestamps shared by every series of the board, and
//! one ring of `f32` values per series, all indexed alike.
//!
//! A slot whose series had no value that second (no temperature sensor, a rate with no
//! previous sample, a role not assigned yet) holds `NaN` and is skipped when read. A series
//! first seen after others gets `NaN` for the slots before it. Memory: 4 bytes per timestamp
//! (milliseconds since the ring's first point) plus 4 bytes per series per slot; at
//! [`DEFAULT_CAPACITY`] (3600 slots, one hour at 1 s) that is 14.4 KB for the timestamps and
//! 14.4 KB per series.

use std::collections::BTreeMap;

/// One hour at one point per second.
pub const DEFAULT_CAPACITY: usize = 3600;

/// The history of one board.
#[derive(Debug, Clone)]
pub struct History {
    capacity: usize,
    /// Wall-clock milliseconds of the first point ever pushed; timestamps are offsets from it.
    base_ms: Option<u64>,
    /// Offsets (ms) from `base_ms`; `Vec` grows to `capacity`, then wraps at `head`.
    ts: Vec<u32>,
    /// Next slot to overwrite once full (equals the oldest point).
    head: usize,
    series: BTreeMap<String, Vec<f32>>,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            base_ms: None,
            ts: Vec::new(),
            head: 0,
            series: BTreeMap::new(),
        }
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Names of the series held, sorted.
    pub fn series_names(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }

    pub fn has_series(&self, name: &str) -> bool {
        self.series.contains_key(name)
    }

    /// Add one point at `ts_ms` with `values`; series not named get `NaN` at that point.
    /// A timestamp older than the newest point is clamped to it (time never runs backwards
    /// inside a ring).
    pub fn push(&mut self, ts_ms: u64, values: &[(String, f32)]) {
        let base = *self.base_ms.get_or_insert(ts_ms);
        let newest = self.newest_offset().unwrap_or(0);
        let offset = u32::try_from(ts_ms.saturating_sub(base))
            .unwrap_or(u32::MAX)
            .max(newest);
        let full = self.ts.len() == self.capacity;
        let slot = if full { self.head } else { self.ts.len() };
        if full {
            self.ts[slot] = offset;
            self.head = (self.head + 1) % self.capacity;
        } else {
            grow_within(&mut self.ts, self.capacity);
            self.ts.push(offset);
        }
        let len = self.ts.len();
        for (name, _) in values {
            if !self.series.contains_key(name) {
                // Sized for the points before this one, which had no value.
                let mut ring = Vec::with_capacity(self.capacity.min(len.max(16)));
                ring.resize(len - usize::from(!full), f32::NAN);
                self.series.insert(name.clone(), ring);
            }
        }
        for ring in self.series.values_mut() {
            if full {
                ring[slot] = f32::NAN;
            } else {
                grow_within(ring, self.capacity);
                ring.push(f32::NAN);
            }
        }
        for (name, value) in values {
            if let Some(ring) = self.series.get_mut(name) {
                ring[slot] = *value;
            }
        }
    }

    fn newest_offset(&self) -> Option<u32> {
        if self.ts.is_empty() {
            return None;
        }
        let newest = if self.ts.len() == self.capacity {
            (self.head + self.capacity - 1) % self.capacity
        } else {
            self.ts.len() - 1
        };
        Some(self.ts[newest])
    }

    /// Points of `series` with a timestamp at or after `since_ms`, oldest first, `NaN`s
    /// skipped. Empty when the series is unknown.
    pub fn points_since(&self, series: &str, since_ms: u64) -> Vec<(u64, f32)> {
        let (Some(ring), Some(base)) = (self.series.get(series), self.base_ms) else {
            return Vec::new();
        };
        let len = self.ts.len();
        let start = if len == self.capacity { self.head } else { 0 };
        let mut out = Vec::new();
        for i in 0..len {
            let slot = (start + i) % len;
            let ts = base + u64::from(self.ts[slot]);
            let value = ring[slot];
            if ts >= since_ms && !value.is_nan() {
                out.push((ts, value));
            }
        }
        out
    }

    /// Bytes held by the rings (capacity actually allocated), for the self metrics.
    pub fn heap_bytes(&self) -> usize {
        self.ts.capacity() * 4
            + self
                .series
                .iter()
                .map(|(k, v)| v.capacity() * 4 + k.capacity())
                .sum::<usize>()
    }
}

/// Make room for one more element, doubling but never allocating past `capacity` (a full
/// ring holds exactly `capacity` slots, not the next power of two).
fn grow_within<T>(v: &mut Vec<T>, capacity: usize) {
    if v.len() == v.capacity() {
        let want = (v.len() * 2).max(16).min(capacity);
        v.reserve_exact(want.saturating_sub(v.len()).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, x: f32) -> (String, f32) {
        (name.to_string(), x)
    }

    #[test]
    fn keeps_the_newest_capacity_points_in_order() {
        let mut h = History::new(3);
        for i in 0..5u64 {
            h.push(1000 + i * 1000, &[v("cpu", i as f32)]);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.points_since("cpu", 0),
            vec![(3000, 2.0), (4000, 3.0), (5000, 4.0)]
        );
        assert_eq!(h.points_since("cpu", 4000), vec![(4000, 3.0), (5000, 4.0)]);
        assert!(h.points_since("nope", 0).is_empty());
    }

    #[test]
    fn absent_values_are_skipped_and_late_series_padded() {
        let mut h = History::new(4);
        h.push(1000, &[v("cpu", 1.0)]);
        h.push(2000, &[v("cpu", 2.0), v("temp", 40.0)]);
        h.push(3000, &[v("temp", 41.0)]);
        assert_eq!(h.points_since("cpu", 0), vec![(1000, 1.0), (2000, 2.0)]);
        assert_eq!(h.points_since("temp", 0), vec![(2000, 40.0), (3000, 41.0)]);
        // Wrap around with a series appearing after the ring is full.
        h.push(4000, &[v("cpu", 4.0)]);
        h.push(5000, &[v("cpu", 5.0), v("late", 9.0)]);
        assert_eq!(h.points_since("late", 0), vec![(5000, 9.0)]);
        assert_eq!(
            h.points_since("cpu", 0),
            vec![(2000, 2.0), (4000, 4.0), (5000, 5.0)]
        );
        let names: Vec<&str> = h.series_names().collect();
        assert_eq!(names, ["cpu", "late", "temp"]);
    }

    #[test]
    fn a_full_ring_allocates_exactly_its_capacity() {
        let mut h = History::new(DEFAULT_CAPACITY);
        for i in 0..(DEFAULT_CAPACITY as u64 + 10) {
            h.push(i * 1000, &[v("a", 1.0), v("b", 2.0)]);
        }
        // 3 rings (timestamps + 2 series) of 3600 × 4 bytes, plus the two names.
        assert_eq!(h.heap_bytes(), 3 * DEFAULT_CAPACITY * 4 + 2);
    }

    #[test]
    fn time_never_runs_backwards() {
        let mut h = History::new(4);
        h.push(5000, &[v("x", 1.0)]);
        h.push(4000, &[v("x", 2.0)]);
        assert_eq!(h.points_since("x", 0), vec![(5000, 1.0), (5000, 2.0)]);
    }
}

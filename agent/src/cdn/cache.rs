//! The edge's memory: a cache bounded in bytes, with one of two eviction policies chosen per
//! board.
//!
//! - [`Policy::Lru`] (the seed's): evict the entry used longest ago.
//! - [`Policy::S3Fifo`] (Yang et al., SOSP 2023): new entries wait in a small FIFO (10 % of
//!   the bytes); those hit again while there move to the main FIFO, the others leave and are
//!   remembered in a ghost list (keys only), so a key that comes back soon goes straight to
//!   main. Main entries hit since they were last looked at get another round (a 2-bit
//!   counter). One-hit wonders and scans pass through without pushing out what is popular.
//!
//! Pure and synchronous (the edge holds it behind a mutex); sizes are what the caller says.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Which entry goes when room is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Lru,
    S3Fifo,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Lru => "lru",
            Policy::S3Fifo => "s3-fifo",
        }
    }

    pub fn parse(text: &str) -> Option<Policy> {
        [Policy::Lru, Policy::S3Fifo]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// A byte-bounded cache of `V` by string key.
pub struct Cache<V> {
    capacity: u64,
    used: u64,
    evictions: u64,
    inner: Inner<V>,
}

enum Inner<V> {
    Lru(Lru<V>),
    S3(S3Fifo<V>),
}

impl<V> Cache<V> {
    pub fn new(policy: Policy, capacity_bytes: u64) -> Cache<V> {
        Cache {
            capacity: capacity_bytes,
            used: 0,
            evictions: 0,
            inner: match policy {
                Policy::Lru => Inner::Lru(Lru {
                    entries: HashMap::new(),
                    order: BTreeMap::new(),
                    tick: 0,
                }),
                Policy::S3Fifo => Inner::S3(S3Fifo {
                    entries: HashMap::new(),
                    small: VecDeque::new(),
                    main: VecDeque::new(),
                    ghost: VecDeque::new(),
                    ghost_set: HashMap::new(),
                    small_bytes: 0,
                    generation: 0,
                }),
            },
        }
    }

    pub fn policy(&self) -> Policy {
        match self.inner {
            Inner::Lru(_) => Policy::Lru,
            Inner::S3(_) => Policy::S3Fifo,
        }
    }

    /// The entry, counted as a use.
    pub fn get(&mut self, key: &str) -> Option<&V> {
        match &mut self.inner {
            Inner::Lru(c) => c.get(key),
            Inner::S3(c) => c.get(key),
        }
    }

    /// The entry, without counting a use.
    pub fn peek(&self, key: &str) -> Option<&V> {
        match &self.inner {
            Inner::Lru(c) => c.entries.get(key).map(|e| &e.value),
            Inner::S3(c) => c.entries.get(key).map(|e| &e.value),
        }
    }

    /// Mutable access without counting a use (a revalidated entry's new expiry).
    pub fn peek_mut(&mut self, key: &str) -> Option<&mut V> {
        match &mut self.inner {
            Inner::Lru(c) => c.entries.get_mut(key).map(|e| &mut e.value),
            Inner::S3(c) => c.entries.get_mut(key).map(|e| &mut e.value),
        }
    }

    /// Stores `value` (`bytes` long), evicting as the policy says; false (nothing stored)
    /// when it is larger than the whole cache.
    pub fn insert(&mut self, key: &str, value: V, bytes: u64) -> bool {
        if bytes > self.capacity {
            return false;
        }
        self.remove(key);
        self.used += bytes;
        match &mut self.inner {
            Inner::Lru(c) => c.insert(key, value, bytes),
            Inner::S3(c) => c.insert(key, value, bytes),
        }
        while self.used > self.capacity {
            let freed = match &mut self.inner {
                Inner::Lru(c) => c.evict(),
                Inner::S3(c) => c.evict(self.capacity),
            };
            match freed {
                Some(n) => {
                    self.used -= n;
                    self.evictions += 1;
                }
                None => break,
            }
        }
        true
    }

    /// Drops `key`; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let freed = match &mut self.inner {
            Inner::Lru(c) => c.remove(key),
            Inner::S3(c) => c.remove(key),
        };
        match freed {
            Some(n) => {
                self.used -= n;
                true
            }
            None => false,
        }
    }

    /// Drops every key starting with `prefix`; how many.
    pub fn purge_prefix(&mut self, prefix: &str) -> usize {
        let keys: Vec<String> = match &self.inner {
            Inner::Lru(c) => c
                .entries
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect(),
            Inner::S3(c) => c
                .entries
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect(),
        };
        keys.iter().filter(|k| self.remove(k)).count()
    }

    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Lru(c) => c.entries.len(),
            Inner::S3(c) => c.entries.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity
    }

    /// Entries evicted to make room (not those removed or purged).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

struct LruEntry<V> {
    value: V,
    bytes: u64,
    tick: u64,
}

struct Lru<V> {
    entries: HashMap<String, LruEntry<V>>,
    /// Use order: oldest tick first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl<V> Lru<V> {
    fn get(&mut self, key: &str) -> Option<&V> {
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.tick);
        self.tick += 1;
        entry.tick = self.tick;
        self.order.insert(self.tick, key.to_string());
        Some(&entry.value)
    }

    fn insert(&mut self, key: &str, value: V, bytes: u64) {
        self.tick += 1;
        self.order.insert(self.tick, key.to_string());
        self.entries.insert(
            key.to_string(),
            LruEntry {
                value,
                bytes,
                tick: self.tick,
            },
        );
    }

    fn evict(&mut self) -> Option<u64> {
        let (_, key) = self.order.pop_first()?;
        self.entries.remove(&key).map(|e| e.bytes)
    }

    fn remove(&mut self, key: &str) -> Option<u64> {
        let entry = self.entries.remove(key)?;
        self.order.remove(&entry.tick);
        Some(entry.bytes)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

struct S3Entry<V> {
    value: V,
    bytes: u64,
    /// Hits since it was last looked at by eviction, 0..=3.
    freq: u8,
    queue: Queue,
    /// Which queue slot is this entry's (older slots of a re-inserted key are skipped).
    generation: u64,
}

struct S3Fifo<V> {
    entries: HashMap<String, S3Entry<V>>,
    small: VecDeque<(String, u64)>,
    main: VecDeque<(String, u64)>,
    /// Keys evicted from small without a second hit, oldest first (bounded in count).
    ghost: VecDeque<String>,
    ghost_set: HashMap<String, u32>,
    small_bytes: u64,
    generation: u64,
}

/// The small queue's share of the bytes.
const SMALL_PERCENT: u64 = 10;

impl<V> S3Fifo<V> {
    fn get(&mut self, key: &str) -> Option<&V> {
        let entry = self.entries.get_mut(key)?;
        entry.freq = (entry.freq + 1).min(3);
        Some(&entry.value)
    }

    fn insert(&mut self, key: &str, value: V, bytes: u64) {
        self.generation += 1;
        let queue = if self.forget_ghost(key) {
            Queue::Main
        } else {
            Queue::Small
        };
        let slot = (key.to_string(), self.generation);
        match queue {
            Queue::Small => {
                self.small.push_back(slot);
                self.small_bytes += bytes;
            }
            Queue::Main => self.main.push_back(slot),
        }
        self.entries.insert(
            key.to_string(),
            S3Entry {
                value,
                bytes,
                freq: 0,
                queue,
                generation: self.generation,
            },
        );
    }

    /// Whether `key` was a ghost (and no longer is).
    fn forget_ghost(&mut self, key: &str) -> bool {
        match self.ghost_set.get_mut(key) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.ghost_set.remove(key);
                }
                // Its slot in `ghost` stays; trimming skips keys no longer counted.
                true
            }
            None => false,
        }
    }

    fn remember_ghost(&mut self, key: String) {
        *self.ghost_set.entry(key.clone()).or_insert(0) += 1;
        self.ghost.push_back(key);
        // As many ghosts as entries resident: enough to recognise a quick return.
        let bound = self.entries.len().max(16);
        while self.ghost.len() > bound {
            if let Some(old) = self.ghost.pop_front() {
                if let Some(n) = self.ghost_set.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.ghost_set.remove(&old);
                    }
                }
            }
        }
    }

    /// The key at the head of `queue` that is still live there.
    fn pop_live(&mut self, queue: Queue) -> Option<String> {
        loop {
            let (key, generation) = match queue {
                Queue::Small => self.small.pop_front()?,
                Queue::Main => self.main.pop_front()?,
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation && e.queue == queue)
            {
                return Some(key);
            }
        }
    }

    /// Frees one entry's bytes (moving others between the queues on the way).
    fn evict(&mut self, capacity: u64) -> Option<u64> {
        loop {
            let small_over = self.small_bytes * 100 >= capacity * SMALL_PERCENT;
            let from_small = small_over || self.main.is_empty();
            let queue = if from_small && !self.small.is_empty() {
                Queue::Small
            } else {
                Queue::Main
            };
            let key = self.pop_live(queue).or_else(|| {
                // The chosen queue had only stale slots: try the other one.
                let other = if queue == Queue::Small {
                    Queue::Main
                } else {
                    Queue::Small
                };
                self.pop_live(other)
            })?;
            let entry = self.entries.get_mut(&key)?;
            match entry.queue {
                Queue::Small if entry.freq > 1 => {
                    // Hit again while new: it earned a place in main.
                    entry.queue = Queue::Main;
                    entry.freq = 0;
                    self.small_bytes -= entry.bytes;
                    self.main.push_back((key, entry.generation));
                }
                Queue::Main if entry.freq > 0 => {
                    entry.freq -= 1;
                    self.main.push_back((key, entry.generation));
                }
                Queue::Small => {
                    let bytes = entry.bytes;
                    self.small_bytes -= bytes;
                    self.entries.remove(&key);
                    self.remember_ghost(key);
                    return Some(bytes);
                }
                Queue::Main => {
                    let bytes = entry.bytes;
                    self.entries.remove(&key);
                    return Some(bytes);
                }
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<u64> {
        let entry = self.entries.remove(key)?;
        if entry.queue == Queue::Small {
            self.small_bytes -= entry.bytes;
        }
        Some(entry.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used_until_the_bytes_fit() {
        let mut c = Cache::new(Policy::Lru, 100);
        assert!(c.insert("a", 1, 40));
        assert!(c.insert("b", 2, 40));
        assert_eq!(c.get("a"), Some(&1)); // b is now the oldest
        assert!(c.insert("c", 3, 40));
        assert_eq!(
            (c.peek("a"), c.peek("b"), c.peek("c")),
            (Some(&1), None, Some(&3))
        );
        assert_eq!((c.used_bytes(), c.evictions()), (80, 1));
        // One large entry pushes out as many as it needs, oldest first.
        assert!(c.insert("d", 4, 90));
        assert_eq!((c.len(), c.used_bytes(), c.evictions()), (1, 90, 3));
        assert!(!c.insert("huge", 5, 101), "larger than the cache");
        assert_eq!(c.peek("d"), Some(&4));
    }

    #[test]
    fn replacing_removing_and_purging_keep_the_byte_count() {
        for policy in [Policy::Lru, Policy::S3Fifo] {
            let mut c = Cache::new(policy, 1000);
            c.insert("/avatars/1", (), 100);
            c.insert("/avatars/2", (), 100);
            c.insert("/videos/1", (), 300);
            c.insert("/avatars/1", (), 50);
            assert_eq!(c.used_bytes(), 450, "{}", policy.as_str());
            assert_eq!(c.purge_prefix("/avatars/"), 2);
            assert_eq!((c.len(), c.used_bytes()), (1, 300));
            assert!(c.remove("/videos/1"));
            assert!(!c.remove("/videos/1"));
            assert_eq!((c.len(), c.used_bytes(), c.evictions()), (0, 0, 0));
        }
    }

    #[test]
    fn s3_fifo_keeps_the_popular_through_a_scan_that_lru_lets_in() {
        // Ten popular objects used twice each, then a scan of 200 objects used once.
        let run = |policy| {
            let mut c = Cache::new(policy, 100 * 10);
            for round in 0..3 {
                for k in 0..10 {
                    let key = format!("hot{k}");
                    if c.get(&key).is_none() {
                        c.insert(&key, round, 10);
                    }
                }
            }
            for k in 0..200 {
                c.insert(&format!("scan{k}"), 0, 10);
            }
            (0..10)
                .filter(|k| c.peek(&format!("hot{k}")).is_some())
                .count()
        };
        assert_eq!(
            run(Policy::S3Fifo),
            10,
            "every popular object survives the scan"
        );
        assert_eq!(
            run(Policy::Lru),
            0,
            "LRU keeps only the scan's last objects"
        );
    }

    /// The hit ratio of `policy` on a Zipf(`s`) trace of `requests` over `objects` equal
    /// objects, the cache holding `percent` % of them (a seeded generator: the same trace
    /// every run).
    pub fn zipf_hit_ratio(
        policy: Policy,
        s: f64,
        objects: usize,
        requests: usize,
        percent: u64,
    ) -> f64 {
        let weights: Vec<f64> = (1..=objects).map(|i| 1.0 / (i as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = Vec::with_capacity(objects);
        let mut sum = 0.0;
        for w in &weights {
            sum += w / total;
            cumulative.push(sum);
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut cache = Cache::new(policy, objects as u64 * percent / 100);
        let mut hits = 0usize;
        for _ in 0..requests {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let k = cumulative.partition_point(|c| *c < u);
            let key = k.to_string();
            if cache.get(&key).is_some() {
                hits += 1;
            } else {
                cache.insert(&key, (), 1);
            }
        }
        hits as f64 / requests as f64
    }

    #[test]
    fn s3_fifo_beats_lru_by_five_points_on_zipf_0_8_at_a_tenth() {
        let lru = zipf_hit_ratio(Policy::Lru, 0.8, 10_000, 300_000, 10);
        let s3 = zipf_hit_ratio(Policy::S3Fifo, 0.8, 10_000, 300_000, 10);
        println!(
            "Zipf(0.8), 10 000 objects, cache 10 %, 300 000 requests: LRU {:.1} %, S3-FIFO \
             {:.1} % ({:+.1} points)",
            lru * 100.0,
            s3 * 100.0,
            (s3 - lru) * 100.0
        );
        assert!(s3 >= lru + 0.05, "LRU {lru:.3}, S3-FIFO {s3:.3}");
    }

    #[test]
    fn s3_fifo_stays_within_its_bytes_under_mixed_sizes() {
        let mut c = Cache::new(Policy::S3Fifo, 10_000);
        let mut x: u64 = 1;
        for i in 0..5000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{}", x % 700);
            if c.get(&key).is_none() {
                assert!(c.insert(&key, i, 1 + (x >> 33) % 900));
            }
            assert!(c.used_bytes() <= 10_000);
        }
        assert!(c.evictions() > 0);
    }
}

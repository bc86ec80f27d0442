//! Consistent hashing of cache keys over the cache boards: a ring of [`VNODES_PER_NODE`]
//! points per board, placed by a stable hash of the board's name (so every app of the cluster
//! builds the same ring). A key belongs to the first point at or after its hash whose board
//! is live; when a board is ejected only its keys move (to the next live board on the ring),
//! about 1/N of them, and no key of a live board moves.
//!
//! The hash is ours ([`hash64`]: FNV-1a 64 with a murmur3 finaliser), not std's
//! `DefaultHasher`, whose output may change between Rust releases (the ring must agree across
//! apps built at different times).

use lab_api::spec::CacheHashing;

/// Points per board: enough for an even spread over a handful of boards (the share of each
/// stays within a few percent of 1/N), cheap to build (N x 160 hashes at each config).
pub const VNODES_PER_NODE: usize = 160;

/// FNV-1a 64 of `bytes`, then murmur3's 64-bit finaliser (FNV alone spreads short, similar
/// keys such as `post:17` / `post:18` poorly over the high bits the ring orders by).
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The ring over a fixed list of boards (indices into that list); or, for the classroom's
/// comparison ([`CacheHashing::Modulo`]), `hash mod` the live boards in list order.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, board index), sorted; empty for modulo hashing.
    points: Vec<(u64, usize)>,
    nodes: usize,
    hashing: CacheHashing,
}

impl Ring {
    /// How `names` are hashed over, by `hashing`.
    pub fn with_hashing<S: AsRef<str>>(names: &[S], hashing: CacheHashing) -> Ring {
        match hashing {
            CacheHashing::Ring => Ring::new(names),
            CacheHashing::Modulo => Ring {
                points: Vec::new(),
                nodes: names.len(),
                hashing,
            },
        }
    }

    /// A ring over `names` (board names, in any order: the ring depends on the names only).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Ring {
        let mut points = Vec::with_capacity(names.len() * VNODES_PER_NODE);
        for (index, name) in names.iter().enumerate() {
            for vnode in 0..VNODES_PER_NODE {
                let point = hash64(format!("{}#{vnode}", name.as_ref()).as_bytes());
                points.push((point, index));
            }
        }
        // Ties (practically never) are broken by the name's index, the same on every app.
        points.sort_unstable();
        Ring {
            points,
            nodes: names.len(),
            hashing: CacheHashing::Ring,
        }
    }

    /// How many boards the ring was built over.
    pub fn len(&self) -> usize {
        self.nodes
    }

    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// The board `key` belongs to when every board is live.
    pub fn home(&self, key: &[u8]) -> Option<usize> {
        self.pick(key, |_| true)
    }

    /// The board `key` belongs to now: the first point at or after the key's hash (wrapping)
    /// whose board `live` says is up; None when none is.
    pub fn pick(&self, key: &[u8], live: impl Fn(usize) -> bool) -> Option<usize> {
        if self.hashing == CacheHashing::Modulo {
            let live: Vec<usize> = (0..self.nodes).filter(|&i| live(i)).collect();
            let n = u64::try_from(live.len()).ok().filter(|&n| n > 0)?;
            let at = usize::try_from(hash64(key) % n).ok()?;
            return live.get(at).copied();
        }
        if self.points.is_empty() {
            return None;
        }
        let h = hash64(key);
        let start = self.points.partition_point(|&(point, _)| point < h);
        let n = self.points.len();
        (0..n)
            .map(|step| self.points[(start + step) % n].1)
            .find(|&node| live(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        (0..100_000).map(|i| format!("post:{i}")).collect()
    }

    const BOARDS: [&str; 4] = ["cache-1", "cache-2", "cache-3", "cache-4"];

    #[test]
    fn the_hash_is_stable() {
        // Pinned (computed independently, in Python): a change here would reshuffle every
        // cluster's cache on upgrade, and apps of two builds would disagree.
        assert_eq!(hash64(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash64(b"post:1"), 0x476c_656c_a680_063c);
    }

    #[test]
    fn keys_spread_evenly() {
        let ring = Ring::new(&BOARDS);
        let mut count = [0usize; 4];
        for key in keys() {
            count[ring.home(key.as_bytes()).expect("a board")] += 1;
        }
        for c in count {
            let share = c as f64 / 100_000.0;
            assert!((0.20..0.30).contains(&share), "{count:?}");
        }
    }

    #[test]
    fn one_board_of_four_leaving_moves_only_its_keys() {
        let ring = Ring::new(&BOARDS);
        let gone = 2;
        let (mut moved, mut moved_from_live) = (0usize, 0usize);
        for key in keys() {
            let before = ring.home(key.as_bytes()).expect("a board");
            let after = ring.pick(key.as_bytes(), |n| n != gone).expect("a board");
            assert_ne!(after, gone);
            if before != after {
                moved += 1;
                if before != gone {
                    moved_from_live += 1;
                }
            }
        }
        let share = moved as f64 / 100_000.0;
        println!("ring: {share:.3} of keys moved when 1 of 4 boards left");
        assert!((0.20..0.30).contains(&share), "moved {share}");
        assert_eq!(moved_from_live, 0, "no key of a live board moves");

        // Modulo hashing: hash % 4 -> hash % 3 over the live boards moves about 3/4 of them.
        let modulo = Ring::with_hashing(&BOARDS, CacheHashing::Modulo);
        let modulo_moved = keys()
            .iter()
            .filter(|k| {
                let before = modulo.home(k.as_bytes()).expect("a board");
                let after = modulo.pick(k.as_bytes(), |n| n != gone).expect("a board");
                assert_ne!(after, gone);
                before != after
            })
            .count();
        let modulo_share = modulo_moved as f64 / 100_000.0;
        println!("modulo: {modulo_share:.3} of keys moved when 1 of 4 boards left");
        assert!(modulo_share > 0.70, "modulo moved {modulo_share}");
        assert!(share * 2.5 < modulo_share);
    }

    #[test]
    fn the_ring_depends_on_names_not_order() {
        let a = Ring::new(&BOARDS);
        let reversed: Vec<&str> = BOARDS.iter().rev().copied().collect();
        let b = Ring::new(&reversed);
        for key in keys().iter().take(1000) {
            let on_a = BOARDS[a.home(key.as_bytes()).expect("a")];
            let on_b = reversed[b.home(key.as_bytes()).expect("b")];
            assert_eq!(on_a, on_b);
        }
    }

    #[test]
    fn no_live_board_means_no_board() {
        assert_eq!(Ring::new(&BOARDS).pick(b"k", |_| false), None);
        assert_eq!(Ring::new::<&str>(&[]).home(b"k"), None);
        let modulo = Ring::with_hashing(&BOARDS, CacheHashing::Modulo);
        assert_eq!(modulo.pick(b"k", |_| false), None);
        assert_eq!(
            Ring::with_hashing::<&str>(&[], CacheHashing::Modulo).home(b"k"),
            None
        );
    }
}

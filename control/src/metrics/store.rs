//! The metrics store: for every inventory board, its latest full [`Sample`], the figures
//! derived from it, a bounded one-second history of a fixed set of series, its liveness
//! lease and counters; plus the event log and the ingest self-metrics.
//!
//! One `std::sync::Mutex` per board (critical sections are a few microseconds and never
//! await), so ingest tasks of different boards never contend and readers (HTTP handlers)
//! copy out what they need.
//!
//! Memory per board at steady state (after one hour at 1 sample/s, [`ring::DEFAULT_CAPACITY`]
//! slots): timestamps 3600 × 4 B = 14.4 KB, each series 3600 × 4 B = 14.4 KB; a board has 7
//! host series (8 with a temperature sensor), so 115–130 KB, plus ~14.4 KB per role figure
//! (a cache board with 6 figures: +86 KB), plus the latest sample (2–5 KB of structs). That
//! is about 0.13 MB per board without roles, **≈ 65 MB for 500 boards** (≈ 110 MB if every
//! board carried a role with 6 figures).
//!
//! [`ring::DEFAULT_CAPACITY`]: super::ring::DEFAULT_CAPACITY

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lab_api::metrics::Sample;

use super::derive::{derive, Latest};
use super::events::{Event, EventKind, EventLog};
use super::lease::{Lease, Transition};
use super::ring::History;

/// What the inventory says about one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardInfo {
    pub name: String,
    /// Address as written in the inventory.
    pub address: String,
    /// The board's planned roles (auto roles filled in, the db primary as the topology has
    /// it).
    pub roles: Vec<lab_api::Role>,
}

/// A copy of one board's state, for readers.
#[derive(Debug, Clone)]
pub struct BoardSnapshot {
    pub info: BoardInfo,
    pub up: bool,
    pub last_seen_ms: Option<u64>,
    pub arch: Option<String>,
    pub os: Option<String>,
    /// Roles the agent reports figures for (the planner's assignment), in its order.
    pub sampled_roles: Vec<lab_api::Role>,
    pub latest: Option<Latest>,
    pub samples_total: u64,
}

/// Ingest self-metrics (`lab_ingest_*`).
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub samples_total: AtomicU64,
    pub decode_errors_total: AtomicU64,
    pub connects_total: AtomicU64,
    pub connect_failures_total: AtomicU64,
    pub streams_dropped_total: AtomicU64,
    pub streams_open: AtomicU64,
    /// Nanoseconds spent inside [`MetricsStore::ingest`].
    pub ingest_nanos_total: AtomicU64,
}

#[derive(Debug)]
struct BoardState {
    latest: Option<Arc<Sample>>,
    derived: Option<Latest>,
    history: History,
    lease: Lease,
    last_seen_ms: Option<u64>,
    samples_total: u64,
    arch: Option<String>,
    os: Option<String>,
}

struct Slot {
    info: BoardInfo,
    state: Mutex<BoardState>,
}

/// The store; share it behind an `Arc`.
pub struct MetricsStore {
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    pub events: EventLog,
    pub counters: IngestCounters,
}

impl MetricsStore {
    /// A store for `boards` (inventory order kept), `capacity` history points per board,
    /// boards down after `ttl` without a sample.
    pub fn new(boards: Vec<BoardInfo>, capacity: usize, ttl: Duration, events: EventLog) -> Self {
        let index = boards
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        let slots = boards
            .into_iter()
            .map(|info| Slot {
                info,
                state: Mutex::new(BoardState {
                    latest: None,
                    derived: None,
                    history: History::new(capacity),
                    lease: Lease::new(ttl),
                    last_seen_ms: None,
                    samples_total: 0,
                    arch: None,
                    os: None,
                }),
            })
            .collect();
        Self {
            slots,
            index,
            events,
            counters: IngestCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Index of board `name`, if the inventory has it.
    pub fn board_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn info(&self, board: usize) -> Option<&BoardInfo> {
        self.slots.get(board).map(|s| &s.info)
    }

    fn lock(&self, board: usize) -> Option<MutexGuard<'_, BoardState>> {
        self.slots
            .get(board)
            .map(|s| s.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Record what the agent's health said about the board.
    pub fn set_facts(&self, board: usize, arch: String, os: String) {
        if let Some(mut st) = self.lock(board) {
            st.arch = Some(arch);
            st.os = Some(os);
        }
    }

    /// Take in one sample of `board`, received at `now` (`now_ms` wall clock).
    pub fn ingest(&self, board: usize, sample: Sample, now: Instant, now_ms: u64) {
        let started = Instant::now();
        let Some(mut st) = self.lock(board) else {
            return;
        };
        let derived = derive(st.latest.as_deref(), &sample);
        st.history.push(now_ms, &derived.series);
        if st.arch.is_none() && !sample.host.uname.machine.is_empty() {
            st.arch = Some(sample.host.uname.machine.clone());
        }
        st.derived = Some(derived.latest);
        st.latest = Some(Arc::new(sample));
        st.last_seen_ms = Some(now_ms);
        st.samples_total += 1;
        let was_seen = st.samples_total > 1;
        let transition = st.lease.renew(now);
        drop(st);
        self.counters.samples_total.fetch_add(1, Ordering::Relaxed);
        if transition == Transition::Up {
            // The first sample since `lab serve` started is news, not a recovery.
            let (kind, message) = if was_seen {
                (EventKind::Up, "board up: samples flowing again")
            } else {
                (EventKind::Info, "first sample received")
            };
            self.record(board, kind, message.to_string(), now_ms);
        }
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters
            .ingest_nanos_total
            .fetch_add(nanos, Ordering::Relaxed);
    }

    /// Mark down every board whose lease ran out by `now`, recording a `down` event each.
    pub fn check_leases(&self, now: Instant, now_ms: u64) {
        for board in 0..self.slots.len() {
            let Some(mut st) = self.lock(board) else {
                continue;
            };
            let ttl = st.lease.ttl();
            let transition = st.lease.check(now);
            drop(st);
            if transition == Transition::Down {
                let message = format!("board down: no heartbeat for {} s", ttl.as_secs());
                self.record(board, EventKind::Down, message, now_ms);
            }
        }
    }

    /// Record an event about `board`.
    pub fn record(&self, board: usize, kind: EventKind, message: String, ts_ms: u64) {
        let Some(info) = self.info(board) else {
            return;
        };
        self.events.record(Event {
            ts_ms,
            board: info.name.clone(),
            kind,
            message,
        });
    }

    pub fn snapshot(&self, board: usize) -> Option<BoardSnapshot> {
        let info = self.info(board)?.clone();
        let st = self.lock(board)?;
        Some(BoardSnapshot {
            info,
            up: st.lease.is_up(),
            last_seen_ms: st.last_seen_ms,
            arch: st.arch.clone(),
            os: st.os.clone(),
            sampled_roles: st
                .latest
                .as_ref()
                .map(|s| s.roles.iter().map(|r| r.role).collect())
                .unwrap_or_default(),
            latest: st.derived.clone(),
            samples_total: st.samples_total,
        })
    }

    /// Every board, inventory order.
    pub fn snapshots(&self) -> Vec<BoardSnapshot> {
        (0..self.slots.len())
            .filter_map(|b| self.snapshot(b))
            .collect()
    }

    /// Points of `series` of `board` since `since_ms`; `None` for an unknown board.
    pub fn history(&self, board: &str, series: &str, since_ms: u64) -> Option<Vec<(u64, f32)>> {
        let st = self.lock(self.board_index(board)?)?;
        Some(st.history.points_since(series, since_ms))
    }

    /// Whether `board` has (or had, within the history) `series`.
    pub fn has_series(&self, board: &str, series: &str) -> Option<bool> {
        let st = self.lock(self.board_index(board)?)?;
        Some(st.history.has_series(series))
    }

    /// Series names of `board`, host series first in display order, then the rest sorted;
    /// `None` for an unknown board.
    pub fn series_names(&self, board: &str) -> Option<Vec<String>> {
        let st = self.lock(self.board_index(board)?)?;
        let mut names: Vec<String> = super::derive::HOST_SERIES
            .iter()
            .filter(|n| st.history.has_series(n))
            .map(|n| n.to_string())
            .collect();
        for n in st.history.series_names() {
            if !super::derive::HOST_SERIES.contains(&n) {
                names.push(n.to_string());
            }
        }
        Some(names)
    }

    /// (board, latest sample, up, samples received) for every board, inventory order.
    pub fn exposition_view(&self) -> Vec<(String, Option<Arc<Sample>>, bool, u64)> {
        (0..self.slots.len())
            .filter_map(|b| {
                let name = self.info(b)?.name.clone();
                let st = self.lock(b)?;
                Some((name, st.latest.clone(), st.lease.is_up(), st.samples_total))
            })
            .collect()
    }

    /// Bytes held by all history rings.
    pub fn history_bytes(&self) -> usize {
        (0..self.slots.len())
            .filter_map(|b| self.lock(b).map(|st| st.history.heap_bytes()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::lease::HEARTBEAT_TTL;
    use lab_api::metrics::HostSample;

    fn sample(seq: u64) -> Sample {
        Sample {
            board: "a".into(),
            seq,
            timestamp_ms: seq * 1000,
            host: HostSample {
                cpu_percent: seq as f32,
                mem_total_bytes: 100,
                mem_available_bytes: 50,
                ..Default::default()
            },
            roles: vec![],
        }
    }

    fn store() -> MetricsStore {
        let info = |n: &str| BoardInfo {
            name: n.into(),
            address: format!("{n}.lan"),
            roles: vec![],
        };
        MetricsStore::new(
            vec![info("a"), info("b")],
            10,
            HEARTBEAT_TTL,
            EventLog::in_memory(),
        )
    }

    #[test]
    fn ingest_builds_history_and_liveness_events() {
        let s = store();
        let t0 = Instant::now();
        for i in 1..=3 {
            s.ingest(0, sample(i), t0 + Duration::from_secs(i), 1000 * i);
        }
        let pts = s.history("a", "cpu_percent", 0).expect("board a");
        assert_eq!(pts, vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]);
        assert_eq!(s.history("zz", "cpu_percent", 0), None);
        let names = s.series_names("a").expect("a");
        assert_eq!(names[..3], ["cpu_percent", "mem_used_percent", "load1"]);
        assert!(s.snapshot(0).expect("a").up);
        assert!(!s.snapshot(1).expect("b").up);

        s.check_leases(t0 + Duration::from_secs(5), 5000);
        s.check_leases(t0 + Duration::from_secs(7), 7000);
        s.ingest(0, sample(8), t0 + Duration::from_secs(8), 8000);
        let kinds: Vec<(EventKind, String)> = s
            .events
            .since(0)
            .into_iter()
            .map(|e| (e.kind, e.message))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (EventKind::Info, "first sample received".into()),
                (EventKind::Down, "board down: no heartbeat for 3 s".into()),
                (EventKind::Up, "board up: samples flowing again".into()),
            ]
        );
        assert_eq!(s.counters.samples_total.load(Ordering::Relaxed), 4);
        let view = s.exposition_view();
        assert_eq!(view[0].3, 4);
        assert!(view[1].1.is_none());
    }
}

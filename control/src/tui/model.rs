//! The state behind `lab top`'s screen: every board as `/api/boards` last reported it, a short
//! history of CPU and network per board (for sparklines), the last event and whether the last
//! poll of `lab serve` worked. Only data and plain updates here; no I/O.

use std::collections::{HashMap, VecDeque};

use crate::metrics::events::Event;
use crate::serve_api::BoardJson;

/// Samples kept per board for the sparklines (one a second).
pub const SPARK_LEN: usize = 120;
/// Events kept for the events pane.
pub const EVENTS_KEPT: usize = 100;

/// Recent values of one board.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoardHistory {
    /// CPU %, oldest first.
    pub cpu: VecDeque<f64>,
    /// Network rx + tx bytes/s, oldest first.
    pub net: VecDeque<f64>,
    /// `last_seen_ms` of the newest sample pushed (a sample is pushed once).
    pub last_ts_ms: u64,
}

impl BoardHistory {
    fn push(&mut self, ts_ms: u64, cpu: f64, net: f64) {
        if ts_ms <= self.last_ts_ms {
            return;
        }
        self.last_ts_ms = ts_ms;
        push_bounded(&mut self.cpu, cpu);
        push_bounded(&mut self.net, net);
    }
}

fn push_bounded(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == SPARK_LEN {
        q.pop_front();
    }
    q.push_back(if v.is_finite() { v } else { 0.0 });
}

/// Everything `lab top` draws.
#[derive(Debug, Clone, Default)]
pub struct TopModel {
    /// Where the data comes from (`http://127.0.0.1:7480`).
    pub source: String,
    /// Boards in the order `lab serve` lists them (inventory order).
    pub boards: Vec<BoardJson>,
    pub history: HashMap<String, BoardHistory>,
    pub last_event: Option<Event>,
    /// The newest events, oldest first (at most [`EVENTS_KEPT`]).
    pub events: VecDeque<Event>,
    /// The last poll's failure, shown until a poll works again.
    pub error: Option<String>,
    /// Wall-clock ms of the last good poll.
    pub updated_ms: Option<u64>,
}

impl TopModel {
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Boards up, boards known.
    pub fn up_count(&self) -> (usize, usize) {
        (
            self.boards.iter().filter(|b| b.up).count(),
            self.boards.len(),
        )
    }

    /// Take a fresh `/api/boards` answer: replace the boards, push each board's newest sample
    /// into its history (once per sample), forget boards no longer listed.
    pub fn apply_boards(&mut self, boards: Vec<BoardJson>, now_ms: u64) {
        for b in &boards {
            let (Some(latest), Some(ts)) = (&b.latest, b.last_seen_ms) else {
                continue;
            };
            self.history.entry(b.board.clone()).or_default().push(
                ts,
                latest.cpu_percent,
                latest.net_rx_bps + latest.net_tx_bps,
            );
        }
        self.history
            .retain(|name, _| boards.iter().any(|b| &b.board == name));
        self.boards = boards;
        self.error = None;
        self.updated_ms = Some(now_ms);
    }

    /// Seed a board's history from `/api/history` points (`cpu` and `net` as `[ts_ms, v]`,
    /// oldest first; `net` is rx+tx, matched to `cpu` by the second). Used once at start so
    /// sparklines are not empty.
    pub fn seed_history(&mut self, board: &str, cpu: &[(u64, f32)], net: &[(u64, f32)]) {
        let h = self.history.entry(board.to_string()).or_default();
        if h.last_ts_ms != 0 {
            return;
        }
        // Series of one sample share its timestamp; match by second to be lenient.
        let net_at: HashMap<u64, f32> = net.iter().map(|&(ts, v)| (ts / 1000, v)).collect();
        let skip = cpu.len().saturating_sub(SPARK_LEN);
        for (ts, v) in cpu.iter().skip(skip) {
            let n = net_at.get(&(ts / 1000)).copied().unwrap_or(0.0);
            h.push(*ts, f64::from(*v), f64::from(n));
        }
    }

    /// Take events from `/api/events` (any order): those newer than the newest known are
    /// kept for the events pane, and the newest is the header's "last event".
    pub fn apply_events(&mut self, mut events: Vec<Event>) {
        events.sort_by_key(|e| e.ts_ms);
        let known = self.last_event_ms();
        for e in events.iter().filter(|e| known == 0 || e.ts_ms > known) {
            if self.events.len() == EVENTS_KEPT {
                self.events.pop_front();
            }
            self.events.push_back(e.clone());
        }
        if let Some(newest) = events.into_iter().last() {
            let newer = self
                .last_event
                .as_ref()
                .is_none_or(|old| newest.ts_ms >= old.ts_ms);
            if newer {
                self.last_event = Some(newest);
            }
        }
    }

    /// A poll failed: keep the last data, say what went wrong.
    pub fn set_error(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }

    /// `ts_ms` of the newest event known (to ask only for newer ones).
    pub fn last_event_ms(&self) -> u64 {
        self.last_event.as_ref().map_or(0, |e| e.ts_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve_api::LatestJson;

    pub(crate) fn board(name: &str, up: bool, ts: Option<u64>, cpu: f64) -> BoardJson {
        BoardJson {
            board: name.into(),
            address: "10.0.0.1".into(),
            roles: vec![],
            up,
            last_seen_ms: ts,
            arch: None,
            os: None,
            latest: ts.map(|_| LatestJson {
                cpu_percent: cpu,
                mem_used_bytes: 1,
                mem_total_bytes: 2,
                load1: 0.0,
                temp_c: None,
                net_rx_bps: 10.0,
                net_tx_bps: 5.0,
                disk_read_bps: 0.0,
                disk_write_bps: 0.0,
                throttled: None,
                gpu_load_percent: None,
                key_figure: None,
            }),
        }
    }

    #[test]
    fn a_sample_is_pushed_once_and_gone_boards_are_forgotten() {
        let mut m = TopModel::new("x");
        m.apply_boards(vec![board("a", true, Some(1000), 5.0)], 1);
        m.apply_boards(vec![board("a", true, Some(1000), 5.0)], 2);
        m.apply_boards(
            vec![
                board("a", true, Some(2000), 7.0),
                board("b", false, None, 0.0),
            ],
            3,
        );
        let h = &m.history["a"];
        assert_eq!(h.cpu, VecDeque::from(vec![5.0, 7.0]));
        assert_eq!(h.net, VecDeque::from(vec![15.0, 15.0]));
        assert_eq!(m.up_count(), (1, 2));
        m.apply_boards(vec![board("b", true, Some(3000), 1.0)], 4);
        assert!(!m.history.contains_key("a"));
    }

    #[test]
    fn seeding_then_live_samples_do_not_repeat() {
        let mut m = TopModel::new("x");
        m.seed_history("a", &[(1000, 1.0), (2000, 2.0)], &[(2003, 9.0)]);
        m.apply_boards(vec![board("a", true, Some(2000), 2.0)], 1);
        m.apply_boards(vec![board("a", true, Some(3000), 3.0)], 2);
        assert_eq!(m.history["a"].cpu, VecDeque::from(vec![1.0, 2.0, 3.0]));
        assert_eq!(m.history["a"].net, VecDeque::from(vec![0.0, 9.0, 15.0]));
    }

    #[test]
    fn the_newest_event_wins() {
        use crate::metrics::events::EventKind;
        let ev = |ts| Event {
            ts_ms: ts,
            board: "a".into(),
            kind: EventKind::Down,
            message: format!("m{ts}"),
        };
        let mut m = TopModel::new("x");
        m.apply_events(vec![ev(5), ev(9), ev(7)]);
        assert_eq!(m.last_event_ms(), 9);
        m.apply_events(vec![ev(3)]);
        assert_eq!(m.last_event_ms(), 9);
        m.apply_events(vec![ev(11)]);
        let kept: Vec<u64> = m.events.iter().map(|e| e.ts_ms).collect();
        assert_eq!(kept, vec![5, 7, 9, 11]);
    }
}

//! Where every request's outcome goes: the whole run's totals (latency histograms, errors by
//! kind, who served, cache and database answers) and the current second's window, which
//! becomes a timeline row when the second is over. One mutex, held for a few counter updates
//! per request; the histograms are fixed-size, so memory does not grow with the run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab_api::app;

use super::client::{Answer, Failure, FailureKind};
use super::histogram::Histogram;
use super::schedule::LATE_AFTER;
use super::timeline::{Row, Window};
use super::workload::Op;

/// A kind of failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// No HTTP answer.
    Failure(FailureKind),
    /// An answer whose status is not 2xx.
    Status(u16),
}

impl ErrorKind {
    /// As the JSON summary names it: `connect`, `timeout`, `io`, `http_503`.
    pub fn key(&self) -> String {
        match self {
            ErrorKind::Failure(FailureKind::Connect) => "connect".into(),
            ErrorKind::Failure(FailureKind::Timeout) => "timeout".into(),
            ErrorKind::Failure(FailureKind::Io) => "io".into(),
            ErrorKind::Status(code) => format!("http_{code}"),
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::Status(code) => write!(f, "HTTP {code}"),
            other => f.write_str(&other.key()),
        }
    }
}

/// The whole run, added up.
#[derive(Debug, Default)]
pub struct Totals {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// From when each request was due (open loop) or sent (closed loop) to its last byte.
    pub latency: Histogram,
    /// From when each request was really sent to its last byte.
    pub service: Histogram,
    /// How long after its due time each request was sent (open loop).
    pub start_lag: Histogram,
    pub late: u64,
    pub late_at_limit: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first failure of each kind, in words.
    pub error_examples: BTreeMap<ErrorKind, String>,
    /// `X-Served-By` -> answers.
    pub served_by: HashMap<String, u64>,
    /// Answers without `X-Served-By`.
    pub served_by_unknown: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub db_primary: u64,
    pub db_replica: u64,
    /// Requests per [`Op`] (indexed by [`Op::index`]).
    pub ops: [u64; 4],
    /// The post ids of the writes answered 2xx, what the app promised to keep (only when
    /// the recorder keeps them).
    pub acknowledged_writes: Vec<u64>,
}

/// The headers of an answer that the summary counts, read before the lock is taken.
struct Seen<'a> {
    served_by: Option<&'a str>,
    cache: Option<bool>,
    db_primary: Option<bool>,
}

fn seen(answer: &Answer) -> Seen<'_> {
    let header = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok());
    Seen {
        served_by: header(app::SERVED_BY)
            .map(str::trim)
            .filter(|s| !s.is_empty()),
        cache: header(app::CACHE).and_then(|v| {
            let v = v.trim();
            if v.eq_ignore_ascii_case("HIT") {
                Some(true)
            } else if v.eq_ignore_ascii_case("MISS") {
                Some(false)
            } else {
                None
            }
        }),
        db_primary: header(app::DB).and_then(|v| {
            let v = v.trim_start();
            if v.starts_with("primary") {
                Some(true)
            } else if v.starts_with("replica") {
                Some(false)
            } else {
                None
            }
        }),
    }
}

struct Inner {
    /// 0-based second the window is collecting.
    second: u64,
    window: Window,
    rows: Vec<Row>,
    /// Rows already handed out by [`Recorder::roll`].
    reported: usize,
    totals: Totals,
}

/// Collects the outcomes of one measured run.
pub struct Recorder {
    /// Whether [`Totals::acknowledged_writes`] is kept.
    keep_writes: bool,
    start: Instant,
    /// Rows of a full run: the duration in seconds, rounded up.
    seconds: u64,
    duration: Duration,
    in_flight: AtomicU64,
    /// Requests sent, per second (kept apart from the lock: sending is the hot path).
    sent: Box<[AtomicU64]>,
    inner: Mutex<Inner>,
}

/// How long one request took, and (open loop) how late it started.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From its due time (open loop) or its send (closed loop) to the last byte.
    pub latency: Duration,
    /// From its send to the last byte.
    pub service: Duration,
    /// Open loop: how long after its due time it was sent, and whether every other
    /// connection was busy when it was taken up.
    pub lag: Option<(Duration, bool)>,
}

impl Recorder {
    pub fn new(start: Instant, duration: Duration) -> Self {
        let seconds = (duration.as_secs_f64().ceil() as u64).max(1);
        Recorder {
            keep_writes: false,
            start,
            seconds,
            duration,
            in_flight: AtomicU64::new(0),
            sent: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
            inner: Mutex::new(Inner {
                second: 0,
                window: Window::default(),
                rows: Vec::with_capacity(seconds as usize),
                reported: 0,
                totals: Totals::default(),
            }),
        }
    }

    /// Also keep the post id of every write answered 2xx (`--verify-writes` reads them back
    /// after the run); off, a write's answer is not even parsed.
    pub fn keeping_acknowledged_writes(mut self, keep: bool) -> Self {
        self.keep_writes = keep;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it left counters, not broken invariants.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn second_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start)
            .as_secs()
            .min(self.seconds - 1)
    }

    fn length_of(&self, second: u64, end: Duration) -> f64 {
        (end.as_secs_f64() - second as f64).clamp(0.0, 1.0)
    }

    /// Close the windows before `second` into rows.
    fn advance(&self, inner: &mut Inner, second: u64) {
        while inner.second < second {
            let t = inner.second;
            inner.window.sent = self.sent[t as usize].load(Ordering::Relaxed);
            let row = inner
                .window
                .take_row(t + 1, self.length_of(t, self.duration));
            inner.rows.push(row);
            inner.second += 1;
        }
    }

    /// A request was sent at `at`: counted in its second without taking the lock.
    pub fn started(&self, at: Instant) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.sent[self.second_of(at) as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A request sent earlier finished at `at`.
    pub fn finished(&self, at: Instant, op: Op, timing: Timing, result: &Result<Answer, Failure>) {
        let Timing {
            latency,
            service,
            lag,
        } = timing;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let second = self.second_of(at);
        let written = match result {
            Ok(a) if self.keep_writes && op == Op::Write && a.status.is_success() => {
                serde_json::from_slice::<app::Post>(&a.body)
                    .ok()
                    .map(|p| p.id)
            }
            _ => None,
        };
        let (error, headers) = match result {
            Ok(a) if a.status.is_success() => (None, Some(seen(a))),
            Ok(a) => (Some(ErrorKind::Status(a.status.as_u16())), Some(seen(a))),
            Err(f) => (Some(ErrorKind::Failure(f.kind)), None),
        };
        let mut inner = self.lock();
        // A request finishing just as the second turned may come after the turn: count it in
        // the current second rather than reopen a closed one.
        let second = second.max(inner.second);
        self.advance(&mut inner, second);
        let micros = latency.as_micros() as u64;
        inner.window.latency.record(micros);
        match error {
            None => inner.window.ok += 1,
            Some(_) => inner.window.errors += 1,
        }
        if let Some(Seen {
            cache: Some(hit), ..
        }) = &headers
        {
            if *hit {
                inner.window.hits += 1;
            } else {
                inner.window.misses += 1;
            }
        }
        let t = &mut inner.totals;
        t.latency.record(micros);
        t.service.record(service.as_micros() as u64);
        if let Some((lag, others_busy)) = lag {
            t.start_lag.record(lag.as_micros() as u64);
            if lag > LATE_AFTER {
                t.late += 1;
                if others_busy {
                    t.late_at_limit += 1;
                }
            }
        }
        t.ops[op.index()] += 1;
        t.acknowledged_writes.extend(written);
        match error {
            None => t.ok += 1,
            Some(kind) => {
                t.failed += 1;
                *t.errors.entry(kind).or_default() += 1;
                t.error_examples
                    .entry(kind)
                    .or_insert_with(|| match result {
                        Err(f) => f.detail.clone(),
                        Ok(a) => {
                            let body = String::from_utf8_lossy(&a.body);
                            let body: String = body.trim().chars().take(160).collect();
                            format!("{} {body}", a.status)
                        }
                    });
            }
        }
        if let Some(h) = headers {
            match h.served_by {
                Some(board) => match t.served_by.get_mut(board) {
                    Some(n) => *n += 1,
                    None => {
                        t.served_by.insert(board.to_string(), 1);
                    }
                },
                None => t.served_by_unknown += 1,
            }
            match h.cache {
                Some(true) => t.cache_hits += 1,
                Some(false) => t.cache_misses += 1,
                None => {}
            }
            match h.db_primary {
                Some(true) => t.db_primary += 1,
                Some(false) => t.db_replica += 1,
                None => {}
            }
        }
    }

    /// Close every second that ended before `now`; the closed rows not handed out before
    /// (requests close a second too, when they are the first of the next).
    pub fn roll(&self, now: Instant) -> Vec<Row> {
        let second = now
            .saturating_duration_since(self.start)
            .as_secs()
            .min(self.seconds - 1);
        let mut inner = self.lock();
        self.advance(&mut inner, second);
        let new = inner.rows[inner.reported..].to_vec();
        inner.reported = inner.rows.len();
        new
    }

    /// The run is over: sending stopped `issued_for` after the start (the duration, or less
    /// when cut short) and every request has finished. Closes the last second; the rows and
    /// the totals.
    pub fn finish(self, issued_for: Duration) -> (Vec<Row>, Totals) {
        let end = issued_for.min(self.duration);
        let last = ((end.as_secs_f64().ceil() as u64).max(1) - 1).min(self.seconds - 1);
        let sent: Vec<u64> = self
            .sent
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let mut inner = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        while inner.second < last {
            let t = inner.second;
            let row = inner.window.take_row(t + 1, 1.0);
            inner.rows.push(row);
            inner.second += 1;
        }
        let t = inner.second;
        let length = (end.as_secs_f64() - t as f64).clamp(0.0, 1.0);
        let length = if length > 0.0 { length } else { 1.0 };
        let row = inner.window.take_row(t + 1, length);
        inner.rows.push(row);
        // The final counts: a send counted just after its second was shown is in its row here.
        for row in &mut inner.rows {
            row.sent = sent.get(row.t as usize - 1).copied().unwrap_or(0);
        }
        inner.totals.sent = sent.iter().sum();
        (inner.rows, inner.totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::{HeaderMap, StatusCode};

    fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Result<Answer, Failure> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, hyper::header::HeaderValue::from_static(v));
        }
        Ok(Answer {
            status: StatusCode::from_u16(status).expect("status"),
            headers: map,
            body: Bytes::from_static(b"{\"error\":\"busy\"}"),
        })
    }

    #[test]
    fn outcomes_land_in_their_second_and_in_the_totals() {
        let start = Instant::now();
        let rec = Recorder::new(start, Duration::from_secs(3));
        let ms = Duration::from_millis;
        let at = |s: u64, m: u64| start + Duration::from_secs(s) + ms(m);
        let hit = [
            ("x-served-by", "app-1"),
            ("x-cache", "HIT"),
            ("x-db", "replica db-2"),
        ];
        let miss = [
            ("x-served-by", "app-2"),
            ("x-cache", "MISS"),
            ("x-db", "primary db-1"),
        ];
        let timing = |latency: u64, service: u64, lag: u64, busy: bool| Timing {
            latency: ms(latency),
            service: ms(service),
            lag: Some((ms(lag), busy)),
        };
        // Second 0: two requests, a hit and a miss.
        rec.started(at(0, 0));
        rec.finished(
            at(0, 2),
            Op::Read,
            timing(2, 2, 0, false),
            &answer(200, &hit),
        );
        rec.started(at(0, 500));
        rec.finished(
            at(0, 540),
            Op::Read,
            timing(40, 10, 30, true),
            &answer(200, &miss),
        );
        // Second 1: nothing. Second 2: a 503 and a timeout; one answer after the end.
        rec.started(at(2, 0));
        rec.finished(
            at(2, 1),
            Op::Write,
            timing(1, 1, 0, false),
            &answer(503, &[]),
        );
        rec.started(at(2, 100));
        let timeout = Err(Failure {
            kind: FailureKind::Timeout,
            detail: "no answer within 5s".into(),
        });
        rec.finished(at(4, 0), Op::Read, timing(1900, 1900, 0, false), &timeout);
        assert_eq!(rec.in_flight(), 0);
        let (rows, totals) = rec.finish(Duration::from_secs(3));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.iter().map(|r| r.t).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            (rows[0].sent, rows[0].ok, rows[0].hits, rows[0].misses),
            (2, 2, 1, 1)
        );
        assert!((rows[0].max_ms - 40.0).abs() < 0.5);
        assert_eq!((rows[1].sent, rows[1].ok, rows[1].errors), (0, 0, 0));
        assert_eq!(
            (rows[2].sent, rows[2].errors),
            (2, 2),
            "the late answer is in the last second"
        );
        assert_eq!((totals.sent, totals.ok, totals.failed), (4, 2, 2));
        assert_eq!(totals.errors[&ErrorKind::Status(503)], 1);
        assert_eq!(totals.errors[&ErrorKind::Failure(FailureKind::Timeout)], 1);
        assert!(totals.error_examples[&ErrorKind::Status(503)].contains("busy"));
        assert_eq!(totals.served_by["app-1"], 1);
        assert_eq!(totals.served_by["app-2"], 1);
        assert_eq!(totals.served_by_unknown, 1);
        assert_eq!((totals.cache_hits, totals.cache_misses), (1, 1));
        assert_eq!((totals.db_primary, totals.db_replica), (1, 1));
        assert_eq!((totals.late, totals.late_at_limit), (1, 1));
        assert_eq!(totals.ops[Op::Read.index()], 3);
        assert_eq!(totals.ops[Op::Write.index()], 1);
        assert_eq!(ErrorKind::Status(503).key(), "http_503");
        assert_eq!(ErrorKind::Status(503).to_string(), "HTTP 503");
    }

    #[test]
    fn rolling_closes_finished_seconds_once() {
        let start = Instant::now();
        let rec = Recorder::new(start, Duration::from_secs(5));
        rec.started(start);
        assert!(rec.roll(start + Duration::from_millis(900)).is_empty());
        let closed = rec.roll(start + Duration::from_millis(2100));
        assert_eq!(closed.iter().map(|r| r.t).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(closed[0].sent, 1);
        assert!(rec.roll(start + Duration::from_millis(2200)).is_empty());
        // A request of the next second closes second 3 before the tick does: the tick still
        // hands it out, once.
        rec.started(start + Duration::from_millis(3001));
        let closed = rec.roll(start + Duration::from_millis(3005));
        assert_eq!(closed.iter().map(|r| r.t).collect::<Vec<_>>(), vec![3]);
        // Cut short at 3.5 s: four rows, the last half a second long.
        let (rows, _) = rec.finish(Duration::from_millis(3500));
        assert_eq!(rows.len(), 4);
    }
}

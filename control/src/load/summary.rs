//! The run's result as people and scripts read it: requests sent/ok/failed, achieved rate
//! against what was asked (and the shortfall, said plainly, when the generator could not keep
//! the schedule), latency percentiles, errors by kind, which boards served, cache and database
//! answers. [`Summary`] is also `summary.json`; [`Summary::verdict`] picks the exit code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::Histogram;
use super::schedule::{Punctuality, Shortfall, LATE_AFTER};
use super::stats::Totals;
use super::timeline::micros_to_ms;
use super::workload::{Mix, Op};

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram) -> Self {
        Percentiles {
            p50: micros_to_ms(h.percentile(50.0)),
            p90: micros_to_ms(h.percentile(90.0)),
            p99: micros_to_ms(h.percentile(99.0)),
            p99_9: micros_to_ms(h.percentile(99.9)),
            max: micros_to_ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }

    fn line(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p99_9),
            ms(self.max)
        )
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.3} ms")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses); absent when no answer said.
    pub hit_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DbCounts {
    pub primary: u64,
    pub replica: u64,
}

/// What the app setup made before the measured run.
#[derive(Debug, Clone, Serialize)]
pub struct SetupSummary {
    pub users: usize,
    /// Posts seeded (`app`), or objects uploaded (`objects`).
    pub posts: usize,
    pub seconds: f64,
    /// `objects`: where the objects were fetched from (the edge, or the files board).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_at: Option<String>,
}

/// How the run went, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ran as asked (some requests may have failed: see the errors).
    Done,
    /// The generator could not start the asked requests on time.
    Shortfall,
    /// Not one request was answered 2xx.
    NothingOk,
}

/// The summary of a run (also `summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The URL loaded, and the address it resolved to.
    pub target: String,
    pub address: String,
    pub mix: Mix,
    /// `open` (fixed rate) or `closed` (as fast as the connections go).
    pub mode: &'static str,
    /// Requests/s asked; absent in a closed loop.
    pub rate_asked: Option<f64>,
    pub duration_asked_s: f64,
    /// How long requests were sent (shorter than asked when interrupted).
    pub ran_s: f64,
    pub interrupted: bool,
    pub concurrency: usize,
    pub timeout_s: f64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Requests sent per second of the run.
    pub achieved_rate: f64,
    /// 2xx answers per second of the run.
    pub ok_rate: f64,
    /// From when each request was due (open loop; sent, closed loop) to its last byte.
    pub latency_ms: Percentiles,
    /// From when each request was really sent to its last byte.
    pub service_ms: Percentiles,
    /// Open loop: how long after its time each request was sent.
    pub start_lag_ms: Option<Percentiles>,
    pub punctuality: Option<Punctuality>,
    /// Present when the asked rate was not delivered.
    pub shortfall: Option<Shortfall>,
    /// Failures by kind: `connect`, `timeout`, `io`, `http_<status>`.
    pub errors: BTreeMap<String, u64>,
    /// The first failure of each kind, in words.
    pub error_examples: BTreeMap<String, String>,
    /// Answers by `X-Served-By`.
    pub served_by: BTreeMap<String, u64>,
    /// Answers without `X-Served-By`.
    pub served_by_unknown: u64,
    pub cache: CacheCounts,
    pub db: DbCounts,
    /// Requests by kind (`get`, `read`, `list`, `write`), the kinds used.
    pub requests_by_kind: BTreeMap<String, u64>,
    pub setup: Option<SetupSummary>,
    /// Rows in the timeline (one per second).
    pub seconds: usize,
    /// What the control plane noticed and did during the run (its event log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<super::marks::Mark>,
    /// The acknowledged writes read back after the run (`--verify-writes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes: Option<super::verify::WriteCheck>,
    /// How far each database replica lagged during the run (from `lab serve`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replication_lag: Vec<super::lag::LagSeries>,
}

/// Everything a summary is made from.
pub struct RunFacts<'a> {
    pub target: String,
    pub address: String,
    pub mix: Mix,
    pub rate_asked: Option<f64>,
    pub duration_asked_s: f64,
    pub ran_s: f64,
    pub interrupted: bool,
    pub concurrency: usize,
    pub timeout_s: f64,
    pub totals: &'a Totals,
    pub punctuality: Option<Punctuality>,
    pub setup: Option<SetupSummary>,
    pub seconds: usize,
}

impl Summary {
    pub fn new(f: RunFacts<'_>) -> Self {
        let t = f.totals;
        let per_second = |n: u64| {
            if f.ran_s > 0.0 {
                n as f64 / f.ran_s
            } else {
                0.0
            }
        };
        let cached = t.cache_hits + t.cache_misses;
        Summary {
            target: f.target,
            address: f.address,
            mix: f.mix,
            mode: if f.rate_asked.is_some() {
                "open"
            } else {
                "closed"
            },
            rate_asked: f.rate_asked,
            duration_asked_s: f.duration_asked_s,
            ran_s: f.ran_s,
            interrupted: f.interrupted,
            concurrency: f.concurrency,
            timeout_s: f.timeout_s,
            sent: t.sent,
            ok: t.ok,
            failed: t.failed,
            achieved_rate: per_second(t.sent),
            ok_rate: per_second(t.ok),
            latency_ms: Percentiles::of(&t.latency),
            service_ms: Percentiles::of(&t.service),
            start_lag_ms: f.rate_asked.map(|_| Percentiles::of(&t.start_lag)),
            punctuality: f.punctuality,
            shortfall: f.punctuality.and_then(|p| p.shortfall()),
            errors: t.errors.iter().map(|(k, n)| (k.key(), *n)).collect(),
            error_examples: t
                .error_examples
                .iter()
                .map(|(k, e)| (k.key(), e.clone()))
                .collect(),
            served_by: t.served_by.iter().map(|(k, n)| (k.clone(), *n)).collect(),
            served_by_unknown: t.served_by_unknown,
            cache: CacheCounts {
                hits: t.cache_hits,
                misses: t.cache_misses,
                hit_ratio: (cached > 0).then(|| t.cache_hits as f64 / cached as f64),
            },
            db: DbCounts {
                primary: t.db_primary,
                replica: t.db_replica,
            },
            requests_by_kind: Op::ALL
                .iter()
                .filter(|op| t.ops[op.index()] > 0)
                .map(|op| (op.name().to_string(), t.ops[op.index()]))
                .collect(),
            setup: f.setup,
            seconds: f.seconds,
            events: Vec::new(),
            writes: None,
            replication_lag: Vec::new(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        if self.ok == 0 {
            Verdict::NothingOk
        } else if self.shortfall.is_some() {
            Verdict::Shortfall
        } else {
            Verdict::Done
        }
    }

    /// The summary in words, several lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let how = match self.rate_asked {
            Some(r) => format!("open loop at {} req/s", number(r)),
            None => "closed loop (as fast as it goes)".to_string(),
        };
        let _ = writeln!(
            out,
            "lab load: {} mix against {} ({}), {how}, {} connection(s), {:.1} s{}",
            self.mix,
            self.target,
            self.address,
            self.concurrency,
            self.ran_s,
            if self.interrupted {
                format!(" (interrupted; {:.0} s asked)", self.duration_asked_s)
            } else {
                String::new()
            }
        );
        if let Some(s) = &self.setup {
            match &s.objects_at {
                None => {
                    let _ = writeln!(
                        out,
                        "  setup       {} users signed up and logged in, {} posts seeded in {:.1} s (not measured)",
                        s.users, s.posts, s.seconds
                    );
                }
                Some(at) => {
                    let _ = writeln!(
                        out,
                        "  setup       {} users signed up and logged in, {} objects uploaded in {:.1} s (not measured); fetched from {at}",
                        s.users, s.posts, s.seconds
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "  requests    {} sent, {} ok, {} failed{}",
            self.sent,
            self.ok,
            self.failed,
            if self.requests_by_kind.len() > 1 {
                let kinds: Vec<String> = self
                    .requests_by_kind
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                format!(" ({})", kinds.join(", "))
            } else {
                String::new()
            }
        );
        match self.rate_asked {
            Some(asked) => {
                let _ = writeln!(
                    out,
                    "  rate        {} req/s achieved of {} asked ({:.1}%); {} ok/s",
                    number(self.achieved_rate),
                    number(asked),
                    100.0 * self.achieved_rate / asked,
                    number(self.ok_rate)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  rate        {} req/s sent, {} ok/s",
                    number(self.achieved_rate),
                    number(self.ok_rate)
                );
            }
        }
        if self.sent > 0 {
            let from = if self.rate_asked.is_some() {
                "from each request's scheduled time"
            } else {
                "from send"
            };
            let _ = writeln!(out, "  latency     {}  ({from})", self.latency_ms.line());
            if let Some(lag) = &self.start_lag_ms {
                let _ = writeln!(out, "  service     {}  (from send)", self.service_ms.line());
                let _ = writeln!(
                    out,
                    "  start lag   {}  (send time behind schedule)",
                    lag.line()
                );
            }
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors      none");
        } else {
            let _ = writeln!(out, "  errors      {}", self.errors_line());
            for (kind, example) in &self.error_examples {
                let _ = writeln!(out, "              first {kind}: {example}");
            }
        }
        if !self.served_by.is_empty() {
            let answered: u64 = self.served_by.values().sum::<u64>() + self.served_by_unknown;
            let mut parts: Vec<String> = self
                .served_by
                .iter()
                .map(|(b, n)| format!("{b} {n} ({:.0}%)", 100.0 * *n as f64 / answered as f64))
                .collect();
            if self.served_by_unknown > 0 {
                parts.push(format!("unsaid {}", self.served_by_unknown));
            }
            let _ = writeln!(out, "  served by   {}", parts.join(", "));
        }
        if let Some(ratio) = self.cache.hit_ratio {
            let _ = writeln!(
                out,
                "  cache       {} HIT, {} MISS (hit ratio {:.1}%)",
                self.cache.hits,
                self.cache.misses,
                100.0 * ratio
            );
        }
        if self.db.primary + self.db.replica > 0 {
            let _ = writeln!(
                out,
                "  database    {} answers from the primary, {} from replicas",
                self.db.primary, self.db.replica
            );
        }
        if let Some(w) = &self.writes {
            let _ = writeln!(
                out,
                "  writes      {} acknowledged, {} read back afterwards, {} lost{}{}",
                w.acknowledged,
                w.found,
                w.lost,
                if w.unverified > 0 {
                    format!(", {} unverified (no answer)", w.unverified)
                } else {
                    String::new()
                },
                if w.lost_ids.is_empty() {
                    String::new()
                } else {
                    let ids: Vec<String> = w.lost_ids.iter().map(u64::to_string).collect();
                    format!(" (post ids {})", ids.join(", "))
                }
            );
        }
        if !self.replication_lag.is_empty() {
            let parts: Vec<String> = self
                .replication_lag
                .iter()
                .map(|l| format!("{} at most {:.0} s", l.board, l.max()))
                .collect();
            let _ = writeln!(out, "  replica lag {}", parts.join(", "));
        }
        if let Some(s) = &self.shortfall {
            let _ = writeln!(out, "{}", self.shortfall_text(s));
        }
        if self.sent > 0 && self.ok == 0 {
            let _ = writeln!(
                out,
                "NOTHING ANSWERED OK: every request failed ({}); is {} up?",
                self.errors_line(),
                self.target
            );
        }
        if !self.events.is_empty() {
            let _ = writeln!(out, "cluster events during the run (lab events):");
            for e in &self.events {
                let _ = writeln!(out, "  +{:>6.1} s  {}: {}", e.at_s, e.board, e.message);
            }
        }
        out
    }

    fn errors_line(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| match k.strip_prefix("http_") {
                Some(code) => format!("HTTP {code}: {n}"),
                None => format!("{k}: {n}"),
            })
            .collect();
        parts.join(", ")
    }

    fn shortfall_text(&self, s: &Shortfall) -> String {
        let asked = self.rate_asked.unwrap_or(0.0);
        let mut text = format!(
            "SHORTFALL: {} of {} scheduled requests did not start on time ({:.1}%): {} never started, {} started more than {} ms late. Achieved {} req/s of {} asked.",
            s.not_started + s.late,
            s.scheduled,
            100.0 * s.fraction,
            s.not_started,
            s.late,
            LATE_AFTER.as_millis(),
            number(self.achieved_rate),
            number(asked),
        );
        if s.cause == "concurrency limit" {
            let _ = write!(
                text,
                "\n  Cause: all {} connection(s) were busy: at a service time of {} a connection carries about {} req/s. Raise --concurrency or ask a lower --rate.",
                self.concurrency,
                ms(self.service_ms.mean),
                number(if self.service_ms.mean > 0.0 { 1000.0 / self.service_ms.mean } else { 0.0 })
            );
        } else {
            text.push_str(
                "\n  Cause: connections were free but requests still started late: this machine could not generate the rate (CPU busy?). Ask a lower --rate or run lab load elsewhere.",
            );
        }
        text
    }
}

/// A rate as people read it: 200, 1.5, 12345.
fn number(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::ErrorKind;

    fn facts(totals: &Totals, punctuality: Option<Punctuality>) -> RunFacts<'_> {
        RunFacts {
            target: "http://127.0.0.1:8080/".into(),
            address: "127.0.0.1:8080".into(),
            mix: Mix::Static,
            rate_asked: Some(100.0),
            duration_asked_s: 10.0,
            ran_s: 10.0,
            interrupted: false,
            concurrency: 1,
            timeout_s: 5.0,
            totals,
            punctuality,
            setup: None,
            seconds: 10,
        }
    }

    #[test]
    fn a_run_that_kept_up_reads_plainly() {
        let mut t = Totals {
            sent: 1000,
            ok: 990,
            failed: 10,
            ..Totals::default()
        };
        t.errors.insert(ErrorKind::Status(503), 10);
        t.served_by.insert("app-1".into(), 1000);
        for _ in 0..1000 {
            t.latency.record(2_000);
        }
        let p = Punctuality {
            scheduled: 1000,
            started: 1000,
            late: 0,
            late_at_limit: 0,
        };
        let s = Summary::new(facts(&t, Some(p)));
        assert_eq!(s.verdict(), Verdict::Done);
        assert!((s.achieved_rate - 100.0).abs() < 1e-9);
        let text = s.render();
        assert!(
            text.contains("100 req/s achieved of 100 asked (100.0%)"),
            "{text}"
        );
        assert!(text.contains("HTTP 503: 10"), "{text}");
        assert!(text.contains("app-1 1000 (100%)"), "{text}");
        assert!(!text.contains("SHORTFALL"), "{text}");
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["errors"]["http_503"], 10);
        assert_eq!(json["latency_ms"]["p50"], 2.0);
    }

    #[test]
    fn a_shortfall_is_said_and_sets_the_verdict() {
        let mut t = Totals {
            sent: 200,
            ok: 200,
            ..Totals::default()
        };
        for _ in 0..200 {
            t.service.record(50_000);
        }
        let p = Punctuality {
            scheduled: 1000,
            started: 200,
            late: 199,
            late_at_limit: 199,
        };
        let s = Summary::new(facts(&t, Some(p)));
        assert_eq!(s.verdict(), Verdict::Shortfall);
        let text = s.render();
        assert!(text.contains("SHORTFALL: 999 of 1000"), "{text}");
        assert!(text.contains("800 never started"), "{text}");
        assert!(text.contains("Achieved 20 req/s of 100 asked"), "{text}");
        assert!(text.contains("all 1 connection(s) were busy"), "{text}");
        assert!(text.contains("about 20 req/s"), "{text}");
    }

    #[test]
    fn nothing_ok_wins_over_everything() {
        let mut t = Totals {
            sent: 5,
            failed: 5,
            ..Totals::default()
        };
        t.errors.insert(
            ErrorKind::Failure(crate::load::client::FailureKind::Connect),
            5,
        );
        let s = Summary::new(facts(&t, None));
        assert_eq!(s.verdict(), Verdict::NothingOk);
        assert!(s.render().contains("NOTHING ANSWERED OK"));
    }
}

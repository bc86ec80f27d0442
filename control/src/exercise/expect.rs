//! What a check's `lab load` run must show ([`Expect`]), judged against the run's
//! `summary.json` ([`RunFigures`]): pure, so every verdict and its wording is tested without
//! a cluster. Each finding says what was seen, with the figure, and what was wanted.

use std::collections::BTreeMap;

use lab_api::roles::Role;
use serde::Deserialize;

use crate::load::marks::Mark;
use crate::load::timeline::Row;

/// Bounds on one run's figures; each one given is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Share of requests answered 2xx, at least.
    pub ok_ratio_min: Option<f64>,
    /// Boards that answered (`X-Served-By`), at least.
    pub served_by_count_min: Option<usize>,
    /// Share of the answers the busiest board gave, at most (the load is shared).
    pub served_by_share_max: Option<f64>,
    /// Share of the answers the busiest board gave, at least (the load goes where it is
    /// served fastest).
    pub served_by_share_min: Option<f64>,
    /// Cache hit ratio (`X-Cache`), at least.
    pub cache_hit_ratio_min: Option<f64>,
    /// Share of answers that reached the database (`X-DB`), at most.
    pub db_share_max: Option<f64>,
    /// Share of the database's answers that came from a replica, at least.
    pub db_replica_share_min: Option<f64>,
    /// p99 latency in milliseconds, at most.
    pub p99_ms_max: Option<f64>,
    /// The last this many seconds of the run had no failure (the system healed).
    pub healed_for_s: Option<u64>,
    /// Seconds from the first failure to the last, at most (the failover window).
    pub window_s_max: Option<u64>,
    /// The cache keys a change during the run moved, from a `--sweep` run's misses.
    pub moved: Option<MovedKeys>,
    /// Acknowledged writes the cluster no longer had after the run, at most (the run needs
    /// `--verify-writes`).
    pub lost_writes_max: Option<u64>,
}

/// The share of cache keys a change moved: the cache misses of the timeline's seconds
/// `from_s..=to_s` (which begin at the change and hold at least one whole pass of a
/// `--sweep` run) over `keys` (the posts swept). Each key that moved misses once, at its
/// first read after the change; a key that stayed hits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovedKeys {
    pub from_s: u64,
    pub to_s: u64,
    pub keys: u64,
    /// Share moved, at most.
    pub max: Option<f64>,
    /// Share moved, at least.
    pub min: Option<f64>,
}

impl Expect {
    /// Why the bounds cannot be met by any run, if so.
    pub fn problem(&self) -> Option<String> {
        for (name, value) in [
            ("ok_ratio_min", self.ok_ratio_min),
            ("served_by_share_max", self.served_by_share_max),
            ("served_by_share_min", self.served_by_share_min),
            ("cache_hit_ratio_min", self.cache_hit_ratio_min),
            ("db_share_max", self.db_share_max),
            ("db_replica_share_min", self.db_replica_share_min),
        ] {
            if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return Some(format!("{name} is a share, between 0 and 1"));
            }
        }
        if self.p99_ms_max.is_some_and(|v| v <= 0.0) {
            return Some("p99_ms_max must be above 0".to_owned());
        }
        if let Some(m) = &self.moved {
            if m.from_s == 0 || m.to_s < m.from_s || m.keys == 0 {
                return Some(
                    "moved needs 1 <= from_s <= to_s (timeline seconds) and keys above 0"
                        .to_owned(),
                );
            }
            if [m.max, m.min]
                .into_iter()
                .flatten()
                .any(|v| !(0.0..=1.0).contains(&v))
            {
                return Some("moved's max and min are shares, between 0 and 1".to_owned());
            }
        }
        None
    }
}

/// The figures of a `lab load` summary.json that checks look at.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunFigures {
    pub sent: u64,
    pub ok: u64,
    #[serde(default)]
    pub served_by: BTreeMap<String, u64>,
    #[serde(default)]
    pub cache: CacheFigures,
    #[serde(default)]
    pub db: DbFigures,
    #[serde(default)]
    pub latency_ms: LatencyFigures,
    /// The acknowledged writes read back (`--verify-writes`).
    #[serde(default)]
    pub writes: Option<crate::load::verify::WriteCheck>,
    /// What the control plane logged during the run.
    #[serde(default)]
    pub events: Vec<Mark>,
    /// The run's seconds (from timeline.json, not the summary).
    #[serde(skip)]
    pub seconds: Vec<Row>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CacheFigures {
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DbFigures {
    pub primary: u64,
    pub replica: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LatencyFigures {
    pub p99: f64,
}

/// One bound, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub passed: bool,
    /// What was seen and what was wanted, in words.
    pub text: String,
}

fn percent(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

/// Judge `run` against `expect`: one finding per bound given.
pub fn judge(expect: &Expect, run: &RunFigures) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |passed: bool, text: String| findings.push(Finding { passed, text });
    let answered: u64 = run.served_by.values().sum();
    if let Some(min) = expect.ok_ratio_min {
        let ratio = if run.sent == 0 {
            0.0
        } else {
            run.ok as f64 / run.sent as f64
        };
        add(
            ratio >= min,
            format!(
                "{} of {} requests answered OK ({}; wanted at least {})",
                run.ok,
                run.sent,
                percent(ratio),
                percent(min)
            ),
        );
    }
    let by_board = || {
        run.served_by
            .iter()
            .map(|(b, n)| format!("{b} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(min) = expect.served_by_count_min {
        let boards = run.served_by.len();
        add(
            boards >= min,
            format!(
                "{boards} board(s) answered ({}; wanted at least {min})",
                if boards == 0 {
                    "none".to_owned()
                } else {
                    by_board()
                }
            ),
        );
    }
    let busiest = run
        .served_by
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(b, n)| (b.clone(), *n as f64 / answered.max(1) as f64));
    type Met = fn(&f64, &f64) -> bool;
    let share_bounds = [
        expect
            .served_by_share_min
            .map(|min| (min, "at least", PartialOrd::ge as Met)),
        expect
            .served_by_share_max
            .map(|max| (max, "at most", PartialOrd::le as Met)),
    ];
    for (bound, wanted, met) in share_bounds.into_iter().flatten() {
        match &busiest {
            Some((board, share)) => add(
                met(share, &bound),
                format!(
                    "the busiest board, {board}, answered {} of the requests (wanted {wanted} {}; {})",
                    percent(*share),
                    percent(bound),
                    by_board()
                ),
            ),
            None => add(false, "no board answered".to_owned()),
        }
    }
    if let Some(min) = expect.cache_hit_ratio_min {
        let lookups = run.cache.hits + run.cache.misses;
        let ratio = if lookups == 0 {
            0.0
        } else {
            run.cache.hits as f64 / lookups as f64
        };
        add(
            ratio >= min,
            if lookups == 0 {
                format!(
                    "no answer came through a cache (wanted a hit ratio of at least {})",
                    percent(min)
                )
            } else {
                format!(
                    "cache hit ratio {} ({} hits, {} misses; wanted at least {})",
                    percent(ratio),
                    run.cache.hits,
                    run.cache.misses,
                    percent(min)
                )
            },
        );
    }
    if let Some(max) = expect.db_share_max {
        let reached = run.db.primary + run.db.replica;
        let share = reached as f64 / answered.max(1) as f64;
        add(
            share <= max,
            format!(
                "{} of the answers reached the database ({reached} of {answered}; wanted at most {})",
                percent(share),
                percent(max)
            ),
        );
    }
    if let Some(min) = expect.db_replica_share_min {
        let reached = run.db.primary + run.db.replica;
        let share = run.db.replica as f64 / reached.max(1) as f64;
        add(
            share >= min && reached > 0,
            format!(
                "{} of the database's answers came from a replica ({} replica, {} primary; wanted at least {})",
                percent(share),
                run.db.replica,
                run.db.primary,
                percent(min)
            ),
        );
    }
    let failing: Vec<u64> = run
        .seconds
        .iter()
        .filter(|s| s.errors > 0)
        .map(|s| s.t)
        .collect();
    let last_second = run.seconds.iter().map(|s| s.t).max().unwrap_or(0);
    if let Some(healed) = expect.healed_for_s {
        let tail_failures: u64 = run
            .seconds
            .iter()
            .filter(|s| s.t + healed > last_second)
            .map(|s| s.errors)
            .sum();
        add(
            tail_failures == 0 && last_second >= healed,
            match failing.last() {
                _ if last_second < healed => {
                    format!("the run lasted {last_second} s, less than the {healed} s it must end healed")
                }
                None => format!("no failure at all in the {last_second} s run"),
                Some(last) if tail_failures == 0 => format!(
                    "healed: no failure in the last {healed} s (the last at {last} s of {last_second})"
                ),
                Some(_) => format!(
                    "not healed: {tail_failures} failure(s) in the last {healed} s of the {last_second} s run"
                ),
            },
        );
    }
    if let Some(max) = expect.window_s_max {
        let window = match (failing.first(), failing.last()) {
            (Some(first), Some(last)) => last - first + 1,
            _ => 0,
        };
        add(
            window <= max,
            match failing.first() {
                Some(first) => format!(
                    "failures from {first} s to {} s: a window of {window} s (wanted at most {max} s)",
                    failing.last().copied().unwrap_or(*first)
                ),
                None => format!("no failure window (wanted at most {max} s)"),
            },
        );
    }
    if let Some(m) = &expect.moved {
        let (hits, misses) = run
            .seconds
            .iter()
            .filter(|s| (m.from_s..=m.to_s).contains(&s.t))
            .fold((0, 0), |(h, n), s| (h + s.hits, n + s.misses));
        let share = misses as f64 / m.keys as f64;
        let span = format!("seconds {}-{}", m.from_s, m.to_s);
        if hits + misses < m.keys {
            add(
                false,
                format!(
                    "only {} reads went through a cache in {span}, less than one pass over the {} keys \
                     (was the run a --sweep, and long enough?)",
                    hits + misses,
                    m.keys
                ),
            );
        } else {
            let wanted = match (m.min, m.max) {
                (Some(lo), Some(hi)) => format!("between {} and {}", percent(lo), percent(hi)),
                (Some(lo), None) => format!("at least {}", percent(lo)),
                (None, Some(hi)) => format!("at most {}", percent(hi)),
                (None, None) => "any share".to_owned(),
            };
            add(
                m.min.is_none_or(|lo| share >= lo) && m.max.is_none_or(|hi| share <= hi),
                format!(
                    "the change moved {misses} of {} keys ({}: the cache misses in {span}, \
                     {hits} hits; wanted {wanted})",
                    m.keys,
                    percent(share)
                ),
            );
        }
    }
    if let Some(max) = expect.lost_writes_max {
        match &run.writes {
            None => add(
                false,
                "the run did not read its writes back (its load needs --verify-writes)".to_owned(),
            ),
            Some(w) => add(
                w.lost <= max && w.acknowledged > 0,
                if w.acknowledged == 0 {
                    "no write was acknowledged: nothing to lose, nothing shown".to_owned()
                } else {
                    format!(
                        "{} of {} acknowledged writes lost (read back after the run{}; wanted at most {max})",
                        w.lost,
                        w.acknowledged,
                        if w.unverified > 0 {
                            format!(", {} unanswered", w.unverified)
                        } else {
                            String::new()
                        }
                    )
                },
            ),
        }
    }
    if let Some(max) = expect.p99_ms_max {
        add(
            run.latency_ms.p99 <= max && run.ok > 0,
            format!(
                "p99 {:.1} ms (wanted at most {max:.1} ms)",
                run.latency_ms.p99
            ),
        );
    }
    findings
}

/// A drill pulled a plug only if the control plane saw the board go down during the run:
/// one finding per board the drill's `lab kill` names (a board already down, or a control
/// plane that is not running, drills nothing).
pub fn judge_drill(killed: &[&str], run: &RunFigures) -> Vec<Finding> {
    killed
        .iter()
        .map(|board| {
            let seen = run
                .events
                .iter()
                .any(|e| e.board == *board && e.kind == "down");
            Finding {
                passed: seen,
                text: if seen {
                    format!("the control plane saw {board} go down")
                } else {
                    format!(
                        "the control plane never saw {board} go down during the run: was it down \
                         already, or is `lab serve` stopped? (a fresh cluster: lab exercise start N --reset)"
                    )
                },
            }
        })
        .collect()
}

/// Judge whether each of `roles` runs, and on a board of its own: `running` is what each
/// board's agent says runs there (board, roles in state running).
pub fn judge_apart(roles: &[Role], running: &[(String, Vec<Role>)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let holders = |role: Role| -> Vec<&str> {
        running
            .iter()
            .filter(|(_, r)| r.contains(&role))
            .map(|(b, _)| b.as_str())
            .collect()
    };
    for role in roles {
        let on = holders(*role);
        findings.push(Finding {
            passed: !on.is_empty(),
            text: if on.is_empty() {
                format!("no board runs {role} (`lab status` says why)")
            } else {
                format!("{role} runs on {}", on.join(", "))
            },
        });
    }
    for (board, held) in running {
        let shared: Vec<String> = roles
            .iter()
            .filter(|r| held.contains(r))
            .map(|r| r.to_string())
            .collect();
        if shared.len() > 1 {
            findings.push(Finding {
                passed: false,
                text: format!(
                    "{board} still runs {} together (wanted each on a board of its own)",
                    shared.join(" and ")
                ),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(served: &[(&str, u64)], hits: u64, misses: u64, db: u64) -> RunFigures {
        let answered: u64 = served.iter().map(|(_, n)| n).sum();
        RunFigures {
            sent: answered,
            ok: answered,
            served_by: served.iter().map(|(b, n)| (b.to_string(), *n)).collect(),
            cache: CacheFigures { hits, misses },
            db: DbFigures {
                primary: db,
                replica: 0,
            },
            latency_ms: LatencyFigures { p99: 12.0 },
            writes: None,
            events: Vec::new(),
            seconds: Vec::new(),
        }
    }

    #[test]
    fn two_apps_sharing_pass_one_app_alone_fails() {
        let expect = Expect {
            served_by_count_min: Some(2),
            served_by_share_max: Some(0.7),
            ..Expect::default()
        };
        let shared = judge(&expect, &run(&[("app-1", 52), ("app-2", 48)], 0, 0, 100));
        assert!(shared.iter().all(|f| f.passed), "{shared:?}");
        let alone = judge(&expect, &run(&[("app-1", 100)], 0, 0, 100));
        assert!(alone.iter().all(|f| !f.passed), "{alone:?}");
        assert_eq!(
            alone[0].text,
            "1 board(s) answered (app-1 100; wanted at least 2)"
        );
        assert!(
            alone[1].text.contains("app-1, answered 100.0 %"),
            "{}",
            alone[1].text
        );
    }

    #[test]
    fn a_cache_that_is_missing_says_so() {
        let expect = Expect {
            cache_hit_ratio_min: Some(0.6),
            db_share_max: Some(0.5),
            ..Expect::default()
        };
        let cached = judge(&expect, &run(&[("app-1", 100)], 80, 20, 20));
        assert!(cached.iter().all(|f| f.passed), "{cached:?}");
        let uncached = judge(&expect, &run(&[("app-1", 100)], 0, 0, 100));
        assert!(
            !uncached[0].passed
                && uncached[0]
                    .text
                    .starts_with("no answer came through a cache")
        );
        assert!(!uncached[1].passed && uncached[1].text.contains("100.0 % of the answers reached"));
    }

    #[test]
    fn nothing_answered_fails_every_bound() {
        let expect = Expect {
            ok_ratio_min: Some(0.99),
            served_by_count_min: Some(1),
            served_by_share_max: Some(1.0),
            p99_ms_max: Some(100.0),
            ..Expect::default()
        };
        let dead = RunFigures {
            sent: 40,
            ..RunFigures::default()
        };
        let findings = judge(&expect, &dead);
        assert_eq!(findings.len(), 4);
        assert!(findings.iter().all(|f| !f.passed), "{findings:?}");
        assert_eq!(
            findings[0].text,
            "0 of 40 requests answered OK (0.0 %; wanted at least 99.0 %)"
        );
    }

    #[test]
    fn reads_from_the_primary_alone_miss_the_replica_bound() {
        let expect = Expect {
            db_replica_share_min: Some(0.5),
            ..Expect::default()
        };
        let mut split = run(&[("app-1", 100)], 0, 0, 20);
        split.db.replica = 80;
        assert!(judge(&expect, &split)[0].passed);
        let primary_only = judge(&expect, &run(&[("app-1", 100)], 0, 0, 100));
        assert!(!primary_only[0].passed);
        assert_eq!(
            primary_only[0].text,
            "0.0 % of the database's answers came from a replica (0 replica, 100 primary; wanted at least 50.0 %)"
        );
    }

    #[test]
    fn a_failover_window_and_a_healed_end() {
        let expect = Expect {
            healed_for_s: Some(5),
            window_s_max: Some(8),
            ..Expect::default()
        };
        let seconds = |errors: &[(u64, u64)]| -> Vec<Row> {
            (1..=20)
                .map(|t| Row {
                    t,
                    errors: errors.iter().find(|(s, _)| *s == t).map_or(0, |(_, e)| *e),
                    ..Row::default()
                })
                .collect()
        };
        let mut healed = run(&[("app-1", 100)], 0, 0, 0);
        healed.seconds = seconds(&[(5, 3), (6, 4), (9, 1)]);
        let findings = judge(&expect, &healed);
        assert!(findings.iter().all(|f| f.passed), "{findings:?}");
        assert_eq!(
            findings[0].text,
            "healed: no failure in the last 5 s (the last at 9 s of 20)"
        );
        assert_eq!(
            findings[1].text,
            "failures from 5 s to 9 s: a window of 5 s (wanted at most 8 s)"
        );
        let mut stuck = run(&[("app-1", 100)], 0, 0, 0);
        stuck.seconds = seconds(&(5..=20).map(|t| (t, 2)).collect::<Vec<_>>());
        let findings = judge(&expect, &stuck);
        assert!(findings.iter().all(|f| !f.passed), "{findings:?}");
        assert_eq!(
            findings[0].text,
            "not healed: 10 failure(s) in the last 5 s of the 20 s run"
        );
    }

    #[test]
    fn impossible_bounds_are_refused() {
        let bad = Expect {
            served_by_share_max: Some(1.5),
            ..Expect::default()
        };
        assert!(bad
            .problem()
            .is_some_and(|p| p.contains("served_by_share_max")));
    }

    #[test]
    fn apart_roles_each_need_a_board_of_their_own() {
        let roles = [Role::App, Role::DbMaster];
        let together = vec![
            (
                "server-1".to_owned(),
                vec![Role::Lb, Role::App, Role::DbMaster],
            ),
            ("db-1".to_owned(), vec![]),
        ];
        let findings = judge_apart(&roles, &together);
        let missed: Vec<&str> = findings
            .iter()
            .filter(|f| !f.passed)
            .map(|f| f.text.as_str())
            .collect();
        assert_eq!(
            missed,
            ["server-1 still runs app and db-master together (wanted each on a board of its own)"]
        );
        let moved = vec![
            ("server-1".to_owned(), vec![Role::Lb, Role::App]),
            ("db-1".to_owned(), vec![Role::DbMaster]),
        ];
        assert!(judge_apart(&roles, &moved).iter().all(|f| f.passed));
        let gone = vec![("server-1".to_owned(), vec![Role::Lb, Role::App])];
        let findings = judge_apart(&roles, &gone);
        assert!(findings
            .iter()
            .any(|f| !f.passed && f.text.starts_with("no board runs db-master")));
    }

    #[test]
    fn moved_keys_are_one_passes_misses() {
        let second = |t, hits, misses| Row {
            t,
            hits,
            misses,
            ..Row::default()
        };
        let expect = Expect {
            moved: Some(MovedKeys {
                from_s: 3,
                to_s: 4,
                keys: 100,
                max: Some(0.45),
                min: None,
            }),
            ..Expect::default()
        };
        assert!(expect.problem().is_none());
        let mut r = run(&[("app-1", 400)], 0, 0, 0);
        // Warm, then a third of the keys moved (missed once), then all hits again.
        r.seconds = vec![
            second(1, 0, 100),
            second(2, 100, 0),
            second(3, 67, 33),
            second(4, 100, 0),
        ];
        let f = judge(&expect, &r);
        assert!(f[0].passed, "{f:?}");
        assert!(
            f[0].text
                .starts_with("the change moved 33 of 100 keys (33.0 %"),
            "{f:?}"
        );
        // Modulo hashing: two thirds moved.
        r.seconds[2] = second(3, 33, 67);
        assert!(!judge(&expect, &r)[0].passed);
        // No cache in the way at all: nothing to judge by.
        r.seconds = vec![second(3, 0, 0), second(4, 0, 0)];
        let f = judge(&expect, &r);
        assert!(
            !f[0].passed && f[0].text.starts_with("only 0 reads"),
            "{f:?}"
        );
        let broken = Expect {
            moved: Some(MovedKeys {
                from_s: 4,
                to_s: 3,
                keys: 100,
                max: None,
                min: None,
            }),
            ..Expect::default()
        };
        assert!(broken.problem().is_some());
    }

    #[test]
    fn lost_writes_are_counted_from_the_read_back() {
        use crate::load::verify::WriteCheck;
        let expect = Expect {
            lost_writes_max: Some(0),
            ..Expect::default()
        };
        let mut r = run(&[("app-1", 100)], 0, 0, 0);
        let f = judge(&expect, &r);
        assert!(
            !f[0].passed && f[0].text.contains("--verify-writes"),
            "{f:?}"
        );
        r.writes = Some(WriteCheck {
            acknowledged: 40,
            found: 40,
            ..WriteCheck::default()
        });
        let f = judge(&expect, &r);
        assert!(f[0].passed, "{f:?}");
        assert_eq!(
            f[0].text,
            "0 of 40 acknowledged writes lost (read back after the run; wanted at most 0)"
        );
        r.writes = Some(WriteCheck {
            acknowledged: 40,
            found: 37,
            lost: 3,
            lost_ids: vec![7, 8, 9],
            ..WriteCheck::default()
        });
        assert!(!judge(&expect, &r)[0].passed);
    }

    #[test]
    fn a_drill_counts_only_when_the_board_was_seen_going_down() {
        let mut r = run(&[("app-1", 100)], 0, 0, 0);
        let f = judge_drill(&["app-2"], &r);
        assert!(
            !f[0].passed && f[0].text.contains("never saw app-2 go down"),
            "{f:?}"
        );
        r.events = vec![
            Mark {
                at_s: 3.0,
                board: "app-2".into(),
                kind: "info".into(),
                message: "lab kill: power cut".into(),
            },
            Mark {
                at_s: 6.0,
                board: "app-2".into(),
                kind: "down".into(),
                message: "board down: no heartbeat for 3 s".into(),
            },
        ];
        let f = judge_drill(&["app-2"], &r);
        assert!(f[0].passed, "{f:?}");
    }
}

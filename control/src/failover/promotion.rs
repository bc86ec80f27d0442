//! Which replica replaces a dead primary, and whether a returning old primary may follow the
//! new one (pure; the manager in [`super`] asks the agents and acts).
//!
//! MariaDB GTIDs are `domain-server-seq`. A replica is a candidate once its relay log is
//! applied (nothing read is left to apply); among candidates the one holding the most
//! (highest sequence per domain, summed) wins, then the lowest name. A returning primary has
//! *errant* transactions when its binlog holds, for some domain and server id, a sequence
//! number beyond what the new primary has from that server: those writes never reached the
//! new primary, and replicating it from there would fork history.

use std::collections::BTreeMap;

use lab_api::spec::DbReplication;

/// One GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// Parses a GTID list (`0-1-42,1-3-7`; empty: none). Unparsable entries are skipped.
pub fn parse_gtids(text: &str) -> Vec<Gtid> {
    text.split(',')
        .filter_map(|g| {
            let mut parts = g.trim().splitn(3, '-');
            Some(Gtid {
                domain: parts.next()?.parse().ok()?,
                server: parts.next()?.parse().ok()?,
                seq: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// How far a position has come: the sum over domains of each domain's highest sequence.
pub fn progress(position: &str) -> u64 {
    let mut per_domain: BTreeMap<u32, u64> = BTreeMap::new();
    for g in parse_gtids(position) {
        let e = per_domain.entry(g.domain).or_default();
        *e = (*e).max(g.seq);
    }
    per_domain.values().sum()
}

/// The replica to promote and why, from the live replicas' states; `None` when no replica has
/// applied its relay log.
pub fn pick(replicas: &[DbReplication]) -> Option<(String, String)> {
    let mut candidates: Vec<&DbReplication> = replicas.iter().filter(|r| r.relay_applied).collect();
    candidates.sort_by(|a, b| {
        progress(&b.gtid_current_pos)
            .cmp(&progress(&a.gtid_current_pos))
            .then_with(|| a.board.cmp(&b.board))
    });
    let best = candidates.first()?;
    let others: Vec<String> = replicas
        .iter()
        .filter(|r| r.board != best.board)
        .map(|r| {
            let note = if r.relay_applied {
                ""
            } else {
                ", relay log not applied"
            };
            format!("{} at {}{note}", r.board, show(&r.gtid_current_pos))
        })
        .collect();
    let reason = if others.is_empty() {
        format!(
            "{} at {}, the only replica",
            best.board,
            show(&best.gtid_current_pos)
        )
    } else {
        format!(
            "{} at {} is the most advanced (relay log applied); {}",
            best.board,
            show(&best.gtid_current_pos),
            others.join("; ")
        )
    };
    Some((best.board.clone(), reason))
}

fn show(position: &str) -> &str {
    if position.is_empty() {
        "(empty)"
    } else {
        position
    }
}

/// For each domain and server id where `returning`'s binlog goes beyond what `primary` has
/// from that server: its latest GTID there and what the primary has (sequence numbers count
/// per domain, so the GTIDs between the two are not all that server's); empty: it may
/// follow `primary`.
pub fn errant(returning: &DbReplication, primary: &DbReplication) -> Vec<String> {
    let has: BTreeMap<(u32, u32), u64> = parse_gtids(&primary.gtid_binlog_state)
        .into_iter()
        .map(|g| ((g.domain, g.server), g.seq))
        .collect();
    parse_gtids(&returning.gtid_binlog_state)
        .into_iter()
        .filter_map(|g| {
            let known = has.get(&(g.domain, g.server)).copied();
            (g.seq > known.unwrap_or(0)).then(|| match known {
                Some(k) => format!(
                    "{}-{}-{} where the primary has {}-{}-{k}",
                    g.domain, g.server, g.seq, g.domain, g.server
                ),
                None => format!(
                    "{}-{}-{} where the primary has none from server {}",
                    g.domain, g.server, g.seq, g.server
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(board: &str, current: &str, state: &str, applied: bool) -> DbReplication {
        DbReplication {
            board: board.into(),
            read_only: true,
            gtid_current_pos: current.into(),
            gtid_binlog_state: state.into(),
            io_running: false,
            gtid_io_pos: current.into(),
            relay_applied: applied,
            primary_reachable: Some(false),
        }
    }

    #[test]
    fn gtid_lists_parse_and_sum_per_domain() {
        assert_eq!(
            parse_gtids("0-1-42, 1-3-7"),
            vec![
                Gtid {
                    domain: 0,
                    server: 1,
                    seq: 42
                },
                Gtid {
                    domain: 1,
                    server: 3,
                    seq: 7
                }
            ]
        );
        assert!(parse_gtids("").is_empty());
        assert!(parse_gtids("garbage").is_empty());
        assert_eq!(progress("0-1-42,1-3-7"), 49);
        assert_eq!(progress("0-1-42,0-2-40"), 42);
    }

    #[test]
    fn the_most_advanced_applied_replica_wins() {
        let replicas = [
            db("db-2", "0-1-40", "", true),
            db("db-3", "0-1-42", "", true),
            db("db-4", "0-1-45", "", false),
        ];
        let (board, reason) = pick(&replicas).expect("a pick");
        assert_eq!(board, "db-3");
        assert!(
            reason.contains("db-4 at 0-1-45, relay log not applied"),
            "{reason}"
        );
        // A tie goes to the first name.
        let tie = [
            db("db-3", "0-1-42", "", true),
            db("db-2", "0-1-42", "", true),
        ];
        assert_eq!(pick(&tie).expect("a pick").0, "db-2");
        assert!(pick(&[db("db-2", "0-1-1", "", false)]).is_none());
        assert!(pick(&[]).is_none());
    }

    #[test]
    fn a_returning_primary_with_unreplicated_writes_is_errant() {
        let new_primary = db("db-2", "0-2-103", "0-1-100,0-2-103", true);
        let clean = db("db-1", "0-1-100", "0-1-100", true);
        assert!(errant(&clean, &new_primary).is_empty());
        let behind = db("db-1", "0-1-90", "0-1-90", true);
        assert!(errant(&behind, &new_primary).is_empty());
        let ahead = db("db-1", "0-1-105", "0-1-105", true);
        assert_eq!(
            errant(&ahead, &new_primary),
            vec!["0-1-105 where the primary has 0-1-100"]
        );
        let fresh_primary = db("db-2", "", "", true);
        assert_eq!(
            errant(&clean, &fresh_primary),
            vec!["0-1-100 where the primary has none from server 1"]
        );
        // A replica's own write (root may write on a read-only server).
        let own = db("db-3", "0-3-104", "0-1-100,0-2-103,0-3-104", true);
        assert_eq!(
            errant(&own, &new_primary),
            vec!["0-3-104 where the primary has none from server 3"]
        );
    }
}

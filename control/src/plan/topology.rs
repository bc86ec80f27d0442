//! Who is the database primary: the control plane's decision, kept in `<state>/topology.json`
//! with an epoch, because after a failover the inventory's wish is no longer the truth.
//!
//! Rules ([`decide`], pure): a stored primary that is still in the db group stays primary;
//! otherwise the inventory's preferred primary, else the member with the most memory (then by
//! name). The epoch starts at 1 and rises whenever the primary changes; every spec carries it,
//! and agents refuse specs older than the one they hold. Server ids are handed out once per
//! board and kept, so reordering the inventory never renumbers a server.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::state::write_atomic;

/// File name inside the state dir.
pub const TOPOLOGY_FILE: &str = "topology.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// 0 before the first decision.
    pub epoch: u64,
    /// The database primary; None without a db group.
    pub primary: Option<String>,
    /// MariaDB server ids, per board, never reused.
    pub server_ids: BTreeMap<String, u32>,
}

/// A db member as [`decide`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub memory: Option<u64>,
}

/// The decision and the sentence `lab plan` prints about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub topology: Topology,
    pub reason: Option<String>,
    /// True when it differs from the stored one (it is saved by `lab apply` only).
    pub changed: bool,
}

/// Decide the topology from the db group's members, the inventory's preferred primary and
/// the stored topology.
pub fn decide(members: &[Member], preferred: Option<&str>, stored: &Topology) -> Decision {
    let mut next = stored.clone();
    let is_member = |n: &str| members.iter().any(|m| m.name == n);
    let reason;
    match stored.primary.as_deref() {
        Some(p) if is_member(p) => {
            reason = match preferred {
                Some(want) if want != p => Some(format!(
                    "primary stays {p} (decided at epoch {}); the inventory prefers {want}, \
                     but moving a live primary is a failover, not a plan",
                    stored.epoch
                )),
                _ => Some(format!("primary {p} (epoch {})", stored.epoch)),
            };
        }
        _ if members.is_empty() => {
            next.primary = None;
            reason = None;
        }
        previous => {
            let pick = preferred
                .filter(|p| is_member(p))
                .map(|p| {
                    (
                        p.to_string(),
                        "the inventory's preferred primary".to_string(),
                    )
                })
                .unwrap_or_else(|| {
                    let mut by_memory: Vec<&Member> = members.iter().collect();
                    by_memory.sort_by(|a, b| {
                        b.memory
                            .unwrap_or(0)
                            .cmp(&a.memory.unwrap_or(0))
                            .then_with(|| a.name.cmp(&b.name))
                    });
                    let m = by_memory[0];
                    (
                        m.name.clone(),
                        match m.memory {
                            Some(b) => format!(
                                "the member with the most memory ({})",
                                crate::inventory::format_bytes(b)
                            ),
                            None => "first by name (memory unknown)".to_string(),
                        },
                    )
                });
            next.primary = Some(pick.0.clone());
            next.epoch = stored.epoch + 1;
            reason = Some(match previous {
                Some(old) => format!(
                    "primary {} at epoch {}: {old} left the db group; {}",
                    pick.0, next.epoch, pick.1
                ),
                None => format!("primary {} at epoch {}: {}", pick.0, next.epoch, pick.1),
            });
        }
    }
    for m in members {
        if !next.server_ids.contains_key(&m.name) {
            let id = next.server_ids.values().copied().max().unwrap_or(0) + 1;
            next.server_ids.insert(m.name.clone(), id);
        }
    }
    Decision {
        changed: next != *stored,
        topology: next,
        reason,
    }
}

/// The stored topology; the default (epoch 0) when there is none yet.
pub fn load(state_dir: &Path) -> anyhow::Result<Topology> {
    let path = state_dir.join(TOPOLOGY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt (fix or remove it)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Topology::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Store `topology` atomically.
pub fn save(state_dir: &Path, topology: &Topology) -> anyhow::Result<()> {
    let path = state_dir.join(TOPOLOGY_FILE);
    let mut bytes = serde_json::to_vec_pretty(topology)?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes, 0o644).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[(&str, u64)]) -> Vec<Member> {
        names
            .iter()
            .map(|(n, m)| Member {
                name: n.to_string(),
                memory: Some(*m),
            })
            .collect()
    }

    #[test]
    fn first_decision_takes_the_preferred_primary_else_the_most_memory() {
        let m = members(&[("db-1", 1 << 30), ("db-2", 2 << 30)]);
        let d = decide(&m, Some("db-1"), &Topology::default());
        assert_eq!(d.topology.primary.as_deref(), Some("db-1"));
        assert_eq!(d.topology.epoch, 1);
        assert!(d.changed);
        let d = decide(&m, None, &Topology::default());
        assert_eq!(d.topology.primary.as_deref(), Some("db-2"));
        assert_eq!(d.topology.server_ids.len(), 2);
    }

    #[test]
    fn a_stored_primary_stays_and_the_same_input_changes_nothing() {
        let m = members(&[("db-1", 1 << 30), ("db-2", 1 << 30)]);
        let first = decide(&m, Some("db-1"), &Topology::default()).topology;
        // After a failover the store says db-2; the inventory still prefers db-1.
        let failed_over = Topology {
            epoch: 2,
            primary: Some("db-2".into()),
            ..first.clone()
        };
        let d = decide(&m, Some("db-1"), &failed_over);
        assert_eq!(d.topology.primary.as_deref(), Some("db-2"));
        assert!(!d.changed);
        assert!(d
            .reason
            .unwrap_or_default()
            .contains("inventory prefers db-1"));
        assert!(!decide(&m, Some("db-1"), &first).changed);
    }

    #[test]
    fn a_primary_that_left_the_group_is_replaced_with_a_higher_epoch_and_ids_stay() {
        let m = members(&[("db-1", 1 << 30), ("db-2", 1 << 30), ("db-3", 1 << 30)]);
        let first = decide(&m, Some("db-1"), &Topology::default()).topology;
        let without = members(&[("db-2", 1 << 30), ("db-3", 1 << 30)]);
        let d = decide(&without, None, &first);
        assert_eq!(d.topology.primary.as_deref(), Some("db-2"));
        assert_eq!(d.topology.epoch, 2);
        assert_eq!(d.topology.server_ids, first.server_ids);
    }
}

//! `roles = "auto"`: the planner fills what the cluster lacks with the boards left to it.
//!
//! Pure and deterministic: the same inventory always gives the same roles (boards are ordered
//! by memory, then name), and every choice comes with a sentence `lab plan` prints.
//!
//! Order of needs: a database (the board with the most memory), then a cache, an app and a
//! load balancer where no board was given one; then more database members until the group has
//! [`DB_GROUP_TARGET`] (a primary and two replicas, so a failover still leaves a replica);
//! boards left over become more app servers. With fewer auto boards than needs, the needs
//! left over share the auto boards (in turn, biggest first).

use std::collections::BTreeMap;

use lab_api::Role;

use crate::inventory::{format_bytes, Board, RoleSpec};

/// Database members the planner aims for: a primary and two replicas.
pub const DB_GROUP_TARGET: usize = 3;

/// Roles chosen for the `auto` boards, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoRoles {
    /// Board -> its roles (db membership as [`Role::DbReplica`]: the topology decides who
    /// is primary).
    pub roles: BTreeMap<String, Vec<Role>>,
    /// One line per decision.
    pub reasons: Vec<String>,
}

/// Fill the auto boards of `boards`.
pub fn assign(boards: &[Board]) -> AutoRoles {
    let given = |role: Role| {
        boards
            .iter()
            .any(|b| matches!(&b.roles, RoleSpec::Given(r) if r.contains(&role)))
    };
    let mut auto: Vec<&Board> = boards
        .iter()
        .filter(|b| b.roles == RoleSpec::Auto)
        .collect();
    let mut out = AutoRoles::default();
    if auto.is_empty() {
        return out;
    }
    // Most memory first; unknown memory last; then by name: stable across runs.
    auto.sort_by(|a, b| {
        b.known_memory()
            .unwrap_or(0)
            .cmp(&a.known_memory().unwrap_or(0))
            .then_with(|| a.name.cmp(&b.name))
    });
    let memory = |b: &Board| {
        b.known_memory()
            .map(format_bytes)
            .unwrap_or_else(|| "unknown memory".into())
    };
    let mut db_members = boards.iter().filter(|b| b.in_db_group()).count();
    let mut free: Vec<&Board> = auto.clone();
    let give = |out: &mut AutoRoles, board: &Board, role: Role, why: String| {
        out.roles.entry(board.name.clone()).or_default().push(role);
        out.reasons
            .push(format!("{}: {} ({why})", board.name, role_word(role)));
    };

    let mut unplaced: Vec<(Role, String)> = Vec::new();
    if db_members == 0 {
        let b = free.remove(0);
        give(
            &mut out,
            b,
            Role::DbReplica,
            format!(
                "no board was given the database; {} has the most memory ({})",
                b.name,
                memory(b)
            ),
        );
        db_members += 1;
    }
    for (role, pick_smallest) in [(Role::Cache, false), (Role::App, false), (Role::Lb, true)] {
        if given(role) {
            continue;
        }
        let why = format!("no board was given {}", role_word(role));
        if free.is_empty() {
            unplaced.push((role, why));
            continue;
        }
        let b = if pick_smallest {
            free.remove(free.len() - 1)
        } else {
            free.remove(0)
        };
        give(&mut out, b, role, why);
    }
    for b in std::mem::take(&mut free) {
        if db_members < DB_GROUP_TARGET {
            give(
                &mut out,
                b,
                Role::DbReplica,
                format!("the db group has {db_members} of {DB_GROUP_TARGET} members"),
            );
            db_members += 1;
        } else {
            give(
                &mut out,
                b,
                Role::App,
                "a board left over: one more app server".into(),
            );
        }
    }
    // Needs left when there were too few auto boards: share them, biggest board first.
    for (i, (role, why)) in unplaced.into_iter().enumerate() {
        let b = auto[i % auto.len()];
        give(
            &mut out,
            b,
            role,
            format!("{why}; shared: too few auto boards"),
        );
    }
    out
}

/// How the plan names a role it chose: db membership reads `db`.
fn role_word(role: Role) -> &'static str {
    match role {
        Role::DbMaster | Role::DbReplica => "db",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{BoardSize, VirtualArch};

    fn board(name: &str, roles: RoleSpec, mib: u64) -> Board {
        Board {
            name: name.into(),
            address: "10.0.0.1".into(),
            port: None,
            user: None,
            model: None,
            roles,
            arch: VirtualArch::Native,
            init: crate::inventory::VirtualInit::Lab,
            link: None,
            dc: None,
            size: Some(BoardSize {
                millicpus: 1000,
                memory_bytes: mib << 20,
            }),
            line: 1,
            weight: 1,
        }
    }

    #[test]
    fn all_auto_gets_every_tier_and_the_biggest_board_runs_the_database() {
        let boards: Vec<Board> = [
            ("a", 512),
            ("b", 1024),
            ("c", 256),
            ("d", 2048),
            ("e", 1024),
            ("f", 512),
            ("g", 256),
        ]
        .iter()
        .map(|(n, m)| board(n, RoleSpec::Auto, *m))
        .collect();
        let plan = assign(&boards);
        let roles = |n: &str| plan.roles.get(n).cloned().unwrap_or_default();
        assert_eq!(roles("d"), vec![Role::DbReplica], "{:?}", plan.reasons);
        assert_eq!(roles("b"), vec![Role::Cache]); // 1024, before e by name
        assert_eq!(roles("e"), vec![Role::App]);
        assert_eq!(roles("g"), vec![Role::Lb]); // the smallest (256; c < g, so g is last)
        assert_eq!(roles("a"), vec![Role::DbReplica]);
        assert_eq!(roles("f"), vec![Role::DbReplica]);
        assert_eq!(roles("c"), vec![Role::App]);
        assert_eq!(plan.reasons.len(), 7);
        assert!(
            plan.reasons[0].contains("d has the most memory (2 GiB)"),
            "{}",
            plan.reasons[0]
        );
        // Stable: the same input in another order gives the same roles.
        let mut shuffled = boards.clone();
        shuffled.reverse();
        assert_eq!(assign(&shuffled).roles, plan.roles);
    }

    #[test]
    fn only_what_is_missing_is_filled() {
        let boards = vec![
            board("db-1", RoleSpec::Given(vec![Role::DbMaster]), 1024),
            board("lb-1", RoleSpec::Given(vec![Role::Lb]), 256),
            board("x", RoleSpec::Auto, 512),
            board("y", RoleSpec::Auto, 256),
        ];
        let plan = assign(&boards);
        assert_eq!(plan.roles.get("x"), Some(&vec![Role::Cache]));
        assert_eq!(plan.roles.get("y"), Some(&vec![Role::App]));
    }

    #[test]
    fn one_auto_board_takes_every_need() {
        let boards = vec![board("solo", RoleSpec::Auto, 1024)];
        let plan = assign(&boards);
        assert_eq!(
            plan.roles.get("solo"),
            Some(&vec![Role::DbReplica, Role::Cache, Role::App, Role::Lb])
        );
        assert!(plan.reasons[3].contains("shared"), "{:?}", plan.reasons);
    }
}

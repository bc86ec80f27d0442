//! Who is in: a board's spec with the boards that are down left out of its peer lists (the
//! LB's upstreams, an app's cache ring and read replicas). Pure, so the failover manager in
//! `lab serve` and `lab plan`/`lab apply` (which leave out the agents they cannot reach) say
//! the same thing. A board that comes back is in again, since the full spec is the input.
//!
//! The database primary is never left out here: moving it is a promotion, not a membership
//! change.

use std::collections::BTreeSet;

use lab_api::spec::{BoardSpec, RoleConfig};

/// `spec` without the boards in `down` among its peers. An LB whose every app is down keeps
/// them all (an empty upstream is not a valid NGINX config, and nothing better can serve).
pub fn without_down(spec: &BoardSpec, down: &BTreeSet<String>) -> BoardSpec {
    let mut out = spec.clone();
    if down.is_empty() {
        return out;
    }
    for role in &mut out.roles {
        match role {
            RoleConfig::Lb(lb) if lb.upstreams.iter().any(|u| !down.contains(&u.board)) => {
                lb.upstreams.retain(|u| !down.contains(&u.board));
            }
            RoleConfig::App(app) => {
                app.caches.retain(|c| !down.contains(&c.board));
                app.db.replicas.retain(|r| !down.contains(&r.board));
            }
            _ => {}
        }
    }
    out
}

/// `spec` with its peer lists emptied: what membership changes leave alone.
fn without_peers(spec: &BoardSpec) -> BoardSpec {
    let mut out = spec.clone();
    for role in &mut out.roles {
        match role {
            RoleConfig::Lb(lb) => lb.upstreams.clear(),
            RoleConfig::App(app) => {
                app.caches.clear();
                app.db.replicas.clear();
            }
            _ => {}
        }
    }
    out
}

/// Whether `held` differs from `full` in peer lists at most (same epoch, roles and every
/// other setting): only then may the failover manager change it. Anything else (an apply
/// under way, an inventory applied since) is `lab apply`'s to send.
pub fn same_apart_from_peers(held: &BoardSpec, full: &BoardSpec) -> bool {
    without_peers(held) == without_peers(full)
}

/// The boards of `down` that `spec` names as peers (what leaving them out changes).
pub fn peers_down(spec: &BoardSpec, down: &BTreeSet<String>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for role in &spec.roles {
        match role {
            RoleConfig::Lb(lb) => out.extend(lb.upstreams.iter().map(|u| u.board.clone())),
            RoleConfig::App(app) => {
                out.extend(app.caches.iter().map(|c| c.board.clone()));
                out.extend(app.db.replicas.iter().map(|r| r.board.clone()));
            }
            _ => {}
        }
    }
    out.into_iter().filter(|b| down.contains(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::spec::{
        AppConfig, AppDb, CachePeer, Credential, DbPeer, LbAlgorithm, LbConfig, Upstream,
    };

    fn down(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn lb(apps: &[&str]) -> BoardSpec {
        BoardSpec {
            board: "lb-1".into(),
            epoch: 3,
            roles: vec![RoleConfig::Lb(LbConfig {
                listen: "0.0.0.0".into(),
                port: 80,
                status_port: 8081,
                algorithm: LbAlgorithm::RoundRobin,
                upstreams: apps
                    .iter()
                    .map(|a| Upstream {
                        board: a.to_string(),
                        host: format!("{a}.lab"),
                        port: 8080,
                        weight: 1,
                    })
                    .collect(),
                connect_timeout_ms: 300,
            })],
        }
    }

    fn peer(board: &str) -> DbPeer {
        DbPeer {
            board: board.into(),
            host: "10.0.0.40".into(),
            port: 3306,
        }
    }

    fn app() -> BoardSpec {
        BoardSpec {
            board: "app-1".into(),
            epoch: 3,
            roles: vec![RoleConfig::App(AppConfig {
                board: "app-1".into(),
                bind: "10.0.0.21".into(),
                port: 8080,
                db: AppDb {
                    primary: Some(peer("db-1")),
                    replicas: vec![peer("db-2"), peer("db-3")],
                    user: Credential {
                        user: "lab_app".into(),
                        password: "pw".into(),
                    },
                    schema: "labapp".into(),
                },
                caches: ["cache-1", "cache-2"]
                    .map(|c| CachePeer {
                        board: c.into(),
                        host: "10.0.0.31".into(),
                        port: 11211,
                    })
                    .to_vec(),
                cache_hashing: Default::default(),
                sessions: Default::default(),
                jwt_key: "k".into(),
                token_ttl_secs: 3600,
                cache_ttl_secs: 60,
                buckets: Vec::new(),
                static_base: None,
            })],
        }
    }

    #[test]
    fn a_dead_app_leaves_the_lb_and_comes_back_from_the_full_spec() {
        let full = lb(&["app-1", "app-2"]);
        let out = without_down(&full, &down(&["app-1"]));
        assert_eq!(out, lb(&["app-2"]));
        assert_eq!(peers_down(&full, &down(&["app-1", "db-9"])), ["app-1"]);
        assert_eq!(without_down(&full, &down(&[])), full);
    }

    #[test]
    fn only_specs_that_differ_in_peers_are_the_managers_to_change() {
        let full = lb(&["app-1", "app-2"]);
        assert!(same_apart_from_peers(&lb(&["app-2"]), &full));
        let mut newer = lb(&["app-1", "app-2"]);
        newer.epoch = 4;
        assert!(!same_apart_from_peers(&newer, &full));
        let mut other = lb(&["app-1"]);
        if let RoleConfig::Lb(l) = &mut other.roles[0] {
            l.algorithm = LbAlgorithm::LeastConn;
        }
        assert!(!same_apart_from_peers(&other, &full));
        assert!(!same_apart_from_peers(&app(), &full));
    }

    #[test]
    fn an_lb_whose_apps_are_all_down_keeps_them() {
        let full = lb(&["app-1", "app-2"]);
        assert_eq!(without_down(&full, &down(&["app-1", "app-2"])), full);
    }

    #[test]
    fn apps_drop_dead_caches_and_replicas_but_never_the_primary() {
        let out = without_down(&app(), &down(&["cache-2", "db-2", "db-1"]));
        let RoleConfig::App(a) = &out.roles[0] else {
            panic!("app");
        };
        let caches: Vec<&str> = a.caches.iter().map(|c| c.board.as_str()).collect();
        let replicas: Vec<&str> = a.db.replicas.iter().map(|r| r.board.as_str()).collect();
        assert_eq!(caches, ["cache-1"]);
        assert_eq!(replicas, ["db-3"]);
        assert_eq!(
            a.db.primary.as_ref().map(|p| p.board.as_str()),
            Some("db-1")
        );
        assert_eq!(out.epoch, 3, "membership changes keep the epoch");
    }
}

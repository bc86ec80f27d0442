//! A board's desired spec against the one its agent holds: the changes `lab plan` lists and
//! `lab apply` makes, in words ("start mariadb (replica of db-1)", "repoint db-replica:
//! db-1 -> db-2", "cache: memory_mb 64 -> 128"). Pure.

use lab_api::spec::{BoardSpec, RoleConfig};
use lab_api::Role;
use serde::Serialize;

/// One change on one board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// The role's engine starts.
    Start { role: Role, what: String },
    /// The role's engine stops.
    Stop { role: Role },
    /// The role's configuration is rewritten (its engine restarts).
    Reconfigure { role: Role, fields: Vec<String> },
    /// A replica follows another primary (no restart).
    Repoint { from: String, to: String },
    /// The engine takes the new configuration without a restart (NGINX reload, the app
    /// re-reading its config).
    Reload { role: Role, fields: Vec<String> },
    /// The running engine takes another role without a restart (a replica promoted).
    Become { from: Role, to: Role },
    /// Only the topology epoch moves.
    Epoch { from: u64, to: u64 },
}

impl Change {
    pub fn describe(&self) -> String {
        match self {
            Change::Start { role, what } => format!("start {role}: {what}"),
            Change::Stop { role } => format!("stop {role}"),
            Change::Reconfigure { role, fields } => {
                format!("rewrite {role} config ({}), restart", fields.join(", "))
            }
            Change::Repoint { from, to } => format!("repoint db-replica: {from} -> {to}"),
            Change::Become { from, to } => format!("{from} becomes {to} in place, no restart"),
            Change::Reload { role, fields } => {
                format!("reload {role} ({}), no restart", fields.join(", "))
            }
            Change::Epoch { from: 0, to } => {
                format!("hold the spec (epoch {to}); no role with an engine to run yet")
            }
            Change::Epoch { from, to } => format!("epoch {from} -> {to}"),
        }
    }
}

/// What starting `config` means, for people.
pub fn start_words(config: &RoleConfig) -> String {
    match config {
        RoleConfig::Lb(l) => format!(
            "nginx on {}:{}, {} over {}",
            l.listen,
            l.port,
            l.algorithm,
            upstream_words(l)
        ),
        RoleConfig::App(a) => format!(
            "app on {}:{}, {} cache board(s), database {}",
            a.bind,
            a.port,
            a.caches.len(),
            a.db.primary
                .as_ref()
                .map(|p| p.board.as_str())
                .unwrap_or("(no primary)")
        ),
        RoleConfig::Cache(c) => format!("memcached on {}:{}, {} MiB", c.bind, c.port, c.memory_mb),
        RoleConfig::Cdn(c) => format!(
            "cdn edge on {}:{}, {} over {} MiB, origins: {}",
            c.bind,
            c.port,
            c.policy,
            c.memory_bytes >> 20,
            c.origins
                .iter()
                .map(|o| format!("/{}/ from {}", o.bucket, o.board))
                .chain(c.fallback.iter().map(|f| format!("the rest from {f}")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RoleConfig::Files(f) => format!(
            "file store on {}:{}, buckets {}",
            f.bind,
            f.port,
            if f.buckets.is_empty() {
                "(none)".to_string()
            } else {
                f.buckets
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        RoleConfig::Vip(v) => format!(
            "keepalived: floating address {} shared with {} (priority {})",
            v.address,
            v.peers.join(", "),
            v.priority
        ),
        RoleConfig::DbMaster(d) => format!(
            "mariadb primary on {}:{}, server id {}",
            d.bind, d.port, d.server_id
        ),
        RoleConfig::DbReplica(d) => format!(
            "mariadb replica of {} on {}:{}, server id {}",
            d.primary.as_ref().map(|p| p.board.as_str()).unwrap_or("?"),
            d.bind,
            d.port,
            d.server_id
        ),
    }
}

/// The app's database endpoints before and after, without the credential.
fn app_db_words(before: Option<&serde_json::Value>, after: &serde_json::Value) -> String {
    let words = |v: &serde_json::Value| {
        let board = |p: &serde_json::Value| {
            p.get("board")
                .and_then(|b| b.as_str())
                .unwrap_or("?")
                .to_string()
        };
        let primary = v
            .get("primary")
            .filter(|p| !p.is_null())
            .map(board)
            .unwrap_or_else(|| "none".into());
        let replicas: Vec<String> = v
            .get("replicas")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().map(board).collect())
            .unwrap_or_default();
        format!("primary {primary}, replicas [{}]", replicas.join(", "))
    };
    let (a, b) = (
        before.map(words).unwrap_or_else(|| "none".into()),
        words(after),
    );
    if a == b {
        "user/password".into()
    } else {
        format!("{a} -> {b}")
    }
}

/// "app-1, app-2 (weight 3)".
pub fn upstream_words(l: &lab_api::spec::LbConfig) -> String {
    l.upstreams
        .iter()
        .map(|u| {
            if u.weight == 1 {
                u.board.clone()
            } else {
                format!("{} (weight {})", u.board, u.weight)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The changes that take the agent from `held` (None: it holds no spec) to `want`.
pub fn diff(want: &BoardSpec, held: Option<&BoardSpec>) -> Vec<Change> {
    let empty = BoardSpec {
        board: want.board.clone(),
        epoch: 0,
        roles: Vec::new(),
    };
    let first = held.is_none();
    let held = held.unwrap_or(&empty);
    let mut out = Vec::new();
    let mut became = Vec::new();
    for old in &held.roles {
        if want.roles.iter().any(|w| w.role() == old.role()) {
            continue;
        }
        // As the agent's reconciler decides: a role swapped for one its engine can become.
        let running: Vec<Role> = held.roles.iter().map(|h| h.role()).collect();
        let becomes = lab_api::spec::becomes_in_place(old, &running, &want.roles);
        match becomes {
            Some(new) => {
                became.push(new.role());
                out.push(Change::Become {
                    from: old.role(),
                    to: new.role(),
                });
            }
            None => out.push(Change::Stop { role: old.role() }),
        }
    }
    for new in &want.roles {
        if became.contains(&new.role()) {
            continue;
        }
        match held.roles.iter().find(|h| h.role() == new.role()) {
            None => out.push(Change::Start {
                role: new.role(),
                what: start_words(new),
            }),
            Some(old) if old == new => {}
            Some(old) => out.push(changed(old, new)),
        }
    }
    // Boards with no role to run still hold the spec: its epoch fences stale orders there
    // too, and `lab status` can tell "applied, nothing to run" from "never applied".
    if out.is_empty() && (first || held.epoch != want.epoch) {
        out.push(Change::Epoch {
            from: held.epoch,
            to: want.epoch,
        });
    }
    out
}

fn changed(old: &RoleConfig, new: &RoleConfig) -> Change {
    if let (RoleConfig::DbReplica(a), RoleConfig::DbReplica(b)) = (old, new) {
        let mut a_same = a.clone();
        a_same.primary = b.primary.clone();
        if a_same == *b {
            let name = |p: &Option<lab_api::spec::DbPeer>| {
                p.as_ref()
                    .map(|p| format!("{} ({}:{})", p.board, p.host, p.port))
                    .unwrap_or_else(|| "none".into())
            };
            return Change::Repoint {
                from: name(&a.primary),
                to: name(&b.primary),
            };
        }
    }
    if lab_api::spec::applies_in_place(old, new) {
        return Change::Reload {
            role: new.role(),
            fields: field_changes(old, new),
        };
    }
    Change::Reconfigure {
        role: new.role(),
        fields: field_changes(old, new),
    }
}

/// `name old -> new` for each top-level field that differs (secrets named, never shown).
fn field_changes(old: &RoleConfig, new: &RoleConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["configuration".into()];
    };
    let mut out = Vec::new();
    for (key, value) in &b {
        let before = a.get(key);
        if before == Some(value) {
            continue;
        }
        // Secrets are named, never shown.
        match key.as_str() {
            "users" => {
                out.push("users/passwords".into());
                continue;
            }
            "jwt_key" => {
                out.push("jwt_key (secret)".into());
                continue;
            }
            "db" => {
                out.push(format!("database {}", app_db_words(before, value)));
                continue;
            }
            "upstreams" => {
                if let (RoleConfig::Lb(a), RoleConfig::Lb(b)) = (old, new) {
                    out.push(format!(
                        "upstreams {} -> {}",
                        upstream_words(a),
                        upstream_words(b)
                    ));
                    continue;
                }
            }
            "caches" => {
                if let (RoleConfig::App(a), RoleConfig::App(b)) = (old, new) {
                    let names = |c: &lab_api::spec::AppConfig| {
                        c.caches
                            .iter()
                            .map(|p| p.board.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    out.push(format!("caches {} -> {}", names(a), names(b)));
                    continue;
                }
            }
            _ => {}
        }
        let show = |v: Option<&serde_json::Value>| match v {
            None | Some(serde_json::Value::Null) => "none".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        out.push(format!("{key} {} -> {}", show(before), show(Some(value))));
    }
    for key in a.keys().filter(|k| !b.contains_key(*k)) {
        out.push(format!("{key} removed"));
    }
    if out.is_empty() {
        out.push("configuration".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::spec::{CacheConfig, Credential, DbConfig, DbPeer, DbUsers};

    fn cache(mb: u64) -> RoleConfig {
        RoleConfig::Cache(CacheConfig {
            bind: "10.0.0.2".into(),
            port: 11211,
            memory_mb: mb,
        })
    }

    fn replica(of: &str) -> RoleConfig {
        let c = |u: &str| Credential {
            user: u.into(),
            password: "pw".into(),
        };
        RoleConfig::DbReplica(DbConfig {
            server_id: 2,
            bind: "10.0.0.2".into(),
            port: 3306,
            buffer_pool_mb: 64,
            semi_sync: false,
            client_hosts: "%".into(),
            users: DbUsers {
                replication: c("r"),
                app: c("a"),
                monitor: c("m"),
            },
            primary: Some(DbPeer {
                board: of.into(),
                host: "10.0.0.9".into(),
                port: 3306,
            }),
        })
    }

    fn spec(epoch: u64, roles: Vec<RoleConfig>) -> BoardSpec {
        BoardSpec {
            board: "b".into(),
            epoch,
            roles,
        }
    }

    #[test]
    fn a_promoted_replica_becomes_primary_in_place() {
        let RoleConfig::DbReplica(d) = replica("db-1") else {
            unreachable!()
        };
        let primary = DbConfig { primary: None, ..d };
        let held = spec(1, vec![replica("db-1")]);
        let promoted = spec(2, vec![RoleConfig::DbMaster(primary.clone())]);
        let changes = diff(&promoted, Some(&held));
        assert_eq!(
            changes,
            vec![Change::Become {
                from: Role::DbReplica,
                to: Role::DbMaster
            }]
        );
        assert_eq!(
            changes[0].describe(),
            "db-replica becomes db-master in place, no restart"
        );
        // Anything else changed too: stop and start.
        let bigger = spec(
            2,
            vec![RoleConfig::DbMaster(DbConfig {
                buffer_pool_mb: 128,
                ..primary
            })],
        );
        assert!(matches!(
            diff(&bigger, Some(&held)).as_slice(),
            [Change::Stop { .. }, Change::Start { .. }]
        ));
    }

    #[test]
    fn equal_specs_change_nothing() {
        let s = spec(1, vec![cache(64), replica("db-1")]);
        assert!(diff(&s, Some(&s)).is_empty());
    }

    #[test]
    fn starts_stops_rewrites_and_repoints() {
        let held = spec(1, vec![cache(64), replica("db-1")]);
        assert_eq!(
            diff(&spec(1, vec![cache(128), replica("db-1")]), Some(&held)),
            vec![Change::Reconfigure {
                role: Role::Cache,
                fields: vec!["memory_mb 64 -> 128".into()]
            }]
        );
        assert!(matches!(
            diff(&spec(2, vec![cache(64), replica("db-2")]), Some(&held)).as_slice(),
            [Change::Repoint { from, to }] if from.starts_with("db-1") && to.starts_with("db-2")
        ));
        assert_eq!(
            diff(&spec(1, vec![replica("db-1")]), Some(&held)),
            vec![Change::Stop { role: Role::Cache }]
        );
        assert_eq!(
            diff(&spec(1, vec![]), None),
            vec![Change::Epoch { from: 0, to: 1 }]
        );
        assert_eq!(
            diff(&spec(2, vec![]), Some(&spec(1, vec![]))),
            vec![Change::Epoch { from: 1, to: 2 }]
        );
        let first = diff(&spec(1, vec![cache(64)]), None);
        assert!(matches!(
            first.as_slice(),
            [Change::Start {
                role: Role::Cache,
                ..
            }]
        ));
    }

    fn lb(apps: &[&str]) -> RoleConfig {
        RoleConfig::Lb(lab_api::spec::LbConfig {
            listen: "0.0.0.0".into(),
            port: 80,
            status_port: 8081,
            algorithm: lab_api::spec::LbAlgorithm::RoundRobin,
            upstreams: apps
                .iter()
                .map(|a| lab_api::spec::Upstream {
                    board: (*a).into(),
                    host: "10.0.0.9".into(),
                    port: 8080,
                    weight: 1,
                })
                .collect(),
            connect_timeout_ms: 300,
        })
    }

    fn app(key: &str) -> RoleConfig {
        RoleConfig::App(lab_api::spec::AppConfig {
            board: "app-1".into(),
            bind: "10.0.0.3".into(),
            port: 8080,
            db: lab_api::spec::AppDb {
                primary: None,
                replicas: Vec::new(),
                user: Credential {
                    user: "lab_app".into(),
                    password: "hunter2-secret".into(),
                },
                schema: "labapp".into(),
            },
            caches: Vec::new(),
            cache_hashing: Default::default(),
            sessions: Default::default(),
            jwt_key: key.into(),
            token_ttl_secs: 60,
            cache_ttl_secs: 60,
            buckets: Vec::new(),
            static_base: None,
        })
    }

    #[test]
    fn a_new_app_set_reloads_nginx_and_secrets_stay_hidden() {
        let held = spec(1, vec![lb(&["app-1"])]);
        let want = spec(1, vec![lb(&["app-1", "app-2"])]);
        let changes = diff(&want, Some(&held));
        assert_eq!(
            changes,
            vec![Change::Reload {
                role: Role::Lb,
                fields: vec!["upstreams app-1 -> app-1, app-2".into()],
            }]
        );
        let changes = diff(
            &spec(1, vec![app("new-key-0123")]),
            Some(&spec(1, vec![app("old-key-4567")])),
        );
        let words: Vec<String> = changes.iter().map(Change::describe).collect();
        let text = words.join("; ");
        assert!(
            text.contains("reload app (jwt_key (secret)), no restart"),
            "{text}"
        );
        assert!(
            !text.contains("key-0123") && !text.contains("key-4567"),
            "{text}"
        );
        let started = start_words(&app("k"));
        assert!(!started.contains("hunter2"), "{started}");
    }
}

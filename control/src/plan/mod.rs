//! From the inventory (and the control plane's decisions) to each board's desired state, and
//! from there to what would change: the pure half of `lab plan` / `lab apply`.
//!
//! - [`auto`]: roles for `roles = "auto"` boards, with reasons.
//! - [`topology`]: who is the database primary, with an epoch, kept in the state dir.
//! - [`secrets`]: generated passwords of the database users, kept in the state dir.
//! - [`diff`]: a desired spec against the one an agent holds -> the changes, in words.
//! - this file: [`desired`] puts them together into one [`BoardSpec`] per board.
//!
//! Roles whose engine does not exist in this version are planned and shown,
//! but left out of the specs: an agent is never sent a role it cannot run. So are roles
//! that cannot work yet with the boards given (an lb with no app board behind it, an app
//! with no database), with the reason.

pub mod applied;
pub mod auto;
pub mod diff;
pub mod secrets;
pub mod topology;

use std::collections::BTreeMap;
use std::net::IpAddr;

use lab_api::spec::{
    AppBucket, AppConfig, AppDb, BoardSpec, CacheConfig, CachePeer, CdnConfig, CdnOrigin, DbConfig,
    DbPeer, FilesBucket, FilesConfig, LbConfig, RoleConfig, Upstream, VipConfig, APP_PORT,
    APP_SCHEMA, CDN_ADMIN_PORT, CDN_PORT, FILES_PORT, LB_PORT, LB_STATUS_PORT, MARIADB_PORT,
    MEMCACHED_PORT,
};
use lab_api::Role;
use serde::Serialize;

use crate::inventory::{Inventory, RoleSpec};
use secrets::Secrets;
use topology::{Decision, Member, Topology};

/// How long an app's login token is valid.
pub const TOKEN_TTL_SECS: u64 = 3600;
/// How long the app keeps a read in memcached.
pub const CACHE_TTL_SECS: u32 = 60;
/// A CDN edge's freshness when the origin says nothing, how long it serves a stale copy
/// while the origin fails, and the largest object it keeps (larger ones pass through).
pub const CDN_DEFAULT_TTL_SECS: u32 = 60;
pub const CDN_STALE_IF_ERROR_SECS: u32 = 300;
pub const CDN_MAX_OBJECT_BYTES: u64 = 8 << 20;
/// How long NGINX waits to connect to an app before trying the next (boards share a LAN).
pub const LB_CONNECT_TIMEOUT_MS: u32 = 300;

/// Memory assumed for a board whose size the inventory does not give (a real board without a
/// known `model`).
pub const ASSUMED_MEMORY: u64 = 1 << 30;

/// One board's part of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct BoardPlan {
    pub board: String,
    /// Every role the board plays (db members resolved to db-master / db-replica).
    pub roles: Vec<Role>,
    /// What its agent is sent.
    pub spec: BoardSpec,
    /// Roles planned but not run: no engine in this version, or nothing to work with yet
    /// (the reason is in [`Plan::reasons`]).
    pub waiting: Vec<Role>,
}

/// The whole desired state.
#[derive(Debug, Clone)]
pub struct Plan {
    pub boards: Vec<BoardPlan>,
    pub topology: Decision,
    /// Why the planner chose what the inventory left open (auto roles, the primary).
    pub reasons: Vec<String>,
}

/// Roles whose engine the agent runs in this version.
pub fn has_engine(role: Role) -> bool {
    matches!(
        role,
        Role::Lb
            | Role::App
            | Role::Cache
            | Role::DbMaster
            | Role::DbReplica
            | Role::Vip
            | Role::Files
            | Role::Cdn
    )
}

/// Every board's roles (auto roles filled, db members resolved to db-master / db-replica by
/// the topology), without building specs: what `lab serve` labels boards with.
pub fn planned_roles(inv: &Inventory, stored: &Topology) -> BTreeMap<String, Vec<Role>> {
    resolve(inv, stored).0
}

/// `http://<address>/` where clients enter the cluster: the lb boards' floating address when
/// they share one, else the first lb board's (auto roles resolved); None without an lb board.
pub fn entry_url(inv: &Inventory, state_dir: &std::path::Path) -> Option<String> {
    let stored = topology::load(state_dir).unwrap_or_default();
    let roles = planned_roles(inv, &stored);
    let board = inv
        .boards
        .iter()
        .find(|b| roles.get(&b.name).is_some_and(|r| r.contains(&Role::Lb)))?;
    let floating = roles.values().any(|r| r.contains(&Role::Vip));
    let host = match (floating, &inv.lb.floating_address) {
        (true, Some((address, _))) => address.to_string(),
        _ => match board.address.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => board.address.clone(),
        },
    };
    Some(if LB_PORT == 80 {
        format!("http://{host}/")
    } else {
        format!("http://{host}:{LB_PORT}/")
    })
}

/// The buckets and where they live: the inventory's `[files.<bucket>]` tables, or by default
/// avatars (5 MiB objects), invoices (20 MiB) and videos (500 MiB) spread over the files
/// boards in inventory order (the lesson: storage split by purpose).
pub fn bucket_placement(
    inv: &Inventory,
    files_boards: &[&crate::inventory::Board],
) -> Vec<crate::inventory::BucketPlacement> {
    if let Some(given) = &inv.files {
        return given.clone();
    }
    const DEFAULTS: [(&str, u64); 3] = [
        ("avatars", 5 << 20),
        ("invoices", 20 << 20),
        ("videos", 500 << 20),
    ];
    if files_boards.is_empty() {
        return Vec::new();
    }
    DEFAULTS
        .iter()
        .enumerate()
        .map(|(i, (name, max))| crate::inventory::BucketPlacement {
            name: name.to_string(),
            board: files_boards[i % files_boards.len()].name.clone(),
            max_object_bytes: *max,
            replica: None,
        })
        .collect()
}

/// VRRP's virtual router id for `cluster` (1..=255, the same on every lb board): a hash of
/// the name, so two clusters on one LAN are unlikely to share it (adverts are unicast anyway).
pub fn vrrp_router_id(cluster: &str) -> u8 {
    let hash = cluster.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash % 255) as u8 + 1
}

/// Roles per board, the topology decision, and the auto planner's reasons.
fn resolve(
    inv: &Inventory,
    stored: &Topology,
) -> (BTreeMap<String, Vec<Role>>, Decision, Vec<String>) {
    let auto = auto::assign(&inv.boards);
    let given: BTreeMap<String, Vec<Role>> = inv
        .boards
        .iter()
        .map(|b| {
            let roles = match &b.roles {
                RoleSpec::Given(r) => r.clone(),
                RoleSpec::Auto => auto.roles.get(&b.name).cloned().unwrap_or_default(),
            };
            (b.name.clone(), roles)
        })
        .collect();
    let is_db = |r: &Role| matches!(r, Role::DbMaster | Role::DbReplica);
    let members: Vec<Member> = inv
        .boards
        .iter()
        .filter(|b| given.get(&b.name).is_some_and(|r| r.iter().any(is_db)))
        .map(|b| Member {
            name: b.name.clone(),
            memory: b.known_memory(),
        })
        .collect();
    let decision = topology::decide(&members, inv.db.preferred_primary.as_deref(), stored);
    let primary = decision.topology.primary.clone();
    // Two or more lb boards share the floating address, when there is one.
    let lbs = given.values().filter(|r| r.contains(&Role::Lb)).count();
    let floating = lbs >= 2 && inv.lb.floating_address.is_some();
    let roles = given
        .into_iter()
        .map(|(name, roles)| {
            let mut roles: Vec<Role> = roles
                .into_iter()
                .map(|r| match r {
                    r if is_db(&r) && primary.as_deref() == Some(name.as_str()) => Role::DbMaster,
                    r if is_db(&r) => Role::DbReplica,
                    other => other,
                })
                .collect();
            if floating && roles.contains(&Role::Lb) {
                roles.push(Role::Vip);
            }
            (name, roles)
        })
        .collect();
    (roles, decision, auto.reasons)
}

/// The desired state of every board. `addresses` is each board's IP on the cluster network
/// (what engines bind to); `stored` the topology kept in the state dir; `secrets` the
/// cluster's passwords and keys.
pub fn desired(
    inv: &Inventory,
    addresses: &BTreeMap<String, IpAddr>,
    stored: &Topology,
    secrets: &Secrets,
) -> anyhow::Result<Plan> {
    let users = &secrets.db;
    let (mut planned, decision, mut reasons) = resolve(inv, stored);
    let topo = &decision.topology;
    let address = |name: &str| -> anyhow::Result<IpAddr> {
        addresses
            .get(name)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("board `{name}`: no IP address to bind its engines to"))
    };
    let client_hosts = client_hosts(inv, addresses);
    let primary_peer = match &topo.primary {
        Some(p) => Some(DbPeer {
            board: p.clone(),
            host: address(p)?.to_string(),
            port: MARIADB_PORT,
        }),
        None => None,
    };

    // Who plays what, in inventory order: the lb's upstreams, the apps' peers.
    let with_role = |role: Role| -> Vec<&crate::inventory::Board> {
        inv.boards
            .iter()
            .filter(|b| planned.get(&b.name).is_some_and(|r| r.contains(&role)))
            .collect()
    };
    let mut upstreams = Vec::new();
    for b in with_role(Role::App) {
        upstreams.push(Upstream {
            board: b.name.clone(),
            host: address(&b.name)?.to_string(),
            port: APP_PORT,
            weight: b.weight,
        });
    }
    let mut caches = Vec::new();
    for b in with_role(Role::Cache) {
        caches.push(CachePeer {
            board: b.name.clone(),
            host: address(&b.name)?.to_string(),
            port: MEMCACHED_PORT,
        });
    }
    let mut replicas = Vec::new();
    for b in with_role(Role::DbReplica) {
        replicas.push(DbPeer {
            board: b.name.clone(),
            host: address(&b.name)?.to_string(),
            port: MARIADB_PORT,
        });
    }
    let app_db = AppDb {
        primary: primary_peer.clone(),
        replicas,
        user: users.app.clone(),
        schema: APP_SCHEMA.to_string(),
    };
    if upstreams.is_empty() && !with_role(Role::Lb).is_empty() {
        reasons.push("lb waits: no board has the app role to send requests to".into());
    }
    let placement = bucket_placement(inv, &with_role(Role::Files));
    if !placement.is_empty() {
        let words: Vec<String> = placement
            .iter()
            .map(|b| format!("{} on {}", b.name, b.board))
            .collect();
        reasons.push(format!(
            "buckets by purpose: {}{}",
            words.join(", "),
            if inv.files.is_none() {
                " (the default placement; choose with [files.<bucket>] board = \"...\")"
            } else {
                ""
            }
        ));
    }
    let files_addr =
        |board: &str| -> anyhow::Result<String> { Ok(format!("{}:{FILES_PORT}", address(board)?)) };
    let mut cdn_origins = Vec::new();
    for p in &placement {
        cdn_origins.push(CdnOrigin {
            bucket: p.name.clone(),
            board: p.board.clone(),
            host: address(&p.board)?.to_string(),
            port: FILES_PORT,
            replica: p.replica.as_deref().map(files_addr).transpose()?,
        });
    }
    // The app's pages point at static files on the first CDN edge.
    let static_base = match with_role(Role::Cdn).first() {
        Some(edge) => Some(format!("http://{}:{CDN_PORT}", address(&edge.name)?)),
        None => None,
    };
    let lbs = with_role(Role::Lb);
    let mut vip_peers = Vec::new();
    for b in &lbs {
        vip_peers.push((b.name.clone(), address(&b.name)?.to_string()));
    }
    // What is not a bucket, the edges fetch through the clients' way in.
    let cdn_fallback = match (lbs.first(), inv.lb.floating_address) {
        (Some(_), _) if upstreams.is_empty() => None,
        (Some(_), Some((floating, _))) if lbs.len() >= 2 => Some(format!("{floating}:{LB_PORT}")),
        (Some(first), _) => Some(format!("{}:{LB_PORT}", address(&first.name)?)),
        (None, _) => None,
    };
    match (lbs.as_slice(), inv.lb.floating_address) {
        ([only], _) => reasons.push(format!(
            "{} is the only lb board: the single point of failure (when it dies clients \
             reach nothing); a second lb board gets a floating address that moves",
            only.name
        )),
        ([_, _, ..], Some((address, _))) => reasons.push(format!(
            "{} share the floating address {address} (keepalived, VRRP): clients use \
             http://{address}/, and it moves when its holder dies",
            vip_peers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        ([_, _, ..], None) => reasons.push(
            "several lb boards but no [lb] floating_address: each is reached at its own \
             address, and clients of a dead one reach nothing"
                .into(),
        ),
        _ => {}
    }
    if app_db.primary.is_none() && !with_role(Role::App).is_empty() {
        reasons.push("app waits: no board has a db role (the app needs a database)".into());
    }

    let mut boards = Vec::new();
    for b in &inv.boards {
        let memory = b.known_memory().unwrap_or(ASSUMED_MEMORY);
        let bind = address(&b.name)?.to_string();
        let mut roles = Vec::new();
        let mut configs = Vec::new();
        let mut waiting = Vec::new();
        for role in planned.remove(&b.name).unwrap_or_default() {
            roles.push(role);
            if !has_engine(role) {
                waiting.push(role);
                continue;
            }
            configs.push(match role {
                Role::Lb if upstreams.is_empty() => {
                    waiting.push(role);
                    continue;
                }
                // Clients reach the LB on any of the board's addresses (a real board's Wi-Fi
                // and Ethernet alike); every other role binds the cluster address only.
                Role::Lb => RoleConfig::Lb(LbConfig {
                    listen: "0.0.0.0".into(),
                    port: LB_PORT,
                    status_port: LB_STATUS_PORT,
                    algorithm: inv.lb.algorithm,
                    upstreams: upstreams.clone(),
                    connect_timeout_ms: LB_CONNECT_TIMEOUT_MS,
                }),
                Role::Vip => match (&inv.lb.floating_address, upstreams.is_empty()) {
                    (Some((address, prefix_len)), false) => {
                        let rank = vip_peers.iter().position(|(n, _)| n == &b.name);
                        RoleConfig::Vip(VipConfig {
                            address: address.to_string(),
                            prefix_len: *prefix_len,
                            own: bind.clone(),
                            peers: vip_peers
                                .iter()
                                .filter(|(n, _)| n != &b.name)
                                .map(|(_, a)| a.clone())
                                .collect(),
                            priority: 200u8.saturating_sub(rank.unwrap_or(0).min(199) as u8),
                            router_id: vrrp_router_id(&inv.cluster.name),
                        })
                    }
                    _ => {
                        waiting.push(role);
                        continue;
                    }
                },
                Role::Cdn => RoleConfig::Cdn(CdnConfig {
                    board: b.name.clone(),
                    bind: bind.clone(),
                    port: CDN_PORT,
                    admin_port: CDN_ADMIN_PORT,
                    memory_bytes: quarter_mb(memory, 16, 4096) << 20,
                    policy: inv.cdn.policy_of(&b.name).as_str().to_string(),
                    default_ttl_secs: CDN_DEFAULT_TTL_SECS,
                    stale_if_error_secs: CDN_STALE_IF_ERROR_SECS,
                    max_object_bytes: CDN_MAX_OBJECT_BYTES,
                    origins: cdn_origins.clone(),
                    fallback: cdn_fallback.clone(),
                }),
                Role::Files => RoleConfig::Files(FilesConfig {
                    board: b.name.clone(),
                    bind: bind.clone(),
                    port: FILES_PORT,
                    // A replicated bucket lives on both boards, each passing writes on to
                    // the other.
                    buckets: placement
                        .iter()
                        .filter_map(|p| {
                            let peer = if p.board == b.name {
                                p.replica.as_deref()
                            } else if p.replica.as_deref() == Some(b.name.as_str()) {
                                Some(p.board.as_str())
                            } else {
                                return None;
                            };
                            Some(FilesBucket {
                                name: p.name.clone(),
                                max_object_bytes: p.max_object_bytes,
                                replica: peer.and_then(|peer| files_addr(peer).ok()),
                            })
                        })
                        .collect(),
                }),
                Role::App if app_db.primary.is_none() => {
                    waiting.push(role);
                    continue;
                }
                Role::App => RoleConfig::App(AppConfig {
                    board: b.name.clone(),
                    bind: bind.clone(),
                    port: APP_PORT,
                    db: app_db.clone(),
                    caches: caches.clone(),
                    cache_hashing: inv.cache_hashing,
                    sessions: inv.sessions,
                    jwt_key: secrets.jwt_key.clone(),
                    token_ttl_secs: TOKEN_TTL_SECS,
                    cache_ttl_secs: CACHE_TTL_SECS,
                    buckets: cdn_origins
                        .iter()
                        .map(|o| AppBucket {
                            bucket: o.bucket.clone(),
                            host: o.host.clone(),
                            port: o.port,
                            replica: o.replica.clone(),
                        })
                        .collect(),
                    static_base: static_base.clone(),
                }),
                Role::Cache => RoleConfig::Cache(CacheConfig {
                    bind: bind.clone(),
                    port: MEMCACHED_PORT,
                    memory_mb: quarter_mb(memory, 16, 4096),
                }),
                Role::DbMaster | Role::DbReplica => {
                    let config = DbConfig {
                        server_id: topo.server_ids.get(&b.name).copied().unwrap_or(0),
                        bind: bind.clone(),
                        port: MARIADB_PORT,
                        buffer_pool_mb: quarter_mb(memory, 32, 4096),
                        semi_sync: inv.db.semi_sync,
                        client_hosts: client_hosts.clone(),
                        users: users.clone(),
                        primary: if role == Role::DbReplica {
                            primary_peer.clone()
                        } else {
                            None
                        },
                    };
                    if role == Role::DbMaster {
                        RoleConfig::DbMaster(config)
                    } else {
                        RoleConfig::DbReplica(config)
                    }
                }
            });
        }
        let spec = BoardSpec {
            board: b.name.clone(),
            epoch: topo.epoch.max(1),
            roles: configs,
        };
        let problems = spec.problems();
        if !problems.is_empty() {
            anyhow::bail!(
                "board `{}`: the plan is unusable: {}",
                b.name,
                problems.join("; ")
            );
        }
        boards.push(BoardPlan {
            board: b.name.clone(),
            roles,
            spec,
            waiting,
        });
    }
    reasons.extend(decision.reason.clone());
    Ok(Plan {
        boards,
        topology: decision,
        reasons,
    })
}

/// A quarter of `memory` in MiB, within `[min, max]`.
fn quarter_mb(memory: u64, min: u64, max: u64) -> u64 {
    ((memory >> 20) / 4).clamp(min, max)
}

/// Who may reach the database over the network, as a MariaDB host pattern: the virtual
/// subnet; else the /24 all boards share; else any host (real boards spread over networks).
fn client_hosts(inv: &Inventory, addresses: &BTreeMap<String, IpAddr>) -> String {
    if let Some(net) = &inv.virtual_net {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(net.prefix_len))
            .unwrap_or(0);
        return format!("{}/{}", net.subnet, std::net::Ipv4Addr::from(mask));
    }
    let prefixes: Vec<Option<[u8; 3]>> = addresses
        .values()
        .map(|a| match a {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Some([o[0], o[1], o[2]])
            }
            IpAddr::V6(_) => None,
        })
        .collect();
    match prefixes.first() {
        Some(Some(p)) if prefixes.iter().all(|q| q.as_ref() == Some(p)) => {
            format!("{}.{}.{}.%", p[0], p[1], p[2])
        }
        _ => "%".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::spec::{Credential, DbUsers};

    fn users() -> Secrets {
        let c = |u: &str| Credential {
            user: u.into(),
            password: "pw".into(),
        };
        Secrets {
            db: DbUsers {
                replication: c("lab_repl"),
                app: c("lab_app"),
                monitor: c("lab_monitor"),
            },
            jwt_key: "k".repeat(64),
        }
    }

    fn inventory(text: &str) -> (Inventory, BTreeMap<String, IpAddr>) {
        let inv = crate::inventory::parse(std::path::Path::new("/x/inv.toml"), text)
            .expect("valid inventory");
        let addresses = inv
            .boards
            .iter()
            .map(|b| (b.name.clone(), b.address.parse().expect("ip")))
            .collect();
        (inv, addresses)
    }

    const SMALL: &str = r#"
[cluster]
name = "c"
[virtual]
subnet = "10.80.0.0/24"
[[board]]
name = "db-1"
address = "10.80.0.11"
roles = ["db"]
memory = "1GiB"
[[board]]
name = "db-2"
address = "10.80.0.12"
roles = ["db-master"]
memory = "512MiB"
[[board]]
name = "db-3"
address = "10.80.0.13"
roles = ["db"]
[[board]]
name = "cache-1"
address = "10.80.0.21"
roles = ["cache", "lb"]
memory = "256MiB"
"#;

    #[test]
    fn specs_follow_the_inventory_and_the_topology() {
        let (inv, addrs) = inventory(SMALL);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        assert_eq!(plan.topology.topology.primary.as_deref(), Some("db-2"));
        let board = |n: &str| plan.boards.iter().find(|b| b.board == n).expect(n);
        assert_eq!(board("db-2").roles, vec![Role::DbMaster]);
        assert_eq!(board("db-1").roles, vec![Role::DbReplica]);
        let RoleConfig::DbReplica(d) = &board("db-1").spec.roles[0] else {
            panic!("db-1 is a replica")
        };
        assert_eq!(
            d.primary.as_ref().map(|p| p.host.as_str()),
            Some("10.80.0.12")
        );
        assert_eq!(d.buffer_pool_mb, 256);
        assert_eq!(d.client_hosts, "10.80.0.0/255.255.255.0");
        assert_eq!(board("cache-1").waiting, vec![Role::Lb]);
        let RoleConfig::Cache(c) = &board("cache-1").spec.roles[0] else {
            panic!("cache")
        };
        assert_eq!((c.bind.as_str(), c.memory_mb), ("10.80.0.21", 64));
        assert!(plan.boards.iter().all(|b| b.spec.epoch == 1));
        // Server ids are unique.
        let ids: std::collections::BTreeSet<u32> = plan
            .topology
            .topology
            .server_ids
            .values()
            .copied()
            .collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn buckets_go_where_the_inventory_says_or_spread_by_default() {
        let text = "[cluster]\nname = \"c\"\n\
                    [[board]]\nname = \"files-1\"\naddress = \"10.80.0.51\"\nroles = [\"files\"]\n\
                    [[board]]\nname = \"files-2\"\naddress = \"10.80.0.52\"\nroles = [\"files\"]\n";
        let buckets = |plan: &Plan, board: &str| -> Vec<(String, u64)> {
            let b = plan.boards.iter().find(|b| b.board == board).expect(board);
            match &b.spec.roles[..] {
                [RoleConfig::Files(f)] => f
                    .buckets
                    .iter()
                    .map(|b| (b.name.clone(), b.max_object_bytes))
                    .collect(),
                other => panic!("{other:?}"),
            }
        };
        let (inv, addrs) = inventory(text);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        assert_eq!(
            buckets(&plan, "files-1"),
            vec![
                ("avatars".to_string(), 5 << 20),
                ("videos".to_string(), 500 << 20)
            ]
        );
        assert_eq!(
            buckets(&plan, "files-2"),
            vec![("invoices".to_string(), 20 << 20)]
        );
        assert!(plan
            .reasons
            .iter()
            .any(|r| r.contains("the default placement")));

        let given = format!(
            "{text}[files.photos]\nboard = \"files-2\"\nmax_object = \"1MiB\"\nreplica = \"files-1\"\n"
        );
        let (inv, addrs) = inventory(&given);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        // Replicated: on both boards, each pointing at the other.
        assert_eq!(
            buckets(&plan, "files-1"),
            vec![("photos".to_string(), 1 << 20)]
        );
        assert_eq!(
            buckets(&plan, "files-2"),
            vec![("photos".to_string(), 1 << 20)]
        );
        let replica_of = |board: &str| match &plan
            .boards
            .iter()
            .find(|b| b.board == board)
            .expect(board)
            .spec
            .roles[..]
        {
            [RoleConfig::Files(f)] => f.buckets[0].replica.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(replica_of("files-1").as_deref(), Some("10.80.0.52:8070"));
        assert_eq!(replica_of("files-2").as_deref(), Some("10.80.0.51:8070"));
    }

    #[test]
    fn edges_take_the_clusters_policy_or_their_own_and_every_bucket_as_origin() {
        let text = "[cluster]\nname = \"c\"\n[cdn.boards]\ncdn-2 = \"s3-fifo\"\n\
                    [[board]]\nname = \"files-1\"\naddress = \"10.80.0.51\"\nroles = [\"files\"]\n\
                    [[board]]\nname = \"cdn-1\"\naddress = \"10.80.0.61\"\nroles = [\"cdn\"]\n\
                    [[board]]\nname = \"cdn-2\"\naddress = \"10.80.0.62\"\nroles = [\"cdn\"]\n";
        let (inv, addrs) = inventory(text);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        let edge = |n: &str| match &plan
            .boards
            .iter()
            .find(|b| b.board == n)
            .expect(n)
            .spec
            .roles[..]
        {
            [RoleConfig::Cdn(c)] => c.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (edge("cdn-1").policy.as_str(), edge("cdn-2").policy.as_str()),
            ("lru", "s3-fifo")
        );
        let origins: Vec<(String, String)> = edge("cdn-1")
            .origins
            .iter()
            .map(|o| (o.bucket.clone(), o.host.clone()))
            .collect();
        assert_eq!(origins.len(), 3, "{origins:?}");
        assert!(origins.iter().all(|(_, h)| h == "10.80.0.51"));
        assert_eq!(edge("cdn-1").fallback, None, "no lb board, no fallback");
    }

    #[test]
    fn one_lb_is_called_the_single_point_of_failure_and_two_share_an_address() {
        let (inv, addrs) = inventory(WEB);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        assert!(
            plan.reasons
                .iter()
                .any(|r| r.contains("lb-1 is the only lb board: the single point of failure")),
            "{:?}",
            plan.reasons
        );
        assert!(plan.boards.iter().all(|b| !b.roles.contains(&Role::Vip)));

        let two = WEB.replace(
            "[[board]]\nname = \"app-1\"",
            "[[board]]\nname = \"lb-2\"\naddress = \"10.80.0.11\"\nroles = [\"lb\"]\n\
             [[board]]\nname = \"app-1\"",
        );
        let (inv, addrs) = inventory(&two);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        let vip = |n: &str| {
            let b = plan.boards.iter().find(|b| b.board == n).expect(n);
            assert_eq!(b.roles, vec![Role::Lb, Role::Vip]);
            match &b.spec.roles[1] {
                RoleConfig::Vip(v) => v.clone(),
                other => panic!("{other:?}"),
            }
        };
        let (one, other) = (vip("lb-1"), vip("lb-2"));
        // The subnet's last host, on both; each names the other; lb-1 first.
        assert_eq!((one.address.as_str(), one.prefix_len), ("10.80.0.254", 24));
        assert_eq!(one.address, other.address);
        assert_eq!(
            (one.own.as_str(), one.peers.clone()),
            ("10.80.0.10", vec!["10.80.0.11".to_string()])
        );
        assert_eq!(other.peers, vec!["10.80.0.10".to_string()]);
        assert!(one.priority > other.priority);
        assert_eq!(one.router_id, other.router_id);
        assert!(plan
            .reasons
            .iter()
            .any(|r| r.contains("share the floating address 10.80.0.254")));
        assert_eq!(
            entry_url(&inv, std::path::Path::new("/nonexistent")).as_deref(),
            Some("http://10.80.0.254/")
        );
    }

    const WEB: &str = r#"
[cluster]
name = "c"
[virtual]
subnet = "10.80.0.0/24"
[lb]
algorithm = "least-conn"
[[board]]
name = "lb-1"
address = "10.80.0.10"
roles = ["lb"]
[[board]]
name = "app-1"
address = "10.80.0.21"
roles = ["app"]
[[board]]
name = "app-2"
address = "10.80.0.22"
roles = ["app"]
weight = 3
[[board]]
name = "cache-1"
address = "10.80.0.31"
roles = ["cache"]
[[board]]
name = "db-1"
address = "10.80.0.41"
roles = ["db-master"]
[[board]]
name = "db-2"
address = "10.80.0.42"
roles = ["db"]
"#;

    #[test]
    fn the_lb_fronts_the_apps_and_the_apps_know_their_peers() {
        let (inv, addrs) = inventory(WEB);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        let board = |n: &str| plan.boards.iter().find(|b| b.board == n).expect(n);
        let RoleConfig::Lb(lb) = &board("lb-1").spec.roles[0] else {
            panic!("lb-1 runs the lb")
        };
        assert_eq!(lb.algorithm, lab_api::spec::LbAlgorithm::LeastConn);
        let ups: Vec<(&str, &str, u32)> = lb
            .upstreams
            .iter()
            .map(|u| (u.board.as_str(), u.host.as_str(), u.weight))
            .collect();
        assert_eq!(
            ups,
            [("app-1", "10.80.0.21", 1), ("app-2", "10.80.0.22", 3)]
        );
        let RoleConfig::App(app) = &board("app-2").spec.roles[0] else {
            panic!("app-2 runs the app")
        };
        assert_eq!(app.bind, "10.80.0.22");
        assert_eq!(app.board, "app-2");
        assert_eq!(
            app.db.primary.as_ref().map(|p| p.board.as_str()),
            Some("db-1")
        );
        let replicas: Vec<&str> = app.db.replicas.iter().map(|p| p.board.as_str()).collect();
        assert_eq!(replicas, ["db-2"]);
        assert_eq!(app.caches.len(), 1);
        assert_eq!(app.db.user.user, "lab_app");
        assert!(board("lb-1").waiting.is_empty());
    }

    #[test]
    fn an_lb_without_apps_and_an_app_without_a_database_wait() {
        let text = WEB
            .replace("roles = [\"app\"]\nweight = 3", "roles = [\"cache\"]")
            .replace("roles = [\"app\"]", "roles = [\"cache\"]");
        let (inv, addrs) = inventory(&text);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        let lb = plan
            .boards
            .iter()
            .find(|b| b.board == "lb-1")
            .expect("lb-1");
        assert_eq!(lb.waiting, vec![Role::Lb]);
        assert!(lb.spec.roles.is_empty());
        assert!(
            plan.reasons.iter().any(|r| r.contains("lb waits")),
            "{:?}",
            plan.reasons
        );
        let nodb = "[cluster]\nname = \"c\"\n[[board]]\nname = \"a\"\naddress = \"10.0.0.2\"\nroles = [\"app\"]\n";
        let (inv, addrs) = inventory(nodb);
        let plan = desired(&inv, &addrs, &Topology::default(), &users()).expect("plan");
        assert_eq!(plan.boards[0].waiting, vec![Role::App]);
        assert!(plan.reasons.iter().any(|r| r.contains("app waits")));
    }
}

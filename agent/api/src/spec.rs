//! The role contract (ARCHITECTURE.md, "Roles"): what the control plane orders a board to run
//! ([`BoardSpec`], sent with `PUT /v1/spec`) and what the agent reports back about each role
//! ([`RoleStatus`], in its health answer).
//!
//! A spec is the whole desired state of one board, never a delta: the agent stores it
//! atomically and converges to it, level-triggered, so sending the same spec twice changes
//! nothing and a board that reboots comes back with its roles. Each spec carries the
//! cluster's topology epoch; an agent refuses a spec whose epoch is older than the one it
//! holds, which is what fences stale orders once a failover has moved the primary.

use serde::{Deserialize, Serialize};

use crate::Role;

/// Default port of memcached on a cache board.
pub const MEMCACHED_PORT: u16 = 11211;
/// Default port of MariaDB on a database board.
pub const MARIADB_PORT: u16 = 3306;
/// The database the app uses (created once on the primary).
pub const APP_SCHEMA: &str = "labapp";
/// Port of our app server on an app board (cluster network only).
pub const APP_PORT: u16 = 8080;
/// Port NGINX serves clients on, on an lb board.
pub const LB_PORT: u16 = 80;
/// Port of NGINX's `stub_status` on an lb board, on loopback only (the agent reads it).
pub const LB_STATUS_PORT: u16 = 8081;

/// Everything one board must run. Sent whole; stored whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSpec {
    /// The board this spec is for; an agent refuses a spec naming another board.
    pub board: String,
    /// The cluster's topology epoch when the spec was made (starts at 1; a failover raises
    /// it). Older than the agent's: refused with 409.
    pub epoch: u64,
    /// The roles, each with everything it needs. At most one entry per [`Role`].
    pub roles: Vec<RoleConfig>,
}

impl BoardSpec {
    /// The roles, in spec order.
    pub fn role_names(&self) -> Vec<Role> {
        self.roles.iter().map(RoleConfig::role).collect()
    }

    /// Problems that make the spec unusable (the agent answers 400 with them). Empty: fine.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for r in &self.roles {
            let role = r.role();
            if seen.contains(&role) {
                out.push(format!("role {role} appears twice"));
            }
            seen.push(role);
        }
        if seen.contains(&Role::DbMaster) && seen.contains(&Role::DbReplica) {
            out.push("a board cannot be db-master and db-replica at once".into());
        }
        for r in &self.roles {
            match r {
                RoleConfig::Cache(c) => {
                    if c.memory_mb == 0 {
                        out.push("cache: memory_mb must be at least 1".into());
                    }
                }
                RoleConfig::Cdn(c) => {
                    if c.memory_bytes == 0 {
                        out.push("cdn: memory_bytes must be at least 1".into());
                    }
                    if !matches!(c.policy.as_str(), "lru" | "s3-fifo") {
                        out.push(format!("cdn: unknown policy `{}` (lru, s3-fifo)", c.policy));
                    }
                }
                RoleConfig::Files(f) => {
                    let mut seen = Vec::new();
                    for b in &f.buckets {
                        if !crate::files::is_bucket_name(&b.name) {
                            out.push(format!("files: `{}` is not a bucket name", b.name));
                        }
                        if seen.contains(&&b.name) {
                            out.push(format!("files: bucket `{}` appears twice", b.name));
                        }
                        seen.push(&b.name);
                        if b.max_object_bytes == 0 {
                            out.push(format!("files: bucket `{}` takes no object", b.name));
                        }
                    }
                }
                RoleConfig::Vip(v) => {
                    let ipv4 = |s: &str| s.parse::<std::net::Ipv4Addr>().is_ok();
                    if !ipv4(&v.address) || !ipv4(&v.own) || !v.peers.iter().all(|p| ipv4(p)) {
                        out.push("vip: address, own and peers must be IPv4 addresses".into());
                    }
                    if !(1..=32).contains(&v.prefix_len) {
                        out.push(format!("vip: prefix_len {} is not 1..=32", v.prefix_len));
                    }
                    if v.priority == 0 || v.priority == 255 {
                        out.push("vip: priority must be 1..=254".into());
                    }
                    if v.router_id == 0 {
                        out.push("vip: router_id must be 1..=255".into());
                    }
                }
                RoleConfig::Lb(l) => {
                    if l.upstreams.is_empty() {
                        out.push("lb: no app board to send requests to".into());
                    }
                    for u in &l.upstreams {
                        if u.weight == 0 || u.weight > 100 {
                            out.push(format!("lb: weight of {} must be 1..=100", u.board));
                        }
                        if u.host.parse::<std::net::IpAddr>().is_err() {
                            out.push(format!("lb: {} has no IP address ({:?})", u.board, u.host));
                        }
                    }
                    if l.connect_timeout_ms == 0 {
                        out.push("lb: connect_timeout_ms must be at least 1".into());
                    }
                }
                RoleConfig::App(a) => {
                    if a.jwt_key.len() < 32 {
                        out.push("app: jwt_key must be at least 32 characters".into());
                    }
                    if a.db.primary.is_none() && a.db.replicas.is_empty() {
                        out.push("app: no database board to use".into());
                    }
                    if !is_sql_name(&a.db.user.user) || !is_sql_name(&a.db.schema) {
                        out.push("app: database user or schema is not [a-z0-9_]{1,32}".into());
                    }
                    if a.token_ttl_secs == 0 {
                        out.push("app: token_ttl_secs must be at least 1".into());
                    }
                }
                RoleConfig::DbMaster(d) | RoleConfig::DbReplica(d) => {
                    if d.server_id == 0 {
                        out.push("db: server_id must not be 0".into());
                    }
                    let is_replica = matches!(r, RoleConfig::DbReplica(_));
                    if is_replica && d.primary.is_none() {
                        out.push("db-replica: no primary given".into());
                    }
                    for (what, c) in [
                        ("replication", &d.users.replication),
                        ("app", &d.users.app),
                        ("monitor", &d.users.monitor),
                    ] {
                        if !is_sql_name(&c.user) {
                            out.push(format!(
                                "db: {what} user {:?} is not [a-z0-9_]{{1,32}}",
                                c.user
                            ));
                        }
                        if c.password.is_empty() || c.password.contains(['\'', '\\', '\0']) {
                            out.push(format!(
                                "db: {what} password is empty or has a quote, backslash or NUL"
                            ));
                        }
                    }
                    if !d.client_hosts.chars().all(|ch| {
                        ch.is_ascii_alphanumeric() || matches!(ch, '.' | '%' | '/' | '-' | ':')
                    }) || d.client_hosts.is_empty()
                    {
                        out.push(format!(
                            "db: client_hosts {:?} is not a host pattern",
                            d.client_hosts
                        ));
                    }
                }
            }
        }
        out
    }
}

/// `[a-z0-9_]{1,32}`: safe to put in SQL without quoting surprises.
pub fn is_sql_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// One role with its configuration. On the wire: `{"role": "cache", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RoleConfig {
    Lb(LbConfig),
    App(AppConfig),
    Cache(CacheConfig),
    DbMaster(DbConfig),
    DbReplica(DbConfig),
    Vip(VipConfig),
    Files(FilesConfig),
    Cdn(CdnConfig),
}

impl RoleConfig {
    /// A short stable digest of this config (FNV-1a 64 over its JSON, hex): the agent reports
    /// the one its engine runs ([`RoleStatus::config`]), so `lab apply` can tell "running the
    /// new config" from "still running the old one".
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{hash:016x}")
    }

    pub fn role(&self) -> Role {
        match self {
            RoleConfig::Lb(_) => Role::Lb,
            RoleConfig::App(_) => Role::App,
            RoleConfig::Cache(_) => Role::Cache,
            RoleConfig::DbMaster(_) => Role::DbMaster,
            RoleConfig::DbReplica(_) => Role::DbReplica,
            RoleConfig::Vip(_) => Role::Vip,
            RoleConfig::Files(_) => Role::Files,
            RoleConfig::Cdn(_) => Role::Cdn,
        }
    }
}

/// NGINX on an lb board: the clients' way in, spreading requests over the app boards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbConfig {
    /// Address clients reach (the board's address; `0.0.0.0` on a real board's public side).
    pub listen: String,
    pub port: u16,
    /// `stub_status` on `127.0.0.1:<status_port>` (read by the board's agent only).
    pub status_port: u16,
    pub algorithm: LbAlgorithm,
    /// The app boards, in plan order.
    pub upstreams: Vec<Upstream>,
    /// How long NGINX waits for a TCP connection to an app before trying the next one (a
    /// powered-off board sends no RST, so this is what bounds a dead app's cost).
    pub connect_timeout_ms: u32,
}

/// The CDN edge's port for clients (the board's cluster address), and its purge port on
/// loopback (the agent's, behind mTLS, is the way in from outside).
pub const CDN_PORT: u16 = 8090;
pub const CDN_ADMIN_PORT: u16 = 8091;

/// Our CDN edge on a cdn board (`lab-agent cdn`, run by the agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnConfig {
    /// The board's name (answered in `X-Served-By`).
    pub board: String,
    /// The board's cluster address and the clients' port.
    pub bind: String,
    pub port: u16,
    /// Purges, on 127.0.0.1 only.
    pub admin_port: u16,
    /// Bytes of objects kept in memory.
    pub memory_bytes: u64,
    /// `lru` or `s3-fifo`.
    pub policy: String,
    /// How long an object is fresh when its origin says nothing (`Cache-Control: max-age`).
    pub default_ttl_secs: u32,
    /// How long past its freshness an object is still served when the origin fails.
    pub stale_if_error_secs: u32,
    /// Objects larger than this are passed through, not kept.
    pub max_object_bytes: u64,
    /// `/<bucket>/...` is fetched from the files board holding the bucket.
    pub origins: Vec<CdnOrigin>,
    /// Every other path from here (`host:port`, the LB), if any.
    pub fallback: Option<String>,
}

/// Where one bucket's objects come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnOrigin {
    pub bucket: String,
    pub board: String,
    pub host: String,
    pub port: u16,
    /// `host:port` of the bucket's replica, asked when the board above cannot be reached.
    #[serde(default)]
    pub replica: Option<String>,
}

/// The file store's port on a files board (its cluster address).
pub const FILES_PORT: u16 = 8070;

/// Our file store on a files board (`lab-agent files`, run by the agent): the buckets the
/// plan placed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The board's name (answered in `X-Served-By`).
    pub board: String,
    /// The board's cluster address.
    pub bind: String,
    pub port: u16,
    pub buckets: Vec<FilesBucket>,
}

/// One bucket on a files board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesBucket {
    pub name: String,
    /// The largest object it takes (413 above).
    pub max_object_bytes: u64,
    /// `host:port` of the other files board holding the bucket (2-way replication): every
    /// write and delete taken here is passed on there before it is answered.
    #[serde(default)]
    pub replica: Option<String>,
}

/// The floating address of the lb boards: keepalived (VRRP) on each holds it on exactly one
/// of them and moves it to another when that one stops answering. Clients use this address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// The floating IPv4 address.
    pub address: String,
    /// Its prefix length on the LAN (that of the boards' network).
    pub prefix_len: u8,
    /// This board's own address (VRRP adverts go from it; its interface gets the address).
    pub own: String,
    /// The other lb boards' addresses (adverts are sent to each: unicast VRRP).
    pub peers: Vec<String>,
    /// 1..=254; the highest wins when boards start together. Nobody takes the address back
    /// from a live holder (nopreempt).
    pub priority: u8,
    /// VRRP's virtual router id, 1..=255, the same on every lb board of a cluster.
    pub router_id: u8,
}

/// How the LB picks an app board: the classroom switch (`[lb] algorithm` in the inventory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LbAlgorithm {
    /// In turn (weighted where weights differ).
    #[default]
    RoundRobin,
    /// To the app with the fewest requests in flight.
    LeastConn,
    /// By the client's address: one client sticks to one app.
    IpHash,
}

impl LbAlgorithm {
    pub const ALL: [LbAlgorithm; 3] = [
        LbAlgorithm::RoundRobin,
        LbAlgorithm::LeastConn,
        LbAlgorithm::IpHash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LbAlgorithm::RoundRobin => "round-robin",
            LbAlgorithm::LeastConn => "least-conn",
            LbAlgorithm::IpHash => "ip-hash",
        }
    }
}

impl std::fmt::Display for LbAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the apps spread cache keys over the cache boards (`[cache] hashing`): the classroom
/// switch of the consistent-hashing exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CacheHashing {
    /// Consistent hashing: a ring of points per board; a board leaving or joining moves
    /// about 1/N of the keys.
    #[default]
    Ring,
    /// `hash(key) mod` the live boards: a board leaving or joining moves most keys.
    Modulo,
}

impl CacheHashing {
    pub const ALL: [CacheHashing; 2] = [CacheHashing::Ring, CacheHashing::Modulo];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheHashing::Ring => "ring",
            CacheHashing::Modulo => "modulo",
        }
    }
}

impl std::fmt::Display for CacheHashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the apps keep who is logged in (`[app] sessions`): the classroom switch of the
/// stateless-tier exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Sessions {
    /// Nowhere: the login token is a signed JWT any app board can check (stateless).
    #[default]
    Jwt,
    /// In the memory of the app board that logged the user in: another board does not know
    /// the session, and it dies with its board.
    Local,
    /// In memcached, on the cache boards: every app board finds it; it dies with its cache
    /// board.
    Shared,
}

impl Sessions {
    pub const ALL: [Sessions; 3] = [Sessions::Jwt, Sessions::Local, Sessions::Shared];

    pub fn as_str(self) -> &'static str {
        match self {
            Sessions::Jwt => "jwt",
            Sessions::Local => "local",
            Sessions::Shared => "shared",
        }
    }
}

impl std::fmt::Display for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One app board behind the LB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub board: String,
    pub host: String,
    pub port: u16,
    /// Relative share of requests (1..=100; 1 unless the inventory gives `weight`).
    pub weight: u32,
}

/// Our app server on an app board (`lab-agent app`, run by the agent).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The board's name (answered in `X-Served-By`).
    pub board: String,
    /// The board's cluster address (never 0.0.0.0: only the LB is for clients).
    pub bind: String,
    pub port: u16,
    pub db: AppDb,
    /// Every cache board, in plan order (the app hashes keys over them).
    pub caches: Vec<CachePeer>,
    /// How keys are spread over `caches`.
    #[serde(default)]
    pub cache_hashing: CacheHashing,
    /// Where logins are kept.
    #[serde(default)]
    pub sessions: Sessions,
    /// Key signing the app's tokens (HS256), per cluster, secret.
    pub jwt_key: String,
    /// How long a login token is valid.
    pub token_ttl_secs: u64,
    /// How long a cached read lives in memcached.
    pub cache_ttl_secs: u32,
    /// Where each bucket lives (uploads go there).
    #[serde(default)]
    pub buckets: Vec<AppBucket>,
    /// `http://host:port` of a CDN edge: the URL the app gives for an uploaded object.
    #[serde(default)]
    pub static_base: Option<String>,
}

/// A bucket the app stores uploads in, and the files board holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppBucket {
    pub bucket: String,
    pub host: String,
    pub port: u16,
    /// `host:port` of the bucket's replica, used when the board above cannot be reached.
    #[serde(default)]
    pub replica: Option<String>,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("board", &self.board)
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("caches", &self.caches)
            .field("cache_hashing", &self.cache_hashing)
            .field("sessions", &self.sessions)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// Where the app reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDb {
    /// Writes (and reads that must see a write) go here.
    pub primary: Option<DbPeer>,
    /// Reads go here, spread over them.
    pub replicas: Vec<DbPeer>,
    /// The app's database user.
    pub user: Credential,
    pub schema: String,
}

/// One memcached board as the app sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePeer {
    pub board: String,
    pub host: String,
    pub port: u16,
}

/// Whether the engine running `old` can take `new` without a restart: a replica whose only
/// change is its primary (repointed), a replica promoted to primary with nothing else
/// changed (it stops replicating and turns writable: the fast half of a failover), NGINX on
/// the same address (graceful reload), the app on the same address (re-reads its config).
/// The agent's reconciler and `lab plan` both decide by this.
pub fn applies_in_place(old: &RoleConfig, new: &RoleConfig) -> bool {
    match (old, new) {
        (RoleConfig::DbReplica(a), RoleConfig::DbMaster(b)) => {
            let mut a = a.clone();
            a.primary = None;
            a == *b
        }
        (RoleConfig::DbReplica(a), RoleConfig::DbReplica(b)) => {
            let mut a = a.clone();
            a.primary.clone_from(&b.primary);
            a == *b
        }
        (RoleConfig::Lb(a), RoleConfig::Lb(b)) => {
            (&a.listen, a.port, a.status_port) == (&b.listen, b.port, b.status_port)
        }
        (RoleConfig::App(a), RoleConfig::App(b)) => (&a.bind, a.port) == (&b.bind, b.port),
        _ => false,
    }
}

/// The role of `wanted` that the engine running `old` becomes in place when a spec drops
/// `old`'s role (a replica promoted): one that `running` lacks and [`applies_in_place`]
/// allows. The agent's reconciler and `lab plan` both decide by this.
pub fn becomes_in_place<'a>(
    old: &RoleConfig,
    running: &[Role],
    wanted: &'a [RoleConfig],
) -> Option<&'a RoleConfig> {
    wanted
        .iter()
        .find(|w| !running.contains(&w.role()) && applies_in_place(old, w))
}

/// memcached on a cache board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Address to listen on: the board's cluster address (never 0.0.0.0).
    pub bind: String,
    pub port: u16,
    /// Item memory (memcached `-m`), from the board's size.
    pub memory_mb: u64,
}

/// MariaDB on a database board, primary or replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    /// Unique in the cluster, never 0; kept by the control plane for the board's life.
    pub server_id: u32,
    /// Address to listen on: the board's cluster address.
    pub bind: String,
    pub port: u16,
    /// InnoDB buffer pool, from the board's size.
    pub buffer_pool_mb: u64,
    /// Semi-synchronous replication (the primary waits for one replica's ack).
    #[serde(default)]
    pub semi_sync: bool,
    /// Who may connect over the network as the replication and app users, as a MariaDB host
    /// pattern (the cluster network, e.g. `10.77.0.0/255.255.255.0`).
    pub client_hosts: String,
    pub users: DbUsers,
    /// The primary this replica follows; None on the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<DbPeer>,
}

/// The least-privilege users of the database (generated passwords, kept in the control
/// plane's state dir, 0600).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbUsers {
    /// `REPLICATION SLAVE` only, from the cluster network.
    pub replication: Credential,
    /// The app: DML on [`APP_SCHEMA`] only, from the cluster network.
    pub app: Credential,
    /// Figures for the collector: status and replication state only, from localhost.
    pub monitor: Credential,
}

impl std::fmt::Debug for DbUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbUsers")
            .field("replication", &self.replication.user)
            .field("app", &self.app.user)
            .field("monitor", &self.monitor.user)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <secret>)", self.user)
    }
}

/// Where a replica finds its primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbPeer {
    pub board: String,
    pub host: String,
    pub port: u16,
}

/// A database board's replication state, read live (`GET /v1/db`): what the failover manager
/// confirms a dead primary with and picks the replica to promote by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbReplication {
    pub board: String,
    /// `read_only` as the server has it now.
    pub read_only: bool,
    /// `@@gtid_current_pos`: everything this server holds (e.g. `0-1-42`).
    pub gtid_current_pos: String,
    /// `@@gtid_binlog_state`: the last GTID per domain and server id in its binlog.
    pub gtid_binlog_state: String,
    /// A replica: its IO thread runs and is connected (`Slave_IO_Running = Yes`).
    pub io_running: bool,
    /// A replica: `Gtid_IO_Pos`, what it has read from its primary.
    #[serde(default)]
    pub gtid_io_pos: String,
    /// A replica: its SQL thread has applied everything it read (nothing left in the relay log).
    pub relay_applied: bool,
    /// A replica: whether a TCP connection to its primary (from its spec) opened within a
    /// second, just now. None on a primary.
    pub primary_reachable: Option<bool>,
}

/// Answer to `PUT /v1/spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecAccepted {
    /// The epoch the agent now holds.
    pub epoch: u64,
    /// False when the spec equals the one held (nothing to do).
    pub changed: bool,
}

/// Where a role is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleState {
    /// Preparing (config, data directory) or started and not answering yet.
    Starting,
    /// Answering.
    Running,
    /// Failed to start, or exited; restarted with backoff (see `restarts`).
    Failed,
}

impl RoleState {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleState::Starting => "starting",
            RoleState::Running => "running",
            RoleState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One role as the agent sees it, in [`crate::Health::roles`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleStatus {
    pub role: Role,
    pub state: RoleState,
    /// What it is doing or why it failed ("replicating from db-1 (10.77.0.41:3306)",
    /// "mariadbd exited with status 1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last lines of the engine's log when it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// How often the agent restarted it since the spec last changed.
    #[serde(default)]
    pub restarts: u32,
    /// The engine's log on the board.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// [`RoleConfig::fingerprint`] of the config the engine runs (while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(primary: Option<DbPeer>) -> DbConfig {
        let c = |u: &str| Credential {
            user: u.into(),
            password: "s3cret".into(),
        };
        DbConfig {
            server_id: 2,
            bind: "10.77.0.42".into(),
            port: MARIADB_PORT,
            buffer_pool_mb: 128,
            semi_sync: false,
            client_hosts: "10.77.0.0/255.255.255.0".into(),
            users: DbUsers {
                replication: c("lab_repl"),
                app: c("lab_app"),
                monitor: c("lab_monitor"),
            },
            primary,
        }
    }

    #[test]
    fn wire_form_is_tagged_by_role() {
        let spec = BoardSpec {
            board: "cache-1".into(),
            epoch: 1,
            roles: vec![RoleConfig::Cache(CacheConfig {
                bind: "10.77.0.31".into(),
                port: MEMCACHED_PORT,
                memory_mb: 64,
            })],
        };
        let json = serde_json::to_string(&spec).expect("json");
        assert!(json.contains(r#""role":"cache""#), "{json}");
        let back: BoardSpec = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, spec);
        assert!(spec.problems().is_empty());
    }

    #[test]
    fn unknown_fields_and_roles_are_refused() {
        let bad = r#"{"board":"x","epoch":1,"roles":[{"role":"kafka"}]}"#;
        assert!(serde_json::from_str::<BoardSpec>(bad).is_err());
        let bad = r#"{"board":"x","epoch":1,"roles":[],"extra":1}"#;
        assert!(serde_json::from_str::<BoardSpec>(bad).is_err());
    }

    #[test]
    fn problems_name_what_is_wrong() {
        let spec = BoardSpec {
            board: "db-2".into(),
            epoch: 1,
            roles: vec![
                RoleConfig::DbReplica(db(None)),
                RoleConfig::DbMaster(db(None)),
            ],
        };
        let p = spec.problems().join("; ");
        assert!(p.contains("db-replica: no primary"), "{p}");
        assert!(p.contains("db-master and db-replica"), "{p}");
        let mut d = db(None);
        d.users.app.password = "x'; DROP".into();
        d.users.monitor.user = "Robert'); --".into();
        let spec = BoardSpec {
            board: "db-1".into(),
            epoch: 1,
            roles: vec![RoleConfig::DbMaster(d)],
        };
        let p = spec.problems().join("; ");
        assert!(p.contains("app password"), "{p}");
        assert!(p.contains("monitor user"), "{p}");
    }

    #[test]
    fn fingerprints_follow_the_config() {
        let a = RoleConfig::DbMaster(db(None));
        let mut other = db(None);
        other.buffer_pool_mb = 256;
        let b = RoleConfig::DbMaster(other);
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let text = format!("{:?}", db(None));
        assert!(!text.contains("s3cret"), "{text}");
    }
}

/// `POST /v1/cdn/purge`'s body: what to drop from the board's edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdnPurge {
    /// One object's path (`/avatars/a.png`), or
    pub key: Option<String>,
    /// every object under this path (`/avatars/`; `/` for everything).
    pub prefix: Option<String>,
}

/// The answer to a [`CdnPurge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdnPurged {
    pub board: String,
    pub purged: u64,
}

/// The answer to `POST /v1/db/reclone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recloned {
    pub board: String,
    /// What was done, for people.
    pub message: String,
}

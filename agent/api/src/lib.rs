//! The wire contract between `lab` (the control plane) and `lab-agent` (one per board).
//!
//! Both binaries compile against this crate, so a request type, an endpoint path or the
//! agent's config file format is declared exactly once. Every request carries
//! [`PROTOCOL_HEADER`]; an agent answering a different [`PROTOCOL_VERSION`] refuses it with
//! `409 Conflict` and an [`ApiError`] naming both versions, so a stale agent is reported
//! clearly instead of half-working.
//!
//! - [`paths`]: endpoint paths served by the agent.
//! - [`board_paths`]: where things live on a board (the same on a Pi and a virtual board).
//! - [`AgentConfig`]: `/etc/lab/agent.toml`, rendered by `lab`, read by the agent.
//! - [`Health`]: what `GET /v1/health` answers.
//! - [`time`]: wire timestamps (ms since the epoch) as RFC 3339 UTC, for logs and exports.
//! - [`metrics`]: the per-second [`metrics::Sample`] an agent streams to the control plane.
//! - [`roles`]: [`Role`] and [`Engine`], the names of what a board does and what runs it.
//! - [`app`]: the app's HTTP API (paths, headers, bodies), shared by the app and `lab load`.
//! - [`backoff`]: the one exponential backoff (agent restarts, control-plane reconnects).
//! - [`cgroup`]: where a process's cgroups are on disk (the virtual boards' size limits).

pub mod app;
pub mod backoff;
pub mod cgroup;
pub mod files;
pub mod metrics;
pub mod prometheus;
pub mod roles;
pub mod spec;
pub mod time;

pub use roles::{Engine, Role};

use serde::{Deserialize, Serialize};

/// Bumped whenever a request or response changes shape. `lab` and the agent ship together.
pub const PROTOCOL_VERSION: u32 = 2;

/// Request header carrying the caller's [`PROTOCOL_VERSION`].
pub const PROTOCOL_HEADER: &str = "x-lab-protocol";

/// TCP port the agent's mTLS API listens on (on the board's cluster address).
pub const DEFAULT_AGENT_PORT: u16 = 7443;

/// Name of the systemd unit (and of the detached supervisor where systemd does not run).
pub const SERVICE_NAME: &str = "lab-agent";

/// Common name of the control plane's client certificate. The agent accepts only client
/// certificates signed by the cluster CA that carry the clientAuth usage; agents' own
/// certificates carry serverAuth only, so one board cannot drive another.
pub const CONTROL_CLIENT_NAME: &str = "lab-control";

/// Endpoint paths served by the agent.
pub mod paths {
    /// `GET`: [`crate::Health`].
    pub const HEALTH: &str = "/v1/health";
    /// `PUT`: a [`crate::spec::BoardSpec`] (200 [`crate::spec::SpecAccepted`]; 400 unusable;
    /// 409 older epoch than held). `GET`: the spec held (`null` before the first).
    pub const SPEC: &str = "/v1/spec";
    /// `GET`: newline-delimited JSON stream of [`crate::metrics::Sample`], one per second.
    pub const SAMPLES_STREAM: &str = "/v1/samples/stream";
    /// `GET`: this board's metrics in Prometheus text format (no protocol header needed;
    /// still mTLS).
    pub const METRICS: &str = "/metrics";
    /// `GET`: [`crate::spec::DbReplication`], the board's database as the failover manager
    /// needs it (404 when the board runs no database role).
    pub const DB: &str = "/v1/db";
    /// `POST`: a database replica's data thrown away and copied afresh from its primary (the
    /// way back for a replica holding writes its primary lacks); answers
    /// [`crate::spec::Recloned`] once the old data is gone and the fresh copy has started
    /// (409 on a board that runs no replica: a primary's data is never thrown away).
    pub const DB_RECLONE: &str = "/v1/db/reclone";
    /// `POST` ([`crate::spec::CdnPurge`]): drop objects from the board's CDN edge.
    pub const CDN_PURGE: &str = "/v1/cdn/purge";
}

/// Fixed locations on every board. The virtual cluster bind-mounts a private directory over
/// each of these, so boards sharing one host never see each other's files.
pub mod board_paths {
    /// Agent binary.
    pub const AGENT_BIN: &str = "/usr/local/bin/lab-agent";
    /// Configuration directory (agent.toml, tls/).
    pub const ETC_DIR: &str = "/etc/lab";
    /// Agent configuration file.
    pub const CONFIG: &str = "/etc/lab/agent.toml";
    /// Cluster CA certificate (PEM).
    pub const TLS_CA: &str = "/etc/lab/tls/ca.pem";
    /// This board's server certificate (PEM).
    pub const TLS_CERT: &str = "/etc/lab/tls/agent.pem";
    /// This board's private key (PEM, mode 0600).
    pub const TLS_KEY: &str = "/etc/lab/tls/agent.key";
    /// Agent state (pid file, engine configs and data later).
    pub const STATE_DIR: &str = "/var/lib/lab";
    /// Log directory (used when not running under systemd).
    pub const LOG_DIR: &str = "/var/log/lab";
    /// Name of the detached supervisor's pid file inside [`STATE_DIR`] (boards without systemd).
    pub const PID_FILE_NAME: &str = "agent.pid";
    /// Pid file of the detached supervisor (boards without systemd).
    pub const PID_FILE: &str = "/var/lib/lab/agent.pid";
    /// Name of the agent's log file inside [`LOG_DIR`] (boards without systemd).
    pub const AGENT_LOG_NAME: &str = "agent.log";
    /// Log of the detached supervisor and its agent (boards without systemd).
    pub const AGENT_LOG: &str = "/var/log/lab/agent.log";
    /// Systemd unit file, where systemd runs the board.
    pub const SYSTEMD_UNIT: &str = "/etc/systemd/system/lab-agent.service";
}

/// `/etc/lab/agent.toml`: everything the agent needs to know, decided by `lab`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Cluster name, for logs and metrics labels.
    pub cluster: String,
    /// Board name from the inventory.
    pub board: String,
    /// Socket address the mTLS API binds to, e.g. `10.77.0.11:7443`.
    pub listen: String,
    /// Path of the cluster CA certificate.
    pub tls_ca: String,
    /// Path of the board's certificate.
    pub tls_cert: String,
    /// Path of the board's private key.
    pub tls_key: String,
    /// Agent state directory (the held spec, the engines' configs and data).
    pub state_dir: String,
    /// Where the role engines' logs go (`<log_dir>/<engine>.log`).
    #[serde(default = "default_log_dir")]
    pub log_dir: String,
    /// Role engines whose figures the agent samples (assigned by the control plane).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collectors: Vec<CollectorConfig>,
}

fn default_log_dir() -> String {
    board_paths::LOG_DIR.to_string()
}

/// One role engine the agent samples each second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    pub role: Role,
    /// What to sample and how `address` reads: see [`Engine`].
    pub engine: Engine,
    pub address: String,
}

/// Answer of `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub protocol_version: u32,
    /// `CARGO_PKG_VERSION` of the agent.
    pub agent_version: String,
    /// Board name from the agent's config.
    pub board: String,
    /// Kernel hostname as the board sees it.
    pub hostname: String,
    /// Architecture the agent binary was built for (`x86_64`, `aarch64`, `arm`).
    pub arch: String,
    /// OS pretty name (`/etc/os-release`), or "unknown".
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// Seconds since the board booted (for a virtual board: since its init started).
    pub uptime_secs: u64,
    /// Seconds since this agent process started.
    pub agent_uptime_secs: u64,
    /// Whole-machine CPU use over the last sampling interval, 0..=100.
    pub cpu_percent: f32,
    /// Whole CPUs the board shows: `ceil(cpus)`.
    pub cpu_count: u32,
    /// CPUs the board may use: its cgroup CPU quota where it has one (a virtual board),
    /// capped by the CPUs online, else the CPUs online. 0 from agents that predate it.
    #[serde(default)]
    pub cpus: f64,
    pub mem_used_bytes: u64,
    /// The board's memory: its cgroup memory limit where it has one (a virtual board),
    /// capped by the host's memory, else `MemTotal`.
    pub mem_total_bytes: u64,
    /// SHA-256 (hex) of the agent executable this process was started from.
    #[serde(default)]
    pub binary_sha256: String,
    /// Topology epoch of the spec the agent holds; None before its first spec.
    #[serde(default)]
    pub spec_epoch: Option<u64>,
    /// Every role of the held spec and where it is.
    #[serde(default)]
    pub roles: Vec<spec::RoleStatus>,
}

/// Body of every non-2xx answer from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

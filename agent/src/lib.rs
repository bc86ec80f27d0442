//! `lab-agent`: the node agent of `lab`, one per board (a Raspberry Pi or a virtual board).
//!
//! The binary (`src/main.rs`) only parses arguments, sets up logging, calls into this library
//! and maps the result to an exit code. The wire contract (paths, [`lab_api::Health`], the
//! protocol header, the config file) lives in the `lab-api` crate, shared with `lab`.
//!
//! Tour, in the order a request meets the code:
//!
//! - [`cli`]: the command line (`serve`, `start`, `supervise`, `stop`), its help text and the
//!   `--version` string (`lab-agent 0.1.0 (aarch64)`, parsed by `lab` and CI).
//! - [`cmd`]: one module per subcommand; each exposes a `run` function.
//! - [`config`]: reads `/etc/lab/agent.toml` into [`lab_api::AgentConfig`].
//! - [`tls`]: builds the rustls server config: the board's certificate, and client
//!   certificates required, signed by the cluster CA, with the clientAuth usage.
//! - [`server`]: the accept loop: TCP, TLS handshake with a timeout, HTTP/1 per connection,
//!   graceful shutdown through a [`tokio_util::sync::CancellationToken`].
//! - [`api`]: the axum router: the protocol-version check, `GET /v1/health`, the samples
//!   stream, `GET /metrics` (Prometheus text via [`lab_api::prometheus`]), JSON errors.
//! - [`stream`]: the NDJSON body of the samples stream, fed by the sampler's watch channel.
//! - [`sampler`]: the one background task sampling host and roles every second into a
//!   watch channel, so no request ever waits for a measurement.
//! - [`hostmetrics`]: reads `/proc` and `/sys` into a host sample (parsers in
//!   [`hostmetrics::parse`]).
//! - [`cgroup_limits`]: the board's cgroup memory and CPU limits; rewrites the host sample
//!   to them (a virtual board sized 256 MiB / 1 CPU reports 256 MiB / 1 CPU), as LXCFS does.
//! - [`collect`]: role collectors, one module per engine (nginx, memcached, mariadb).
//! - [`engine`]: role engines as child processes, each the leader of its own process group,
//!   stopped whole (signal, deadline, SIGKILL to the group, nothing left): the foundation of
//!   the per-role supervision.
//! - [`roles`]: the role contract's agent side: `PUT /v1/spec` stored atomically, the
//!   reconciler converging to it, one supervisor per role (memcached, MariaDB primary or
//!   replica), the per-role statuses health reports.
//! - [`app`]: the app server (`lab-agent app`), run by the app role: HTTP API, JWT logins,
//!   MariaDB primary/replica routing with read-your-writes, our memcached client with
//!   consistent hashing, its own stats page.
//! - [`host`]: facts about the board (hostname, OS, kernel, boot age), read once.
//! - [`procfs`]: pure parsers for the `/proc` and `/etc` files the agent reads, unit tested on
//!   captured text.
//! - [`pidfile`]: the detached supervisor's pid file, and whether the process it names is
//!   really a live `lab-agent supervise` (pids get reused); the lock that keeps a second
//!   supervisor from starting.
//! - [`shutdown`]: SIGTERM and SIGINT cancel a token.
//! - [`logging`]: journald under systemd, otherwise a small timestamped stderr logger.

pub mod api;
pub mod app;
pub mod cdn;
pub mod cgroup_limits;
pub mod cli;
pub mod cmd;
pub mod collect;
pub mod config;
pub mod engine;
pub mod files;
pub mod host;
pub mod hostmetrics;
pub mod logging;
pub mod pidfile;
pub mod procfs;
pub mod roles;
pub mod sampler;
pub mod server;
pub mod shutdown;
pub mod stream;
pub mod tls;

/// Version of this agent, as reported in [`lab_api::Health::agent_version`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Environment variable through which the supervisor tells its `serve` child who its parent
/// is, so the child dies with the supervisor instead of lingering as an orphan.
pub const SUPERVISOR_PID_ENV: &str = "LAB_AGENT_SUPERVISOR_PID";

//! `lab`: the control plane. It reads an inventory of boards, reaches each over SSH, pushes
//! and starts the node agent, and from then on talks to agents over mutual TLS.
//!
//! Module map (one job each):
//! - [`inventory`]: parse and validate the inventory TOML (errors name file, line, board).
//! - [`state`]: the cluster's state directory; atomic, 0600-where-secret file writes.
//! - [`pki`]: cluster CA, per-board server certs, the control plane's client cert (rcgen).
//! - [`ssh`]: SSH transport over `ssh2`: connect, pin host keys, authenticate, run, upload.
//! - [`agent_bin`]: find (or build) the static agent binary for a board's architecture.
//! - [`job`]: one job per board, many boards at once: typed steps and failures, the summary.
//! - [`bootstrap`]: converge every board to "agent installed, configured and healthy".
//! - [`agent_client`]: mTLS HTTP client for the agent API (`lab-api` types).
//! - [`virt`]: the virtual cluster: boards as Linux namespaces on one host, with real sshd.
//! - [`cluster`]: everything a command needs about one cluster, opened once.
//! - [`host_setup`]: install the Debian packages this host needs, saying so.
//! - [`rootfs`]: the cached arm64 Debian root that emulated arm64 boards run.
//! - [`load`]: `lab load`, the load generator: open/closed loop, histograms, timeline.
//! - [`metrics`]: samples streamed by agents: store, history, liveness, events, exposition.
//! - [`serve_api`]: the JSON types of `lab serve`'s API, shared by server and readers.
//! - [`web`]: `lab serve`'s HTTP API, Prometheus endpoint and embedded dashboard (axum).
//! - [`tui`]: `lab top`'s terminal view: model, pure rendering, terminal guard.
//! - [`report`]: error chains and output tails as people read them.
//! - [`failover`]: `lab serve`'s failover manager: down boards leave their peers' specs.
//! - [`cli`]: one file per subcommand; maps arguments to the modules above.

pub mod agent_bin;
pub mod agent_client;
pub mod agents;
pub mod apply;
pub mod bootstrap;
pub mod cli;
pub mod cluster;
pub mod exercise;
pub mod failover;
pub mod flash;
pub mod host_setup;
pub mod image;
pub mod inventory;
pub mod job;
pub mod load;
pub mod metrics;
pub mod pki;
pub mod plan;
pub mod report;
pub mod rootfs;
pub mod run_report;
pub mod serve_api;
pub mod ssh;
pub mod state;
pub mod tui;
pub mod virt;
pub mod web;

/// Install the process-wide rustls crypto provider (ring). Must run before any TLS config is
/// built; calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

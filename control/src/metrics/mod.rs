//! The control plane's metrics: agents stream one [`lab_api::metrics::Sample`] per second;
//! `lab serve` keeps the latest per board plus an hour of history, notices silent boards,
//! and exposes it all (see [`crate::web`]).
//!
//! - [`derive`]: pure: rates and headline figures from two consecutive samples.
//! - [`ring`]: pure: the bounded per-board history (shared timestamp ring, `f32` series).
//! - [`lease`]: pure: liveness as a lease renewed by each sample.
//! - [`events`]: the event log (memory, live subscribers, `events.jsonl`).
//! - [`store`]: per-board latest sample, history, lease; memory figures in its doc.
//! - [`ingest`]: one mTLS stream task per board, reconnecting with backoff; lease checker.
//! - [`exposition`]: the central Prometheus text (`/metrics`).
//! - [`client`]: find a running `lab serve` (`<state>/serve.addr`) and read its HTTP API.

pub mod client;
pub mod derive;
pub mod events;
pub mod exposition;
pub mod ingest;
pub mod lease;
pub mod ring;
pub mod store;

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

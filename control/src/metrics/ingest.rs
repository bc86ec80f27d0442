//! Ingest: one task per board keeps an mTLS stream of samples open to its agent
//! ([`lab_api::paths::SAMPLES_STREAM`]), feeding each line to the [`MetricsStore`]; when the
//! stream fails, ends or goes silent it reconnects with exponential backoff capped at
//! [`MAX_BACKOFF`]. One more task checks every board's lease four times a second.
//!
//! All tasks run on the caller's `TaskTracker` and end when the `CancellationToken` is
//! cancelled.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab_api::backoff::Backoff;
use lab_api::metrics::Sample;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::store::MetricsStore;
use crate::agent_client::{AgentClient, AgentClientError};

/// First wait before reconnecting.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait before reconnecting.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A stream silent this long is dropped and re-opened (the lease marks the board down
/// earlier, after [`super::lease::HEARTBEAT_TTL`]).
pub const STREAM_IDLE: Duration = Duration::from_secs(5);
/// How often leases are checked.
pub const LEASE_CHECK: Duration = Duration::from_millis(250);

/// Where one board's agent listens.
#[derive(Debug, Clone)]
pub struct Target {
    /// Index of the board in the store.
    pub board: usize,
    /// Host to dial (IP or DNS name, as in the agent's certificate).
    pub host: String,
    pub port: u16,
}

/// Start one stream task per target and the lease checker.
pub fn spawn(
    store: Arc<MetricsStore>,
    client: AgentClient,
    targets: Vec<Target>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    for target in targets {
        tracker.spawn(follow_board(
            store.clone(),
            client.clone(),
            target,
            shutdown.clone(),
        ));
    }
    tracker.spawn(check_leases(store, shutdown));
}

async fn check_leases(store: Arc<MetricsStore>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(LEASE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => store.check_leases(Instant::now(), super::now_ms()),
        }
    }
}

/// Why a stream ended.
enum Ended {
    Shutdown,
    Closed,
    Silent,
    Failed(AgentClientError),
}

async fn follow_board(
    store: Arc<MetricsStore>,
    client: AgentClient,
    target: Target,
    shutdown: CancellationToken,
) {
    let name = store
        .info(target.board)
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut last_error = String::new();
    loop {
        let mut received = 0u64;
        let ended = stream_once(&store, &client, &target, &shutdown, &mut received).await;
        if received > 0 {
            backoff.reset();
        }
        match ended {
            Ended::Shutdown => break,
            Ended::Closed => tracing::debug!(board = %name, "sample stream ended by the agent"),
            Ended::Silent => tracing::info!(
                board = %name,
                "no sample for {} s: reconnecting",
                STREAM_IDLE.as_secs()
            ),
            Ended::Failed(e) => {
                let text = crate::report::error_chain(&e);
                if text != last_error {
                    tracing::info!(board = %name, "sample stream: {text}");
                    last_error = text;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn stream_once(
    store: &MetricsStore,
    client: &AgentClient,
    target: &Target,
    shutdown: &CancellationToken,
    received: &mut u64,
) -> Ended {
    let counters = &store.counters;
    counters.connects_total.fetch_add(1, Ordering::Relaxed);
    let needs_facts = store.snapshot(target.board).is_some_and(|s| s.os.is_none());
    if needs_facts {
        let health = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            h = client.health(&target.host, target.port) => h,
        };
        match health {
            Ok(h) => store.set_facts(target.board, h.arch, h.os),
            Err(e) => {
                counters
                    .connect_failures_total
                    .fetch_add(1, Ordering::Relaxed);
                return Ended::Failed(e);
            }
        }
    }
    let opened = tokio::select! {
        _ = shutdown.cancelled() => return Ended::Shutdown,
        s = client.get_lines(&target.host, target.port, lab_api::paths::SAMPLES_STREAM) => s,
    };
    let mut lines = match opened {
        Ok(lines) => lines,
        Err(e) => {
            counters
                .connect_failures_total
                .fetch_add(1, Ordering::Relaxed);
            return Ended::Failed(e);
        }
    };
    counters.streams_open.fetch_add(1, Ordering::Relaxed);
    let ended = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Ended::Shutdown,
            n = tokio::time::timeout(STREAM_IDLE, lines.next_line()) => n,
        };
        let line = match next {
            Err(_) => break Ended::Silent,
            Ok(Err(e)) => break Ended::Failed(e),
            Ok(Ok(None)) => break Ended::Closed,
            Ok(Ok(Some(line))) => line,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Sample>(&line) {
            Ok(sample) => {
                *received += 1;
                store.ingest(target.board, sample, Instant::now(), super::now_ms());
            }
            Err(e) => {
                counters.decode_errors_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(host = %target.host, "undecodable sample line: {e}");
            }
        }
    };
    counters.streams_open.fetch_sub(1, Ordering::Relaxed);
    if !matches!(ended, Ended::Shutdown) {
        counters
            .streams_dropped_total
            .fetch_add(1, Ordering::Relaxed);
    }
    ended
}

//! The app's own figures: counters since it started and the latency window, read by the
//! stats page ([`lab_api::app::AppStats`]). Plain atomics: counting costs a request nothing
//! it would notice. Requests to `/_lab/` (the agent's probes and collector) are not counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lab_api::app::AppStats;

use super::histogram::LatencyWindow;

#[derive(Default)]
pub struct Stats {
    requests: AtomicU64,
    client_errors: AtomicU64,
    errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_errors: AtomicU64,
    db_reads_replica: AtomicU64,
    db_reads_primary: AtomicU64,
    db_writes: AtomicU64,
    latency: LatencyWindow,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// One answered request: its status and how long it took.
    pub fn request(&self, status: u16, took: Duration) {
        bump(&self.requests);
        match status {
            400..=499 => bump(&self.client_errors),
            500..=599 => bump(&self.errors),
            _ => {}
        }
        self.latency.record(took);
    }

    pub fn cache_hit(&self) {
        bump(&self.cache_hits);
    }

    pub fn cache_miss(&self) {
        bump(&self.cache_misses);
    }

    pub fn cache_error(&self) {
        bump(&self.cache_errors);
    }

    pub fn db_read(&self, replica: bool) {
        bump(if replica {
            &self.db_reads_replica
        } else {
            &self.db_reads_primary
        });
    }

    pub fn db_write(&self) {
        bump(&self.db_writes);
    }

    /// The stats page, with the cache boards live / configured now.
    pub fn snapshot(&self, cache_nodes_live: usize, cache_nodes: usize) -> AppStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let [p50, p99] = self.latency.quantiles_ms([0.5, 0.99]);
        AppStats {
            requests_total: get(&self.requests),
            client_errors_total: get(&self.client_errors),
            errors_total: get(&self.errors),
            cache_hits_total: get(&self.cache_hits),
            cache_misses_total: get(&self.cache_misses),
            cache_errors_total: get(&self.cache_errors),
            db_reads_replica_total: get(&self.db_reads_replica),
            db_reads_primary_total: get(&self.db_reads_primary),
            db_writes_total: get(&self.db_writes),
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            cache_nodes_live: cache_nodes_live as u64,
            cache_nodes: cache_nodes as u64,
        }
    }
}

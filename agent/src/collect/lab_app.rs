//! App collector: `GET` of the app's stats page ([`lab_api::app::paths::STATS`], JSON
//! [`AppStats`]) on the board's cluster address.
//!
//! Figures (names stable; the fields of [`AppStats`], the cache's as `hits_total` /
//! `misses_total` like every other cache figure):
//! - counters: `requests_total`, `client_errors_total`, `errors_total`, `hits_total`,
//!   `misses_total`, `cache_errors_total`, `db_reads_replica_total`,
//!   `db_reads_primary_total`, `db_writes_total`
//! - gauges: `latency_p50_ms`, `latency_p99_ms`, `cache_nodes_live`, `cache_nodes`

use lab_api::app::AppStats;

use super::{counter, gauge, CollectError, Reading};

/// Longest stats body accepted.
const MAX_BODY: usize = 16 * 1024;

/// Fetches and reads the stats page at `url`.
pub async fn collect(url: &str) -> Result<Reading, CollectError> {
    let body = super::http::get(url, MAX_BODY).await?;
    let stats: AppStats = serde_json::from_slice(&body)?;
    Ok(reading(&stats))
}

/// The figures of one stats answer.
pub fn reading(s: &AppStats) -> Reading {
    #[allow(clippy::cast_precision_loss)] // counters stay far below 2^53
    let c = |name: &str, v: u64| counter(name, v as f64);
    #[allow(clippy::cast_precision_loss)]
    let g = |name: &str, v: u64| gauge(name, v as f64);
    Reading {
        figures: vec![
            c("requests_total", s.requests_total),
            c("client_errors_total", s.client_errors_total),
            c("errors_total", s.errors_total),
            c("hits_total", s.cache_hits_total),
            c("misses_total", s.cache_misses_total),
            c("cache_errors_total", s.cache_errors_total),
            c("db_reads_replica_total", s.db_reads_replica_total),
            c("db_reads_primary_total", s.db_reads_primary_total),
            c("db_writes_total", s.db_writes_total),
            gauge("latency_p50_ms", s.latency_p50_ms),
            gauge("latency_p99_ms", s.latency_p99_ms),
            g("cache_nodes_live", s.cache_nodes_live),
            g("cache_nodes", s.cache_nodes),
        ],
        labels: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stat_becomes_a_figure() {
        let stats = AppStats {
            requests_total: 10,
            cache_hits_total: 7,
            cache_misses_total: 3,
            latency_p99_ms: 4.5,
            ..AppStats::default()
        };
        let r = reading(&stats);
        let get = |n: &str| {
            r.figures
                .iter()
                .find(|f| f.name == n)
                .map(|f| (f.value, f.counter))
        };
        assert_eq!(get("requests_total"), Some((10.0, true)));
        assert_eq!(get("hits_total"), Some((7.0, true)));
        assert_eq!(get("latency_p99_ms"), Some((4.5, false)));
        assert_eq!(r.figures.len(), 13);
    }
}

//! CDN edge collector: `GET` of the edge's stats page ([`lab_api::files::STATS`], JSON
//! [`CdnStats`]) on the board's cluster address.
//!
//! Figures (names stable; hits and misses named like every other cache's):
//! - counters: `requests_total`, `hits_total`, `misses_total`, `stale_total`,
//!   `revalidated_total`, `origin_fetches_total`, `origin_errors_total`, `bytes_out_total`,
//!   `evictions_total`
//! - gauges: `cached_objects`, `cached_bytes`, `capacity_bytes`

use lab_api::files::CdnStats;

use super::{counter, gauge, CollectError, Reading};

/// Longest stats body accepted.
const MAX_BODY: usize = 16 * 1024;

/// Fetches and reads the stats page at `url`.
pub async fn collect(url: &str) -> Result<Reading, CollectError> {
    let body = super::http::get(url, MAX_BODY).await?;
    let stats: CdnStats = serde_json::from_slice(&body)?;
    Ok(reading(&stats))
}

/// The figures of one stats answer.
#[allow(clippy::cast_precision_loss)] // counters and sizes stay far below 2^53
pub fn reading(s: &CdnStats) -> Reading {
    let c = |name: &str, v: u64| counter(name, v as f64);
    let g = |name: &str, v: u64| gauge(name, v as f64);
    Reading {
        figures: vec![
            c("requests_total", s.requests_total),
            c("hits_total", s.hits_total),
            c("misses_total", s.misses_total),
            c("stale_total", s.stale_total),
            c("revalidated_total", s.revalidated_total),
            c("origin_fetches_total", s.origin_fetches_total),
            c("origin_errors_total", s.origin_errors_total),
            c("bytes_out_total", s.bytes_out_total),
            c("evictions_total", s.evictions_total),
            g("cached_objects", s.cached_objects),
            g("cached_bytes", s.cached_bytes),
            g("capacity_bytes", s.capacity_bytes),
        ],
        labels: Vec::new(),
    }
}

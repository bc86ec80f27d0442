//! File store collector: `GET` of the store's stats page ([`lab_api::files::STATS`], JSON
//! [`FilesStats`]) on the board's cluster address.
//!
//! Figures (names stable):
//! - counters: `requests_total`, `errors_total`, `bytes_in_total`, `bytes_out_total`
//! - gauges: `stored_objects`, `stored_bytes` (all buckets), and per bucket
//!   `bucket_<name>_objects`, `bucket_<name>_bytes`

use lab_api::files::FilesStats;

use super::{counter, gauge, CollectError, Reading};

/// Longest stats body accepted.
const MAX_BODY: usize = 64 * 1024;

/// Fetches and reads the stats page at `url`.
pub async fn collect(url: &str) -> Result<Reading, CollectError> {
    let body = super::http::get(url, MAX_BODY).await?;
    let stats: FilesStats = serde_json::from_slice(&body)?;
    Ok(reading(&stats))
}

/// The figures of one stats answer.
#[allow(clippy::cast_precision_loss)] // counters and sizes stay far below 2^53
pub fn reading(s: &FilesStats) -> Reading {
    let mut figures = vec![
        counter("requests_total", s.requests_total as f64),
        counter("errors_total", s.errors_total as f64),
        counter("bytes_in_total", s.bytes_in_total as f64),
        counter("bytes_out_total", s.bytes_out_total as f64),
        gauge(
            "stored_objects",
            s.buckets.values().map(|b| b.objects).sum::<u64>() as f64,
        ),
        gauge(
            "stored_bytes",
            s.buckets.values().map(|b| b.bytes).sum::<u64>() as f64,
        ),
    ];
    for (name, usage) in &s.buckets {
        let name = name.replace('-', "_");
        figures.push(gauge(
            &format!("bucket_{name}_objects"),
            usage.objects as f64,
        ));
        figures.push(gauge(&format!("bucket_{name}_bytes"), usage.bytes as f64));
    }
    Reading {
        figures,
        labels: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::files::BucketUsage;

    #[test]
    fn totals_and_each_bucket_become_figures() {
        let mut stats = FilesStats {
            requests_total: 5,
            bytes_out_total: 300,
            ..FilesStats::default()
        };
        for (name, objects, bytes) in [("avatars", 2, 100), ("big-videos", 1, 50)] {
            stats.buckets.insert(
                name.into(),
                BucketUsage {
                    objects,
                    bytes,
                    max_object_bytes: 1000,
                },
            );
        }
        let r = reading(&stats);
        let value = |n: &str| {
            r.figures
                .iter()
                .find(|f| f.name == n)
                .map(|f| f.value)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        assert_eq!(value("requests_total"), 5.0);
        assert_eq!(value("bytes_out_total"), 300.0);
        assert_eq!(value("stored_objects"), 3.0);
        assert_eq!(value("stored_bytes"), 150.0);
        assert_eq!(value("bucket_big_videos_bytes"), 50.0);
    }
}

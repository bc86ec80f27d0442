//! The central Prometheus exposition (`GET /metrics` of `lab serve`): every board's latest
//! sample rendered by [`lab_api::prometheus::render`] (node_exporter names, each series
//! labelled `node="<board>",instance="<board>"`), followed by `lab`'s own figures:
//! `lab_board_up`, `lab_samples_received_total` per board and the `lab_ingest_*` self
//! metrics.
//!
//! Only boards that are up expose their host series: a down board's last sample would
//! otherwise be scraped as if it were current; `lab_board_up` says it is down.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use lab_api::metrics::Sample;

use super::store::MetricsStore;

pub use lab_api::prometheus::CONTENT_TYPE;

/// The whole exposition text.
pub fn render(store: &MetricsStore) -> String {
    let view = store.exposition_view();
    let samples: Vec<(&str, &Sample)> = view
        .iter()
        .filter(|(_, _, up, _)| *up)
        .filter_map(|(name, sample, _, _)| sample.as_deref().map(|s| (name.as_str(), s)))
        .collect();
    let mut out = lab_api::prometheus::render(&samples, true);

    family(
        &mut out,
        "lab_board_up",
        "gauge",
        "Whether the board's agent sent a sample within the heartbeat lease (1 = up).",
    );
    for (name, _, up, _) in &view {
        series(&mut out, "lab_board_up", name, if *up { 1 } else { 0 });
    }
    family(
        &mut out,
        "lab_samples_received_total",
        "counter",
        "Samples received from the board's agent since lab serve started.",
    );
    for (name, _, _, total) in &view {
        series(&mut out, "lab_samples_received_total", name, *total);
    }

    let c = &store.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let own: [(&str, &str, &str, String); 8] = [
        (
            "lab_ingest_samples_total",
            "counter",
            "Samples ingested from all boards.",
            load(&c.samples_total).to_string(),
        ),
        (
            "lab_ingest_decode_errors_total",
            "counter",
            "Stream lines that were not a valid sample.",
            load(&c.decode_errors_total).to_string(),
        ),
        (
            "lab_ingest_connects_total",
            "counter",
            "Attempts to open a sample stream to an agent.",
            load(&c.connects_total).to_string(),
        ),
        (
            "lab_ingest_connect_failures_total",
            "counter",
            "Attempts to open a sample stream that failed.",
            load(&c.connect_failures_total).to_string(),
        ),
        (
            "lab_ingest_streams_dropped_total",
            "counter",
            "Open sample streams that ended, failed or went silent.",
            load(&c.streams_dropped_total).to_string(),
        ),
        (
            "lab_ingest_streams_open",
            "gauge",
            "Sample streams open now.",
            load(&c.streams_open).to_string(),
        ),
        (
            "lab_ingest_seconds_total",
            "counter",
            "Time spent storing samples (derivation and history), in seconds.",
            format!("{}", load(&c.ingest_nanos_total) as f64 / 1e9),
        ),
        (
            "lab_ingest_history_bytes",
            "gauge",
            "Bytes allocated by the history rings of all boards.",
            store.history_bytes().to_string(),
        ),
    ];
    for (name, kind, help, value) in own {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn series(out: &mut String, name: &str, board: &str, value: u64) {
    let board = escape(board);
    let _ = writeln!(
        out,
        "{name}{{node=\"{board}\",instance=\"{board}\"}} {value}"
    );
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::events::EventLog;
    use crate::metrics::store::BoardInfo;
    use std::time::{Duration, Instant};

    #[test]
    fn own_figures_follow_the_host_series() {
        let info = |n: &str| BoardInfo {
            name: n.into(),
            address: n.into(),
            roles: vec![],
        };
        let store = MetricsStore::new(
            vec![info("pi-1"), info("pi-2")],
            10,
            Duration::from_secs(3),
            EventLog::in_memory(),
        );
        let sample = Sample {
            board: "pi-1".into(),
            seq: 1,
            timestamp_ms: 1000,
            host: Default::default(),
            roles: vec![],
        };
        store.ingest(0, sample, Instant::now(), 1000);
        let text = render(&store);
        assert!(text.contains("node_load1{node=\"pi-1\",instance=\"pi-1\"} 0\n"));
        assert!(!text.contains("node_load1{node=\"pi-2\""));
        assert!(text.contains("lab_board_up{node=\"pi-1\",instance=\"pi-1\"} 1\n"));
        assert!(text.contains("lab_board_up{node=\"pi-2\",instance=\"pi-2\"} 0\n"));
        assert!(text.contains("lab_samples_received_total{node=\"pi-1\",instance=\"pi-1\"} 1\n"));
        assert!(
            text.contains("# TYPE lab_ingest_samples_total counter\nlab_ingest_samples_total 1\n")
        );
        assert_eq!(text.matches("# TYPE lab_board_up gauge").count(), 1);
    }
}

//! The one-page `report.md` a student hands in: what was run, the figures that matter
//! (throughput, latency, errors, who served, cache and database), the events with their
//! times, and the chart.

use std::fmt::Write;

use super::Run;

/// The page, for the run in `dir_name`.
pub fn render(run: &Run, dir_name: &str) -> String {
    let s = &run.summary;
    let num = |path: &[&str]| -> f64 {
        path.iter()
            .fold(s, |v, key| &v[*key])
            .as_f64()
            .unwrap_or(0.0)
    };
    let mut page = String::new();
    let _ = writeln!(page, "# Load run report\n");
    let _ = writeln!(page, "Run: `{dir_name}`  ");
    let _ = writeln!(
        page,
        "Target: {} ({} mix, {}), {:.0} s\n",
        s["target"].as_str().unwrap_or("?"),
        s["mix"].as_str().unwrap_or("?"),
        s["rate_asked"]
            .as_f64()
            .map_or("flat out".to_owned(), |r| format!("{r} req/s asked")),
        num(&["ran_s"])
    );
    let _ = writeln!(page, "| figure | value |\n| --- | --- |");
    let rows = [
        ("requests sent", format!("{:.0}", num(&["sent"]))),
        ("answered OK", format!("{:.0}", num(&["ok"]))),
        ("failed", format!("{:.0}", num(&["failed"]))),
        ("achieved", format!("{:.1} req/s", num(&["achieved_rate"]))),
        (
            "latency p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                num(&["latency_ms", "p50"]),
                num(&["latency_ms", "p99"]),
                num(&["latency_ms", "max"])
            ),
        ),
        ("served by", served_by(s)),
        ("cache", cache(s)),
        (
            "database answers",
            format!(
                "{:.0} primary, {:.0} replica",
                num(&["db", "primary"]),
                num(&["db", "replica"])
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(page, "| {name} | {value} |");
    }
    if !run.lag.is_empty() {
        let parts: Vec<String> = run
            .lag
            .iter()
            .map(|l| format!("{} {:.0} s", l.board, l.max()))
            .collect();
        let _ = writeln!(
            page,
            "| replication lag, most during the run | {} |",
            parts.join(", ")
        );
    }
    if s["writes"].is_object() {
        let _ = writeln!(
            page,
            "| acknowledged writes read back | {:.0} of {:.0} found, {:.0} lost, {:.0} unverified |",
            num(&["writes", "found"]),
            num(&["writes", "acknowledged"]),
            num(&["writes", "lost"]),
            num(&["writes", "unverified"])
        );
    }
    if let Some(errors) = s["errors"].as_object().filter(|e| !e.is_empty()) {
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(page, "| errors by kind | {} |", list.join(", "));
    }
    let _ = writeln!(page, "\n## Events\n");
    if run.marks.is_empty() {
        let _ = writeln!(
            page,
            "None: nothing was killed, cut or promoted during the run."
        );
    }
    for m in &run.marks {
        let _ = writeln!(page, "- +{:.1} s **{}**: {}", m.at_s, m.board, m.message);
    }
    let _ = writeln!(
        page,
        "\n## Charts\n\n![requests, latency and cache hit ratio per second](report.png)\n\n\
         (Vector version: `report.svg`; the dashed lines are the events above.)\n\n\
         ## Answer\n\n_What happened at each event, and how long until the figures recovered?_\n"
    );
    page
}

fn served_by(s: &serde_json::Value) -> String {
    let Some(by) = s["served_by"].as_object().filter(|m| !m.is_empty()) else {
        return "nobody said (no X-Served-By)".to_owned();
    };
    let total: f64 = by.values().filter_map(serde_json::Value::as_f64).sum();
    by.iter()
        .map(|(board, n)| {
            let n = n.as_f64().unwrap_or(0.0);
            format!("{board} {n:.0} ({:.0} %)", 100.0 * n / total.max(1.0))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn cache(s: &serde_json::Value) -> String {
    let hits = s["cache"]["hits"].as_f64().unwrap_or(0.0);
    let misses = s["cache"]["misses"].as_f64().unwrap_or(0.0);
    if hits + misses == 0.0 {
        return "no cache lookups".to_owned();
    }
    format!(
        "{hits:.0} hits, {misses:.0} misses ({:.1} % hit ratio)",
        100.0 * hits / (hits + misses)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::marks::Mark;

    #[test]
    fn the_page_has_the_figures_and_the_events() {
        let run = Run {
            rows: Vec::new(),
            marks: vec![Mark {
                at_s: 7.2,
                board: "db-1".into(),
                kind: "info".into(),
                message: "lab kill: power cut".into(),
            }],
            lag: Vec::new(),
            summary: serde_json::json!({
                "target": "http://10.0.0.1/", "mix": "app", "rate_asked": 40.0, "ran_s": 20.0,
                "sent": 800, "ok": 790, "failed": 10, "achieved_rate": 40.0,
                "latency_ms": {"p50": 1.8, "p99": 2002.9, "max": 2006.6},
                "served_by": {"app-1": 395, "app-2": 395},
                "cache": {"hits": 600, "misses": 150}, "db": {"primary": 40, "replica": 110},
                "errors": {"timeout": 10},
                "writes": {"acknowledged": 160, "found": 160, "lost": 0, "unverified": 0}
            }),
        };
        let page = render(&run, "lab-load-1");
        assert!(page.contains("| failed | 10 |"), "{page}");
        assert!(
            page.contains("| served by | app-1 395 (50 %), app-2 395 (50 %) |"),
            "{page}"
        );
        assert!(page.contains("(80.0 % hit ratio)"), "{page}");
        assert!(page.contains("| errors by kind | timeout 10 |"), "{page}");
        assert!(
            page.contains(
                "| acknowledged writes read back | 160 of 160 found, 0 lost, 0 unverified |"
            ),
            "{page}"
        );
        assert!(
            page.contains("- +7.2 s **db-1**: lab kill: power cut"),
            "{page}"
        );
        assert!(page.contains("![requests, latency and cache hit ratio per second](report.png)"));
    }
}

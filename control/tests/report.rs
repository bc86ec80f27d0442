//! `lab report` on a recorded run: a timeline with a kill at 7.2 s (its failures and the
//! p99 spike in the second after it) becomes report.svg (a marker naming the board, every
//! series), report.png (decoded: the size, not blank, the marker's dashed line drawn where
//! nothing else is) and report.md; a directory that is not a run is refused.

mod common;

use std::process::Command;

use common::{describe, LAB};

fn recorded_run(dir: &std::path::Path) {
    let rows: Vec<serde_json::Value> = (1..=20u64)
        .map(|t| {
            let errors = if t == 8 { 10 } else { 0 };
            serde_json::json!({
                "t": t, "sent": 40, "ok": 40 - errors, "errors": errors, "rate": 40.0,
                "p50_ms": 1.8, "p99_ms": if errors > 0 { 2000.0 } else { 9.0 }, "max_ms": 2001.0,
                "hits": 30 + (t % 5), "misses": 10 - (t % 5)
            })
        })
        .collect();
    std::fs::write(
        dir.join("timeline.json"),
        serde_json::to_string_pretty(&rows).expect("rows"),
    )
    .expect("write timeline");
    let summary = serde_json::json!({
        "target": "http://10.77.0.254:80/", "mix": "app", "rate_asked": 40.0, "ran_s": 20.0,
        "sent": 800, "ok": 790, "failed": 10, "achieved_rate": 40.0,
        "latency_ms": {"p50": 1.8, "p99": 2000.0, "max": 2001.0},
        "served_by": {"app-1": 420, "app-2": 370}, "cache": {"hits": 640, "misses": 150},
        "db": {"primary": 150, "replica": 0}, "errors": {"timeout": 10},
        "events": [
            {"at_s": 7.2, "board": "lb-1", "kind": "info", "message": "lab kill: power cut: network cut, then every process killed"},
            {"at_s": 8.6, "board": "lb-2", "kind": "info", "message": "now holds 10.77.0.254"}
        ]
    });
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("summary"),
    )
    .expect("write summary");
}

#[test]
fn a_recorded_run_becomes_charts_with_its_events_and_a_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("lab-load-20261202T120000Z");
    std::fs::create_dir(&run).expect("mkdir");
    recorded_run(&run);
    // No RUN given: the newest lab-load-* of the current directory.
    let out = Command::new(LAB)
        .arg("report")
        .current_dir(dir.path())
        .output()
        .expect("run lab report");
    assert!(out.status.success(), "{}", describe(&out));

    let svg = std::fs::read_to_string(run.join("report.svg")).expect("report.svg");
    assert_eq!(svg.matches(r#"class="mark""#).count(), 2, "{svg}");
    assert!(svg.contains(r#"data-board="lb-1""#) && svg.contains(r#"data-board="lb-2""#));
    for series in ["answered", "failed", "p50", "p99", "hits"] {
        assert!(
            svg.contains(&format!(r#"data-series="{series}""#)),
            "{series}"
        );
    }

    let png =
        resvg::tiny_skia::Pixmap::load_png(run.join("report.png")).expect("decode report.png");
    assert_eq!((png.width(), png.height()), (960, 820));
    let pixels = png.pixels();
    let distinct: std::collections::HashSet<(u8, u8, u8)> = pixels
        .iter()
        .map(|p| (p.red(), p.green(), p.blue()))
        .collect();
    assert!(
        distinct.len() > 20,
        "a blank chart: {} colours",
        distinct.len()
    );
    // The first marker's line, at 7.2 s of 20, crosses the gap between the first two panels
    // where nothing else is drawn: grey pixels there.
    let x = (70.0 + 870.0 * 7.2 / 20.0) as u32;
    let grey_in_gap = (300..315u32)
        .filter(|&y| {
            let p = pixels[(y * png.width() + x) as usize];
            p.red() < 200 && p.red() == p.green() && p.green() == p.blue()
        })
        .count();
    assert!(grey_in_gap >= 5, "the marker's line is not drawn at x={x}");

    let page = std::fs::read_to_string(run.join("report.md")).expect("report.md");
    assert!(page.contains("- +7.2 s **lb-1**: lab kill"), "{page}");
    assert!(
        page.contains("| served by | app-1 420 (53 %), app-2 370 (47 %) |"),
        "{page}"
    );

    let not_a_run = Command::new(LAB)
        .arg("report")
        .arg(dir.path())
        .output()
        .expect("run lab report");
    assert!(!not_a_run.status.success());
    assert!(
        describe(&not_a_run).contains("a `lab load` run directory?"),
        "{}",
        describe(&not_a_run)
    );
}

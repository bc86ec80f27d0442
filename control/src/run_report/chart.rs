//! The run's charts as one SVG: panels over the same time axis (requests/s with errors,
//! p50/p99 latency, cache hit ratio, and the replicas' lag when the run has it) and a dashed
//! vertical marker, labelled, at every event of the control plane. Pure; every marker is a
//! `<g class="mark">` naming its board.

use std::fmt::Write;

use super::Run;

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 80.0;
const GAP: f64 = 50.0;
const BOTTOM: f64 = 40.0;

/// One line of a panel.
struct Series {
    name: String,
    colour: &'static str,
    /// A value per second (`None`: nothing to show that second).
    points: Vec<Option<f64>>,
}

struct Panel {
    title: &'static str,
    unit: &'static str,
    series: Vec<Series>,
    /// A fixed top of the y axis (100 for a percentage), else from the data.
    y_max: Option<f64>,
}

/// The SVG document.
pub fn render(run: &Run) -> String {
    let seconds = run.rows.iter().map(|r| r.t).max().unwrap_or(1).max(1) as f64;
    let at = |f: &dyn Fn(&crate::load::timeline::Row) -> Option<f64>| -> Vec<Option<f64>> {
        run.rows.iter().map(f).collect()
    };
    let mut panels = vec![
        Panel {
            title: "requests per second",
            unit: "req/s",
            series: vec![
                Series {
                    name: "answered".into(),
                    colour: "#1f77b4",
                    points: at(&|r| Some(r.rate)),
                },
                Series {
                    name: "failed".into(),
                    colour: "#d62728",
                    points: at(&|r| Some(r.errors as f64)),
                },
            ],
            y_max: None,
        },
        Panel {
            title: "latency",
            unit: "ms",
            series: vec![
                Series {
                    name: "p50".into(),
                    colour: "#2ca02c",
                    points: at(&|r| (r.ok + r.errors > 0).then_some(r.p50_ms)),
                },
                Series {
                    name: "p99".into(),
                    colour: "#ff7f0e",
                    points: at(&|r| (r.ok + r.errors > 0).then_some(r.p99_ms)),
                },
            ],
            y_max: None,
        },
        Panel {
            title: "cache hit ratio",
            unit: "%",
            series: vec![Series {
                name: "hits".into(),
                colour: "#9467bd",
                points: at(&|r| {
                    let lookups = r.hits + r.misses;
                    (lookups > 0).then(|| 100.0 * r.hits as f64 / lookups as f64)
                }),
            }],
            y_max: Some(100.0),
        },
    ];
    if !run.lag.is_empty() {
        panels.push(Panel {
            title: "replication lag",
            unit: "s behind the primary",
            series: run
                .lag
                .iter()
                .enumerate()
                .map(|(i, replica)| Series {
                    name: replica.board.clone(),
                    colour: LAG_COLOURS[i % LAG_COLOURS.len()],
                    points: per_second(&replica.points, run.rows.len()),
                })
                .collect(),
            y_max: None,
        });
    }
    let height = TOP + panels.len() as f64 * (PANEL_HEIGHT + GAP) - GAP + BOTTOM;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/><text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(&title(run))
    );
    let plot_width = WIDTH - LEFT - RIGHT;
    let x_of = |t: f64| LEFT + plot_width * (t / seconds);
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + GAP);
        draw_panel(&mut svg, panel, top, seconds, &x_of);
    }
    let bottom = height - BOTTOM;
    for (i, mark) in run.marks.iter().enumerate() {
        let x = x_of(mark.at_s.clamp(0.0, seconds));
        // Labels take turns at three heights so close marks stay readable.
        let label_y = 38.0 + 12.0 * (i % 3) as f64;
        let label = format!(
            "+{:.1}s {}: {}",
            mark.at_s,
            mark.board,
            short(&mark.message)
        );
        let _ = write!(
            svg,
            r##"<g class="mark" data-board="{board}" data-kind="{kind}"><line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#555" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{label_y:.1}" fill="#333" font-size="10">{text}</text></g>"##,
            board = escape(&mark.board),
            kind = escape(&mark.kind),
            top = TOP - 8.0,
            tx = x + 3.0,
            text = escape(&label),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Colours of the replicas' lag lines, in turn.
const LAG_COLOURS: [&str; 4] = ["#8c564b", "#17becf", "#e377c2", "#7f7f7f"];

/// `points` (seconds into the run, value) as one value per second of `seconds` (the largest
/// of that second's, which ends at t), None where the second has none.
fn per_second(points: &[(f64, f64)], seconds: usize) -> Vec<Option<f64>> {
    (1..=seconds)
        .map(|t| {
            let (from, to) = (t as f64 - 1.0, t as f64);
            points
                .iter()
                .filter(|(at, _)| *at > from && *at <= to || (t == 1 && *at == 0.0))
                .map(|(_, v)| *v)
                .reduce(f64::max)
        })
        .collect()
}

fn draw_panel(svg: &mut String, panel: &Panel, top: f64, seconds: f64, x_of: &dyn Fn(f64) -> f64) {
    let bottom = top + PANEL_HEIGHT;
    let data_max = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b));
    let y_max = panel.y_max.unwrap_or_else(|| nice_ceiling(data_max));
    let y_of = |v: f64| bottom - PANEL_HEIGHT * (v / y_max).clamp(0.0, 1.0);
    let right = WIDTH - RIGHT;
    let _ = write!(
        svg,
        r##"<g class="panel"><text x="{LEFT}" y="{ty:.1}" font-weight="bold">{title} ({unit})</text><rect x="{LEFT}" y="{top:.1}" width="{w:.1}" height="{PANEL_HEIGHT}" fill="none" stroke="#999"/>"##,
        ty = top - 6.0,
        title = panel.title,
        unit = panel.unit,
        w = right - LEFT,
    );
    for step in 0..=4 {
        let v = y_max * f64::from(step) / 4.0;
        let y = y_of(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#eee"/><text x="{lx:.1}" y="{ly:.1}" text-anchor="end" fill="#555">{label}</text>"##,
            lx = LEFT - 6.0,
            ly = y + 4.0,
            label = format_value(v),
        );
    }
    let ticks = (seconds / 10.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= seconds {
        let x = x_of(t);
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{ly:.1}" text-anchor="middle" fill="#555">{t:.0}s</text>"##,
            ly = bottom + 14.0
        );
        t += ticks;
    }
    for (i, series) in panel.series.iter().enumerate() {
        // A gap in the data breaks the line.
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for (second, point) in series.points.iter().enumerate() {
            match point {
                Some(v) => {
                    if let Some(run) = runs.last_mut() {
                        run.push(format!("{:.1},{:.1}", x_of(second as f64 + 1.0), y_of(*v)));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let _ = write!(
                svg,
                r#"<polyline class="series" data-series="{name}" points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"/>"#,
                name = escape(&series.name),
                points = run.join(" "),
                colour = series.colour,
            );
        }
        let lx = right - 190.0 + 95.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{y:.1}" width="12" height="3" fill="{colour}"/><text x="{tx:.1}" y="{ty:.1}">{name}</text>"#,
            y = top - 12.0,
            tx = lx + 16.0,
            ty = top - 7.0,
            colour = series.colour,
            name = escape(&series.name),
        );
    }
    svg.push_str("</g>");
}

/// The chart's heading: what was loaded and how.
fn title(run: &Run) -> String {
    let s = &run.summary;
    let rate = s["rate_asked"]
        .as_f64()
        .map_or("flat out".to_owned(), |r| format!("{r} req/s"));
    format!(
        "lab load {} at {}, {} s: {} ok, {} failed",
        s["target"].as_str().unwrap_or("?"),
        rate,
        s["ran_s"].as_f64().unwrap_or(0.0),
        s["ok"].as_u64().unwrap_or(0),
        s["failed"].as_u64().unwrap_or(0)
    )
}

fn short(message: &str) -> String {
    let mut text: String = message.chars().take(48).collect();
    if message.chars().count() > 48 {
        text.push('…');
    }
    text
}

/// A round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * power)
}

fn format_value(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Text and attribute values made safe for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::marks::Mark;
    use crate::load::timeline::Row;

    fn row(t: u64, ok: u64, errors: u64, hits: u64, misses: u64) -> Row {
        Row {
            t,
            sent: ok + errors,
            ok,
            errors,
            rate: (ok + errors) as f64,
            p50_ms: 2.0,
            p99_ms: if errors > 0 { 2000.0 } else { 9.0 },
            max_ms: 2000.0,
            hits,
            misses,
        }
    }

    fn run() -> Run {
        Run {
            rows: (1..=20)
                .map(|t| {
                    if t == 8 {
                        row(t, 30, 10, 0, 0)
                    } else {
                        row(t, 40, 0, 35, 5)
                    }
                })
                .collect(),
            marks: vec![Mark {
                at_s: 7.2,
                board: "db-1".into(),
                kind: "info".into(),
                message: "lab kill: power cut <network & all>".into(),
            }],
            lag: Vec::new(),
            summary: serde_json::json!({"target": "http://10.0.0.1/", "rate_asked": 40.0, "ran_s": 20.0, "ok": 790, "failed": 10}),
        }
    }

    #[test]
    fn a_lag_panel_when_the_run_has_replicas() {
        assert!(!render(&run()).contains("replication lag"));
        let mut with_lag = run();
        with_lag.lag = vec![crate::load::lag::LagSeries {
            board: "db-2".into(),
            points: vec![(0.4, 0.0), (7.5, 3.0), (8.2, 1.0)],
        }];
        let svg = render(&with_lag);
        assert!(
            svg.contains("replication lag (s behind the primary)"),
            "{svg}"
        );
        assert!(svg.contains(r#"data-series="db-2""#));
        assert_eq!(
            per_second(&with_lag.lag[0].points, 9),
            [
                Some(0.0),
                None,
                None,
                None,
                None,
                None,
                None,
                Some(3.0),
                Some(1.0)
            ]
        );
    }

    #[test]
    fn markers_series_and_escaping() {
        let svg = render(&run());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches(r#"class="mark""#).count(), 1);
        assert!(svg.contains(r#"data-board="db-1""#));
        assert!(
            svg.contains("power cut &lt;network &amp; all&gt;"),
            "escaped label"
        );
        for series in ["answered", "failed", "p50", "p99", "hits"] {
            assert!(
                svg.contains(&format!(r#"data-series="{series}""#)),
                "{series}"
            );
        }
        // The second without cache lookups breaks the hit-ratio line in two.
        assert_eq!(svg.matches(r#"data-series="hits""#).count(), 2);
        assert_eq!(render(&run()), svg, "the same run draws the same bytes");
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(2000.0), 2000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
    }
}

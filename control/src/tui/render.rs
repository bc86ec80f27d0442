//! Drawing `lab top`: a pure function of a [`TopModel`] and the frame size. A header (cluster
//! state, source, last event or connection error), a table with one row per board and a
//! footer with the keys. Columns are picked by priority to fit the width, and the sparkline
//! columns take what is left, so any terminal size draws cleanly.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::model::TopModel;
use crate::metrics::events::EventKind;
use crate::serve_api::BoardJson;

/// A table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Board,
    Role,
    Health,
    Cpu,
    CpuSpark,
    Mem,
    Temp,
    Rx,
    Tx,
    NetSpark,
    Key,
}

impl Col {
    fn title(self) -> &'static str {
        match self {
            Col::Board => "BOARD",
            Col::Role => "ROLE",
            Col::Health => "HEALTH",
            Col::Cpu => "CPU%",
            Col::CpuSpark => "CPU 2min",
            Col::Mem => "MEM",
            Col::Temp => "TEMP",
            Col::Rx => "NET RX",
            Col::Tx => "NET TX",
            Col::NetSpark => "NET 2min",
            Col::Key => "ROLE FIGURE",
        }
    }

    /// Fixed width, or the minimum width for a sparkline.
    fn width(self) -> u16 {
        match self {
            Col::Board => 12,
            Col::Role => 11,
            Col::Health => 6,
            Col::Cpu => 5,
            Col::CpuSpark | Col::NetSpark => 8,
            Col::Mem => 14,
            Col::Temp => 6,
            Col::Rx | Col::Tx => 9,
            Col::Key => 17,
        }
    }

    fn is_spark(self) -> bool {
        matches!(self, Col::CpuSpark | Col::NetSpark)
    }
}

/// Display order of every column.
const ORDER: [Col; 11] = [
    Col::Board,
    Col::Role,
    Col::Health,
    Col::Cpu,
    Col::CpuSpark,
    Col::Mem,
    Col::Temp,
    Col::Rx,
    Col::Tx,
    Col::NetSpark,
    Col::Key,
];

/// Which columns survive when space is short, most important first.
const PRIORITY: [Col; 11] = [
    Col::Board,
    Col::Health,
    Col::Cpu,
    Col::Role,
    Col::CpuSpark,
    Col::Mem,
    Col::Rx,
    Col::Tx,
    Col::Key,
    Col::Temp,
    Col::NetSpark,
];

const SPACING: u16 = 1;

/// The columns that fit in `width` cells, in display order, with their widths. Sparklines
/// share what is left after the fixed columns (at most 30 cells each).
pub fn layout_columns(width: u16) -> Vec<(Col, u16)> {
    let mut chosen: Vec<Col> = Vec::new();
    let mut used: u16 = 0;
    for col in PRIORITY {
        let need = col.width() + if chosen.is_empty() { 0 } else { SPACING };
        if used + need <= width {
            used += need;
            chosen.push(col);
        }
    }
    let sparks = chosen.iter().filter(|c| c.is_spark()).count() as u16;
    let spare = width.saturating_sub(used);
    let extra = spare.checked_div(sparks).unwrap_or(0);
    ORDER
        .iter()
        .filter(|c| chosen.contains(c))
        .map(|&c| {
            let w = if c.is_spark() {
                (c.width() + extra).min(30)
            } else {
                c.width()
            };
            (c, w)
        })
        .collect()
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a one-line sparkline scaled to `max` (auto-scaled to the
/// largest value when `max` is `None`), right-aligned: the newest value is the last glyph.
pub fn sparkline<'a>(
    values: impl DoubleEndedIterator<Item = &'a f64>,
    width: usize,
    max: Option<f64>,
) -> String {
    let mut tail: Vec<f64> = values.rev().take(width).copied().collect();
    tail.reverse();
    let top = max.unwrap_or_else(|| tail.iter().copied().fold(0.0, f64::max));
    let mut out = " ".repeat(width.saturating_sub(tail.len()));
    for v in tail {
        let frac = if top > 0.0 {
            (v / top).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let idx = (frac * (BARS.len() - 1) as f64).round() as usize;
        out.push(BARS[idx.min(BARS.len() - 1)]);
    }
    out
}

/// `1.5 GiB`-style size.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}{}", UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// `12.3 kB/s`-style rate (decimal units).
pub fn rate(n: f64) -> String {
    const UNITS: [&str; 4] = ["B/s", "kB/s", "MB/s", "GB/s"];
    let mut v = if n.is_finite() { n.max(0.0) } else { 0.0 };
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}{}", UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

pub use lab_api::time::clock_utc as clock;

fn role_text(b: &BoardJson) -> String {
    if b.roles.is_empty() {
        "auto".into()
    } else {
        let names: Vec<&str> = b.roles.iter().map(|r| r.as_str()).collect();
        names.join(",")
    }
}

fn role_color(role: &str) -> Color {
    match role {
        "lb" => Color::Blue,
        "app" => Color::Green,
        "cache" => Color::Yellow,
        "db-master" => Color::Red,
        "db-replica" => Color::LightMagenta,
        "files" => Color::Cyan,
        "cdn" => Color::Magenta,
        _ => Color::Gray,
    }
}

fn cell(model: &TopModel, b: &BoardJson, col: Col, width: u16) -> Cell<'static> {
    let dash = || Cell::from("-");
    let latest = b.latest.as_ref();
    let hist = model.history.get(&b.board);
    match col {
        Col::Board => {
            Cell::from(b.board.clone()).style(Style::default().add_modifier(Modifier::BOLD))
        }
        Col::Role => {
            let first = b.roles.first().map(|r| r.as_str()).unwrap_or("auto");
            Cell::from(role_text(b)).style(Style::default().fg(role_color(first)))
        }
        Col::Health => {
            if !b.up {
                Cell::from("DOWN")
                    .style(Style::default().fg(Color::Red).add_modifier(Modifier::BOLD))
            } else if latest.and_then(|l| l.throttled) == Some(true) {
                Cell::from("THROT").style(Style::default().fg(Color::Yellow))
            } else {
                Cell::from("up").style(Style::default().fg(Color::Green))
            }
        }
        Col::Cpu => match latest {
            Some(l) => {
                let style = if l.cpu_percent >= 85.0 {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default()
                };
                Cell::from(format!("{:>5.1}", l.cpu_percent)).style(style)
            }
            None => dash(),
        },
        Col::CpuSpark => Cell::from(sparkline(
            hist.map(|h| h.cpu.iter()).unwrap_or_default(),
            usize::from(width),
            Some(100.0),
        ))
        .style(Style::default().fg(Color::Green)),
        Col::Mem => match latest {
            Some(l) if l.mem_total_bytes > 0 => Cell::from(format!(
                "{:>3.0}% {}",
                l.mem_used_bytes as f64 / l.mem_total_bytes as f64 * 100.0,
                bytes(l.mem_used_bytes as f64)
            )),
            _ => dash(),
        },
        Col::Temp => match latest.and_then(|l| l.temp_c) {
            Some(t) => Cell::from(format!("{t:.0}°C")),
            None => dash(),
        },
        Col::Rx => latest.map_or_else(dash, |l| Cell::from(rate(l.net_rx_bps))),
        Col::Tx => latest.map_or_else(dash, |l| Cell::from(rate(l.net_tx_bps))),
        Col::NetSpark => Cell::from(sparkline(
            hist.map(|h| h.net.iter()).unwrap_or_default(),
            usize::from(width),
            None,
        ))
        .style(Style::default().fg(Color::Cyan)),
        Col::Key => match latest.and_then(|l| l.key_figure.as_ref()) {
            Some(k) => Cell::from(format!("{} {:.1} {}", k.label, k.value, k.unit)),
            None => dash(),
        },
    }
}

fn header_lines(model: &TopModel) -> Vec<Line<'static>> {
    let (up, total) = model.up_count();
    let state_style = if total > 0 && up == total {
        Style::default()
            .fg(Color::Green)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
    };
    let mut first = vec![
        Span::styled("lab top ", Style::default().add_modifier(Modifier::BOLD)),
        Span::styled(format!("{up}/{total} boards up"), state_style),
        Span::raw(format!("  {}", model.source)),
    ];
    if let Some(ts) = model.updated_ms {
        first.push(Span::styled(
            format!("  updated {} UTC", clock(ts)),
            Style::default().fg(Color::DarkGray),
        ));
    }
    let second = if let Some(err) = &model.error {
        Line::from(Span::styled(
            format!("! {err}"),
            Style::default().fg(Color::Red),
        ))
    } else if let Some(e) = &model.last_event {
        let (word, color) = event_word(e.kind);
        Line::from(vec![
            Span::styled("last event: ", Style::default().fg(Color::DarkGray)),
            Span::raw(format!("{} {} ", clock(e.ts_ms), e.board)),
            Span::styled(
                word,
                Style::default().fg(color).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" {}", e.message)),
        ])
    } else {
        Line::from(Span::styled(
            "last event: none",
            Style::default().fg(Color::DarkGray),
        ))
    };
    vec![Line::from(first), second]
}

/// Draw the whole screen.
pub fn render(frame: &mut Frame, model: &TopModel) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_lines(model)), head);
    // The table takes what its rows need; an events pane gets the rest when it can show some.
    let table_h = u16::try_from(model.boards.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .max(3);
    if body.height >= table_h.saturating_add(4) {
        let [table, events] =
            Layout::vertical([Constraint::Length(table_h), Constraint::Min(4)]).areas(body);
        render_table(frame, model, table);
        render_events(frame, model, events);
    } else {
        render_table(frame, model, body);
    }
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("q", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw("/Esc quit   CPU sparkline 0-100%, NET auto-scaled (rx+tx)"),
        ]))
        .style(Style::default().fg(Color::DarkGray)),
        foot,
    );
}

fn event_word(kind: EventKind) -> (&'static str, Color) {
    match kind {
        EventKind::Down => ("DOWN", Color::Red),
        EventKind::Up => ("up", Color::Green),
        EventKind::Info => ("info", Color::Cyan),
    }
}

fn render_events(frame: &mut Frame, model: &TopModel, area: Rect) {
    let rows = usize::from(area.height.saturating_sub(1));
    let lines: Vec<Line> = model
        .events
        .iter()
        .rev()
        .take(rows)
        .map(|e| {
            let (word, color) = event_word(e.kind);
            Line::from(vec![
                Span::styled(clock(e.ts_ms), Style::default().fg(Color::DarkGray)),
                Span::raw(format!(" {:<12} ", e.board)),
                Span::styled(
                    format!("{word:<5}"),
                    Style::default().fg(color).add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(" {}", e.message)),
            ])
        })
        .collect();
    let block = Block::default()
        .borders(Borders::TOP)
        .title(" events, newest first (UTC) ");
    let body = if lines.is_empty() {
        Paragraph::new("none yet").style(Style::default().fg(Color::DarkGray))
    } else {
        Paragraph::new(lines)
    };
    frame.render_widget(body.block(block), area);
}

fn render_table(frame: &mut Frame, model: &TopModel, area: Rect) {
    let block = Block::default().borders(Borders::TOP).title(" boards ");
    let inner_width = area.width;
    let cols = layout_columns(inner_width);
    let header = Row::new(cols.iter().map(|(c, _)| Cell::from(c.title())))
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = model.boards.iter().map(|b| {
        let row = Row::new(cols.iter().map(|&(c, w)| cell(model, b, c, w)));
        if b.up {
            row
        } else {
            row.style(Style::default().add_modifier(Modifier::DIM))
        }
    });
    let widths: Vec<Constraint> = cols.iter().map(|&(_, w)| Constraint::Length(w)).collect();
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(SPACING)
        .block(block);
    if model.boards.is_empty() {
        let text = if model.error.is_some() {
            "no data from the control plane yet"
        } else {
            "waiting for the first answer…"
        };
        frame.render_widget(
            Paragraph::new(text).block(Block::default().borders(Borders::TOP).title(" boards ")),
            area,
        );
    } else {
        frame.render_widget(table, area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::events::Event;
    use crate::serve_api::{KeyFigureJson, LatestJson};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn board(name: &str, role: &str, up: bool, cpu: f64) -> BoardJson {
        BoardJson {
            board: name.into(),
            address: "10.1.2.3".into(),
            roles: vec![lab_api::Role::parse(role).expect("a role")],
            up,
            last_seen_ms: Some(1_000),
            arch: Some("x86_64".into()),
            os: None,
            latest: Some(LatestJson {
                cpu_percent: cpu,
                mem_used_bytes: 512 << 20,
                mem_total_bytes: 2 << 30,
                load1: 0.5,
                temp_c: Some(48.0),
                net_rx_bps: 12_300.0,
                net_tx_bps: 4_500_000.0,
                disk_read_bps: 0.0,
                disk_write_bps: 0.0,
                throttled: Some(false),
                gpu_load_percent: None,
                key_figure: Some(KeyFigureJson {
                    label: "req/s".into(),
                    value: 321.0,
                    unit: "req/s".into(),
                }),
            }),
        }
    }

    fn screen(model: &TopModel, w: u16, h: u16) -> String {
        let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        term.draw(|f| render(f, model)).expect("draw");
        let buf = term.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                text.push_str(buf[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn model() -> TopModel {
        let mut m = TopModel::new("http://127.0.0.1:7480");
        m.apply_boards(
            vec![
                board("pi-lb", "lb", true, 42.5),
                board("pi-db", "db-master", false, 3.0),
            ],
            0,
        );
        m.apply_events(vec![Event {
            ts_ms: 3_600_000,
            board: "pi-db".into(),
            kind: EventKind::Down,
            message: "no heartbeat for 3 s".into(),
        }]);
        m
    }

    #[test]
    fn boards_health_and_cpu_appear() {
        let text = screen(&model(), 120, 12);
        assert!(text.contains("events, newest first"), "{text}");
        for needle in [
            "pi-lb",
            "pi-db",
            "DOWN",
            "42.5",
            "1/2 boards up",
            "req/s 321.0",
            "no heartbeat",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_narrow_terminal_keeps_the_essentials() {
        let text = screen(&model(), 60, 10);
        for needle in ["pi-lb", "DOWN", "42.5"] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        let cols = layout_columns(60);
        assert!(
            cols.iter().map(|(_, w)| w + 1).sum::<u16>() <= 61,
            "{cols:?}"
        );
        // And a tiny one does not panic.
        screen(&model(), 10, 3);
    }

    #[test]
    fn columns_fill_a_wide_terminal_in_display_order() {
        let cols = layout_columns(118);
        let names: Vec<Col> = cols.iter().map(|(c, _)| *c).collect();
        assert_eq!(names, ORDER.to_vec());
        let used: u16 = cols.iter().map(|(_, w)| w).sum::<u16>() + (cols.len() as u16 - 1);
        assert!(used <= 118, "{used}");
    }

    #[test]
    fn sparklines_scale_and_align_right() {
        let v = [0.0, 50.0, 100.0];
        assert_eq!(sparkline(v.iter(), 5, Some(100.0)), "  ▁▅█");
        assert_eq!(sparkline(v.iter(), 2, None), "▅█");
        assert_eq!(sparkline([].iter(), 3, None), "   ");
    }

    #[test]
    fn units_read_well() {
        assert_eq!(rate(12_300.0), "12.3kB/s");
        assert_eq!(rate(f64::NAN), "0B/s");
        assert_eq!(bytes((512u64 << 20) as f64), "512.0M");
        assert_eq!(clock(3_600_000 + 61_000), "01:01:01");
    }
}

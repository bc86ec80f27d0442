//! `lab events`: the cluster's event log, one timeline of what the control plane noticed
//! (a board down or back), decided and did (failover lines, with how long they took). Read
//! from `<state>/events.jsonl`, which `lab serve` appends to, so it works whether or not the
//! control plane runs; `--follow` keeps printing new lines as they are written.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::InventoryArg;
use crate::metrics::events::{Event, EventKind};

/// Between two looks at the file while following.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Keep printing events as they happen (Ctrl-C stops).
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line (ts_ms, board, kind, message) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only this board's events (repeatable).
    #[arg(long = "board", value_name = "BOARD")]
    pub boards: Vec<String>,
    /// How many of the latest events to print first (0: none, only new ones with --follow).
    #[arg(short = 'n', long, default_value_t = 50)]
    pub last: usize,
}

pub async fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    for b in &args.boards {
        if inv.board(b).is_none() {
            anyhow::bail!("no board `{b}` in {}", inv.path.display());
        }
    }
    let path = inv
        .cluster
        .state_dir
        .join(crate::metrics::client::EVENTS_FILE);
    tokio::task::spawn_blocking(move || print_events(&path, &args)).await?
}

fn print_events(path: &Path, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut file = match std::fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.follow => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "no events yet: {} does not exist (`lab up` starts the control plane that \
                 writes it)",
                path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut offset = 0u64;
    if let Some(f) = file.as_mut() {
        let mut text = String::new();
        f.read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        offset = text.len() as u64;
        let events: Vec<Event> = parse_lines(&text, path)
            .into_iter()
            .filter(|e| wanted(e, args))
            .collect();
        let skip = events.len().saturating_sub(args.last);
        for e in &events[skip..] {
            writeln!(out, "{}", render(e, args.json))?;
        }
        out.flush()?;
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pending = String::new();
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        let Ok(mut f) = std::fs::File::open(path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // the log was started afresh
            pending.clear();
        }
        if len == offset {
            continue;
        }
        f.seek(SeekFrom::Start(offset))?;
        let mut reader = std::io::BufReader::new(f);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            offset += line.len() as u64;
            pending.push_str(&line);
            line.clear();
            if pending.ends_with('\n') {
                for e in parse_lines(&pending, path) {
                    if wanted(&e, args) {
                        writeln!(out, "{}", render(&e, args.json))?;
                    }
                }
                pending.clear();
            }
        }
        out.flush()?;
    }
}

fn wanted(e: &Event, args: &EventsArgs) -> bool {
    args.boards.is_empty() || args.boards.contains(&e.board)
}

/// Events of `text`, one JSON object per line; a line that is not one is skipped with a
/// warning naming it (a log cut short by a crash ends in half a line).
fn parse_lines(text: &str, path: &Path) -> Vec<Event> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .filter_map(|(i, l)| match serde_json::from_str(l) {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::warn!("{}:{}: not an event ({err})", path.display(), i + 1);
                None
            }
        })
        .collect()
}

/// One event as a line: `2026-12-01T18:40:02.123Z  db-2  info  failover: ...`.
pub fn render(e: &Event, json: bool) -> String {
    if json {
        return serde_json::to_string(e).unwrap_or_default();
    }
    let kind = match e.kind {
        EventKind::Down => "DOWN",
        EventKind::Up => "up",
        EventKind::Info => "info",
    };
    format!(
        "{}  {:<10} {:<5} {}",
        lab_api::time::rfc3339_utc_ms(e.ts_ms),
        e.board,
        kind,
        e.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_render_as_text_and_json() {
        let e = Event {
            ts_ms: 1000,
            board: "db-2".into(),
            kind: EventKind::Info,
            message: "failover: promoting db-2".into(),
        };
        assert_eq!(
            render(&e, false),
            "1970-01-01T00:00:01.000Z  db-2       info  failover: promoting db-2"
        );
        let back: Event = serde_json::from_str(&render(&e, true)).expect("json");
        assert_eq!(back, e);
    }

    #[test]
    fn broken_lines_are_skipped() {
        let text =
            "{\"ts_ms\":1,\"board\":\"a\",\"kind\":\"down\",\"message\":\"m\"}\n{\"ts_ms\":2,\"bo";
        let events = parse_lines(text, Path::new("events.jsonl"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Down);
    }
}

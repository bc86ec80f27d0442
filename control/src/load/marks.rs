//! The cluster's events during a run, to mark `lab load`'s output with them: what `lab serve`
//! noticed and did (a board down, a failover decision) appears between the live lines, and
//! in the summary with its time into the run. Read from the events file `lab serve` appends
//! to (`<state>/events.jsonl`), from where it ended when the run began; a missing file (no
//! control plane, a plain URL) marks nothing. The file is read off the runtime, twice a
//! second, by [`EventMarks::follow`].

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::events::Event;

/// One event during the run (also as `summary.json` has it, read back by `lab report` and
/// the exercises' checks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Seconds into the run.
    pub at_s: f64,
    pub board: String,
    pub kind: String,
    pub message: String,
}

/// Between two looks at the events file.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Follows the events file from the run's start.
pub struct EventMarks {
    path: Option<PathBuf>,
    offset: u64,
    /// Bytes of a line not yet complete.
    partial: Vec<u8>,
    started_ms: u64,
}

impl EventMarks {
    /// Starts following `path` (None: nothing to follow) from its current end; the run
    /// began at `started_ms` (Unix milliseconds).
    pub fn new(path: Option<PathBuf>, started_ms: u64) -> EventMarks {
        let offset = path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        EventMarks {
            path,
            offset,
            partial: Vec::new(),
            started_ms,
        }
    }

    /// Looks at the file until `stop` (once more then), each new event sent on the channel.
    pub fn follow(
        self,
        stop: CancellationToken,
    ) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<Mark>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut marks = self;
            loop {
                let last = stop.is_cancelled();
                let Ok((back, fresh)) = tokio::task::spawn_blocking(move || {
                    let fresh = marks.poll();
                    (marks, fresh)
                })
                .await
                else {
                    return;
                };
                marks = back;
                for m in fresh {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                if last {
                    return;
                }
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                }
            }
        });
        (task, rx)
    }

    /// The events appended since the last look (blocking file reads).
    fn poll(&mut self) -> Vec<Mark> {
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let Ok(mut file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // Replaced by a new file: start over.
            self.offset = 0;
            self.partial.clear();
        }
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.take_lines(&bytes)
    }

    /// The marks in `bytes` (after what was left of a line last time); an incomplete last
    /// line waits for the next look.
    fn take_lines(&mut self, bytes: &[u8]) -> Vec<Mark> {
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .filter_map(|line| serde_json::from_str::<Event>(line).ok())
            .filter(|e| e.ts_ms >= self.started_ms)
            .map(|e| Mark {
                at_s: (e.ts_ms - self.started_ms) as f64 / 1000.0,
                board: e.board,
                kind: serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                message: e.message,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_marked_once_complete_and_only_from_the_start() {
        let mut marks = EventMarks::new(None, 10_000);
        let before = r#"{"ts_ms":9000,"board":"app-1","kind":"up","message":"old"}"#;
        let down = r#"{"ts_ms":12500,"board":"app-1","kind":"down","message":"board down"}"#;
        let text = format!("{before}\n{down}\n");
        let (first, rest) = text.split_at(text.len() - 10);
        // The line before the run is skipped; the second is not complete yet.
        assert!(marks.take_lines(first.as_bytes()).is_empty());
        assert_eq!(
            marks.take_lines(rest.as_bytes()),
            vec![Mark {
                at_s: 2.5,
                board: "app-1".into(),
                kind: "down".into(),
                message: "board down".into(),
            }]
        );
        assert!(marks.take_lines(b"not json\n").is_empty());
    }
}

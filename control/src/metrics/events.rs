//! The event log: what happened to which board (`down`, `up`, `info`), newest last. Kept in
//! memory (the last [`MAX_EVENTS`]), published to live subscribers (the SSE stream), and
//! appended to `<state>/events.jsonl` by a writer task so a slow disk never blocks ingest.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Events kept in memory.
pub const MAX_EVENTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Down,
    Up,
    Info,
}

/// One event, as `/api/events` and `events.jsonl` carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub ts_ms: u64,
    pub board: String,
    pub kind: EventKind,
    pub message: String,
}

/// Bounded in-memory log with live subscribers and an optional file sink.
pub struct EventLog {
    recent: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
    sink: Option<mpsc::UnboundedSender<Event>>,
}

impl EventLog {
    /// A log that keeps events in memory only.
    pub fn in_memory() -> Self {
        Self {
            recent: Mutex::new(VecDeque::new()),
            live: broadcast::channel(256).0,
            sink: None,
        }
    }

    /// A log that also appends each event as one JSON line to `path`, from a task that ends
    /// when `shutdown` is cancelled (after writing what was queued).
    pub fn with_file(
        path: PathBuf,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn(write_lines(path, rx, shutdown));
        Self {
            sink: Some(tx),
            ..Self::in_memory()
        }
    }

    pub fn record(&self, event: Event) {
        tracing::debug!(board = %event.board, kind = ?event.kind, "{}", event.message);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == MAX_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        if let Some(sink) = &self.sink {
            let _ = sink.send(event.clone());
        }
        let _ = self.live.send(event);
    }

    /// Events with `ts_ms >= since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .filter(|e| e.ts_ms >= since_ms)
            .cloned()
            .collect()
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}

/// Appends `event` to `<state_dir>/events.jsonl` from another process than `lab serve` (what
/// `lab kill` and the other switches did, so the timeline starts at the cause): one
/// `O_APPEND` write of one line, which lands whole between `lab serve`'s own lines.
/// Blocking; best effort (a timeline without the line is still a timeline).
pub fn append_from_outside(state_dir: &std::path::Path, event: &Event) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(super::client::EVENTS_FILE))?
        .write_all(&line)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn write_lines(
    path: PathBuf,
    mut rx: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
) {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await;
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(
                "events will not be saved: cannot open {}: {e}",
                path.display()
            );
            return;
        }
    };
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = shutdown.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(event) = event else { break };
        let mut line = match serde_json::to_vec(&event) {
            Ok(l) => l,
            Err(_) => continue,
        };
        line.push(b'\n');
        if let Err(e) = file.write_all(&line).await {
            tracing::warn!("cannot append to {}: {e}", path.display());
        }
    }
    let _ = file.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64) -> Event {
        Event {
            ts_ms: ts,
            board: "pi-1".into(),
            kind: EventKind::Info,
            message: format!("at {ts}"),
        }
    }

    #[test]
    fn keeps_the_newest_and_filters_by_time() {
        let log = EventLog::in_memory();
        let mut live = log.subscribe();
        log.record(ev(0));
        assert_eq!(live.try_recv().map(|e| e.ts_ms).ok(), Some(0));
        for ts in 1..(MAX_EVENTS as u64 + 5) {
            log.record(ev(ts));
        }
        let all = log.since(0);
        assert_eq!(all.len(), MAX_EVENTS);
        assert_eq!(all[0].ts_ms, 5);
        assert_eq!(log.since(MAX_EVENTS as u64 + 3).len(), 2);
        let json = serde_json::to_string(&ev(1)).expect("json");
        assert_eq!(
            json,
            r#"{"ts_ms":1,"board":"pi-1","kind":"info","message":"at 1"}"#
        );
    }
}

//! Turns per-board progress into what a user reads. On a terminal: one live line per board,
//! redrawn in place. Elsewhere (CI, pipes): one plain line per change. The jobs only report
//! `(board, message)`; how it looks is decided here.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

pub struct Progress {
    inner: Mutex<Inner>,
}

struct Inner {
    tty: bool,
    width: usize,
    rows: Vec<(String, String)>,
    drawn: usize,
}

impl Progress {
    pub fn new<'a>(boards: impl IntoIterator<Item = &'a str>) -> Self {
        let rows: Vec<(String, String)> = boards
            .into_iter()
            .map(|b| (b.to_string(), "waiting".to_string()))
            .collect();
        let width = rows.iter().map(|(b, _)| b.len()).max().unwrap_or(4);
        Self {
            inner: Mutex::new(Inner {
                tty: std::io::stderr().is_terminal(),
                width,
                rows,
                drawn: 0,
            }),
        }
    }

    /// Record that `board` is now doing / has done `message`.
    pub fn set(&self, board: &str, message: impl Into<String>) {
        let message = message.into();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let width = inner.width;
        if let Some(row) = inner.rows.iter_mut().find(|(b, _)| b == board) {
            row.1 = message.clone();
        } else {
            inner.rows.push((board.to_string(), message.clone()));
        }
        if inner.tty {
            inner.redraw();
        } else {
            eprintln!("  {board:<width$}  {message}");
        }
    }

    /// Print a line above the live block (a terminal) or as is (elsewhere).
    pub fn note(&self, line: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.tty && inner.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}A\x1b[J", inner.drawn);
            inner.drawn = 0;
            let _ = writeln!(err, "{line}");
            drop(err);
            inner.redraw();
        } else {
            eprintln!("{line}");
        }
    }
}

impl Inner {
    fn redraw(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.drawn > 0 {
            let _ = write!(err, "\x1b[{}A", self.drawn);
        }
        for (board, msg) in &self.rows {
            let mut line = format!("  {board:<w$}  {msg}", w = self.width);
            line.truncate(160);
            let _ = writeln!(err, "\x1b[2K{line}");
        }
        self.drawn = self.rows.len();
        let _ = err.flush();
    }
}

//! The held spec: `<state_dir>/spec.json`, and the one place that decides whether a `PUT
//! /v1/spec` is taken ([`SpecStore::put`]).
//!
//! A PUT is refused, with nothing changed, when its body is not a [`BoardSpec`] (400, naming
//! the JSON error), names another board (400), has [`BoardSpec::problems`] (400, listing
//! them) or carries an epoch older than the held one (409). Otherwise the spec is written
//! atomically (temp file created 0600, fsync, rename, fsync of the directory) and only then
//! published on the watch channel the reconciler and the sampler follow. A spec equal to the
//! held one is answered `changed: false` and publishes nothing.
//!
//! At start [`SpecStore::open`] loads the stored spec; a file that cannot be read or parsed
//! is logged loudly and kept as [`SpecStore::load_problem`] (`GET /v1/spec` answers it), and
//! the agent runs no roles until a new spec arrives: never a crash loop.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use lab_api::spec::{BoardSpec, SpecAccepted};
use tokio::sync::{watch, Mutex};

/// File name of the held spec inside the state dir.
pub const SPEC_FILE: &str = "spec.json";

/// The spec the agent holds, as published to its followers.
pub type Held = Option<Arc<BoardSpec>>;

/// Why a PUT was refused; [`PutError::status`] is the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the body is not a board spec")]
    Malformed(#[source] serde_json::Error),
    #[error("this spec is for board {sent:?}, but this agent is board {ours:?}")]
    WrongBoard { sent: String, ours: String },
    #[error("the spec is unusable: {}", .0.join("; "))]
    Problems(Vec<String>),
    #[error("spec epoch {sent} is older than the epoch {held} this board holds")]
    Stale { sent: u64, held: u64 },
    #[error("cannot store the spec in {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PutError {
    pub fn status(&self) -> StatusCode {
        match self {
            PutError::Malformed(_) | PutError::WrongBoard { .. } | PutError::Problems(_) => {
                StatusCode::BAD_REQUEST
            }
            PutError::Stale { .. } => StatusCode::CONFLICT,
            PutError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The held spec, its file, and the channel its followers watch.
pub struct SpecStore {
    board: String,
    path: PathBuf,
    /// Serialises PUTs: decide, write, publish, as one step.
    writing: Mutex<()>,
    tx: watch::Sender<Held>,
    load_problem: Option<String>,
}

impl SpecStore {
    /// Loads `<state_dir>/spec.json` for `board` (see the module doc for a corrupt file).
    pub async fn open(board: &str, state_dir: &Path) -> SpecStore {
        let path = state_dir.join(SPEC_FILE);
        let (held, load_problem) = match tokio::fs::read(&path).await {
            Ok(bytes) => match parse_stored(board, &bytes) {
                Ok(spec) => {
                    log::info!(
                        "loaded the stored spec (epoch {}, roles {:?}) from {}",
                        spec.epoch,
                        spec.role_names(),
                        path.display()
                    );
                    (Some(Arc::new(spec)), None)
                }
                Err(why) => (None, Some(why)),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(err) => (None, Some(format!("cannot read it: {err}"))),
        };
        let load_problem = load_problem.map(|why| {
            let text = format!(
                "the stored spec {} is unusable ({why}); running no roles until a new spec \
                 is sent",
                path.display()
            );
            log::error!("{text}");
            text
        });
        let (tx, _) = watch::channel(held);
        SpecStore {
            board: board.to_string(),
            path,
            writing: Mutex::new(()),
            tx,
            load_problem,
        }
    }

    /// A receiver of the held spec (the current one is marked seen only once read).
    pub fn subscribe(&self) -> watch::Receiver<Held> {
        let mut rx = self.tx.subscribe();
        rx.mark_changed();
        rx
    }

    /// The spec held now.
    pub fn held(&self) -> Held {
        self.tx.borrow().clone()
    }

    /// Why the stored spec could not be loaded at start, while no new spec replaced it.
    pub fn load_problem(&self) -> Option<&str> {
        if self.tx.borrow().is_some() {
            return None;
        }
        self.load_problem.as_deref()
    }

    /// Takes or refuses the body of a `PUT /v1/spec`.
    pub async fn put(&self, body: &[u8]) -> Result<SpecAccepted, PutError> {
        let spec: BoardSpec = serde_json::from_slice(body).map_err(PutError::Malformed)?;
        if spec.board != self.board {
            return Err(PutError::WrongBoard {
                sent: spec.board,
                ours: self.board.clone(),
            });
        }
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(PutError::Problems(problems));
        }
        let _writing = self.writing.lock().await;
        let held = self.held();
        if let Some(held) = &held {
            if spec.epoch < held.epoch {
                return Err(PutError::Stale {
                    sent: spec.epoch,
                    held: held.epoch,
                });
            }
            if **held == spec {
                return Ok(SpecAccepted {
                    epoch: spec.epoch,
                    changed: false,
                });
            }
        }
        // Serialising our own type cannot fail for want of the client: a server-side error.
        let written = match serde_json::to_vec_pretty(&spec) {
            Ok(bytes) => write_atomically_off_runtime(self.path.clone(), bytes).await,
            Err(e) => Err(std::io::Error::other(e)),
        };
        written.map_err(|source| PutError::Write {
            path: self.path.clone(),
            source,
        })?;
        let epoch = spec.epoch;
        log::info!(
            "took spec epoch {epoch} (roles {:?}); was {}",
            spec.role_names(),
            held.map_or("none".to_string(), |h| format!("epoch {}", h.epoch))
        );
        self.tx.send_replace(Some(Arc::new(spec)));
        Ok(SpecAccepted {
            epoch,
            changed: true,
        })
    }
}

fn parse_stored(board: &str, bytes: &[u8]) -> Result<BoardSpec, String> {
    let spec: BoardSpec = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if spec.board != board {
        return Err(format!("it is for board {:?}, not {board:?}", spec.board));
    }
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(spec)
}

/// [`write_atomically`] on the blocking pool (it fsyncs: slow on an SD card), for async code.
pub async fn write_atomically_off_runtime(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())))
}

/// Writes `bytes` to `path` through a temp file beside it: created 0600, fsynced, renamed
/// over `path`, directory fsynced. A crash leaves the old file or the new one, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?
        .to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp); // a leftover of a crash may have another mode
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn body(board: &str, epoch: u64) -> Vec<u8> {
        format!(
            r#"{{"board":"{board}","epoch":{epoch},"roles":[{{"role":"cache","bind":"127.0.0.1","port":11211,"memory_mb":8}}]}}"#
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn takes_refuses_and_keeps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SpecStore::open("b1", dir.path()).await;
        assert!(store.held().is_none());
        let mut rx = store.subscribe();
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();

        let ok = store.put(&body("b1", 3)).await.expect("taken");
        assert_eq!((ok.epoch, ok.changed), (3, true));
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        let file = dir.path().join(SPEC_FILE);
        let mode = std::fs::metadata(&file)
            .expect("stored")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let stored = std::fs::read(&file).expect("read");

        let same = store.put(&body("b1", 3)).await.expect("same");
        assert!(!same.changed);
        assert!(!rx.has_changed().expect("open"), "nothing published");

        let stale = store.put(&body("b1", 2)).await.expect_err("older");
        assert_eq!(stale.status(), StatusCode::CONFLICT);
        assert_eq!(
            stale.to_string(),
            "spec epoch 2 is older than the epoch 3 this board holds"
        );
        assert_eq!(std::fs::read(&file).expect("read"), stored);

        let other = store.put(&body("b2", 9)).await.expect_err("other board");
        assert_eq!(other.status(), StatusCode::BAD_REQUEST);
        let bad = store.put(b"{\"board\":").await.expect_err("malformed");
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(store.held().expect("held").epoch, 3);

        let again = SpecStore::open("b1", dir.path()).await;
        assert_eq!(again.held().expect("reloaded").epoch, 3);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_reported_and_runs_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(SPEC_FILE), b"{ not json").expect("write");
        let store = SpecStore::open("b1", dir.path()).await;
        assert!(store.held().is_none());
        let problem = store.load_problem().expect("reported");
        assert!(problem.contains("unusable"), "{problem}");
        store
            .put(&body("b1", 1))
            .await
            .expect("a new spec replaces it");
        assert!(store.load_problem().is_none());
    }
}

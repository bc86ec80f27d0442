//! The failover manager, part of `lab serve` (it holds the leases and the event log). A
//! level-triggered loop: whenever a board's lease runs out or comes back, and every
//! [`RECHECK`] besides, it takes the last applied desired state (`applied.json`), leaves
//! the boards that are down out of every live board's peer lists
//! ([`membership::without_down`]), and sends each live agent whose spec differs its new
//! one. A dead app leaves the LB, a dead cache or replica leaves the apps; back up, they are
//! in again. Each decision goes to the event log with the time it took.
//!
//! Without `lab serve` the data plane keeps serving (NGINX's passive checks, the apps'
//! own cache ring and replica skipping) but nothing is changed; restarted, the manager
//! reads the same file and the agents' specs and carries on. The database primary is not
//! moved here (yet): a dead primary is reported, not replaced.

pub mod membership;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab_api::spec::BoardSpec;
use tokio_util::sync::CancellationToken;

use crate::agent_client::AgentClient;
use crate::agents::ClusterAgents;
use crate::metrics::events::EventKind;
use crate::metrics::store::MetricsStore;
use crate::plan::diff::diff;

/// How often the loop looks again without being woken (level-triggered safety net).
pub const RECHECK: Duration = Duration::from_secs(5);
/// A board never seen since `lab serve` started counts as down only after this long (its
/// first sample may simply not have arrived yet).
pub const STARTUP_GRACE: Duration = Duration::from_secs(10);

/// What the manager needs from `lab serve`.
pub struct FailoverManager {
    pub store: Arc<MetricsStore>,
    pub agents: Arc<ClusterAgents>,
    pub client: AgentClient,
    pub started: Instant,
}

impl FailoverManager {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut events = self.store.events.subscribe();
        let mut tick = tokio::time::interval(RECHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_down: Option<BTreeSet<String>> = None;
        loop {
            let cause = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => None,
                event = events.recv() => match event {
                    Ok(e) if matches!(e.kind, EventKind::Down | EventKind::Up) => {
                        Some((e.board, e.kind, e.ts_ms))
                    }
                    Ok(_) => continue,
                    // Lagged: look at the whole state anyway; closed: serve is stopping.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            };
            let down = self.down_boards();
            if cause.is_none() && last_down.as_ref() == Some(&down) {
                continue;
            }
            self.converge(&down, cause.as_ref()).await;
            last_down = Some(down);
        }
    }

    /// Boards whose lease ran out (or that never reported after the start-up grace).
    fn down_boards(&self) -> BTreeSet<String> {
        let grace_over = self.started.elapsed() >= STARTUP_GRACE;
        self.store
            .snapshots()
            .into_iter()
            .filter(|s| !s.up && (s.last_seen_ms.is_some() || grace_over))
            .map(|s| s.info.name)
            .collect()
    }

    /// One pass: every live board gets the applied spec without the `down` boards.
    async fn converge(&self, down: &BTreeSet<String>, cause: Option<&(String, EventKind, u64)>) {
        let state = self.agents.state.root().to_path_buf();
        let applied =
            match tokio::task::spawn_blocking(move || crate::plan::applied::load(&state)).await {
                Ok(Ok(Some(applied))) => applied,
                Ok(Ok(None)) => return, // nothing applied yet: nothing to keep whole
                Ok(Err(e)) => return self.note_problem(&format!("failover: {e:#}")),
                Err(e) => return self.note_problem(&format!("failover: {e}")),
            };
        let why = match cause {
            Some((board, EventKind::Down, _)) => format!("{board} is down"),
            Some((board, _, _)) => format!("{board} is back"),
            None => "periodic check".to_string(),
        };
        let began = Instant::now();
        let mut tasks = Vec::new();
        for (name, full) in applied {
            if down.contains(&name) {
                continue;
            }
            let Some(board) = self.agents.inventory.board(&name) else {
                continue;
            };
            let host = self.agents.host(board).to_string();
            let client = self.client.clone();
            let down = down.clone();
            tasks.push(tokio::spawn(async move {
                let result = send_if_changed(&client, &host, &full, &down).await;
                (name, full, result)
            }));
        }
        for task in tasks {
            let Ok((name, full, result)) = task.await else {
                continue;
            };
            let Some(index) = self.store.board_index(&name) else {
                continue;
            };
            let left_out = membership::peers_down(&full, down);
            let message = match result {
                Ok(None) => continue,
                Ok(Some(changes)) => format!(
                    "failover ({why}): {}; {} (sent in {} ms)",
                    if left_out.is_empty() {
                        "every peer back in".to_string()
                    } else {
                        format!("left out {}", left_out.join(", "))
                    },
                    changes.join("; "),
                    began.elapsed().as_millis()
                ),
                Err(e) => format!("failover ({why}): could not send the new spec: {e}"),
            };
            self.store
                .record(index, EventKind::Info, message, crate::metrics::now_ms());
        }
    }

    fn note_problem(&self, message: &str) {
        if let Some(first) = self.agents.inventory.boards.first() {
            if let Some(index) = self.store.board_index(&first.name) {
                self.store.record(
                    index,
                    EventKind::Info,
                    message.to_string(),
                    crate::metrics::now_ms(),
                );
            }
        }
    }
}

/// Sends `full` without the `down` boards unless the agent already holds that; the changes
/// sent, `None` when none. A board holding no spec, or one that differs in more than peers,
/// is left to `lab apply` (see [`membership::same_apart_from_peers`]).
async fn send_if_changed(
    client: &AgentClient,
    host: &str,
    full: &BoardSpec,
    down: &BTreeSet<String>,
) -> Result<Option<Vec<String>>, String> {
    let Some(held) = client
        .spec(host, lab_api::DEFAULT_AGENT_PORT)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    if !membership::same_apart_from_peers(&held, full) {
        return Ok(None);
    }
    let want = membership::without_down(full, down);
    let changes = diff(&want, Some(&held));
    if changes.is_empty() {
        return Ok(None);
    }
    client
        .put_spec(host, lab_api::DEFAULT_AGENT_PORT, &want)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(changes.iter().map(|c| c.describe()).collect()))
}

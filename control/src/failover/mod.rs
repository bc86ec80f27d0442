//! The failover manager, part of `lab serve` (it holds the leases and the event log). A
//! level-triggered loop: whenever a board's lease runs out or comes back, and every
//! [`RECHECK`] besides, it takes the last applied desired state (`applied.json`), leaves
//! the boards that are down out of every live board's peer lists
//! ([`membership::without_down`]), and sends each live agent whose spec differs its new
//! one. A dead app leaves the LB, a dead cache or replica leaves the apps; back up, they are
//! in again. Each decision goes to the event log with the time it took.
//!
//! A dead database primary is replaced ([`promotion`]): the manager first asks the live
//! replicas' agents whether they still reach it (`GET /v1/db`; one that does means the
//! primary lost only the control plane, and nothing is done), waits briefly for their relay
//! logs to be applied, promotes the most advanced one by a new topology with a higher epoch
//! (`topology.json`, saved before any spec carrying it), and sends every live board its spec
//! from that topology: the new primary turns writable, the other replicas and the apps follow
//! it. A returning old primary gets the newer epoch's spec: a read-only replica of the new
//! primary. Any live replica whose binlog holds writes the primary lacks (a former primary
//! that committed writes no replica had) stays read-only but is left out of every peer
//! list, like a board that is down, and is flagged in the event log with the way out.
//!
//! Without `lab serve` the data plane keeps serving (NGINX's passive checks, the apps'
//! own cache ring and replica skipping) but nothing is changed; restarted, the manager
//! reads the same files and the agents' specs and carries on without undoing anything.

pub mod membership;
pub mod promotion;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab_api::spec::{BoardSpec, DbReplication, RoleConfig};
use tokio_util::sync::CancellationToken;

use crate::agent_client::AgentClient;
use crate::agents::ClusterAgents;
use crate::metrics::events::EventKind;
use crate::metrics::store::MetricsStore;
use crate::plan::applied::AppliedSpecs;
use crate::plan::diff::diff;
use crate::plan::topology::Topology;

/// How often the loop looks again without being woken (level-triggered safety net).
pub const RECHECK: Duration = Duration::from_secs(5);
/// A board never seen since `lab serve` started counts as down only after this long (its
/// first sample may simply not have arrived yet).
pub const STARTUP_GRACE: Duration = Duration::from_secs(10);
/// How long a promotion waits for the replicas to apply what they had read of the dead
/// primary before it picks among those that have.
pub const RELAY_APPLY_WITHIN: Duration = Duration::from_secs(5);
/// Between two looks at the replicas while they apply their relay logs.
const RELAY_LOOK_EVERY: Duration = Duration::from_millis(100);

/// The failover manager of `lab serve`.
pub struct FailoverManager {
    store: Arc<MetricsStore>,
    agents: Arc<ClusterAgents>,
    client: AgentClient,
    started: Instant,
    /// The last "why not" said about the primary, so a standing reason is logged once.
    primary_note: Mutex<Option<String>>,
    /// Replicas kept out for holding writes the primary lacks, with what was said (logged
    /// once; again when they are back in).
    diverged: Mutex<BTreeMap<String, String>>,
}

impl FailoverManager {
    /// A manager for `agents`' cluster; `client` asks the agents (short timeout); `started`:
    /// when `lab serve` started (for [`STARTUP_GRACE`]).
    pub fn new(
        store: Arc<MetricsStore>,
        agents: Arc<ClusterAgents>,
        client: AgentClient,
        started: Instant,
    ) -> Self {
        FailoverManager {
            store,
            agents,
            client,
            started,
            primary_note: Mutex::new(None),
            diverged: Mutex::new(BTreeMap::new()),
        }
    }

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
            // A tick with the same boards down sends nothing unless a replica diverged or
            // came clean, or a dead primary is still to be replaced (a full pass would ask
            // every agent, a dying one included, and hold up the next lease event).
            if cause.is_none() && last_down.as_ref() == Some(&down) && !self.needs_pass(&down).await
            {
                continue;
            }
            self.converge(&down, cause.as_ref()).await;
            last_down = Some(down);
        }
    }

    /// Whether a tick must converge: the primary is down (a replacement to try again), or
    /// the replicas that hold writes the primary lacks are not those kept out.
    async fn needs_pass(&self, down: &BTreeSet<String>) -> bool {
        let Ok(Some((applied, topology))) = self.load_state().await else {
            return false;
        };
        match topology.primary.as_deref() {
            Some(p) if down.contains(p) => true,
            Some(p) => {
                let found = self.diverged_replicas(p, &applied, down).await;
                found.keys().ne(self.kept_out().keys())
            }
            None => false,
        }
    }

    /// The last applied specs (None before the first `lab apply`) and the topology, read off
    /// the runtime.
    async fn load_state(&self) -> Result<Option<(AppliedSpecs, Topology)>, String> {
        let state = self.agents.state.root().to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || {
            anyhow::Ok((
                crate::plan::applied::load(&state)?,
                crate::plan::topology::load(&state)?,
            ))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
        Ok(match loaded {
            (Some(applied), topology) => Some((applied, topology)),
            (None, _) => None,
        })
    }

    /// The replicas kept out now (see [`FailoverManager::diverged_replicas`]).
    fn kept_out(&self) -> BTreeMap<String, String> {
        self.diverged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

    /// One pass: a dead primary replaced, then every live board gets the applied spec without
    /// the `down` boards.
    async fn converge(&self, down: &BTreeSet<String>, cause: Option<&(String, EventKind, u64)>) {
        // Held until the specs are sent: an apply meanwhile waits, and one that just saved
        // new specs is waited for (never send what it replaced).
        let state = self.agents.state.root().to_path_buf();
        let _applying =
            match tokio::task::spawn_blocking(move || crate::plan::applied::lock(&state)).await {
                Ok(Ok(lock)) => lock,
                Ok(Err(e)) => return self.note_problem(&format!("failover: {e:#}")),
                Err(e) => return self.note_problem(&format!("failover: {e}")),
            };
        let (mut applied, topology) = match self.load_state().await {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return, // nothing applied yet: nothing to keep whole
            Err(e) => return self.note_problem(&format!("failover: {e}")),
        };
        let why = match cause {
            Some((board, EventKind::Down, _)) => format!("{board} is down"),
            Some((board, _, _)) => format!("{board} is back"),
            None => "periodic check".to_string(),
        };
        let began = Instant::now();
        let mut promoted_now = false;
        let mut primary = topology.primary.clone();
        match topology.primary.as_deref() {
            Some(dead) if down.contains(dead) => {
                match self.replace_primary(dead, &topology, &applied, down).await {
                    Ok((promoted, chosen)) => {
                        applied = promoted;
                        primary = Some(chosen);
                        promoted_now = true;
                    }
                    Err(why_not) => self.note_primary(dead, why_not),
                }
            }
            _ => self.forget_primary_note(),
        }
        // Replicas holding writes the primary lacks stay read-only (their spec still says
        // replica) but leave every peer list, like a board that is down. Not looked for
        // right after a promotion: the replicas were just compared, and they still probe the
        // dead primary (a second each), which would hold up the new specs.
        let diverged = match primary.as_deref() {
            Some(p) if !down.contains(p) && !promoted_now => {
                let found = self.diverged_replicas(p, &applied, down).await;
                self.note_diverged(p, &found);
                found
            }
            _ => self.kept_out(),
        };
        let mut out = down.clone();
        out.extend(diverged.keys().cloned());
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
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let result = send_if_changed(&client, &host, &full, &out).await;
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
            let left_out = membership::peers_down(&full, &out);
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

    /// Replaces the dead `primary`: confirm through the replicas, wait for their relay logs,
    /// pick, save the new topology and the specs it implies. The new applied specs, or why
    /// nothing was done.
    async fn replace_primary(
        &self,
        primary: &str,
        topology: &Topology,
        applied: &AppliedSpecs,
        down: &BTreeSet<String>,
    ) -> Result<(AppliedSpecs, String), String> {
        let began = Instant::now();
        let replicas = live_replicas(applied, down);
        if replicas.is_empty() {
            return Err(format!(
                "db primary {primary} is down and no live replica can replace it: writes fail \
                 until it is back"
            ));
        }
        let mut states = self.db_states(&replicas).await;
        if let Some(r) = states.iter().find(|r| r.primary_reachable == Some(true)) {
            return Err(format!(
                "db primary {primary} misses its heartbeats but {} still reaches it: it lost \
                 only the control plane, so it stays primary",
                r.board
            ));
        }
        if states.is_empty() {
            return Err(format!(
                "db primary {primary} is down and no replica's agent answers: nothing promoted"
            ));
        }
        let deadline = Instant::now() + RELAY_APPLY_WITHIN;
        while states.iter().any(|r| !r.relay_applied) && Instant::now() < deadline {
            tokio::time::sleep(RELAY_LOOK_EVERY).await;
            let again = self.db_states(&replicas).await;
            if !again.is_empty() {
                states = again;
            }
        }
        let Some((chosen, reason)) = promotion::pick(&states) else {
            return Err(format!(
                "db primary {primary} is down and no replica has applied its relay log within \
                 {} s: nothing promoted",
                RELAY_APPLY_WITHIN.as_secs()
            ));
        };
        let next = Topology {
            epoch: topology.epoch + 1,
            primary: Some(chosen.clone()),
            server_ids: topology.server_ids.clone(),
        };
        let promoted = self.save_promotion(next).await.map_err(|e| {
            format!("db primary {primary} is down; promoting {chosen} failed: {e:#}")
        })?;
        if let Some(index) = self.store.board_index(&chosen) {
            self.store.record(
                index,
                EventKind::Info,
                format!(
                    "failover: db primary {primary} is down and no replica reaches it; promoting \
                     {chosen} at epoch {} ({reason}; decided in {} ms)",
                    topology.epoch + 1,
                    began.elapsed().as_millis()
                ),
                crate::metrics::now_ms(),
            );
        }
        self.forget_primary_note();
        Ok((promoted, chosen))
    }

    /// Saves `next` (topology first: no spec may carry an epoch the state dir does not know)
    /// and the specs it implies as the applied desired state.
    async fn save_promotion(&self, next: Topology) -> anyhow::Result<AppliedSpecs> {
        let addresses = crate::apply::addresses(&self.agents).await?;
        let agents = self.agents.clone();
        tokio::task::spawn_blocking(move || {
            let state = agents.state.root();
            let secrets = crate::plan::secrets::load(state)?;
            let plan = crate::plan::desired(&agents.inventory, &addresses, &next, &secrets)?;
            anyhow::ensure!(
                plan.topology.topology.primary == next.primary,
                "the plan would not keep {:?} as primary",
                next.primary
            );
            crate::plan::topology::save(state, &plan.topology.topology)?;
            let specs: AppliedSpecs = plan.boards.into_iter().map(|b| (b.board, b.spec)).collect();
            crate::plan::applied::save(state, &specs)?;
            Ok(specs)
        })
        .await?
    }

    /// `GET /v1/db` of each of `boards` at once; those that answer.
    async fn db_states(&self, boards: &[String]) -> Vec<DbReplication> {
        let mut tasks = Vec::new();
        for name in boards {
            let Some(board) = self.agents.inventory.board(name) else {
                continue;
            };
            let host = self.agents.host(board).to_string();
            let client = self.client.clone();
            tasks.push(tokio::spawn(
                async move { client.db_replication(&host).await },
            ));
        }
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(Ok(state)) = t.await {
                out.push(state);
            }
        }
        out
    }

    /// Live replicas (by the applied specs) whose binlog holds transactions `primary` lacks,
    /// with those transactions. The replicas are read before the primary, so a transaction
    /// that reached a replica between the two reads is on the primary too.
    async fn diverged_replicas(
        &self,
        primary: &str,
        applied: &AppliedSpecs,
        down: &BTreeSet<String>,
    ) -> BTreeMap<String, String> {
        let replicas = live_replicas(applied, down);
        if replicas.is_empty() {
            return BTreeMap::new();
        }
        let states = self.db_states(&replicas).await;
        let before = self.kept_out();
        let Some(primary_state) = self.db_states(&[primary.to_string()]).await.pop() else {
            return before;
        };
        // One that does not answer (being recloned, restarting) stays as it was: only a
        // clean look lets a diverged replica back in.
        let mut found: BTreeMap<String, String> = before
            .into_iter()
            .filter(|(board, _)| {
                replicas.contains(board) && !states.iter().any(|s| &s.board == board)
            })
            .collect();
        found.extend(states.iter().filter_map(|r| {
            let errant = promotion::errant(r, &primary_state);
            (!errant.is_empty()).then(|| (r.board.clone(), errant.join(", ")))
        }));
        found
    }

    /// Says when a replica is kept out for diverging, and when it is back in; once each.
    fn note_diverged(&self, primary: &str, now: &BTreeMap<String, String>) {
        let mut noted = self.diverged.lock().unwrap_or_else(|p| p.into_inner());
        let say = |board: &str, message: String| {
            if let Some(index) = self.store.board_index(board) {
                self.store
                    .record(index, EventKind::Info, message, crate::metrics::now_ms());
            }
        };
        for (board, errant) in now {
            if noted.get(board) != Some(errant) {
                say(
                    board,
                    format!(
                        "failover: {board} kept out: it holds writes {primary} never got \
                         ({errant}), so it stays read-only and no app reads from it. A former \
                         primary's writes that no replica had were never acknowledged when \
                         semi-sync was on. To throw them away: `lab reclone {board} --yes` \
                         (it copies everything from {primary} afresh and comes back in)"
                    ),
                );
            }
        }
        for board in noted.keys() {
            if !now.contains_key(board) {
                say(
                    board,
                    format!("failover: {board} holds nothing {primary} lacks any more: back in"),
                );
            }
        }
        *noted = now.clone();
    }

    /// Records why the primary was not replaced, once per reason.
    fn note_primary(&self, primary: &str, message: String) {
        let mut noted = self.primary_note.lock().unwrap_or_else(|p| p.into_inner());
        if noted.as_deref() == Some(message.as_str()) {
            return;
        }
        if let Some(index) = self.store.board_index(primary) {
            self.store.record(
                index,
                EventKind::Info,
                format!("failover: {message}"),
                crate::metrics::now_ms(),
            );
        }
        *noted = Some(message);
    }

    fn forget_primary_note(&self) {
        *self.primary_note.lock().unwrap_or_else(|p| p.into_inner()) = None;
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

/// Live boards whose applied spec makes them a database replica.
fn live_replicas(applied: &AppliedSpecs, down: &BTreeSet<String>) -> Vec<String> {
    applied
        .iter()
        .filter(|(name, spec)| {
            !down.contains(*name)
                && spec
                    .roles
                    .iter()
                    .any(|r| matches!(r, RoleConfig::DbReplica(_)))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Sends `full` without the `out` boards (down, or kept out) unless the agent already holds
/// that; the changes sent, `None` when none. A board holding no spec, or one that differs in
/// more than peers at the same epoch, is left to `lab apply` (see
/// [`membership::same_apart_from_peers`]); one holding an older epoch gets the newer
/// topology (a failover happened without it: a former primary becomes a read-only replica).
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
    if full.epoch <= held.epoch && !membership::same_apart_from_peers(&held, full) {
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

//! The effectful half of `lab plan` / `lab apply` (the pure half is [`crate::plan`]): read
//! what every agent holds, compute the plan and its changes, send the specs that differ, and
//! wait until every role runs (or says why it does not).
//!
//! Everything goes over the agents' mTLS API; nothing here uses SSH. The topology decision is
//! saved before any spec that carries its epoch is sent, so an agent never holds an epoch the
//! state dir does not know.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use lab_api::spec::{BoardSpec, RoleState, RoleStatus};
use lab_api::Role;
use serde::Serialize;

use crate::agent_client::AgentClient;
use crate::agents::ClusterAgents;
use crate::failover::membership;
use crate::plan::diff::{diff, Change};
use crate::plan::{self, Plan};

/// How long an agent has to answer a plan's or an apply's request.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one agent holds, or why we do not know.
#[derive(Debug, Clone)]
pub enum Held {
    Spec(Option<BoardSpec>),
    Unreachable(String),
}

/// One board: its plan, what its agent holds, and the changes between them.
#[derive(Debug, Clone, Serialize)]
pub struct BoardChanges {
    pub board: String,
    pub roles: Vec<Role>,
    pub waiting: Vec<Role>,
    pub changes: Vec<Change>,
    /// Set when the agent could not be asked (its changes are unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// What its agent is sent: the plan's spec without the peers that do not answer.
    #[serde(skip)]
    pub spec: BoardSpec,
    /// The plan's spec with every peer (what `applied.json` keeps).
    #[serde(skip)]
    pub full: BoardSpec,
}

/// The plan with the changes it implies, ready to print or apply.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub cluster: String,
    pub epoch: u64,
    pub primary: Option<String>,
    pub reasons: Vec<String>,
    pub boards: Vec<BoardChanges>,
    #[serde(skip)]
    pub topology: plan::topology::Decision,
}

impl PlanView {
    pub fn changed_boards(&self) -> impl Iterator<Item = &BoardChanges> {
        self.boards
            .iter()
            .filter(|b| !b.changes.is_empty() && b.unreachable.is_none())
    }
    pub fn unreachable(&self) -> impl Iterator<Item = &BoardChanges> {
        self.boards.iter().filter(|b| b.unreachable.is_some())
    }
    /// Nothing to send and nothing unknown.
    pub fn is_converged(&self) -> bool {
        self.changed_boards().next().is_none() && self.unreachable().next().is_none()
    }
}

/// Each board's IP on the cluster network (what its engines bind to): its agent host, or
/// that name resolved.
pub async fn addresses(agents: &ClusterAgents) -> anyhow::Result<BTreeMap<String, IpAddr>> {
    let mut out = BTreeMap::new();
    for b in &agents.inventory.boards {
        let host = agents.host(b);
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => tokio::net::lookup_host((host, 0))
                .await
                .with_context(|| format!("board `{}`: resolving {host}", b.name))?
                .map(|a| a.ip())
                .find(IpAddr::is_ipv4)
                .with_context(|| format!("board `{}`: {host} has no IPv4 address", b.name))?,
        };
        out.insert(b.name.clone(), ip);
    }
    Ok(out)
}

/// Ask every agent which spec it holds, all at once.
pub async fn held_specs(agents: &ClusterAgents, client: &AgentClient) -> BTreeMap<String, Held> {
    let mut tasks = Vec::new();
    for b in &agents.inventory.boards {
        let client = client.clone();
        let host = agents.host(b).to_string();
        let name = b.name.clone();
        tasks.push(tokio::spawn(async move {
            let held = match client.spec(&host, lab_api::DEFAULT_AGENT_PORT).await {
                Ok(spec) => Held::Spec(spec),
                Err(e) => Held::Unreachable(e.to_string()),
            };
            (name, held)
        }));
    }
    let mut out = BTreeMap::new();
    for t in tasks {
        if let Ok((name, held)) = t.await {
            out.insert(name, held);
        }
    }
    out
}

/// The plan and its changes against what the agents hold.
pub async fn plan_view(agents: &ClusterAgents, client: &AgentClient) -> anyhow::Result<PlanView> {
    let state = agents.state.root().to_path_buf();
    let (stored, secrets) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((plan::topology::load(&state)?, plan::secrets::load(&state)?))
    })
    .await??;
    let addresses = addresses(agents).await?;
    let Plan {
        boards,
        topology,
        reasons,
    } = plan::desired(&agents.inventory, &addresses, &stored, &secrets)?;
    let held = held_specs(agents, client).await;
    // Boards whose agents do not answer are left out of the others' peer lists (the same
    // rule the failover manager follows), and are back in once they answer.
    let down: BTreeSet<String> = held
        .iter()
        .filter(|(_, h)| matches!(h, Held::Unreachable(_)))
        .map(|(name, _)| name.clone())
        .collect();
    let mut reasons = reasons;
    let boards = boards
        .into_iter()
        .map(|b| {
            let full = b.spec;
            let spec = membership::without_down(&full, &down);
            let left_out = membership::peers_down(&full, &down);
            if !left_out.is_empty() {
                reasons.push(format!(
                    "{}: leaves out {} (agent not answering) until it answers again",
                    b.board,
                    left_out.join(", ")
                ));
            }
            let (changes, unreachable) = match held.get(&b.board) {
                Some(Held::Spec(held)) => (diff(&spec, held.as_ref()), None),
                Some(Held::Unreachable(why)) => (Vec::new(), Some(why.clone())),
                None => (Vec::new(), Some("not asked".into())),
            };
            BoardChanges {
                board: b.board,
                roles: b.roles,
                waiting: b.waiting,
                changes,
                unreachable,
                spec,
                full,
            }
        })
        .collect();
    Ok(PlanView {
        cluster: agents.inventory.cluster.name.clone(),
        epoch: topology.topology.epoch,
        primary: topology.topology.primary.clone(),
        reasons,
        boards,
        topology,
    })
}

/// One board's answer to its new spec.
#[derive(Debug)]
pub struct Sent {
    pub board: String,
    pub result: Result<(), String>,
}

/// Saves the topology if it changed (before any spec carrying its epoch is sent).
pub async fn save_topology(agents: &ClusterAgents, view: &PlanView) -> anyhow::Result<()> {
    if view.topology.changed {
        let state = agents.state.root().to_path_buf();
        let topo = view.topology.topology.clone();
        tokio::task::spawn_blocking(move || plan::topology::save(&state, &topo)).await??;
    }
    Ok(())
}

/// Keeps every board's full spec as the last applied desired state (what the failover
/// manager works from).
pub async fn save_applied(agents: &ClusterAgents, view: &PlanView) -> anyhow::Result<()> {
    let state = agents.state.root().to_path_buf();
    let specs: plan::applied::AppliedSpecs = view
        .boards
        .iter()
        .map(|b| (b.board.clone(), b.full.clone()))
        .collect();
    tokio::task::spawn_blocking(move || plan::applied::save(&state, &specs)).await?
}

/// The changed boards in two waves, make before break: first every board that only starts,
/// reloads or repoints (the LB learns the new app set), then the boards that stop a role
/// (an app leaves only once no LB sends it requests).
pub fn waves(view: &PlanView) -> (Vec<&BoardChanges>, Vec<&BoardChanges>) {
    view.changed_boards()
        .partition(|b| !b.changes.iter().any(|c| matches!(c, Change::Stop { .. })))
}

/// Sends each of `boards` its spec (all at once). Call [`save_topology`] first.
pub async fn send_specs(
    agents: &ClusterAgents,
    client: &AgentClient,
    boards: &[&BoardChanges],
) -> anyhow::Result<Vec<Sent>> {
    let mut tasks = Vec::new();
    for b in boards {
        let Some(board) = agents.inventory.board(&b.board) else {
            continue;
        };
        let host = agents.host(board).to_string();
        let client = client.clone();
        let spec = b.spec.clone();
        tasks.push(tokio::spawn(async move {
            let result = client
                .put_spec(&host, lab_api::DEFAULT_AGENT_PORT, &spec)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            Sent {
                board: spec.board,
                result,
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.context("a send task failed")?);
    }
    Ok(out)
}

/// A role as the wait loop last saw it.
#[derive(Debug, Clone, Serialize)]
pub struct RoleRow {
    pub board: String,
    pub role: Role,
    /// Fingerprint of the planned config ([`lab_api::spec::RoleConfig::fingerprint`]).
    #[serde(skip)]
    pub want: String,
    pub state: Option<RoleState>,
    pub status: Option<RoleStatus>,
    /// Why the board could not be asked.
    pub error: Option<String>,
}

impl RoleRow {
    fn settled(&self) -> bool {
        match &self.status {
            // Running the planned config, not still the old one.
            Some(s) if s.state == RoleState::Running => {
                s.config.as_deref().is_none_or(|c| c == self.want)
            }
            // A crash loop will not end by waiting.
            Some(s) if s.state == RoleState::Failed && s.restarts >= 3 => true,
            _ => false,
        }
    }
}

/// Poll the agents until every role of the plan runs (or is in a crash loop), or `limit`
/// passes. Boards in `given_up` (unreachable, or refused their spec) are not waited for:
/// their roles cannot come. `progress` hears each role the first time it settles.
pub async fn wait_for_roles(
    agents: &ClusterAgents,
    client: &AgentClient,
    view: &PlanView,
    given_up: &std::collections::BTreeSet<String>,
    limit: Duration,
    progress: &mut dyn FnMut(&RoleRow),
) -> Vec<RoleRow> {
    let deadline = Instant::now() + limit;
    let mut told: std::collections::BTreeSet<(String, Role)> = Default::default();
    loop {
        let rows = role_rows(agents, client, view).await;
        for r in rows.iter().filter(|r| r.settled()) {
            if told.insert((r.board.clone(), r.role)) {
                progress(r);
            }
        }
        let done = rows
            .iter()
            .all(|r| r.settled() || given_up.contains(&r.board));
        if done || Instant::now() >= deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every planned role that has an engine, with what its agent says about it now.
pub async fn role_rows(
    agents: &ClusterAgents,
    client: &AgentClient,
    view: &PlanView,
) -> Vec<RoleRow> {
    let mut tasks = Vec::new();
    for b in view.boards.iter().filter(|b| !b.spec.roles.is_empty()) {
        let Some(board) = agents.inventory.board(&b.board) else {
            continue;
        };
        let host = agents.host(board).to_string();
        let client = client.clone();
        let name = b.board.clone();
        let roles: Vec<(Role, String)> = b
            .spec
            .roles
            .iter()
            .map(|c| (c.role(), c.fingerprint()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let health = client.health(&host, lab_api::DEFAULT_AGENT_PORT).await;
            roles
                .into_iter()
                .map(|(role, want)| match &health {
                    Ok(h) => {
                        let status = h.roles.iter().find(|s| s.role == role).cloned();
                        RoleRow {
                            board: name.clone(),
                            role,
                            want,
                            state: status.as_ref().map(|s| s.state),
                            status,
                            error: None,
                        }
                    }
                    Err(e) => RoleRow {
                        board: name.clone(),
                        role,
                        want,
                        state: None,
                        status: None,
                        error: Some(e.to_string()),
                    },
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(rows) = t.await {
            out.extend(rows);
        }
    }
    out
}

//! `lab plan` (what would change, nothing touched) and `lab apply` (make it so, then a table
//! of every role). Both read what the agents hold over mTLS; see [`crate::apply`].

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use lab_api::spec::RoleState;

use super::InventoryArg;
use crate::agents::ClusterAgents;
use crate::apply::{self, PlanView, RoleRow, AGENT_TIMEOUT};
use crate::plan::diff::Change;

/// Show, per board, the roles it will run and what would change to get there. Nothing is
/// touched. Roles left to the planner (`roles = "auto"`) and the database primary come with
/// the reason they were chosen.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Print the plan as JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Converge the cluster to the plan: send each board whose spec differs its new desired
/// state over mTLS, then wait until every role runs and print a table. Re-running with
/// nothing changed sends nothing.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Longest wait for the roles to run after sending (seconds).
    #[arg(long, default_value = "240", value_name = "SECS")]
    pub wait: u64,
    /// Print the final role table as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run_plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let agents = tokio::task::spawn_blocking(move || ClusterAgents::open(inv)).await??;
    let client = agents.client(AGENT_TIMEOUT)?;
    let view = apply::plan_view(&agents, &client).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_plan(&view);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let agents = tokio::task::spawn_blocking(move || ClusterAgents::open(inv)).await??;
    apply_cluster(&agents, Duration::from_secs(args.wait), args.json).await
}

/// `lab apply`'s work, also the last step of `lab up`.
/// Longest wait for the first wave of an apply before the boards that stop roles get theirs.
const FIRST_WAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn apply_cluster(
    agents: &ClusterAgents,
    wait: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let client = agents.client(AGENT_TIMEOUT)?;
    let view = apply::plan_view(agents, &client).await?;
    let mut ok = true;
    // Boards whose roles will not come whatever we wait: not reached, or spec refused.
    let mut given_up: std::collections::BTreeSet<String> = Default::default();
    for b in view.unreachable() {
        ok = false;
        given_up.insert(b.board.clone());
        eprintln!(
            "{}: agent unreachable, left as it is: {}",
            b.board,
            b.unreachable.as_deref().unwrap_or("")
        );
    }
    // From saving the specs until they are sent, the failover manager waits (it would send
    // the ones this apply replaces).
    let applying = {
        let state = agents.state.root().to_path_buf();
        tokio::task::spawn_blocking(move || crate::plan::applied::lock(&state)).await??
    };
    apply::save_applied(agents, &view).await?;
    let changed: Vec<&str> = view.changed_boards().map(|b| b.board.as_str()).collect();
    if changed.is_empty() {
        if !json {
            println!("lab apply: nothing to change (epoch {})", view.epoch.max(1));
        }
    } else {
        if !json {
            println!("lab apply: {} board(s) to change", changed.len());
            for b in view.changed_boards() {
                for c in &b.changes {
                    println!("  {:<10} {}", b.board, c.describe());
                }
            }
        }
        apply::save_topology(agents, &view).await?;
        let (first, second) = apply::waves(&view);
        let mut sent = apply::send_specs(agents, &client, &first).await?;
        if !second.is_empty() {
            // Make before break: the boards that stop a role get their spec once the first
            // wave runs its new configs (an LB no longer sends requests to a leaving app).
            let mut not_first: std::collections::BTreeSet<String> = view
                .boards
                .iter()
                .map(|b| b.board.clone())
                .filter(|b| !first.iter().any(|f| &f.board == b))
                .collect();
            not_first.extend(given_up.iter().cloned());
            for s in sent.iter().filter(|s| s.result.is_err()) {
                not_first.insert(s.board.clone());
            }
            apply::wait_for_roles(
                agents,
                &client,
                &view,
                &not_first,
                FIRST_WAVE_WAIT,
                &mut |_| {},
            )
            .await;
            sent.extend(apply::send_specs(agents, &client, &second).await?);
        }
        for s in &sent {
            if let Err(e) = &s.result {
                ok = false;
                given_up.insert(s.board.clone());
                eprintln!("{}: spec refused: {e}", s.board);
            }
        }
    }
    drop(applying);
    let started = std::time::Instant::now();
    let mut progress = |r: &RoleRow| {
        if json {
            return;
        }
        let state = r.state.map(|s| s.to_string()).unwrap_or_default();
        println!(
            "  {:<10} {:<10} {state} after {:.1} s",
            r.board,
            r.role,
            started.elapsed().as_secs_f64()
        );
    };
    let rows = if changed.is_empty() {
        apply::role_rows(agents, &client, &view).await
    } else {
        apply::wait_for_roles(agents, &client, &view, &given_up, wait, &mut progress).await
    };
    if rows.iter().any(|r| r.state != Some(RoleState::Running)) {
        ok = false;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_roles(&rows, &view);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(view: &PlanView) {
    println!(
        "lab plan: cluster `{}`, epoch {}{}",
        view.cluster,
        view.epoch.max(1),
        view.primary
            .as_deref()
            .map(|p| format!(", database primary {p}"))
            .unwrap_or_default()
    );
    let width = view.boards.iter().map(|b| b.board.len()).max().unwrap_or(5);
    let (mut starts, mut stops, mut other, mut unchanged) = (0, 0, 0, 0);
    for b in &view.boards {
        let roles: Vec<&str> = b.roles.iter().map(|r| r.as_str()).collect();
        let roles = if roles.is_empty() {
            "-".to_string()
        } else {
            roles.join(",")
        };
        let mut lines: Vec<String> = b.changes.iter().map(|c| c.describe()).collect();
        for c in &b.changes {
            match c {
                Change::Start { .. } => starts += 1,
                Change::Stop { .. } => stops += 1,
                _ => other += 1,
            }
        }
        if let Some(why) = &b.unreachable {
            lines.push(format!("unknown: agent unreachable ({why})"));
        } else if b.changes.is_empty() {
            unchanged += 1;
            lines.push("no change".into());
        }
        for w in &b.waiting {
            lines.push(if crate::plan::has_engine(*w) {
                format!("{w}: planned; waits for the boards it needs (see the reasons)")
            } else {
                format!("{w}: planned; its engine arrives in a later version")
            });
        }
        for (i, line) in lines.iter().enumerate() {
            if i == 0 {
                println!("  {:<width$}  {roles:<22} {line}", b.board);
            } else {
                println!("  {:<width$}  {:<22} {line}", "", "");
            }
        }
    }
    if !view.reasons.is_empty() {
        println!("why:");
        for r in &view.reasons {
            println!("  {r}");
        }
    }
    let unknown = view.unreachable().count();
    let changed = view.changed_boards().count();
    if changed == 0 && unknown == 0 {
        println!("nothing to change: the cluster matches the plan");
    } else {
        println!(
            "{changed} board(s) to change: {starts} role(s) to start, {stops} to stop, {other} other change(s); {unchanged} unchanged{}",
            if unknown > 0 {
                format!("; {unknown} unreachable")
            } else {
                String::new()
            }
        );
        println!("run `lab apply` to make these changes");
    }
}

fn print_roles(rows: &[RoleRow], view: &PlanView) {
    println!();
    println!(
        "  {:<10} {:<10} {:<9} {:<8} DETAIL",
        "ROLE", "BOARD", "STATE", "RESTARTS"
    );
    for r in rows {
        let (state, restarts, detail) = match (&r.status, &r.error) {
            (Some(s), _) => (
                s.state.to_string(),
                s.restarts.to_string(),
                s.message.clone().unwrap_or_default(),
            ),
            (None, Some(e)) => ("unknown".into(), "-".into(), e.clone()),
            (None, None) => ("pending".into(), "-".into(), "not reported yet".into()),
        };
        println!(
            "  {:<10} {:<10} {:<9} {:<8} {detail}",
            r.role.as_str(),
            r.board,
            state,
            restarts
        );
        if let Some(s) = &r.status {
            if s.state == RoleState::Failed {
                for line in &s.log_tail {
                    println!("  {:<10} {:<10} | {line}", "", "");
                }
            }
        }
    }
    let waiting: usize = view.boards.iter().map(|b| b.waiting.len()).sum();
    if waiting > 0 {
        println!(
            "  ({waiting} planned role(s) not run yet: an lb needs app boards, an app a database)"
        );
    }
}

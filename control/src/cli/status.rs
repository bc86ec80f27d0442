//! `lab status`: ask every agent for its health over mTLS, in parallel, and print a table
//! (or JSON with `--json`). A board whose agent does not answer is shown as down, with why.
//! Certificates that expire within the renewal window (or have expired) get a warning line
//! on stderr saying what to do; `--json` also gives each board's certificate end date.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::output::{bytes, duration, table};
use super::InventoryArg;
use crate::agents::ClusterAgents;
use crate::pki::CertStanding;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Print JSON (one object per board) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each agent (0.1 to 60).
    #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = super::seconds_0_1_to_60)]
    pub timeout: Duration,
}

/// One board as `lab status --json` prints it.
#[derive(Debug, Serialize)]
pub struct BoardStatus {
    pub board: String,
    pub address: String,
    pub roles: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<lab_api::Health>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The board's certificate as kept in the state dir (absent before its first bootstrap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertStanding>,
}

pub async fn collect(ctx: &ClusterAgents, timeout: Duration) -> anyhow::Result<Vec<BoardStatus>> {
    let client = Arc::new(ctx.client(timeout)?);
    let mut tasks = Vec::new();
    for board in &ctx.inventory.boards {
        let client = client.clone();
        let host = ctx.host(board).to_string();
        let b = board.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.health(&host, lab_api::DEFAULT_AGENT_PORT).await;
            let (health, error) = match r {
                Ok(h) => (Some(h), None),
                Err(e) => (None, Some(e.to_string())),
            };
            BoardStatus {
                board: b.name,
                address: b.address,
                roles: b.roles.to_string(),
                up: health.is_some(),
                health,
                error,
                cert: None,
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let ctx = tokio::task::spawn_blocking(move || ClusterAgents::open(inv)).await??;
    let timeout = args.timeout;
    let mut boards = collect(&ctx, timeout).await?;
    let inv = match &args.inventory.inventory {
        Some(_) => format!(" -i {}", ctx.inventory.path.display()),
        None => String::new(),
    };
    let names: Vec<String> = ctx
        .inventory
        .boards
        .iter()
        .map(|b| b.name.clone())
        .collect();
    let certs = ctx.pki.expiry_report(
        &names,
        time::OffsetDateTime::now_utc(),
        &format!("{} bootstrap{inv}", super::lab_command()),
    );
    let warn = || {
        for w in certs.iter().filter_map(|c| c.warning.as_ref()) {
            eprintln!("warning: {w}");
        }
    };
    for b in &mut boards {
        b.cert = certs
            .iter()
            .find(|c| c.board.as_deref() == Some(b.board.as_str()))
            .cloned();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&boards)?);
        warn();
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = boards
        .iter()
        .map(|b| match &b.health {
            Some(h) => vec![
                b.board.clone(),
                b.address.clone(),
                role_states(h, &b.roles),
                h.arch.clone(),
                h.os.clone(),
                h.agent_version.clone(),
                "up".into(),
                duration(h.uptime_secs),
                format!("{:.0}%", h.cpu_percent),
                cpus(h),
                format!("{} / {}", bytes(h.mem_used_bytes), bytes(h.mem_total_bytes)),
            ],
            None => vec![
                b.board.clone(),
                b.address.clone(),
                b.roles.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("DOWN ({})", b.error.as_deref().unwrap_or("?")),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "BOARD", "ADDRESS", "ROLES", "ARCH", "OS", "AGENT", "STATE", "UPTIME", "CPU",
                "CPUS", "MEMORY"
            ],
            &rows
        )
    );
    let up = boards.iter().filter(|b| b.up).count();
    println!("{up}/{} boards up", boards.len());
    let (inventory, state_dir) = (ctx.inventory.clone(), ctx.state.root().to_path_buf());
    let network = tokio::task::spawn_blocking(move || {
        crate::virt::inventory::network_report(&inventory, &state_dir)
    })
    .await?;
    for line in network {
        println!("{line}");
    }
    for b in &boards {
        for r in b.health.iter().flat_map(|h| &h.roles) {
            if r.state == lab_api::spec::RoleState::Running {
                continue;
            }
            println!(
                "{} {}: {}{}{}",
                b.board,
                r.role,
                r.state,
                r.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default(),
                if r.restarts > 0 {
                    format!(", {} restart(s)", r.restarts)
                } else {
                    String::new()
                }
            );
            for line in &r.log_tail {
                println!("    | {line}");
            }
        }
    }
    match crate::plan::topology::load(ctx.state.root()) {
        Ok(t) => {
            if let Some(p) = &t.primary {
                println!("database primary: {p} (topology epoch {})", t.epoch);
            }
        }
        Err(e) => eprintln!("warning: {e:#}"),
    }
    warn();
    Ok(ExitCode::SUCCESS)
}

/// `db-master:running,cache:running` from the agent; the inventory's roles marked
/// `(not applied)` while the agent holds no spec.
fn role_states(h: &lab_api::Health, inventory_roles: &str) -> String {
    if h.spec_epoch.is_none() {
        return format!("{inventory_roles} (not applied)");
    }
    if h.roles.is_empty() {
        return format!("{inventory_roles} (nothing to run yet)");
    }
    h.roles
        .iter()
        .map(|r| format!("{}:{}", r.role, r.state))
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPUs a board may use (`1`, `0.5`), or its core count from an agent that predates it.
fn cpus(h: &lab_api::Health) -> String {
    if h.cpus > 0.0 {
        format!("{}", (h.cpus * 100.0).round() / 100.0)
    } else {
        h.cpu_count.to_string()
    }
}

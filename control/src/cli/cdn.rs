//! `lab cdn purge --prefix /avatars/ | --key /avatars/a.png [--board cdn-1]`: drop objects
//! from the CDN edges, so the next request for them goes to the origin (after a changed
//! object that must show at once, instead of when its TTL runs out). Every cdn board's agent
//! is asked over mTLS (`POST /v1/cdn/purge`); it passes the order to its edge on loopback.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use lab_api::Role;

use super::InventoryArg;
use crate::agent_client::AgentClient;
use crate::agents::ClusterAgents;

/// How long one edge may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct CdnArgs {
    #[command(subcommand)]
    pub action: CdnAction,
}

#[derive(Debug, Subcommand)]
pub enum CdnAction {
    /// Drop objects from every CDN edge (or one): by exact path or by path prefix.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Every object whose path starts with this (`/avatars/`; `/` for everything).
    #[arg(long, conflicts_with = "key", required_unless_present = "key")]
    pub prefix: Option<String>,
    /// One object's path (`/avatars/users/7.png`).
    #[arg(long)]
    pub key: Option<String>,
    /// Only this cdn board (default: every one).
    #[arg(long)]
    pub board: Option<String>,
}

pub async fn run(args: CdnArgs) -> anyhow::Result<ExitCode> {
    let CdnAction::Purge(args) = args.action;
    for path in args.prefix.iter().chain(args.key.iter()) {
        if !path.starts_with('/') {
            bail!("`{path}` is not a path: it starts with / (e.g. /avatars/)");
        }
    }
    let (inventory, only) = (args.inventory.clone(), args.board.clone());
    let (agents, edges) = tokio::task::spawn_blocking(move || {
        let inv = super::load_inventory(&inventory)?;
        let topology = crate::plan::topology::load(&inv.cluster.state_dir).unwrap_or_default();
        let roles = crate::plan::planned_roles(&inv, &topology);
        let mut edges: Vec<crate::inventory::Board> = inv
            .boards
            .iter()
            .filter(|b| roles.get(&b.name).is_some_and(|r| r.contains(&Role::Cdn)))
            .cloned()
            .collect();
        if let Some(only) = &only {
            if !edges.iter().any(|b| &b.name == only) {
                bail!("`{only}` is not a cdn board of {}", inv.path.display());
            }
            edges.retain(|b| &b.name == only);
        }
        if edges.is_empty() {
            bail!(
                "no board of {} has the cdn role: nothing to purge",
                inv.path.display()
            );
        }
        anyhow::Ok((ClusterAgents::open(inv)?, edges))
    })
    .await??;
    let client = AgentClient::new(&agents.pki, ANSWER_WITHIN)?;
    let ask = lab_api::spec::CdnPurge {
        key: args.key.clone(),
        prefix: args.prefix.clone(),
    };
    let mut failed = 0;
    for board in &edges {
        match client.cdn_purge(agents.host(board), &ask).await {
            Ok(done) => println!("{}: {} object(s) purged", done.board, done.purged),
            Err(e) => {
                failed += 1;
                eprintln!("{}: not purged: {e}", board.name);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

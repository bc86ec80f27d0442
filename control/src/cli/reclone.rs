//! `lab reclone BOARD --yes`: throw a database replica's data away and have it copy
//! everything afresh from its primary: the way back for a replica the failover manager keeps
//! out because its binlog holds writes the primary lacks (a former primary's writes that
//! no replica had when it died). The board's agent does the work (`POST /v1/db/reclone`);
//! a primary is refused there, whatever this side believes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::InventoryArg;
use crate::agent_client::AgentClient;
use crate::agents::ClusterAgents;

/// Stopping MariaDB whole can take its stop deadline; the answer comes after that.
const ANSWER_WITHIN: Duration = Duration::from_secs(90);

#[derive(Debug, Args)]
pub struct RecloneArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// The database replica whose data to throw away.
    pub board: String,
    /// Yes, throw its data away (writes only it holds are gone for good).
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(args: RecloneArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let Some(board) = inv.board(&args.board).cloned() else {
        bail!("no board `{}` in {}", args.board, inv.path.display());
    };
    if !args.yes {
        bail!(
            "this throws away every row of the database on {} and copies it again from the \
             primary; writes only {} holds are gone for good. Say --yes to go ahead",
            board.name,
            board.name
        );
    }
    let agents = tokio::task::spawn_blocking(move || ClusterAgents::open(inv)).await??;
    let client = AgentClient::new(&agents.pki, ANSWER_WITHIN)?;
    println!(
        "{}: stopping its replica and removing its data ...",
        board.name
    );
    let done = client
        .db_reclone(agents.host(&board))
        .await
        .with_context(|| format!("{}: reclone refused or failed", board.name))?;
    println!("{}: {}", done.board, done.message);
    println!(
        "the failover manager puts it back in the apps' read lists once it holds nothing the \
         primary lacks (`lab events --follow`)"
    );
    Ok(ExitCode::SUCCESS)
}

//! `lab up`: from nothing to a running cluster. For a virtual inventory: install missing host
//! packages, build the arm64 root if a board asks for one, create the boards; then bootstrap
//! every board exactly as `lab bootstrap` does, apply the plan as `lab apply` does (every
//! board gets its roles), start the control plane (`lab serve`,
//! detached) and print where to look.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::InventoryArg;
use crate::cluster::ClusterContext;

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Only create the virtual boards (bare: sshd, no agent); bootstrap later with
    /// `lab bootstrap`.
    #[arg(long)]
    pub no_bootstrap: bool,
    /// Bootstrap the agents but give the boards no roles (apply later with `lab apply`).
    #[arg(long)]
    pub no_apply: bool,
    /// Where the control plane (`lab serve`, started in the background) serves the
    /// dashboard and API. Default: 127.0.0.1:7480.
    #[arg(long, env = super::serve::LISTEN_ENV, value_name = "ADDR")]
    pub listen: Option<String>,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let inv_path = inv.path.clone();
    println!(
        "lab up: cluster `{}` from {} ({} boards{})",
        inv.cluster.name,
        inv.path.display(),
        inv.boards.len(),
        if inv.is_virtual() { ", virtual" } else { "" }
    );
    let ctx = Arc::new(tokio::task::spawn_blocking(move || ClusterContext::open(inv)).await??);
    if ctx.inventory.is_virtual() {
        let c = ctx.clone();
        tokio::task::spawn_blocking(move || crate::virt::inventory::create_virtual_boards(&c))
            .await??;
    }
    if args.no_bootstrap {
        println!(
            "boards created; bootstrap them with `lab bootstrap -i {}`",
            inv_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let reports = super::bootstrap::run_bootstrap(ctx.clone(), &[]).await;
    let mut code = crate::job::summary(&reports);
    if !args.no_apply {
        println!();
        let inv = ctx.inventory.clone();
        let agents =
            tokio::task::spawn_blocking(move || crate::agents::ClusterAgents::open(inv)).await??;
        let applied =
            super::plan::apply_cluster(&agents, std::time::Duration::from_secs(240), false).await?;
        if applied != ExitCode::SUCCESS {
            code = applied;
        }
    }
    let serve =
        super::serve::start_detached(ctx.state.root(), &inv_path, args.listen.as_deref()).await;
    let lab = super::lab_command();
    let inv = match &args.inventory.inventory {
        Some(_) => format!(" -i {}", inv_path.display()),
        None => String::new(),
    };
    let mut lines = Vec::new();
    match &serve {
        Ok(
            super::serve::Started::New { addr, .. } | super::serve::Started::Running { addr, .. },
        ) => {
            // The detached `lab serve` warns into its log; say it here too.
            if let Some(w) = addr.parse().ok().and_then(super::serve::exposure_warning) {
                eprintln!("{w}");
            }
            lines.push((
                format!("dashboard: http://{addr}/"),
                "live boards, charts and events (Prometheus text: /metrics)".to_string(),
            ));
            lines.push((
                format!("{lab} metrics export{inv} -o metrics.csv"),
                "the last 5 minutes of every board's history as CSV".to_string(),
            ));
        }
        Err(e) => {
            code = ExitCode::FAILURE;
            eprintln!("error: the control plane (lab serve) did not start: {e:#}");
        }
    }
    lines.extend([
        (
            format!("{lab} status{inv}"),
            "every board, as its agent reports it over mTLS".to_string(),
        ),
        (
            format!("{lab} status{inv} --json"),
            "the same, for scripts".to_string(),
        ),
    ]);
    if !args.no_apply {
        let state = ctx.state.root().to_path_buf();
        let inventory = ctx.inventory.clone();
        let lb = tokio::task::spawn_blocking(move || crate::plan::entry_url(&inventory, &state))
            .await
            .ok()
            .flatten();
        if let Some(url) = lb {
            lines.push((
                format!("curl -i {url}"),
                "a request through the LB; X-Served-By names the app board".to_string(),
            ));
            lines.push((
                format!("{lab} load{inv} --rate 200 --duration 30s"),
                "sign up, log in, post and read through the LB, live p50/p99".to_string(),
            ));
        }
    }
    if ctx.inventory.is_virtual() {
        if let Some(b) = ctx.inventory.boards.last() {
            lines.push((
                format!("{lab} kill{inv} {}", b.name),
                format!(
                    "pull {}'s plug; `{lab} restart{inv} {}` powers it back on",
                    b.name, b.name
                ),
            ));
        }
        lines.push((
            format!("{lab} down{inv}"),
            "stop everything, remove the virtual boards".to_string(),
        ));
    }
    let width = lines.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    println!();
    println!("Where to look:");
    for (cmd, what) in &lines {
        println!("  {cmd:<width$}   {what}");
    }
    println!(
        "  (cluster state, CA and pinned host keys: {})",
        ctx.state.root().display()
    );
    Ok(code)
}

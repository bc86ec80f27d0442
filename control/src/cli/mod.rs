//! Command-line surface of `lab`: one file per subcommand; this file holds the argument
//! types, the shared "which inventory" logic and the dispatch to an exit code.

mod board;
mod bootstrap;
mod cdn;
mod down;
mod events;
mod exercise;
mod flash;
mod forget;
mod image;
mod link;
mod load;
mod metrics;
pub mod output;
mod plan;
mod reclone;
mod report;
mod serve;
mod status;
mod top;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::inventory::{self, Inventory};

/// `lab`: turn a shelf of boards (or a virtual cluster of Linux namespaces on this machine)
/// into a small data center you can scale out, break and watch heal.
///
/// Start with `lab up`: it creates the default virtual cluster (inventory/virtual.toml),
/// bootstraps an agent on every board and prints where to look. With real boards, write an
/// inventory (see inventory/homelab.example.toml) and run `lab bootstrap -i FILE`.
#[derive(Debug, Parser)]
#[command(name = "lab", version, about, long_about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct InventoryArg {
    /// Inventory file (TOML). Default: inventory/virtual.toml of this checkout.
    #[arg(short, long, env = "LAB_INVENTORY", value_name = "FILE")]
    pub inventory: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the cluster up: create the virtual boards (if the inventory has a [virtual]
    /// table), install missing host packages, bootstrap every board, apply the plan (every
    /// board gets its roles), print where to look.
    /// Safe to re-run: what is already right is left alone.
    Up(up::UpArgs),
    /// Push the agent to every board over SSH, configure and start it, wait until it answers
    /// over mTLS. The same for real and virtual boards; re-running with nothing changed
    /// uploads nothing.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Show what every board will run and what would change to get there (engine to start,
    /// config to rewrite, replica to repoint). Touches nothing. `--json` for scripts.
    Plan(plan::PlanArgs),
    /// Converge the cluster to the plan over mTLS: send each board whose desired state
    /// differs its new spec, wait until every role runs, print a table. Safe to re-run.
    Apply(plan::ApplyArgs),
    /// Show every board as its agent reports it over mTLS: arch, OS, agent version,
    /// up/down, uptime, CPU and memory.
    Status(status::StatusArgs),
    /// Stop every agent; for a virtual cluster, destroy the boards too (no namespace,
    /// bridge, veth, mount or process is left behind).
    Down(down::DownArgs),
    /// Virtual board: pull its plug. Its network is cut first (no FIN or RST leaves), then
    /// every process it ran dies at once. `lab restart BOARD` powers it back on. Real board:
    /// stop its agent and every engine (after asking; --yes to skip the question).
    Kill(board::BoardArgs),
    /// Virtual board: power-cycle it (fresh boot; its disk is kept). Real board: start its
    /// agent again.
    Restart(board::BoardArgs),
    /// Virtual board: cut its network cable; its processes keep running. With
    /// --from-control-plane only this host loses it, the other boards do not. With --dc D,
    /// cut data center D's WAN link instead.
    Partition(board::PartitionArgs),
    /// Virtual board: plug its network cable back in (--dc D: D's WAN link).
    Heal(board::NetworkArgs),
    /// Virtual board: give its link a delay, jitter, loss or rate (`--delay 30ms --jitter
    /// 5ms --loss 1% --rate 100mbit`), or `--clear` it; `lab status` shows it.
    Link(link::LinkArgs),
    /// Classroom exercises, from one server to a scaled-out system: `list`, `start N`
    /// (the starting cluster and what to do), `check N` (measured; exit code 0 or 1).
    Exercise(exercise::ExerciseArgs),
    /// A `lab load` run as charts (SVG and PNG: requests/s, p50/p99, errors, cache hit
    /// ratio, with the kills, promotions and partitions marked) and a one-page report.md.
    Report(report::ReportArgs),
    /// Run the control plane in the foreground: follow every agent's sample stream, keep an
    /// hour of history, notice silent boards, serve the dashboard, the HTTP API and
    /// Prometheus text on --listen (`lab up` starts it in the background).
    Serve(serve::ServeArgs),
    /// Send traffic to the cluster's LB (or any http:// URL) at a fixed rate or flat out;
    /// live figures each second, then achieved rate vs asked, latency percentiles, errors by
    /// kind, who served, cache hits; a per-second timeline as CSV and JSON.
    Load(load::LoadArgs),
    /// The cluster's event log: boards down and back, and what the failover manager
    /// decided and did, with timings (`--follow` to watch it live, `--json` for tools).
    Events(events::EventsArgs),
    /// Metrics kept by the running control plane (`lab metrics export` writes CSV).
    Metrics(metrics::MetricsArgs),
    /// Live terminal view of the cluster from the running control plane: every board's
    /// health, CPU, memory, temperature, network and role figure, with sparklines.
    Top(top::TopArgs),
    /// Throw a database replica's data away and copy it afresh from the primary: the way
    /// back for a replica kept out for holding writes the primary lacks (`--yes` required).
    Reclone(reclone::RecloneArgs),
    /// The CDN edges: `lab cdn purge --prefix /avatars/` drops objects so the next request
    /// fetches them from the origin.
    Cdn(cdn::CdnArgs),
    /// Write a board image to an SD card or USB disk (whole disk, e.g. /dev/sdb), with
    /// progress, then read it back to verify. Refuses mounted, system, too-small disks.
    Flash(flash::FlashArgs),
    /// Board images: `lab image prepare --board pi-3 --base raspios.img.xz -o pi-3.img` writes
    /// the board's hostname, login, the cluster's SSH key and its own pinned host key into a
    /// copy (cloud-init or Raspberry Pi OS images).
    Image(image::ImageArgs),
    /// Forget a board's pinned SSH host key (after re-flashing it); the next bootstrap pins
    /// the new one.
    ForgetHostKey(forget::ForgetArgs),
    /// PID 1 of a virtual board (internal; started by the virtual cluster).
    #[command(hide = true, name = "board-init")]
    BoardInit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A shaped link's frame mover (internal; started by `lab link` and data centers).
    #[command(hide = true, name = "link-shaper")]
    LinkShaper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::BoardInit { args } = cli.command {
        return crate::virt::board_init_main(args);
    }
    if let Command::LinkShaper { args } = cli.command {
        return crate::virt::link::link_shaper_main(args);
    }
    init_logging();
    crate::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(a) => up::run(a).await,
            Command::Bootstrap(a) => bootstrap::run(a).await,
            Command::Plan(a) => plan::run_plan(a).await,
            Command::Apply(a) => plan::run_apply(a).await,
            Command::Status(a) => status::run(a).await,
            Command::Down(a) => down::run(a).await,
            Command::Kill(a) => board::run(board::Verb::Kill, a).await,
            Command::Restart(a) => board::run(board::Verb::Restart, a).await,
            Command::Partition(a) => {
                let verb = board::Verb::Partition {
                    from_control_plane: a.from_control_plane,
                };
                board::run_network(verb, a.target).await
            }
            Command::Heal(a) => board::run_network(board::Verb::Heal, a).await,
            Command::Link(a) => link::run(a).await,
            Command::Exercise(a) => exercise::run(a).await,
            Command::Report(a) => report::run(a).await,
            Command::Serve(a) => serve::run(a).await,
            Command::Load(a) => load::run(a).await,
            Command::Events(a) => events::run(a).await,
            Command::Metrics(a) => metrics::run(a).await,
            Command::Top(a) => top::run(a).await,
            Command::Reclone(a) => reclone::run(a).await,
            Command::Cdn(a) => cdn::run(a).await,
            Command::Flash(a) => flash::run(a).await,
            Command::Image(a) => image::run(a).await,
            Command::ForgetHostKey(a) => forget::run(a).await,
            Command::BoardInit { .. } | Command::LinkShaper { .. } => Ok(ExitCode::FAILURE),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A clap value parser for a number of seconds between 0.1 and 60 (`--timeout`,
/// `--interval`): NaN, infinities, negative and huge values are refused with the range.
pub fn seconds_0_1_to_60(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(secs.is_finite() && (0.1..=60.0).contains(&secs)) {
        return Err(format!("`{text}` is outside 0.1..=60 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The inventory named on the command line, or the checkout's default virtual one.
pub fn load_inventory(arg: &InventoryArg) -> anyhow::Result<Inventory> {
    let path = match &arg.inventory {
        Some(p) => p.clone(),
        None => default_inventory()
            .context("no inventory given and inventory/virtual.toml not found: pass -i FILE")?,
    };
    Ok(inventory::load(&path)?)
}

/// How the user should type `lab` to run this same binary: `lab` when that is what PATH
/// finds, else its path (relative to the current directory when shorter).
pub fn lab_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "lab".into();
    };
    let exe_real = exe.canonicalize().ok();
    let on_path = exe_real.is_some()
        && std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p).any(|d| d.join("lab").canonicalize().ok() == exe_real)
            })
            .unwrap_or(false);
    if on_path {
        return "lab".into();
    }
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            exe.strip_prefix(&cwd)
                .ok()
                .map(|p| format!("./{}", p.display()))
        })
        .unwrap_or_else(|| exe.display().to_string())
}

fn default_inventory() -> Option<PathBuf> {
    let here = PathBuf::from("inventory/virtual.toml");
    if here.exists() {
        return Some(here);
    }
    let built_in = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../inventory/virtual.toml"
    ));
    built_in.exists().then_some(built_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_outside_the_range_are_refused() {
        assert_eq!(seconds_0_1_to_60("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds_0_1_to_60("0.5"), Ok(Duration::from_millis(500)));
        for bad in [
            "nan", "NaN", "inf", "-1", "0", "0.05", "61", "1e300", "two", "",
        ] {
            assert!(seconds_0_1_to_60(bad).is_err(), "{bad} accepted");
        }
    }
}

//! The command line: what each subcommand does, in words meant for the person at a board's
//! shell, and the `--version` string that `lab` and CI parse (`lab-agent 0.1.0 (aarch64)`).

use std::path::PathBuf;
use std::sync::OnceLock;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use lab_api::board_paths;

/// lab-agent: the node agent of `lab`.
///
/// It serves an HTTPS API with mutual TLS that only the `lab` control plane can call (client
/// certificate signed by the cluster CA, with the clientAuth usage), reports the board's
/// health, and later supervises the role engines. `lab bootstrap` installs and starts it;
/// you should rarely need to run it by hand.
#[derive(Debug, Parser)]
#[command(name = "lab-agent", version, propagate_version = false)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mTLS API in the foreground (what systemd or the supervisor runs).
    ///
    /// Stops cleanly on SIGTERM or SIGINT. Logs go to journald under systemd, otherwise to
    /// stderr; set LAB_AGENT_LOG=debug for more detail.
    Serve(ServeArgs),
    /// Start the agent in the background on a board without systemd, and return.
    ///
    /// Launches `lab-agent supervise` detached from the terminal (its own session, stdin
    /// from /dev/null, output appended to <LOG_DIR>/agent.log). Does nothing if a supervisor
    /// is already running, unless --restart is given.
    Start(StartArgs),
    /// Run `lab-agent serve` and restart it whenever it exits (used by `start`).
    ///
    /// Records its pid in <STATE_DIR>/agent.pid, restarts the server after 1 s, 2 s, 4 s ...
    /// up to 10 s (back to 1 s after 30 s of good running), passes SIGTERM on to it and exits
    /// once it has stopped.
    Supervise(SuperviseArgs),
    /// Stop the agent started by `start`.
    ///
    /// Sends SIGTERM to the supervisor, waits up to 10 s, then SIGKILL. Succeeds (and says
    /// so) if nothing was running.
    Stop(StopArgs),
    /// Run the app server (the app role; the agent starts it, with its config file).
    ///
    /// Serves the app's HTTP API on the config's address. SIGHUP re-reads the config and
    /// switches to it without dropping requests; SIGTERM or SIGINT stop accepting, finish
    /// the requests in flight and exit.
    App(AppArgs),
    /// Run the file store (the files role; the agent starts it, with its config file).
    ///
    /// Serves the config's buckets on its address, objects kept under --data. SIGTERM or
    /// SIGINT stop accepting, finish the transfers in flight and exit.
    Files(FilesArgs),
    /// Run the CDN edge (the cdn role; the agent starts it, with its config file).
    ///
    /// Serves cached objects on the config's address, purges on 127.0.0.1. SIGTERM or
    /// SIGINT stop accepting, finish the answers in flight and exit.
    Cdn(CdnArgs),
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Agent configuration (TOML, written by `lab bootstrap`).
    #[arg(long, value_name = "FILE", default_value = board_paths::CONFIG)]
    pub config: PathBuf,
}

/// Options of `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Agent configuration (TOML, written by `lab bootstrap`); checked before launching.
    #[arg(long, value_name = "FILE", default_value = board_paths::CONFIG)]
    pub config: PathBuf,
    /// Directory of the supervisor's pid file (agent.pid).
    #[arg(long, value_name = "DIR", default_value = board_paths::STATE_DIR)]
    pub state_dir: PathBuf,
    /// Directory of the log file (agent.log), created if missing.
    #[arg(long, value_name = "DIR", default_value = board_paths::LOG_DIR)]
    pub log_dir: PathBuf,
    /// Stop a running supervisor first, then start a new one (e.g. after an upgrade).
    #[arg(long)]
    pub restart: bool,
}

/// Options of `supervise`.
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Agent configuration passed on to `serve`.
    #[arg(long, value_name = "FILE", default_value = board_paths::CONFIG)]
    pub config: PathBuf,
    /// Directory of the pid file (agent.pid).
    #[arg(long, value_name = "DIR", default_value = board_paths::STATE_DIR)]
    pub state_dir: PathBuf,
}

/// Options of `app`.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// The app's configuration (JSON, written by the agent).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Options of `cdn`.
#[derive(Debug, Args)]
pub struct CdnArgs {
    /// The edge's configuration (JSON, written by the agent).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Options of `files`.
#[derive(Debug, Args)]
pub struct FilesArgs {
    /// The store's configuration (JSON, written by the agent).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Where the buckets' objects live.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

/// Options of `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Directory of the supervisor's pid file (agent.pid).
    #[arg(long, value_name = "DIR", default_value = board_paths::STATE_DIR)]
    pub state_dir: PathBuf,
}

/// `<version> (<arch>)`: clap prints it after the binary name, giving
/// `lab-agent 0.1.0 (aarch64)`.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| format!("{} ({})", crate::VERSION, std::env::consts::ARCH))
}

/// Parses the process arguments; prints help, version or a usage error and exits if asked
/// to or if they are wrong.
pub fn parse() -> Cli {
    let matches = Cli::command().version(version()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_shape() {
        let rendered = Cli::command().version(version()).render_version();
        assert_eq!(
            rendered.trim_end(),
            format!(
                "lab-agent {} ({})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH
            )
        );
    }

    #[test]
    fn defaults_are_the_board_paths() {
        let cli = Cli::try_parse_from(["lab-agent", "start"]).expect("parse");
        let Command::Start(args) = cli.command else {
            panic!("expected start");
        };
        assert_eq!(args.config, PathBuf::from(board_paths::CONFIG));
        assert_eq!(args.state_dir, PathBuf::from(board_paths::STATE_DIR));
        assert_eq!(args.log_dir, PathBuf::from(board_paths::LOG_DIR));
        assert!(!args.restart);
    }
}

//! `lab-agent`: parse arguments, set up logging, run the subcommand, map to an exit code.
//! Everything else lives in the library (`src/lib.rs`).

use std::process::ExitCode;

use anyhow::Context;
use lab_agent::cli::{self, Command};
use lab_agent::cmd::{serve, start, stop, supervise};
use lab_agent::{logging, shutdown};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // A parent may hand us signals blocked (a board's init that waits for them with sigwait
    // starts us at boot): whatever we start inherits our mask, and NGINX or the app would
    // never see the HUP of a reload or the TERM of a stop.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    let cli = cli::parse();
    logging::init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lab-agent: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            serve_until_signalled(|token| async move { Ok(serve::run(&args.config, token).await?) })
        }
        Command::Supervise(args) => {
            // Current-thread on purpose: see `supervise::run`.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let token = CancellationToken::new();
                shutdown::cancel_on_signals(token.clone())
                    .context("cannot install signal handlers")?;
                let options = supervise::SuperviseOptions {
                    config: args.config,
                    state_dir: args.state_dir,
                };
                supervise::run(&options, token).await?;
                anyhow::Ok(())
            })
        }
        Command::App(args) => {
            serve_until_signalled(
                |token| async move { lab_agent::app::run(&args.config, token).await },
            )
        }
        Command::Cdn(args) => {
            serve_until_signalled(
                |token| async move { lab_agent::cdn::run(&args.config, token).await },
            )
        }
        Command::Files(args) => serve_until_signalled(|token| async move {
            lab_agent::files::run(&args.config, &args.data, token).await
        }),
        Command::Start(args) => {
            let outcome = start::run(&start::StartOptions {
                config: args.config,
                state_dir: args.state_dir,
                log_dir: args.log_dir,
                restart: args.restart,
            })?;
            println!("{outcome}");
            Ok(())
        }
        Command::Stop(args) => {
            let outcome = stop::run(&args.state_dir)?;
            println!("{outcome}");
            Ok(())
        }
    }
}

/// Runs one of the agent's own servers (the app, the file store, the CDN edge) on a
/// multi-thread runtime until SIGTERM or SIGINT cancels the token it is given.
fn serve_until_signalled<F, Fut>(serve: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let token = CancellationToken::new();
        shutdown::cancel_on_signals(token.clone()).context("cannot install signal handlers")?;
        serve(token).await
    })
}

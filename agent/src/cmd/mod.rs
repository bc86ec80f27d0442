//! One module per subcommand of [`crate::cli::Command`]; each exposes a `run` function that
//! `main` calls and returns what happened (for `main` to print) or a typed error.
//!
//! - [`serve`]: the API server in the foreground.
//! - [`start`]: launch a detached supervisor (boards without systemd).
//! - [`supervise`]: keep `serve` running, restarting it with backoff.
//! - [`stop`]: stop the detached supervisor.

pub mod serve;
pub mod start;
pub mod stop;
pub mod supervise;

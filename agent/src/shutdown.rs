//! Turning SIGTERM and SIGINT into a cancelled [`CancellationToken`].
//!
//! Long-running loops take the token as a parameter and select on it; nothing else in the
//! agent looks at signals.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT. Must be called inside a Tokio runtime;
/// fails only if the signal handlers cannot be installed.
pub fn cancel_on_signals(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = token.cancelled() => return,
        };
        log::info!("{name} received; shutting down");
        token.cancel();
    });
    Ok(())
}

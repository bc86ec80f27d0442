//! The terminal while `lab top` runs: raw mode, the alternate screen and a hidden cursor,
//! restored when the [`TerminalGuard`] drops (normal exit, `?` on an error) and from a panic
//! hook (a panic prints its message on a sane terminal, not inside the alternate screen).

use std::io::Stdout;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;

/// The terminal `lab top` draws on.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Owns the terminal setup; dropping it puts the terminal back.
pub struct TerminalGuard {
    pub terminal: Term,
}

/// Leave raw mode and the alternate screen and show the cursor. Safe to call more than once.
pub fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

impl TerminalGuard {
    /// Enter raw mode and the alternate screen; install a panic hook that restores the
    /// terminal before the default hook prints.
    pub fn new() -> std::io::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        let setup = execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        match setup {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

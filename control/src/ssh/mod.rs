//! SSH transport over `ssh2` (blocking; callers run it on `spawn_blocking` threads).
//!
//! - [`target`]: where and as whom to connect, from the inventory and `~/.ssh/config`.
//! - [`known_hosts`]: pin host keys on first contact, refuse changed ones.
//! - [`session`]: connect, authenticate (key file or ssh-agent), run commands, write files.
//! - [`command`]: remote commands as argument lists, quoted in one place.

pub mod command;
pub mod known_hosts;
pub mod session;
pub mod target;

use std::path::PathBuf;

pub use command::RemoteCommand;
pub use known_hosts::{HostKeyStore, HostKeyVerdict, PinOutcome};
pub use session::{CommandOutput, Connection};
pub use target::SshTarget;

/// Everything that can go wrong talking SSH to one board. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{board}: cannot reach {addr}")]
    Connect {
        board: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{board}: SSH handshake with {addr} failed")]
    Handshake {
        board: String,
        addr: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("{board}: the server sent no usable host key")]
    NoHostKey { board: String },
    #[error("{0}")]
    HostKeyChanged(Box<HostKeyChange>),
    #[error("known_hosts file {path}")]
    KnownHostsFile {
        path: PathBuf,
        #[source]
        source: ssh2::Error,
    },
    #[error("known_hosts file {path}")]
    KnownHostsIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{board}: authentication as `{user}` at {addr} failed; tried: {tried}")]
    Auth {
        board: String,
        user: String,
        addr: String,
        tried: String,
    },
    #[error("{board}: {unsupported} in ~/.ssh/config is not supported yet; connect directly or use a VPN")]
    Unsupported { board: String, unsupported: String },
    #[error("{board}: SSH channel error while running `{command}`")]
    Channel {
        board: String,
        command: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("{board}: I/O error while running `{command}`")]
    Io {
        board: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{board}: `{command}` exited with status {status}{}",
        tail_block(output_tail)
    )]
    CommandFailed {
        board: String,
        command: String,
        status: i32,
        output_tail: String,
    },
    #[error(
        "{board}: `{user}` cannot use sudo without a password. On the board, run \
         `echo '{user} ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/lab`, or log in as root"
    )]
    NoSudo { board: String, user: String },
}

/// A board presented a host key other than the pinned one (boxed in [`SshError`] to keep the
/// error small).
#[derive(Debug)]
pub struct HostKeyChange {
    pub board: String,
    pub addr: String,
    pub pinned: String,
    pub presented: String,
    /// The file holding the pin that did not match.
    pub file: PathBuf,
    /// The command that forgets the pin.
    pub forget: String,
}

impl std::fmt::Display for HostKeyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{board}: HOST KEY CHANGED for {addr}: pinned {pinned}, presented {presented} (pins in {file}). \
             If the board was re-flashed, forget the old key with `{forget} {board}` and run again; \
             otherwise someone may be impersonating it",
            board = self.board,
            addr = self.addr,
            pinned = self.pinned,
            presented = self.presented,
            file = self.file.display(),
            forget = self.forget,
        )
    }
}

fn tail_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        let indented: Vec<String> = tail.lines().map(|l| format!("    | {l}")).collect();
        format!("; last output:\n{}", indented.join("\n"))
    }
}

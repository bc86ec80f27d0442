//! [`VirtError`]: everything that can go wrong while creating, driving or destroying virtual
//! boards. Each variant names the cluster (and board, where there is one) it concerns; a failed
//! command carries what ran, its exit status and the tail of its stderr.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What an error is about: a whole cluster, or one board of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Cluster name.
    pub cluster: String,
    /// Board name, when the error concerns a single board.
    pub board: Option<String>,
}

impl Target {
    /// The cluster as a whole.
    pub fn cluster(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            board: None,
        }
    }

    /// One board of the cluster.
    pub fn board(cluster: &str, board: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            board: Some(board.to_owned()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.board {
            Some(board) => write!(f, "board `{board}` of virtual cluster `{}`", self.cluster),
            None => write!(f, "virtual cluster `{}`", self.cluster),
        }
    }
}

/// The end of a board's boot log, shown with boot failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLog {
    /// The log file.
    pub path: PathBuf,
    /// Its last lines.
    pub tail: String,
}

impl fmt::Display for BootLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tail of {}:\n{}", self.path.display(), self.tail)
    }
}

/// Errors of the virtual cluster.
#[derive(Debug, thiserror::Error)]
pub enum VirtError {
    /// The spec is unusable (bad name, address outside the subnet, ...). Nothing was touched.
    #[error("{target}: invalid spec: {reason}")]
    InvalidSpec { target: Target, reason: String },

    /// An operation named a board that the spec does not contain.
    #[error("{target}: no such board in the cluster spec")]
    UnknownBoard { target: Target },

    /// Another interface already routes (part of) the cluster's subnet.
    #[error(
        "{target}: subnet {subnet} is already routed on this host (`{route}`); \
         pick another subnet for the cluster or remove that route"
    )]
    SubnetInUse {
        target: Target,
        subnet: String,
        route: String,
    },

    /// A command could not be started at all.
    #[error("{target}: could not run `{command}`")]
    Spawn {
        target: Target,
        command: String,
        #[source]
        source: io::Error,
    },

    /// A command ran and failed.
    #[error("{target}: `{command}` failed ({status}): {stderr_tail}")]
    CommandFailed {
        target: Target,
        command: String,
        status: String,
        stderr_tail: String,
    },

    /// A command succeeded but printed something we could not parse.
    #[error("{target}: could not parse the output of `{command}`")]
    UnexpectedOutput {
        target: Target,
        command: String,
        #[source]
        source: serde_json::Error,
    },

    /// A file system operation on the host failed.
    #[error("{target}: could not {action} {}", path.display())]
    Io {
        target: Target,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A signal could not be delivered.
    #[error("{target}: could not send {signal} to pid {pid}")]
    Signal {
        target: Target,
        pid: u32,
        signal: &'static str,
        #[source]
        source: nix::errno::Errno,
    },

    /// The board's init exited before its sshd accepted connections.
    #[error("{target}: the board's init exited during boot; {log}")]
    BootFailed { target: Target, log: Box<BootLog> },

    /// A condition polled with a deadline never became true.
    #[error("{target}: {what} within {seconds} s; {log}")]
    Timeout {
        target: Target,
        what: String,
        seconds: u64,
        log: Box<BootLog>,
    },

    /// The board's network does not exist (yet): the cluster was never brought up.
    #[error("{target}: the board has no network interface {device}; run `up` first")]
    NotCreated { target: Target, device: String },

    /// No mounted cgroup hierarchy offers a controller the boards' size limits need.
    #[error(
        "{target}: no cgroup hierarchy on this host offers the `{controller}` controller \
         (cgroup v1: /sys/fs/cgroup/{controller}; v2: `{controller}` in \
         /sys/fs/cgroup/cgroup.controllers); virtual boards need it for their size limits"
    )]
    NoCgroup {
        target: Target,
        controller: &'static str,
    },

    /// `purge` found a mount below the directory it was about to delete.
    #[error("{target}: refusing to delete {}: {mount} is still mounted below it", path.display())]
    StillMounted {
        target: Target,
        path: PathBuf,
        mount: String,
    },
}

impl VirtError {
    /// For `map_err`: an I/O error of `action` on `path`, on behalf of `target`.
    pub fn io(
        target: &Target,
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> VirtError {
        let (target, path) = (target.clone(), path.to_path_buf());
        move |source| VirtError::Io {
            target,
            action,
            path,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_board_and_cluster() {
        assert_eq!(
            Target::board("c1", "b2").to_string(),
            "board `b2` of virtual cluster `c1`"
        );
        assert_eq!(Target::cluster("c1").to_string(), "virtual cluster `c1`");
    }

    #[test]
    fn command_failure_message_shows_what_ran() {
        let err = VirtError::CommandFailed {
            target: Target::cluster("c"),
            command: "ip link add lb1 type bridge".into(),
            status: "exit status: 2".into(),
            stderr_tail: "RTNETLINK answers: File exists".into(),
        };
        assert_eq!(
            err.to_string(),
            "virtual cluster `c`: `ip link add lb1 type bridge` failed (exit status: 2): \
             RTNETLINK answers: File exists"
        );
    }
}

//! One job per board, run for many boards at once: the shape bootstrap, `lab down` and the
//! coming `lab apply` share.
//!
//! A job reports typed [`Step`]s while it runs and ends with a value or a [`JobFailure`] whose
//! [`FailureCause`] says what kind of thing went wrong. [`Step::describe`] is the one place
//! that turns a step into words; [`Progress`] decides how they are shown (live lines on a
//! terminal, plain lines elsewhere), and [`summary`] prints the closing "N/M boards ok"
//! with each failure. Parallelism is a semaphore taken inside each board's task, and one
//! failing (or panicking) board never stops the others.

pub mod progress;

use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::ssh::SshError;
use progress::Progress;

/// What a board's job is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Connecting {
        user: String,
        host: String,
        port: u16,
    },
    CheckingSudo,
    Probing,
    LocatingAgent {
        machine: String,
        os: String,
        triple: &'static str,
    },
    UploadingAgent {
        bytes: usize,
        triple: &'static str,
    },
    InstallingFiles {
        count: usize,
    },
    StartingAgent {
        restart: bool,
    },
    WaitingHealthy,
    StoppingAgent,
    /// Installing the engine packages the board's roles need.
    InstallingPackages {
        packages: String,
    },
}

impl Step {
    /// The words a user reads for this step.
    pub fn describe(&self) -> String {
        match self {
            Step::Connecting { user, host, port } => format!("connecting to {user}@{host}:{port}"),
            Step::CheckingSudo => "checking sudo".into(),
            Step::Probing => "probing".into(),
            Step::LocatingAgent {
                machine,
                os,
                triple,
            } => format!("{machine} ({os}) — locating agent for {triple}"),
            Step::UploadingAgent { bytes, triple } => {
                format!("uploading agent ({:.1} MB, {triple})", *bytes as f64 / 1e6)
            }
            Step::InstallingFiles { count } => format!("installing {count} config/cert file(s)"),
            Step::StartingAgent { restart: true } => "(re)starting agent".into(),
            Step::StartingAgent { restart: false } => "ensuring agent runs".into(),
            Step::WaitingHealthy => "waiting for the agent's mTLS health answer".into(),
            Step::StoppingAgent => "stopping agent".into(),
            Step::InstallingPackages { packages } => format!("installing {packages}"),
        }
    }
}

/// What kind of thing stopped a board's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// No TCP connection, or the SSH transport broke.
    Unreachable,
    /// The board's host key differs from the pinned one (or none was usable).
    HostKey,
    /// No key was accepted.
    Auth,
    /// The login user has no passwordless sudo.
    Sudo,
    /// The board's `uname -m` has no agent build.
    Architecture,
    /// A command on the board failed.
    Command,
    /// The agent never answered its health check as this board.
    Unhealthy,
    /// Something on this machine (config, build, a task).
    Local,
}

impl FailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Unreachable => "unreachable",
            FailureCause::HostKey => "host key",
            FailureCause::Auth => "authentication",
            FailureCause::Sudo => "sudo",
            FailureCause::Architecture => "architecture",
            FailureCause::Command => "command failed",
            FailureCause::Unhealthy => "agent unhealthy",
            FailureCause::Local => "local",
        }
    }
}

/// Why a board's job stopped. `transient` marks failures of the SSH channel itself (not of a
/// command), which a fresh attempt usually gets past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub cause: FailureCause,
    pub message: String,
    pub transient: bool,
}

impl JobFailure {
    pub fn new(cause: FailureCause, message: impl Into<String>) -> Self {
        JobFailure {
            cause,
            message: message.into(),
            transient: false,
        }
    }
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<SshError> for JobFailure {
    fn from(e: SshError) -> Self {
        let cause = match &e {
            SshError::Connect { .. } | SshError::Handshake { .. } => FailureCause::Unreachable,
            SshError::Io { .. } | SshError::Channel { .. } => FailureCause::Unreachable,
            SshError::NoHostKey { .. } | SshError::HostKeyChanged(_) => FailureCause::HostKey,
            SshError::Auth { .. } => FailureCause::Auth,
            SshError::NoSudo { .. } => FailureCause::Sudo,
            SshError::CommandFailed { .. } => FailureCause::Command,
            _ => FailureCause::Local,
        };
        let transient = matches!(
            e,
            SshError::Io { .. } | SshError::Channel { .. } | SshError::Handshake { .. }
        );
        JobFailure {
            cause,
            message: crate::report::error_chain(&e),
            transient,
        }
    }
}

/// The end of one board's job.
#[derive(Debug)]
pub struct JobReport<T> {
    pub board: String,
    pub result: Result<T, JobFailure>,
}

/// A board's view of the run: report steps and notes.
#[derive(Clone)]
pub struct JobHandle {
    board: String,
    progress: Arc<Progress>,
}

impl JobHandle {
    pub fn step(&self, step: Step) {
        self.progress.set(&self.board, step.describe());
    }

    /// A line that stays (first contact, a re-issued certificate, a retry).
    pub fn note(&self, line: &str) {
        self.progress.note(&format!("{}: {line}", self.board));
    }
}

/// Run `job` for every board in `boards`, at most `parallel` at once. `done` turns a success
/// into the board's last line. Reports come back in `boards` order.
pub async fn for_each_board<B, T, F, Fut>(
    boards: Vec<(String, B)>,
    parallel: usize,
    progress: Arc<Progress>,
    done: fn(&T) -> String,
    job: F,
) -> Vec<JobReport<T>>
where
    B: Send + 'static,
    T: Send + 'static,
    F: Fn(B, JobHandle) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, JobFailure>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(parallel.max(1)));
    let job = Arc::new(job);
    let mut tasks = Vec::new();
    for (name, input) in boards {
        let (limit, job, progress) = (limit.clone(), job.clone(), progress.clone());
        let handle = JobHandle {
            board: name.clone(),
            progress: progress.clone(),
        };
        let board = name.clone();
        let task = tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = job(input, handle).await;
            match &result {
                Ok(value) => progress.set(&board, done(value)),
                Err(e) => progress.set(
                    &board,
                    format!("FAILED: {}", e.message.lines().next().unwrap_or_default()),
                ),
            }
            result
        });
        tasks.push((name, task));
    }
    let mut reports = Vec::new();
    for (board, task) in tasks {
        let result = task.await.unwrap_or_else(|e| {
            Err(JobFailure::new(
                FailureCause::Local,
                format!("the job for {board} panicked: {e}"),
            ))
        });
        reports.push(JobReport { board, result });
    }
    reports
}

/// Print the closing "N/M boards ok; failed: ..." lines; the exit code says whether all
/// succeeded.
pub fn summary<T>(reports: &[JobReport<T>]) -> ExitCode {
    let ok = reports.iter().filter(|r| r.result.is_ok()).count();
    println!();
    if ok == reports.len() {
        println!("{ok}/{} boards ok", reports.len());
        return ExitCode::SUCCESS;
    }
    println!("{ok}/{} boards ok; failed:", reports.len());
    for r in reports {
        if let Err(e) = &r.result {
            println!("  {} ({}): {e}", r.board, e.cause.as_str());
        }
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_words() {
        let step = Step::Connecting {
            user: "pi".into(),
            host: "10.0.0.3".into(),
            port: 2222,
        };
        assert_eq!(step.describe(), "connecting to pi@10.0.0.3:2222");
        let step = Step::UploadingAgent {
            bytes: 2_474_888,
            triple: "x86_64-unknown-linux-musl",
        };
        assert_eq!(
            step.describe(),
            "uploading agent (2.5 MB, x86_64-unknown-linux-musl)"
        );
    }

    #[test]
    fn ssh_errors_map_to_causes() {
        let e = SshError::NoSudo {
            board: "pi-3".into(),
            user: "pi".into(),
        };
        let f = JobFailure::from(e);
        assert_eq!(f.cause, FailureCause::Sudo);
        assert!(!f.transient);
        assert!(f.message.contains("pi-3"), "{}", f.message);
    }

    #[tokio::test]
    async fn a_failing_or_panicking_board_never_stops_the_others() {
        let progress = Arc::new(Progress::new(["a", "b", "c"]));
        let boards = vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)];
        let reports = for_each_board(
            boards,
            2,
            progress,
            |v: &i32| format!("ok {v}"),
            |n, _h| async move {
                match n {
                    2 => Err(JobFailure::new(FailureCause::Command, "exit 1")),
                    3 => panic!("boom"),
                    _ => Ok(n * 10),
                }
            },
        )
        .await;
        let names: Vec<&str> = reports.iter().map(|r| r.board.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(reports[0].result, Ok(10));
        assert_eq!(
            reports[1].result.as_ref().map_err(|e| e.cause),
            Err(FailureCause::Command)
        );
        assert_eq!(
            reports[2].result.as_ref().map_err(|e| e.cause),
            Err(FailureCause::Local)
        );
    }
}

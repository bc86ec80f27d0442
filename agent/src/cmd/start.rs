//! `lab-agent start`: launch a detached `lab-agent supervise` and return once it runs.
//!
//! For boards where systemd does not run (an init that is a shell, a minimal container).
//! Idempotent: a live supervisor (per the pid file, checked against `/proc`) is left alone
//! unless a restart is asked for. The supervisor starts in `/`, with stdin from `/dev/null`
//! and stdout and stderr appended to the log file; it calls `setsid` itself, so it leaves the
//! caller's session (an SSH session ending does not take it down) without any `pre_exec`
//! code here.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::stop::{self, StopError};
use crate::config::{self, ConfigError};
use crate::pidfile::{self, PidFile, PidFileError};

/// How long the new supervisor has to record its pid.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What `start` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// Configuration passed on to the supervisor (checked before launching).
    pub config: PathBuf,
    /// Directory of the pid file.
    pub state_dir: PathBuf,
    /// Directory of `agent.log`.
    pub log_dir: PathBuf,
    /// Stop a running supervisor first.
    pub restart: bool,
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// A supervisor was launched (after stopping `replaced`, if any).
    Started {
        pid: u32,
        log: PathBuf,
        replaced: Option<i32>,
    },
    /// A supervisor was already running; nothing was done.
    AlreadyRunning { pid: i32 },
}

impl fmt::Display for StartOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartOutcome::Started {
                pid,
                log,
                replaced: None,
            } => write!(
                f,
                "lab-agent started (supervisor pid {pid}, log {})",
                log.display()
            ),
            StartOutcome::Started {
                pid,
                log,
                replaced: Some(old),
            } => write!(
                f,
                "lab-agent restarted (supervisor pid {old} stopped, new pid {pid}, log {})",
                log.display()
            ),
            StartOutcome::AlreadyRunning { pid } => write!(
                f,
                "lab-agent already running (supervisor pid {pid}); use --restart to replace it"
            ),
        }
    }
}

/// Why `start` failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("not launching the agent with a broken configuration")]
    Config(#[from] ConfigError),
    #[error("cannot stop the running supervisor")]
    Stop(#[from] StopError),
    #[error("cannot resolve path {path}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open log file {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find this program's own path")]
    Exe(#[source] std::io::Error),
    #[error("cannot launch {exe} supervise")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the supervisor exited right after launch ({status}); see {log}")]
    ExitedEarly { status: ExitStatus, log: PathBuf },
    #[error("the supervisor (pid {pid}) did not record its pid in {pid_file} within {}s; see {log}", LAUNCH_TIMEOUT.as_secs())]
    NotReady {
        pid: u32,
        pid_file: PathBuf,
        log: PathBuf,
    },
}

/// Starts a detached supervisor unless one runs already.
pub fn run(options: &StartOptions) -> Result<StartOutcome, StartError> {
    let pid_file = PidFile::in_dir(&options.state_dir);
    let replaced = match pid_file.running_supervisor()? {
        Some(pid) if !options.restart => return Ok(StartOutcome::AlreadyRunning { pid }),
        Some(pid) => {
            stop::stop_supervisor(pid, &pid_file, stop::GRACE)?;
            Some(pid)
        }
        None => None,
    };

    // The supervisor runs in `/` (so it pins no mount), hence absolute paths.
    let config_path = absolute(&options.config)?;
    let state_dir = absolute(&options.state_dir)?;
    config::load(&config_path)?;

    let log = absolute(&options.log_dir)?.join(lab_api::board_paths::AGENT_LOG_NAME);
    let log_error = |source| StartError::Log {
        path: log.clone(),
        source,
    };
    std::fs::create_dir_all(&options.log_dir).map_err(log_error)?;
    let stdout = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(log_error)?;
    let stderr = stdout.try_clone().map_err(log_error)?;

    let exe = std::env::current_exe().map_err(StartError::Exe)?;
    let mut child = Command::new(&exe)
        .arg("supervise")
        .arg("--config")
        .arg(&config_path)
        .arg("--state-dir")
        .arg(&state_dir)
        .current_dir("/")
        .env_remove("JOURNAL_STREAM")
        .env_remove(crate::SUPERVISOR_PID_ENV)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|source| StartError::Spawn {
            exe: exe.clone(),
            source,
        })?;
    let pid = child.id();

    // Launched means: it recorded its pid and is still alive.
    let deadline = Instant::now() + LAUNCH_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Another `start` may have won the race to launch a supervisor.
            if let Some(pid) = pid_file.running_supervisor()? {
                return Ok(StartOutcome::AlreadyRunning { pid });
            }
            return Err(StartError::ExitedEarly { status, log });
        }
        if pid_file.read()? == Some(pid as i32) && pidfile::is_alive(pid as i32) {
            return Ok(StartOutcome::Started { pid, log, replaced });
        }
        if Instant::now() >= deadline {
            return Err(StartError::NotReady {
                pid,
                pid_file: pid_file.path().to_path_buf(),
                log,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn absolute(path: &Path) -> Result<PathBuf, StartError> {
    std::path::absolute(path).map_err(|source| StartError::Path {
        path: path.to_path_buf(),
        source,
    })
}

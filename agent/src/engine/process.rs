//! One engine as a child process of the agent: started as the leader of its own process group,
//! stopped whole (see the module map in [`crate::engine`] for the stop sequence).
//!
//! [`EngineProcess`] owns the master's [`tokio::process::Child`]; its pid is the group id. The
//! master is reaped only once its group is empty, so its pid (the group id) cannot be handed to
//! an unrelated process while the agent may still signal the group. Dropping an
//! [`EngineProcess`] that was not stopped SIGKILLs its whole group and waits for it to vanish:
//! a panicking caller (a test, a failed supervisor task) leaves nothing running.
//!
//! Whoever supervises engines should call [`group::become_subreaper`] once at startup: an
//! engine's processes orphaned by a dead master are then re-parented to it, and every stop
//! reaps them, so not even a zombie of an engine is left.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::group;

/// How long to wait, after SIGKILLing a group, for its processes to vanish before reporting
/// them as survivors (a process stuck in uninterruptible sleep, e.g. on a dead NFS mount).
pub const KILL_CONFIRM: Duration = Duration::from_secs(5);

/// How an engine is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Finish what is in flight (NGINX: serve open requests, then exit).
    Graceful,
    /// Exit now (NGINX: drop connections).
    Fast,
}

/// The signals that ask an engine's master to stop. What differs between engines, so the
/// caller's engine enum maps onto this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignals {
    /// Sent for [`StopMode::Graceful`].
    pub graceful: Signal,
    /// Sent for [`StopMode::Fast`].
    pub fast: Signal,
}

impl StopSignals {
    /// NGINX: QUIT lets workers finish open requests, TERM (or INT) stops at once.
    pub const NGINX: StopSignals = StopSignals {
        graceful: Signal::SIGQUIT,
        fast: Signal::SIGTERM,
    };
    /// memcached exits on TERM (it keeps nothing worth flushing).
    pub const MEMCACHED: StopSignals = StopSignals::TERM;
    /// mariadbd shuts down cleanly on TERM (flushes InnoDB, closes binlogs).
    pub const MARIADB: StopSignals = StopSignals::TERM;
    /// TERM for both: our own servers, and anything without a gentler stop.
    pub const TERM: StopSignals = StopSignals {
        graceful: Signal::SIGTERM,
        fast: Signal::SIGTERM,
    };

    /// The signal for `mode`.
    pub fn for_mode(&self, mode: StopMode) -> Signal {
        match mode {
            StopMode::Graceful => self.graceful,
            StopMode::Fast => self.fast,
        }
    }
}

/// What to run as an engine, and how to stop it. Kept by [`EngineProcess`] so a restart runs
/// the same thing again.
#[derive(Debug, Clone)]
pub struct EngineCommand {
    /// Name used in reports and errors (`nginx`, `memcached`, ...).
    pub name: String,
    /// The engine's binary, e.g. `/usr/sbin/nginx`. Run in the foreground: an engine that
    /// daemonizes leaves the group it was started in only if it calls `setsid`, and then the
    /// agent loses it (NGINX: `-g 'daemon off;'`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// How to ask it to stop.
    pub signals: StopSignals,
    /// File receiving its stdout and stderr (appended, created if missing); none: discarded.
    pub log: Option<PathBuf>,
    /// Its working directory; `/` unless set, so an engine never pins a directory (a temp dir,
    /// a board's mount) that something else wants to remove. Give it absolute paths.
    pub current_dir: PathBuf,
}

impl EngineCommand {
    /// `program` without arguments, named `name`, stopped with `signals`.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<PathBuf>,
        signals: StopSignals,
    ) -> EngineCommand {
        EngineCommand {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            signals,
            log: None,
            current_dir: PathBuf::from("/"),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> EngineCommand {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> EngineCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sends stdout and stderr to `path` (appended).
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> EngineCommand {
        self.log = Some(path.into());
        self
    }

    /// Runs the engine in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> EngineCommand {
        self.current_dir = dir.into();
        self
    }
}

/// Why starting, signalling or stopping an engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start {name} ({program})")]
    Spawn {
        name: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open {path} for the output of {name}")]
    Log {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send {signal} to {name} (pid {pid})")]
    Signal {
        name: String,
        pid: i32,
        signal: Signal,
        #[source]
        source: Errno,
    },
    #[error("cannot list the processes of {name} (process group {pgid}) in /proc")]
    Scan {
        name: String,
        pgid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot learn how {name} (pid {pid}) exited")]
    Wait {
        name: String,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{name}: processes {pids:?} of its group {pgid} still run {} s after SIGKILL",
        KILL_CONFIRM.as_secs()
    )]
    Survivors {
        name: String,
        pgid: i32,
        pids: Vec<i32>,
    },
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Nothing of the engine was running any more.
    NotRunning,
    /// Every process exited on the stop signal before the deadline.
    Exited,
    /// Still running at the deadline: the whole group was SIGKILLed; `processes` were left.
    Killed { processes: usize },
}

/// What one stop did, in words a log line can carry (`Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    /// The engine's name.
    pub name: String,
    /// Its master's pid, which is also its process group id.
    pub pid: i32,
    /// The stop signal sent, if anything was running.
    pub signal: Option<Signal>,
    /// Whether the master was still running when the stop began. When it was not (killed
    /// from outside, crashed), the stop signal went to what was left of its group.
    pub master_was_running: bool,
    /// Processes of the group running when the stop began, the master included.
    pub processes_at_start: usize,
    /// Processes left in the group without their master (it had exited, or exited on the
    /// stop signal without taking them along) that were sent the stop signal themselves.
    pub orphans_signalled: usize,
    /// How it ended.
    pub outcome: StopOutcome,
    /// The deadline the engine had before SIGKILL.
    pub deadline: Duration,
    /// From the start of the stop until no process of the group was left.
    pub elapsed: Duration,
    /// How the master exited, once reaped.
    pub master_exit: Option<ExitStatus>,
}

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.elapsed.as_millis();
        write!(f, "{} (pid {}): ", self.name, self.pid)?;
        let signal = self.signal.map_or("no signal", Signal::as_str);
        if !self.master_was_running && self.outcome != StopOutcome::NotRunning {
            let exit = self
                .master_exit
                .map_or_else(|| "gone".to_string(), |e| e.to_string());
            write!(
                f,
                "master already exited ({exit}); {} leftover process(es) of its group: ",
                self.processes_at_start
            )?;
        }
        match self.outcome {
            StopOutcome::NotRunning => write!(f, "was not running")?,
            StopOutcome::Exited => write!(f, "stopped by {signal} in {ms} ms")?,
            StopOutcome::Killed { processes } => write!(
                f,
                "still running {} ms after {signal}; SIGKILLed its process group \
                 ({processes} process(es)), gone after {ms} ms",
                self.deadline.as_millis()
            )?,
        }
        if self.master_was_running && self.orphans_signalled > 0 {
            write!(
                f,
                " ({} process(es) the master left behind got {signal} too)",
                self.orphans_signalled
            )?;
        }
        Ok(())
    }
}

/// A running engine: the leader of its own process group.
#[derive(Debug)]
pub struct EngineProcess {
    command: EngineCommand,
    child: Child,
    pid: i32,
    /// Set once the master has been reaped.
    master_exit: Option<ExitStatus>,
    /// Set once a stop has confirmed that no process of the group is left.
    stopped: bool,
}

impl EngineProcess {
    /// Starts `command` as the leader of a new process group, stdin from /dev/null.
    pub fn start(command: EngineCommand) -> Result<EngineProcess, EngineError> {
        let output = |command: &EngineCommand| -> Result<(Stdio, Stdio), EngineError> {
            let Some(path) = &command.log else {
                return Ok((Stdio::null(), Stdio::null()));
            };
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
            };
            let error = |source| EngineError::Log {
                name: command.name.clone(),
                path: path.clone(),
                source,
            };
            let stdout = open().map_err(error)?;
            let stderr = stdout.try_clone().map_err(error)?;
            Ok((stdout.into(), stderr.into()))
        };
        let (stdout, stderr) = output(&command)?;
        let child = Command::new(&command.program)
            .args(&command.args)
            .current_dir(&command.current_dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| EngineError::Spawn {
                name: command.name.clone(),
                program: command.program.clone(),
                source,
            })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| EngineError::Spawn {
                name: command.name.clone(),
                program: command.program.clone(),
                source: std::io::Error::other("started, but tokio reports no pid"),
            })?;
        Ok(EngineProcess {
            command,
            child,
            pid,
            master_exit: None,
            stopped: false,
        })
    }

    /// The engine's name.
    pub fn name(&self) -> &str {
        &self.command.name
    }

    /// The master's pid, which is also the group id of every process the engine made.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The live processes of the engine's group (master and workers), read from `/proc`.
    pub fn processes(&self) -> Result<Vec<i32>, EngineError> {
        group::members(self.pid).map_err(|source| self.scan_error(source))
    }

    /// Sends `signal` to the master (e.g. NGINX HUP: reload the configuration). Nothing is
    /// sent once the master has been reaped.
    pub fn signal(&self, signal: Signal) -> Result<(), EngineError> {
        if self.master_exit.is_some() {
            return Ok(());
        }
        // Not yet reaped, so the pid is still ours even if the master has exited.
        match kill(Pid::from_raw(self.pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(source) => Err(self.signal_error(signal, source)),
        }
    }

    /// How the master exited, if it has; never blocks. When it has, its workers may still
    /// be running (NGINX's outlive a killed master): [`stop`](Self::stop) before anything else.
    pub fn try_exited(&mut self) -> Result<Option<ExitStatus>, EngineError> {
        if self.master_exit.is_none() {
            self.master_exit = self
                .child
                .try_wait()
                .map_err(|source| self.wait_error(source))?;
        }
        Ok(self.master_exit)
    }

    /// Waits for the master to exit (a supervisor's crash detection). As with
    /// [`try_exited`](Self::try_exited), the rest of the group may still run.
    pub async fn exited(&mut self) -> Result<ExitStatus, EngineError> {
        if let Some(status) = self.master_exit {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| self.wait_error(source))?;
        self.master_exit = Some(status);
        Ok(status)
    }

    /// Stops the engine whole: the stop signal for `mode` to the master (to the group if the
    /// master is gone), up to `deadline` for every process of the group to exit, then SIGKILL
    /// to the group and a check that nothing of it is left. Calling it again reports
    /// [`StopOutcome::NotRunning`].
    pub async fn stop(
        &mut self,
        mode: StopMode,
        deadline: Duration,
    ) -> Result<StopReport, EngineError> {
        let begun = Instant::now();
        let live = self.processes()?;
        let master_was_running = live.contains(&self.pid);
        let mut report = StopReport {
            name: self.command.name.clone(),
            pid: self.pid,
            signal: None,
            master_was_running,
            processes_at_start: live.len(),
            orphans_signalled: 0,
            outcome: StopOutcome::NotRunning,
            deadline,
            elapsed: Duration::ZERO,
            master_exit: None,
        };
        if !live.is_empty() {
            let signal = self.command.signals.for_mode(mode);
            let until = begun + deadline;
            report.signal = Some(signal);
            if master_was_running {
                self.signal(signal)?;
                group::wait_exit(self.pid, until).await;
            }
            // The master is gone (it was already, or it exited leaving processes behind):
            // nobody else will tell what is left of its group to stop.
            let left = self.processes()?;
            if !left.is_empty() && !left.contains(&self.pid) && Instant::now() < until {
                group::signal(self.pid, signal)
                    .map_err(|source| self.signal_error(signal, source))?;
                report.orphans_signalled = left.len();
            }
            let left = group::wait_gone(self.pid, until)
                .await
                .map_err(|source| self.scan_error(source))?;
            report.outcome = if left.is_empty() {
                StopOutcome::Exited
            } else {
                self.kill_group().await?;
                StopOutcome::Killed {
                    processes: left.len(),
                }
            };
        }
        self.reap().await?;
        group::reap_orphans(self.pid, self.pid).map_err(|source| self.scan_error(source))?;
        self.stopped = true;
        report.elapsed = begun.elapsed();
        report.master_exit = self.master_exit;
        Ok(report)
    }

    /// A whole [`stop`](Self::stop), then the same command started again: the old instance
    /// is gone (every process of its group) before the new one starts.
    pub async fn restart(
        &mut self,
        mode: StopMode,
        deadline: Duration,
    ) -> Result<StopReport, EngineError> {
        let report = self.stop(mode, deadline).await?;
        // The old value is stopped, so dropping it here does nothing more.
        *self = EngineProcess::start(self.command.clone())?;
        Ok(report)
    }

    /// SIGKILL to the whole group, then wait up to [`KILL_CONFIRM`] for it to be empty.
    async fn kill_group(&self) -> Result<(), EngineError> {
        group::signal(self.pid, Signal::SIGKILL)
            .map_err(|source| self.signal_error(Signal::SIGKILL, source))?;
        let survivors = group::wait_gone(self.pid, Instant::now() + KILL_CONFIRM)
            .await
            .map_err(|source| self.scan_error(source))?;
        if survivors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Survivors {
                name: self.command.name.clone(),
                pgid: self.pid,
                pids: survivors,
            })
        }
    }

    /// Collects the master's exit status; it has exited (the group is empty).
    async fn reap(&mut self) -> Result<(), EngineError> {
        if self.master_exit.is_some() {
            return Ok(());
        }
        match tokio::time::timeout(KILL_CONFIRM, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.master_exit = Some(status);
                Ok(())
            }
            Ok(Err(source)) => Err(self.wait_error(source)),
            Err(_elapsed) => Err(EngineError::Survivors {
                name: self.command.name.clone(),
                pgid: self.pid,
                pids: vec![self.pid],
            }),
        }
    }

    fn scan_error(&self, source: std::io::Error) -> EngineError {
        EngineError::Scan {
            name: self.command.name.clone(),
            pgid: self.pid,
            source,
        }
    }

    fn signal_error(&self, signal: Signal, source: Errno) -> EngineError {
        EngineError::Signal {
            name: self.command.name.clone(),
            pid: self.pid,
            signal,
            source,
        }
    }

    fn wait_error(&self, source: std::io::Error) -> EngineError {
        EngineError::Wait {
            name: self.command.name.clone(),
            pid: self.pid,
            source,
        }
    }
}

impl Drop for EngineProcess {
    /// Not stopped: SIGKILL the whole group and wait (blocking, bounded) until it is gone,
    /// then reap the master.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Err(err) = group::signal(self.pid, Signal::SIGKILL) {
            log::error!(
                "{}: cannot SIGKILL process group {}: {err}",
                self.name(),
                self.pid
            );
            return;
        }
        match group::wait_gone_blocking(self.pid, KILL_CONFIRM) {
            Ok(left) if left.is_empty() => {}
            Ok(left) => log::error!(
                "{}: processes {left:?} of group {} survived SIGKILL",
                self.name(),
                self.pid
            ),
            Err(err) => log::error!("{}: cannot scan /proc: {err}", self.name()),
        }
        // The master has exited (it was in the group): reap it now rather than leave a zombie,
        // then its orphans if they were re-parented to us.
        let _ = self.child.try_wait();
        let _ = group::reap_orphans(self.pid, self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> EngineCommand {
        EngineCommand::new("sh", "/bin/sh", StopSignals::TERM).args(["-c", script])
    }

    async fn wait_members(engine: &EngineProcess, count: usize) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let live = engine.processes().expect("scan");
            if live.len() == count || Instant::now() >= deadline {
                return live;
            }
            tokio::time::sleep(group::FALLBACK_POLL).await;
        }
    }

    #[tokio::test]
    async fn a_group_that_ignores_the_stop_signal_is_killed_whole_after_the_deadline() {
        // TERM is ignored by the shell and, inherited, by both sleeps.
        let mut engine =
            EngineProcess::start(sh("trap '' TERM; sleep 60 & sleep 60 & wait")).expect("start sh");
        let before = wait_members(&engine, 3).await;
        assert_eq!(before.len(), 3, "{before:?}");

        let deadline = Duration::from_millis(300);
        let report = engine
            .stop(StopMode::Graceful, deadline)
            .await
            .expect("stop");
        assert_eq!(
            report.outcome,
            StopOutcome::Killed { processes: 3 },
            "{report}"
        );
        assert!(report.elapsed >= deadline, "{report}");
        assert!(report.elapsed < deadline + KILL_CONFIRM, "{report}");
        assert_eq!(report.signal, Some(Signal::SIGTERM));
        assert!(engine.processes().expect("scan").is_empty());
        assert!(report
            .to_string()
            .contains("SIGKILLed its process group (3 process(es))"));

        let again = engine.stop(StopMode::Fast, deadline).await.expect("stop");
        assert_eq!(again.outcome, StopOutcome::NotRunning, "{again}");
    }

    #[tokio::test]
    async fn a_cooperative_group_stops_on_its_signal_well_before_the_deadline() {
        let mut engine = EngineProcess::start(sh("sleep 60 & wait")).expect("start sh");
        let before = wait_members(&engine, 2).await;
        assert_eq!(before.len(), 2, "{before:?}");
        // sh waiting in `wait` dies of TERM; its orphaned sleep keeps the group, and the stop
        // must not return before the sleep is gone too: so signal the group's leftovers.
        let report = engine
            .stop(StopMode::Fast, Duration::from_secs(10))
            .await
            .expect("stop");
        assert!(engine.processes().expect("scan").is_empty(), "{report}");
        assert_eq!(report.outcome, StopOutcome::Exited, "{report}");
        assert_eq!(report.orphans_signalled, 1, "{report}");
        assert!(report.elapsed < Duration::from_secs(5), "{report}");
    }

    #[tokio::test]
    async fn dropping_a_running_engine_kills_its_group() {
        let engine = EngineProcess::start(sh("sleep 60 & sleep 60 & wait")).expect("start sh");
        let pgid = engine.pid();
        assert_eq!(wait_members(&engine, 3).await.len(), 3);
        drop(engine);
        assert!(group::members(pgid).expect("scan").is_empty());
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error_naming_it() {
        let err = EngineProcess::start(EngineCommand::new(
            "ghost",
            "/nonexistent/engine",
            StopSignals::TERM,
        ))
        .expect_err("no such program");
        assert!(
            err.to_string().contains("ghost") && err.to_string().contains("/nonexistent/engine"),
            "{err}"
        );
    }
}

//! The detached supervisor's pid file, and the process it names.
//!
//! Where systemd does not run the board, `lab-agent start` launches `lab-agent supervise`,
//! which records its pid in `<state dir>/agent.pid`. A pid file can outlive its process and
//! pids get reused, so the file is trusted only if `/proc/<pid>/cmdline` really is
//! `lab-agent supervise`. Beside it, `agent.lock` is held (`flock`) by the running
//! supervisor for its whole life, so two supervisors started at once cannot both run.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::procfs;

/// Why the pid file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("cannot read pid file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write pid file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is locked by another supervisor")]
    Locked { path: PathBuf },
    #[error("cannot remove pid file {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A pid file at a fixed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// The pid file inside `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        PidFile {
            path: state_dir.join(lab_api::board_paths::PID_FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid recorded, `None` if there is no file or it does not hold a pid.
    pub fn read(&self) -> Result<Option<i32>, PidFileError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text.trim().parse().ok().filter(|pid: &i32| *pid > 0)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PidFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The recorded pid if it is a live `lab-agent supervise`.
    pub fn running_supervisor(&self) -> Result<Option<i32>, PidFileError> {
        Ok(self.read()?.filter(|pid| is_supervisor(*pid)))
    }

    /// Records `pid`, atomically (write a temporary file, then rename it over).
    pub fn write(&self, pid: u32) -> Result<(), PidFileError> {
        let error = |source| PidFileError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let tmp = self.path.with_extension(format!("pid.tmp.{pid}"));
        std::fs::write(&tmp, format!("{pid}\n")).map_err(error)?;
        std::fs::rename(&tmp, &self.path).map_err(error)
    }

    /// Takes the supervisor lock (`agent.lock` beside the pid file) without waiting; it is
    /// released when the returned guard is dropped or the process ends.
    pub fn lock(&self) -> Result<SupervisorLock, PidFileError> {
        let path = self.path.with_extension("lock");
        let error = |source| PidFileError::Lock {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(error)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(SupervisorLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) => Err(PidFileError::Locked { path }),
            Err((_, errno)) => Err(error(errno.into())),
        }
    }

    /// Removes the file; a file already gone is fine.
    pub fn remove(&self) -> Result<(), PidFileError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PidFileError::Remove {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// Held by the running supervisor; see [`PidFile::lock`].
#[derive(Debug)]
pub struct SupervisorLock {
    _lock: Flock<std::fs::File>,
}

/// Whether `pid` is a live (not zombie) `lab-agent supervise` process.
pub fn is_supervisor(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| procfs::is_supervisor_cmdline(&cmdline))
        && is_alive(pid)
}

/// Whether `pid` exists and is not a zombie (a zombie has exited; only its parent's
/// bookkeeping remains).
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| procfs::parse_stat(&stat))
        .is_some_and(|stat| stat.is_live())
}

/// Sends `signal` to `pid`; a process already gone is not an error.
pub fn signal(pid: i32, signal: Signal) -> nix::Result<()> {
    match kill(Pid::from_raw(pid), signal) {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_remove() {
        let dir = std::env::temp_dir().join(format!("lab-agent-pidfile-{}", std::process::id()));
        let pid_file = PidFile::in_dir(&dir.join("state"));
        assert_eq!(pid_file.read().expect("read"), None);
        pid_file.write(4242).expect("write");
        assert_eq!(pid_file.read().expect("read"), Some(4242));
        let lock = pid_file.lock().expect("lock");
        assert!(matches!(pid_file.lock(), Err(PidFileError::Locked { .. })));
        drop(lock);
        pid_file.lock().expect("lock again after release");
        pid_file.remove().expect("remove");
        pid_file.remove().expect("remove twice");
        assert_eq!(pid_file.read().expect("read"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_process_is_alive_but_not_a_supervisor() {
        let me = std::process::id() as i32;
        assert!(is_alive(me));
        assert!(!is_supervisor(me));
        assert!(!is_alive(i32::MAX));
    }
}

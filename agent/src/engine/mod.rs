//! Role engines (NGINX, memcached, MariaDB, later our own servers) as child processes of the
//! agent: the foundation of the per-role supervision (ARCHITECTURE.md, "Roles").
//!
//! The one rule this module exists for: **an engine dies whole.** NGINX's workers do not die
//! with their master: a master killed with SIGKILL leaves its workers running, holding the
//! listening socket and answering on the port (the test suite once left such a worker behind).
//! So every engine is started as the leader of its own process group, and stopping it means:
//!
//! 1. signal the master with the engine's stop signal ([`StopSignals`]: NGINX QUIT for a
//!    graceful stop, TERM for a fast one; memcached and mariadbd TERM). If the master is
//!    already gone, the signal goes to what is left of its group, since nobody else will tell
//!    the orphans to stop;
//! 2. wait, up to a deadline, for every process of the group to exit (a pidfd per process,
//!    no sleep-polling where the kernel has pidfds);
//! 3. past the deadline, SIGKILL the whole group, and confirm by scanning `/proc` that no
//!    process of the group remains (again with a deadline; survivors are an error).
//!
//! Each stop returns a [`StopReport`] that says what happened ("stopped by SIGQUIT in 35 ms",
//! "SIGKILLed its process group (3 processes) after 10 s"). A restart is a whole stop followed
//! by a fresh start, so the old instance never shares the port with the new one.
//!
//! Modules:
//! - [`process`]: [`EngineCommand`] (what to run, how to stop it), [`EngineProcess`] (a running
//!   engine: start, signal, stop, restart; dropping it SIGKILLs its group), [`StopReport`].
//! - [`group`]: the processes of a process group, read from `/proc`; waiting for them to exit;
//!   signalling the whole group.
//!
//! The engine kind is not named here: [`StopSignals`] carries what differs between engines,
//! so the role/engine enums of `lab-api` can map onto it without this module knowing them.

pub mod group;
pub mod process;

pub use self::process::{
    EngineCommand, EngineError, EngineProcess, StopMode, StopOutcome, StopReport, StopSignals,
};

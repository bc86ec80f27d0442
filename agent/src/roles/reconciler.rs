//! The reconciler: the one task owning the running roles. Level-triggered: on every spec it
//! receives (and once at start, for the stored spec) it compares the roles the spec wants with
//! the supervisors it runs and converges:
//!
//! - a role the spec no longer has: its supervisor is cancelled and awaited (engine stopped
//!   whole); all removals finish before anything starts (a promoted replica's database
//!   directory is free again before the primary starts in it);
//! - a role whose config changed: restarted (stopped whole, started with the new config),
//!   except where the engine can take it in place ([`applies_in_place`]): a replica
//!   repointed, NGINX reloaded, the app re-reading its config;
//! - a role the spec swaps for one the same engine can become in place (a replica promoted
//!   to primary): the supervisor is kept and carries on under the new role;
//! - a role the spec adds: a supervisor is started ([`super::supervisor`]).
//!
//! On shutdown every supervisor is cancelled and awaited, so no engine outlives the agent's
//! clean stop. Besides specs it takes one order, [`Reclone`]: a database replica stopped,
//! its data removed and started afresh (it copies everything from its primary again).

use std::collections::BTreeMap;

use lab_api::spec::{applies_in_place, becomes_in_place, RoleConfig};
use lab_api::Role;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::store::Held;
use super::supervisor::{self, RoleDirs, StatusBoard};

/// A running supervisor.
struct Supervised {
    config: RoleConfig,
    update: watch::Sender<RoleConfig>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Stops `supervised` together: every supervisor cancelled first, then each awaited (its
/// engine stopped whole), then forgotten by health.
async fn stop_all(supervised: Vec<Supervised>, statuses: &StatusBoard) {
    for s in &supervised {
        s.cancel.cancel();
    }
    for s in supervised {
        let role = s.config.role();
        if let Err(err) = s.task.await {
            log::error!("role {role}: supervisor task failed: {err}");
        }
        statuses.remove(role);
    }
}

/// An order to reclone the database replica; the answer says what was done or why not.
pub type Reclone = oneshot::Sender<Result<String, String>>;

/// Runs until `shutdown`, following `specs` (and `reclones`); stops every role before
/// returning.
pub async fn run(
    mut specs: watch::Receiver<Held>,
    mut reclones: mpsc::Receiver<Reclone>,
    dirs: RoleDirs,
    statuses: StatusBoard,
    shutdown: CancellationToken,
) {
    let mut running: BTreeMap<Role, Supervised> = BTreeMap::new();
    loop {
        tokio::select! {
            // Shutdown first: a spec arriving with it must not start engines only to stop them.
            biased;
            _ = shutdown.cancelled() => break,
            changed = specs.changed() => if changed.is_err() { break },
            Some(reply) = reclones.recv() => {
                let done = reclone(&mut running, &dirs, &statuses).await;
                let _ = reply.send(done);
                continue;
            }
        }
        let held = specs.borrow_and_update().clone();
        let wanted: Vec<RoleConfig> = held.map(|s| s.roles.clone()).unwrap_or_default();
        converge(&mut running, &wanted, &dirs, &statuses).await;
    }
    stop_all(running.into_values().collect(), &statuses).await;
    log::info!("every role stopped");
}

/// Stops the replica whole, removes its database directory (data, config, markers) and
/// starts it again with the same config: it initialises an empty server and replicates
/// everything from its primary, as a new replica does.
async fn reclone(
    running: &mut BTreeMap<Role, Supervised>,
    dirs: &RoleDirs,
    statuses: &StatusBoard,
) -> Result<String, String> {
    let Some(replica) = running.remove(&Role::DbReplica) else {
        return Err(if running.contains_key(&Role::DbMaster) {
            "this board is the database primary: its data is the cluster's and is never thrown \
             away"
                .into()
        } else {
            "this board runs no database replica".into()
        });
    };
    let config = replica.config.clone();
    log::warn!("reclone: stopping the replica and removing its data");
    stop_all(vec![replica], statuses).await;
    let dir = super::mariadb::DbPaths::new(&dirs.state_dir).dir;
    let removed = match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", dir.display())),
    };
    // Started again either way: a failed removal leaves the old data to run, not nothing.
    running.insert(Role::DbReplica, start(&config, dirs, statuses));
    removed?;
    let primary = match &config {
        RoleConfig::DbReplica(d) => d.primary.as_ref().map_or("?", |p| p.board.as_str()),
        _ => "?",
    };
    Ok(format!(
        "replica stopped, {} removed, started afresh: it copies everything from {primary} again",
        dir.display()
    ))
}

/// Starts a supervisor for `config`.
fn start(config: &RoleConfig, dirs: &RoleDirs, statuses: &StatusBoard) -> Supervised {
    let (update, rx) = watch::channel(config.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(supervisor::supervise(
        rx,
        dirs.clone(),
        statuses.clone(),
        cancel.clone(),
    ));
    Supervised {
        config: config.clone(),
        update,
        cancel,
        task,
    }
}

async fn converge(
    running: &mut BTreeMap<Role, Supervised>,
    wanted: &[RoleConfig],
    dirs: &RoleDirs,
    statuses: &StatusBoard,
) {
    let mut stopping = Vec::new();
    let roles: Vec<Role> = running.keys().copied().collect();
    for role in roles {
        let Some(supervised) = running.get(&role) else {
            continue;
        };
        match wanted.iter().find(|c| c.role() == role) {
            Some(new) if *new == supervised.config => {}
            Some(new) if applies_in_place(&supervised.config, new) => {
                log::info!("role {role}: config changed; applying it without a restart");
                if let Some(s) = running.get_mut(&role) {
                    s.config = new.clone();
                    s.update.send_replace(new.clone());
                }
            }
            Some(_) => {
                log::info!("role {role}: config changed; restarting it");
                stopping.extend(running.remove(&role));
            }
            None => {
                // A role the spec replaces by one the same engine can become in place (a
                // replica promoted): the supervisor carries on under the new role.
                let now: Vec<Role> = running.keys().copied().collect();
                let becomes = becomes_in_place(&supervised.config, &now, wanted).cloned();
                match (becomes, running.remove(&role)) {
                    (Some(new), Some(mut s)) => {
                        log::info!("role {role}: becomes {} in place", new.role());
                        s.config = new.clone();
                        s.update.send_replace(new.clone());
                        running.insert(new.role(), s);
                    }
                    (None, removed) => {
                        log::info!("role {role}: no longer in the spec; stopping it");
                        stopping.extend(removed);
                    }
                    (Some(_), None) => {}
                }
            }
        }
    }
    stop_all(stopping, statuses).await;
    for config in wanted {
        let role = config.role();
        if running.contains_key(&role) {
            continue;
        }
        log::info!("role {role}: starting");
        running.insert(role, start(config, dirs, statuses));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::spec::{Credential, DbConfig, DbPeer, DbUsers};

    fn replica(primary: &str, pool: u64) -> RoleConfig {
        let c = |u: &str| Credential {
            user: u.into(),
            password: "pw".into(),
        };
        RoleConfig::DbReplica(DbConfig {
            server_id: 2,
            bind: "10.0.0.2".into(),
            port: 3306,
            buffer_pool_mb: pool,
            semi_sync: false,
            client_hosts: "10.0.0.%".into(),
            users: DbUsers {
                replication: c("r"),
                app: c("a"),
                monitor: c("m"),
            },
            primary: Some(DbPeer {
                board: primary.into(),
                host: "10.0.0.1".into(),
                port: 3306,
            }),
        })
    }

    #[test]
    fn a_moved_primary_alone_needs_no_restart() {
        assert!(applies_in_place(&replica("db-1", 64), &replica("db-3", 64)));
        assert!(!applies_in_place(
            &replica("db-1", 64),
            &replica("db-3", 128)
        ));
        let RoleConfig::DbReplica(d) = replica("db-1", 64) else {
            unreachable!()
        };
        assert!(!applies_in_place(
            &replica("db-1", 64),
            &RoleConfig::DbMaster(d.clone())
        ));
        // Promoted: the same server, following nobody.
        let primary = DbConfig { primary: None, ..d };
        assert!(applies_in_place(
            &replica("db-1", 64),
            &RoleConfig::DbMaster(primary.clone())
        ));
        assert!(!applies_in_place(
            &replica("db-1", 64),
            &RoleConfig::DbMaster(DbConfig {
                buffer_pool_mb: 128,
                ..primary.clone()
            })
        ));
        // The other way (an old primary returning as a replica) restarts.
        assert!(!applies_in_place(
            &RoleConfig::DbMaster(primary),
            &replica("db-1", 64)
        ));
    }
}

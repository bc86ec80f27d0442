//! Converge every board to "the right agent binary, config and certificates installed, the
//! agent running and answering over mTLS". Nothing here knows whether a board is virtual.
//!
//! Per board (all boards in parallel, at most `cluster.parallel` at once; one failing board
//! never stops the others): connect over SSH and pin/verify the host key; check sudo; probe
//! arch, OS, init and the hashes of managed files in one round trip; upload only what
//! differs; start (or restart, if something changed) the agent as a systemd unit or a
//! supervised process; poll its health endpoint until it answers as the right board.
//! A board certificate near its end is re-issued here ([`crate::pki`]), so it is simply a
//! changed file: uploaded, and the agent restarted to load it.
//!
//! - [`probe`]: the one-round-trip survey of a board.
//! - [`files`]: the files kept on every board.
//! - [`plan`]: probe + desired files -> what to upload and whether to restart (pure).

pub mod engines;
pub mod files;
pub mod plan;
pub mod probe;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab_api::board_paths;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::agent_client::AgentClient;
use crate::cluster::ClusterContext;
use crate::inventory::Board;
use crate::job::progress::Progress;
use crate::job::{self, FailureCause, JobFailure, JobHandle, JobReport, Step};
use crate::ssh::{Connection, HostKeyVerdict, RemoteCommand, SshError};
use plan::StartPlan;
use probe::{Init, Probe};

/// How long a freshly started agent may take to answer its health endpoint.
const HEALTH_DEADLINE: Duration = Duration::from_secs(30);

/// What bootstrap did on one board.
#[derive(Debug, Clone)]
pub struct BoardDone {
    pub machine: String,
    pub os: String,
    pub init: Init,
    pub agent_uploaded: bool,
    /// Managed files (besides the binary) that were rewritten.
    pub files_changed: Vec<String>,
    pub restarted: bool,
    pub pinned_fingerprint: Option<String>,
    pub health: lab_api::Health,
    pub elapsed: Duration,
}

/// The end of one board's bootstrap.
pub type BoardReport = JobReport<BoardDone>;

/// A static agent binary, read once per architecture per run.
#[derive(Debug)]
pub struct AgentBinary {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// Agent binaries by target triple, located (or built) at most once per run.
#[derive(Default)]
pub struct AgentBinaries {
    by_triple: Mutex<HashMap<String, Arc<AgentBinary>>>,
}

impl AgentBinaries {
    pub async fn get(&self, triple: &'static str) -> Result<Arc<AgentBinary>, String> {
        let mut map = self.by_triple.lock().await;
        if let Some(bin) = map.get(triple) {
            return Ok(bin.clone());
        }
        let bin = tokio::task::spawn_blocking(move || -> Result<AgentBinary, String> {
            let path = crate::agent_bin::ensure_agent(triple)
                .map_err(|e| crate::report::error_chain(&e))?;
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read agent {}: {e}", path.display()))?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            Ok(AgentBinary {
                path,
                bytes,
                sha256,
            })
        })
        .await
        .map_err(|e| format!("agent build task failed: {e}"))??;
        let bin = Arc::new(bin);
        map.insert(triple.to_string(), bin.clone());
        Ok(bin)
    }
}

/// Bootstrap `boards` (all of the inventory when empty). Never fails as a whole: each board
/// gets its own report.
pub async fn bootstrap(
    ctx: Arc<ClusterContext>,
    boards: &[String],
    progress: Arc<Progress>,
) -> Vec<BoardReport> {
    let selected: Vec<(String, Board)> = ctx
        .inventory
        .boards
        .iter()
        .filter(|b| boards.is_empty() || boards.contains(&b.name))
        .map(|b| (b.name.clone(), b.clone()))
        .collect();
    let client = match AgentClient::new(&ctx.pki, Duration::from_secs(3)) {
        Ok(c) => c,
        Err(e) => {
            return selected
                .into_iter()
                .map(|(board, _)| BoardReport {
                    board,
                    result: Err(JobFailure::new(
                        FailureCause::Local,
                        format!("cannot build the mTLS client: {e}"),
                    )),
                })
                .collect()
        }
    };
    let binaries = Arc::new(AgentBinaries::default());
    // Each board's planned roles decide the engine packages it needs: planned once for all.
    // Who is primary changes no package (both db roles need mariadb-server), so the stored
    // topology is not read.
    let planned = Arc::new(crate::plan::planned_roles(
        &ctx.inventory,
        &crate::plan::topology::Topology::default(),
    ));
    let parallel = ctx.inventory.cluster.parallel;
    job::for_each_board(
        selected,
        parallel,
        progress,
        summary_line,
        move |board, job| {
            let (ctx, binaries, client) = (ctx.clone(), binaries.clone(), client.clone());
            let roles = planned.get(&board.name).cloned().unwrap_or_default();
            async move {
                let started = Instant::now();
                let mut attempt =
                    bootstrap_board(&ctx, &board, &roles, &binaries, &client, &job, false).await;
                if let Err(e) = &attempt {
                    if e.transient {
                        job.note(&format!("retrying once after: {}", e.message));
                        // The failed attempt may have changed files before it broke off: restart.
                        attempt =
                            bootstrap_board(&ctx, &board, &roles, &binaries, &client, &job, true)
                                .await;
                    }
                }
                attempt.map(|mut done| {
                    done.elapsed = started.elapsed();
                    done
                })
            }
        },
    )
    .await
}

/// One line saying what happened on a board.
pub fn summary_line(done: &BoardDone) -> String {
    let mut what = Vec::new();
    if done.agent_uploaded {
        what.push("agent uploaded".to_string());
    }
    if !done.files_changed.is_empty() {
        what.push(format!("{} file(s) updated", done.files_changed.len()));
    }
    if done.restarted {
        what.push("restarted".to_string());
    }
    if what.is_empty() {
        what.push("unchanged".to_string());
    }
    format!(
        "ok: {} {}, agent {} healthy ({}) in {:.1}s",
        done.health.arch,
        done.init_name(),
        done.health.agent_version,
        what.join(", "),
        done.elapsed.as_secs_f64()
    )
}

impl BoardDone {
    pub fn init_name(&self) -> &'static str {
        match self.init {
            Init::Systemd => "systemd",
            Init::Other => "supervised",
        }
    }
}

/// Run a blocking SSH step off the async runtime.
async fn ssh_step<T, F>(conn: Arc<Connection>, f: F) -> Result<T, JobFailure>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, SshError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&conn))
        .await
        .map_err(|e| JobFailure::new(FailureCause::Local, format!("SSH task failed: {e}")))?
        .map_err(JobFailure::from)
}

/// A failure on this machine while preparing `board`.
fn local(board: &str, what: impl std::fmt::Display) -> JobFailure {
    JobFailure::new(FailureCause::Local, format!("{board}: {what}"))
}

async fn bootstrap_board(
    ctx: &ClusterContext,
    board: &Board,
    roles: &[lab_api::Role],
    binaries: &AgentBinaries,
    client: &AgentClient,
    job: &JobHandle,
    force_restart: bool,
) -> Result<BoardDone, JobFailure> {
    let target = ctx.ssh_target(board);
    let t0 = Instant::now();
    let step = |what: &str| tracing::debug!(board = %board.name, at_ms = t0.elapsed().as_millis() as u64, "{what}");
    job.step(Step::Connecting {
        user: target.user.clone(),
        host: target.host.clone(),
        port: target.port,
    });
    let keys = ctx.host_keys.clone();
    let t = target.clone();
    let (conn, verdict) = tokio::task::spawn_blocking(move || Connection::open(&t, &keys))
        .await
        .map_err(|e| local(&board.name, format!("SSH task failed: {e}")))??;
    let conn = Arc::new(conn);
    step("connected and authenticated");
    let pinned_fingerprint = match verdict {
        HostKeyVerdict::PinnedNow { fingerprint } => {
            job.note(&format!("first contact, pinned host key {fingerprint}"));
            Some(fingerprint)
        }
        HostKeyVerdict::Known => None,
    };
    if target.sudo {
        job.step(Step::CheckingSudo);
        let (board_name, user) = (board.name.clone(), target.user.clone());
        ssh_step(conn.clone(), move |c| {
            let out = c.run(&RemoteCommand::new("true").sudo(true))?;
            if out.status == 0 {
                Ok(())
            } else {
                Err(SshError::NoSudo {
                    board: board_name,
                    user,
                })
            }
        })
        .await?;
    }

    job.step(Step::Probing);
    let sudo = target.sudo;
    let probe_out = ssh_step(conn.clone(), move |c| {
        c.run_ok(&probe::probe_command(&files::MANAGED_PATHS, sudo))
    })
    .await?;
    let probe: Probe = probe::parse_probe(&probe_out)
        .map_err(|e| JobFailure::new(FailureCause::Command, format!("{}: {e}", board.name)))?;

    let triple = crate::agent_bin::target_for_uname(&probe.machine)
        .map_err(|e| JobFailure::new(FailureCause::Architecture, format!("{}: {e}", board.name)))?;
    job.step(Step::LocatingAgent {
        machine: probe.machine.clone(),
        os: probe.os.clone(),
        triple,
    });
    let agent = binaries
        .get(triple)
        .await
        .map_err(|e| local(&board.name, e))?;

    // The engines the board's planned roles need, installed from its distribution.
    let missing = engines::missing(roles, &probe);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|r| r.package).collect();
        if !probe.apt {
            return Err(JobFailure::new(
                FailureCause::Command,
                format!(
                    "{}: its roles need {} and the board has no apt-get: install them by hand",
                    board.name,
                    names.join(", ")
                ),
            ));
        }
        job.step(Step::InstallingPackages {
            packages: names.join(" "),
        });
        let cmd = engines::install_command(&missing, sudo);
        let out = ssh_step(conn.clone(), move |c| c.run(&cmd)).await?;
        if out.status != 0 {
            return Err(JobFailure::new(
                FailureCause::Command,
                format!(
                    "{}: installing {} failed: {}",
                    board.name,
                    names.join(", "),
                    crate::report::last_lines(&out.output, 5)
                ),
            ));
        }
        job.note(&format!("installed {}", names.join(", ")));
    }

    // What the board should have, compared with what it has.
    let listen_ip = board
        .address
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| "0.0.0.0".to_string());
    let listen = if listen_ip.contains(':') {
        format!("[{listen_ip}]:{}", lab_api::DEFAULT_AGENT_PORT)
    } else {
        format!("{listen_ip}:{}", lab_api::DEFAULT_AGENT_PORT)
    };
    let mut names = vec![
        board.address.clone(),
        target.host.clone(),
        board.name.clone(),
    ];
    names.dedup();
    if let Some((why, validity)) = ctx.pki.board_cert_renewal(&board.name) {
        job.note(&format!(
            "certificate {} (valid until {}): issuing a new one",
            why.describe(),
            crate::pki::day(validity.not_after)
        ));
    }
    let cert = ctx
        .pki
        .board_cert(&board.name, &names)
        .map_err(|e| local(&board.name, e))?;
    let config = files::agent_config(&ctx.inventory.cluster.name, &board.name, &listen);
    let desired = files::config_files(
        &config,
        &ctx.pki.ca_cert_pem,
        &cert,
        probe.init == Init::Systemd,
    )
    .map_err(|e| local(&board.name, format!("rendering agent config: {e}")))?;
    let plan = plan::plan(&probe, &agent.sha256, desired, force_restart);

    if plan.upload_agent {
        job.step(Step::UploadingAgent {
            bytes: agent.bytes.len(),
            triple,
        });
        let a = agent.clone();
        ssh_step(conn.clone(), move |c| {
            c.write_file(board_paths::AGENT_BIN, &a.bytes, 0o755)
        })
        .await?;
    }
    let files_changed: Vec<String> = plan.write.iter().map(|f| f.dest.to_string()).collect();
    if !plan.write.is_empty() {
        job.step(Step::InstallingFiles {
            count: plan.write.len(),
        });
        let write = plan.write;
        ssh_step(conn.clone(), move |c| {
            for f in &write {
                c.write_file(f.dest, &f.bytes, f.mode)?;
            }
            Ok(())
        })
        .await?;
    }

    step("files compared and uploaded");
    let restart_planned = plan.start == StartPlan::Restart;
    job.step(Step::StartingAgent {
        restart: restart_planned,
    });
    let action = if restart_planned {
        Some(true)
    } else {
        let health = client
            .health(&target.host, lab_api::DEFAULT_AGENT_PORT)
            .await
            .ok();
        plan::ensure_running(&board.name, &agent.sha256, health.as_ref())
    };
    let restarted = action == Some(true);
    if let Some(restart) = action {
        let start = start_command(probe.init, restart, plan.unit_changed).sudo(sudo);
        ssh_step(conn.clone(), move |c| c.run_ok(&start)).await?;
    }
    step("start command done");
    job.step(Step::WaitingHealthy);
    let health = wait_healthy(client, &target.host, &board.name, &agent.sha256)
        .await
        .map_err(|e| JobFailure::new(FailureCause::Unhealthy, e))?;
    step("healthy");
    Ok(BoardDone {
        machine: probe.machine,
        os: probe.os,
        init: probe.init,
        agent_uploaded: plan.upload_agent,
        files_changed,
        restarted,
        pinned_fingerprint,
        health,
        elapsed: Duration::ZERO,
    })
}

/// The command that makes the agent run (restarting it when `restart`).
pub fn start_command(init: Init, restart: bool, unit_changed: bool) -> RemoteCommand {
    match init {
        Init::Systemd => {
            let mut script = String::new();
            if unit_changed {
                script.push_str("systemctl daemon-reload && ");
            }
            script.push_str("systemctl enable --quiet lab-agent && ");
            script.push_str(if restart {
                "systemctl restart lab-agent"
            } else {
                "systemctl start lab-agent"
            });
            RemoteCommand::shell(script)
        }
        Init::Other => {
            let cmd = RemoteCommand::new(board_paths::AGENT_BIN)
                .arg("start")
                .arg("--config")
                .arg(board_paths::CONFIG);
            if restart {
                cmd.arg("--restart")
            } else {
                cmd
            }
        }
    }
}

/// The command that stops the agent and keeps it stopped.
pub fn stop_command(init: Init) -> RemoteCommand {
    match init {
        Init::Systemd => RemoteCommand::shell("systemctl disable --now --quiet lab-agent"),
        Init::Other => RemoteCommand::new(board_paths::AGENT_BIN).arg("stop"),
    }
}

async fn wait_healthy(
    client: &AgentClient,
    host: &str,
    board: &str,
    binary_sha256: &str,
) -> Result<lab_api::Health, String> {
    let deadline = Instant::now() + HEALTH_DEADLINE;
    let mut last;
    loop {
        match client.health(host, lab_api::DEFAULT_AGENT_PORT).await {
            Ok(h) if h.board == board && h.binary_sha256 == binary_sha256 => return Ok(h),
            Ok(h) if h.board == board => {
                last = format!(
                    "agent at {host} still runs another build (sha256 {})",
                    h.binary_sha256.get(..12).unwrap_or(&h.binary_sha256)
                )
            }
            Ok(h) => {
                last = format!(
                    "agent at {host} says it is board `{}`, not `{board}`",
                    h.board
                )
            }
            Err(e) => last = format!("{e}"),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{board}: agent not healthy after {}s; last: {last}",
                HEALTH_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_commands() {
        assert_eq!(
            start_command(Init::Other, false, false).to_shell(),
            "/usr/local/bin/lab-agent start --config /etc/lab/agent.toml"
        );
        assert_eq!(
            start_command(Init::Other, true, false).to_shell(),
            "/usr/local/bin/lab-agent start --config /etc/lab/agent.toml --restart"
        );
        assert_eq!(
            start_command(Init::Systemd, true, true).to_shell(),
            "sh -c 'systemctl daemon-reload && systemctl enable --quiet lab-agent && systemctl restart lab-agent'"
        );
    }
}

//! The database roles: MariaDB as primary (`db-master`) or replica (`db-replica`), one
//! directory `<state_dir>/db/` either way (so a replica promoted later keeps its data):
//! `data/`, the rendered `my.cnf`, `mysqld.sock`, `mysqld.pid`, the relay logs.
//!
//! Prepare: find the binaries, render `my.cnf` ([`render_config`], pure), initialise the data
//! directory once (`mariadb-install-db`, root by unix_socket only, no test database; a
//! marker file says it finished). The server runs as user `mysql` where it exists, else as
//! root. Ready: a `mysql_async` connection as root over the socket (unix_socket auth: the
//! agent is root). Setup, over that connection, idempotent at every start ([`super::sql`]):
//! the primary becomes writable and gets the users, grants and the app's schema (all of
//! which reach the replicas through the binlog); a replica becomes read-only and is pointed
//! at its primary with GTID unless it already follows it, writing nothing to its own binlog
//! (an errant GTID would break a later failover).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use lab_api::spec::DbConfig;
use mysql_async::prelude::Queryable;

use super::sql::{self, ResultSet};
use crate::engine::{EngineCommand, StopSignals};

/// Server binaries, newest name first.
const SERVERS: &[&str] = &["/usr/sbin/mariadbd", "/usr/sbin/mysqld"];
/// Data directory initialisers, newest name first.
const INSTALLERS: &[&str] = &["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"];

/// How long MariaDB may take to answer after it was started (InnoDB recovery included).
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// How long a graceful stop (InnoDB flush) may take before the group is SIGKILLed.
/// How long a new replica's setup waits to have caught up with its primary (which may be
/// starting at the same moment) before it reports running anyway, with the lag in its message.
pub const CATCH_UP_WITHIN: Duration = Duration::from_secs(60);
/// Between two looks at a catching-up replica.
const CATCH_UP_EVERY: Duration = Duration::from_millis(200);

pub const STOP_DEADLINE: Duration = Duration::from_secs(60);

/// How long a replica's IO thread waits on a silent primary (read or connect) before it
/// gives up and reconnects: above the heartbeat period (1 s), so a replica's own status
/// shows a dead primary within about 2 s.
pub const SLAVE_NET_TIMEOUT_SECS: u32 = 2;

/// How long a semi-synchronous primary waits for a replica's ack before it falls back to
/// asynchronous replication (longer than a failover takes).
pub const SEMI_SYNC_TIMEOUT_MS: u64 = 15_000;

/// Base name of the binary logs, the same on every board (not the hostname).
pub const LOG_BASENAME: &str = "lab-db";

/// Where one board's database lives.
#[derive(Debug, Clone)]
pub struct DbPaths {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub pid: PathBuf,
    /// Written once the data directory was initialised completely.
    pub initialised: PathBuf,
    /// Fingerprint of the replication source last set with `CHANGE MASTER`.
    pub source: PathBuf,
    /// Fingerprint of the primary setup last run here (see [`Db::setup`]).
    pub setup: PathBuf,
}

impl DbPaths {
    pub fn new(state_dir: &Path) -> DbPaths {
        let dir = state_dir.join("db");
        DbPaths {
            data: dir.join("data"),
            config: dir.join("my.cnf"),
            socket: dir.join("mysqld.sock"),
            pid: dir.join("mysqld.pid"),
            initialised: dir.join("initialised"),
            source: dir.join("replication-source"),
            setup: dir.join("primary-setup"),
            dir,
        }
    }
}

/// `my.cnf` for `db` (`replica`: read-only). `user` is the account mariadbd drops to.
pub fn render_config(db: &DbConfig, replica: bool, paths: &DbPaths, user: &str) -> String {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    let mut out = format!(
        "# Rendered by lab-agent from the board's spec; rewritten at every start.\n\
         [mariadbd]\n\
         user = {user}\n\
         datadir = {data}\n\
         socket = {socket}\n\
         pid_file = {pid}\n\
         bind_address = {bind}\n\
         port = {port}\n\
         server_id = {server_id}\n\
         log_basename = {LOG_BASENAME}\n\
         log_bin = {LOG_BASENAME}-bin\n\
         binlog_format = ROW\n\
         gtid_strict_mode = ON\n\
         log_slave_updates = ON\n\
         relay_log = {dir}/relay-bin\n\
         relay_log_index = {dir}/relay-bin.index\n\
         skip_slave_start = ON\n\
         skip_name_resolve = ON\n\
         innodb_buffer_pool_size = {pool}M\n\
         read_only = {ro}\n\
         slave_net_timeout = {SLAVE_NET_TIMEOUT_SECS}\n",
        data = paths.data.display(),
        socket = paths.socket.display(),
        pid = paths.pid.display(),
        bind = db.bind,
        port = db.port,
        server_id = db.server_id,
        dir = paths.dir.display(),
        pool = db.buffer_pool_mb,
        ro = on(replica),
    );
    if db.semi_sync {
        // AFTER_SYNC: a write is acknowledged to the app only once a replica has it (with
        // MariaDB's default AFTER_COMMIT, a crash can lose acknowledged writes). The timeout
        // after which the primary falls back to asynchronous replication outlasts a failover.
        // `init_rpl_role = SLAVE` makes crash recovery drop a write that was in the binlog
        // but waiting for its ack when the board died (never acknowledged to anyone): left
        // in, a primary that comes back after a failover would hold a write its successor
        // lacks and could not rejoin. (MariaDB truncates only with this role set.)
        // `STOP SLAVE` on a semi-sync replica first connects to its primary to end the dump
        // there: after a pulled plug that connection hangs (5 s by default), on the
        // failover's critical path (promotion, repoint), so it gets 1 s.
        out.push_str(&format!(
            "rpl_semi_sync_master_enabled = ON\nrpl_semi_sync_slave_enabled = ON\n\
             rpl_semi_sync_master_wait_point = AFTER_SYNC\n\
             rpl_semi_sync_master_timeout = {SEMI_SYNC_TIMEOUT_MS}\n\
             rpl_semi_sync_slave_kill_conn_timeout = 1\n\
             init_rpl_role = SLAVE\n"
        ));
    }
    out
}

/// One database role.
pub struct Db {
    pub config: DbConfig,
    pub replica: bool,
    pub paths: DbPaths,
    pub log: PathBuf,
    root: Option<mysql_async::Conn>,
}

async fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        if tokio::fs::metadata(c).await.is_ok() {
            return Some(PathBuf::from(c));
        }
    }
    None
}

impl Db {
    pub fn new(config: DbConfig, replica: bool, state_dir: &Path, log: PathBuf) -> Db {
        Db {
            config,
            replica,
            paths: DbPaths::new(state_dir),
            log,
            root: None,
        }
    }

    /// Binaries, config, data directory; the server's command line.
    pub async fn prepare(&mut self) -> anyhow::Result<EngineCommand> {
        self.root = None;
        let missing = || {
            anyhow!(
                "mariadbd not found ({}): install the mariadb-server package",
                SERVERS.join(" or ")
            )
        };
        let server = first_existing(SERVERS).await.ok_or_else(missing)?;
        let installer = first_existing(INSTALLERS).await.ok_or_else(|| {
            anyhow!(
                "mariadb-install-db not found ({}): install the mariadb-server package",
                INSTALLERS.join(" or ")
            )
        })?;
        let user = if super::user_exists("mysql").await {
            "mysql"
        } else {
            "root"
        };
        let paths = self.paths.clone();
        let config = render_config(&self.config, self.replica, &paths, user);
        let owner = user.to_string();
        tokio::task::spawn_blocking(move || make_dir(&paths, &config, &owner))
            .await
            .map_err(|e| anyhow!("preparing the database directory: {e}"))??;
        if tokio::fs::metadata(&self.paths.initialised).await.is_err() {
            self.initialise(&installer, user).await?;
        }
        // A socket left by a killed server would make the new one refuse to start.
        let _ = tokio::fs::remove_file(&self.paths.socket).await;
        Ok(EngineCommand::new("mariadbd", server, StopSignals::MARIADB)
            .arg(format!("--defaults-file={}", self.paths.config.display()))
            .log_to(&self.log))
    }

    /// `mariadb-install-db` into a fresh `data/` (one left by an interrupted run is
    /// removed first: it never held anything but the system tables).
    async fn initialise(&self, installer: &Path, user: &str) -> anyhow::Result<()> {
        let data = &self.paths.data;
        if tokio::fs::metadata(data).await.is_ok() {
            log::warn!(
                "{} exists but was never initialised completely; initialising it again",
                data.display()
            );
            tokio::fs::remove_dir_all(data)
                .await
                .with_context(|| format!("removing {}", data.display()))?;
        }
        log::info!("initialising the database in {}", data.display());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let status = tokio::process::Command::new(installer)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().context("log file")?)
            .stderr(log)
            .current_dir("/")
            .status()
            .await
            .with_context(|| format!("running {}", installer.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", installer.display());
        }
        tokio::fs::write(&self.paths.initialised, b"")
            .await
            .with_context(|| format!("writing {}", self.paths.initialised.display()))?;
        Ok(())
    }

    /// One probe: root can log in over the socket, and the TCP port accepts (a server that
    /// could not bind its address is not ready, whatever its socket says).
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        let address = format!("{}:{}", self.config.bind, self.config.port);
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&address),
        )
        .await
        .with_context(|| format!("{address}: no answer within 2 s"))?
        .with_context(|| format!("connecting to {address}"))?;
        let opts = mysql_async::OptsBuilder::default()
            .socket(Some(self.paths.socket.display().to_string()))
            .user(Some("root"));
        let conn = tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts))
            .await
            .context("no answer within 2 s")?
            .with_context(|| format!("connecting to {}", self.paths.socket.display()))?;
        self.root = Some(conn);
        Ok(())
    }

    fn conn(&mut self) -> anyhow::Result<&mut mysql_async::Conn> {
        self.root.as_mut().ok_or_else(|| anyhow!("not connected"))
    }

    async fn run(&mut self, statements: &[String]) -> anyhow::Result<()> {
        let conn = self.conn()?;
        for s in statements {
            conn.query_drop(s.as_str())
                .await
                .with_context(|| format!("running {}", redact(s)))?;
        }
        Ok(())
    }

    async fn slave_status(&mut self) -> anyhow::Result<ResultSet> {
        let rows: Vec<mysql_async::Row> = self
            .conn()?
            .query("SHOW SLAVE STATUS")
            .await
            .context("SHOW SLAVE STATUS")?;
        Ok(ResultSet::from_rows(rows))
    }

    /// Makes the server what the spec says; the message health shows.
    pub async fn setup(&mut self) -> anyhow::Result<String> {
        if self.replica {
            let message = self.follow_primary().await?;
            return self.catch_up(message).await;
        }
        if !self.slave_status().await?.rows.is_empty() {
            // A former replica (promoted): it follows nobody any more.
            self.run(&["STOP SLAVE".into(), "RESET SLAVE ALL".into()])
                .await?;
        }
        // The setup is binlogged. Run again unchanged at every start, it would give a
        // primary that comes back after a failover transactions its successor lacks (errant
        // GTIDs), and it could not rejoin as a replica; so it runs only when it changed.
        let statements = sql::primary_setup(&self.config).map_err(|e| anyhow!(e))?;
        let fingerprint = fingerprint(&statements.join("\n"));
        if stored_fingerprint(&self.paths.setup).await == fingerprint {
            self.run(&[sql::WRITABLE.to_string()]).await?;
        } else {
            self.run(&statements).await?;
            store_fingerprint(&self.paths.setup, fingerprint).await?;
        }
        Ok(format!(
            "primary, listening on {}:{}",
            self.config.bind, self.config.port
        ))
    }

    /// Promoted in place: the running replica stops replicating, forgets its primary and
    /// turns writable (no restart: its buffer pool stays warm and clients reconnect at once).
    /// The config file still says replica until the next start, which renders it anew.
    pub async fn promote(&mut self, config: DbConfig) -> anyhow::Result<String> {
        self.config = config;
        self.replica = false;
        self.setup().await
    }

    /// The spec changed only where the primary is: repoint without a restart.
    pub async fn repoint(&mut self, config: DbConfig) -> anyhow::Result<String> {
        self.config = config;
        self.follow_primary().await
    }

    async fn follow_primary(&mut self) -> anyhow::Result<String> {
        self.run(&["SET GLOBAL read_only = ON".into()]).await?;
        // Promoted again later, it runs the primary setup afresh.
        match tokio::fs::remove_file(&self.paths.setup).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", self.paths.setup.display()))
            }
            _ => {}
        }
        let primary = self
            .config
            .primary
            .clone()
            .ok_or_else(|| anyhow!("a replica without a primary"))?;
        let fingerprint = source_fingerprint(&self.config);
        let status = self.slave_status().await?;
        let stored = stored_fingerprint(&self.paths.source).await;
        let follows = status.first("Master_Host") == Some(primary.host.as_str())
            && status.first("Master_Port") == Some(primary.port.to_string().as_str())
            && status.first("Master_User") == Some(self.config.users.replication.user.as_str())
            && stored == fingerprint;
        if follows {
            self.run(&["START SLAVE".into()]).await?;
        } else {
            let statements = sql::change_master(&self.config).map_err(|e| anyhow!(e))?;
            self.run(&statements).await?;
            store_fingerprint(&self.paths.source, fingerprint).await?;
        }
        self.message().await
    }

    /// Waits (up to [`CATCH_UP_WITHIN`]) until the replica has connected to its primary,
    /// applied everything it has read and holds the app's schema, so that "running" means
    /// the apps can read here: the users and tables come through replication, and a replica
    /// started beside a primary that is still initialising has none of them yet. Past the
    /// bound it reports running with its replication state, as before.
    async fn catch_up(&mut self, mut message: String) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WITHIN;
        loop {
            if self.caught_up().await? {
                return Ok(message);
            }
            if tokio::time::Instant::now() >= deadline {
                log::warn!(
                    "replica not caught up after {} s: {message}",
                    CATCH_UP_WITHIN.as_secs()
                );
                return Ok(message);
            }
            tokio::time::sleep(CATCH_UP_EVERY).await;
            message = self.message().await?;
        }
    }

    /// Both replication threads run, nothing read is left to apply, and the app's tables
    /// (the last thing a primary's setup makes) are here.
    async fn caught_up(&mut self) -> anyhow::Result<bool> {
        let status = self.slave_status().await?;
        let threads = status.first("Slave_IO_Running") == Some("Yes")
            && status.first("Slave_SQL_Running") == Some("Yes");
        let applied = status.first("Seconds_Behind_Master") == Some("0")
            && status.first("Master_Log_File") == status.first("Relay_Master_Log_File")
            && status.first("Read_Master_Log_Pos") == status.first("Exec_Master_Log_Pos");
        if !(threads && applied) {
            return Ok(false);
        }
        let tables: Option<u64> = self
            .conn()?
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?",
                (lab_api::spec::APP_SCHEMA,),
            )
            .await
            .context("counting the app's tables")?;
        Ok(tables.unwrap_or(0) >= sql::APP_TABLES)
    }

    /// What health says about a running database (a replica's replication state).
    pub async fn message(&mut self) -> anyhow::Result<String> {
        let Some(primary) = self.config.primary.clone().filter(|_| self.replica) else {
            return Ok(format!(
                "primary, listening on {}:{}",
                self.config.bind, self.config.port
            ));
        };
        let mut text = format!(
            "replicating from {} ({}:{})",
            primary.board, primary.host, primary.port
        );
        let status = self.slave_status().await?;
        let io = status.first("Slave_IO_Running").unwrap_or("No");
        if io != "Yes" {
            let error = status.first("Last_IO_Error").unwrap_or("");
            text.push_str(&format!("; IO thread {io}"));
            if !error.is_empty() {
                text.push_str(&format!(": {error}"));
            }
        }
        if status.first("Slave_SQL_Running").unwrap_or("No") != "Yes" {
            let error = status.first("Last_SQL_Error").unwrap_or("");
            text.push_str("; SQL thread not running");
            if !error.is_empty() {
                text.push_str(&format!(": {error}"));
            }
        }
        Ok(text)
    }

    /// Forgets the root connection (after an error); `ready` makes a new one.
    pub fn disconnect(&mut self) {
        self.root = None;
    }
}

/// Hides passwords in a statement shown in an error.
fn redact(statement: &str) -> String {
    match statement
        .find("IDENTIFIED BY")
        .or(statement.find("MASTER_PASSWORD"))
    {
        Some(at) => format!("{} ...", &statement[..at]),
        None => statement.to_string(),
    }
}

/// SHA-256 of where and as whom the replica connects, password included (a changed password
/// must be set again), without keeping the password itself on disk.
fn source_fingerprint(db: &DbConfig) -> String {
    let p = db.primary.as_ref();
    fingerprint(&format!(
        "{}\n{}\n{}\n{}",
        p.map_or("", |p| p.host.as_str()),
        p.map_or(0, |p| p.port),
        db.users.replication.user,
        db.users.replication.password
    ))
}

/// The fingerprint kept at `path` (empty when there is none).
async fn stored_fingerprint(path: &Path) -> String {
    tokio::fs::read_to_string(path)
        .await
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Keeps `fingerprint` at `path` (atomically, off the runtime).
async fn store_fingerprint(path: &Path, fingerprint: String) -> anyhow::Result<()> {
    crate::roles::store::write_atomically_off_runtime(path.to_path_buf(), fingerprint.into_bytes())
        .await
        .with_context(|| format!("writing {}", path.display()))
}

/// SHA-256 of `text` in hex: what is kept on disk instead of text holding passwords.
fn fingerprint(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `<state_dir>/db/` owned by `owner`, the config written (0640: read before privileges are
/// dropped).
fn make_dir(paths: &DbPaths, config: &str, owner: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    std::fs::set_permissions(&paths.dir, std::fs::Permissions::from_mode(0o750))
        .with_context(|| format!("chmod {}", paths.dir.display()))?;
    let user = nix::unistd::User::from_name(owner)
        .with_context(|| format!("looking up user {owner}"))?
        .ok_or_else(|| anyhow!("no user {owner}"))?;
    std::os::unix::fs::chown(&paths.dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .with_context(|| format!("chown {owner} {}", paths.dir.display()))?;
    if owner != "root" {
        check_reachable(&paths.dir, owner)?;
    }
    super::store::write_atomically(&paths.config, config.as_bytes())
        .with_context(|| format!("writing {}", paths.config.display()))?;
    std::fs::set_permissions(&paths.config, std::fs::Permissions::from_mode(0o640))
        .with_context(|| format!("chmod {}", paths.config.display()))?;
    Ok(())
}

/// Every directory above `dir` must let others through, or the server (running as `owner`)
/// cannot reach its own files: say so instead of letting it fail obscurely.
fn check_reachable(dir: &Path, owner: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)
            .with_context(|| format!("reading {}", ancestor.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            bail!(
                "user {owner} cannot reach {}: {} is mode {:o} (needs o+x)",
                dir.display(),
                ancestor.display(),
                mode & 0o7777
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::spec::{Credential, DbUsers};

    #[test]
    fn config_names_everything_the_server_needs() {
        let c = |u: &str| Credential {
            user: u.into(),
            password: "pw".into(),
        };
        let db = DbConfig {
            server_id: 7,
            bind: "10.77.0.41".into(),
            port: 3306,
            buffer_pool_mb: 96,
            semi_sync: true,
            client_hosts: "10.77.0.%".into(),
            users: DbUsers {
                replication: c("r"),
                app: c("a"),
                monitor: c("m"),
            },
            primary: None,
        };
        let paths = DbPaths::new(Path::new("/var/lib/lab"));
        let text = render_config(&db, true, &paths, "mysql");
        for line in [
            "user = mysql",
            "datadir = /var/lib/lab/db/data",
            "socket = /var/lib/lab/db/mysqld.sock",
            "bind_address = 10.77.0.41",
            "server_id = 7",
            "log_bin = lab-db-bin",
            "gtid_strict_mode = ON",
            "relay_log = /var/lib/lab/db/relay-bin",
            "innodb_buffer_pool_size = 96M",
            "read_only = ON",
            "rpl_semi_sync_slave_enabled = ON",
            "rpl_semi_sync_master_wait_point = AFTER_SYNC",
            "init_rpl_role = SLAVE",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(render_config(&db, false, &paths, "root").contains("read_only = OFF"));
    }

    #[test]
    fn errors_do_not_show_passwords() {
        let shown = redact("ALTER USER 'a'@'h' IDENTIFIED BY 'secret'");
        assert!(!shown.contains("secret"), "{shown}");
        let shown = redact("CHANGE MASTER TO MASTER_HOST='h', MASTER_PASSWORD='secret'");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

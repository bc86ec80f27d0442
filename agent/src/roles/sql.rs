//! The SQL the database role runs, as text built in one place (pure functions, tested on
//! their exact output), plus reading text-protocol rows of `mysql_async` as strings.
//!
//! Every name put into SQL is checked with [`is_sql_name`] (the spec's problems already refuse
//! others; checking again here costs nothing) and every string goes in through
//! [`literal`], which escapes what MariaDB's string syntax treats specially.

use lab_api::spec::{is_sql_name, Credential, DbConfig, APP_SCHEMA};

/// `s` as a single-quoted MariaDB string literal (backslash, quote, NUL, newlines escaped).
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A name checked to be `[a-z0-9_]{1,32}`.
fn name(s: &str) -> Result<&str, String> {
    if is_sql_name(s) {
        Ok(s)
    } else {
        Err(format!("{s:?} is not a safe SQL name"))
    }
}

/// `CREATE USER IF NOT EXISTS` + `ALTER USER ... IDENTIFIED BY` (so a changed password is
/// applied) for `who` at `host`.
fn user(who: &Credential, host: &str) -> Result<Vec<String>, String> {
    let account = format!("{}@{}", literal(name(&who.user)?), literal(host));
    let password = literal(&who.password);
    Ok(vec![
        format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}"),
        format!("ALTER USER {account} IDENTIFIED BY {password}"),
    ])
}

/// The monitor user's grant: what `SHOW SLAVE STATUS` and the status variables need.
pub fn monitor_grant(db: &DbConfig) -> Result<String, String> {
    Ok(format!(
        "GRANT PROCESS, SLAVE MONITOR ON *.* TO {}@'localhost'",
        literal(name(&db.users.monitor.user)?)
    ))
}

/// How many tables [`primary_setup`] makes in the app's schema (a replica holding them all
/// has replicated the whole setup).
pub const APP_TABLES: u64 = 2;

/// Makes a server writable (not binlogged).
pub const WRITABLE: &str = "SET GLOBAL read_only = OFF";

/// What a primary runs when it starts with a setup it has not run yet (idempotent;
/// replicated to the replicas through the binlog): writable, the users with their grants,
/// the app's schema and tables.
pub fn primary_setup(db: &DbConfig) -> Result<Vec<String>, String> {
    let hosts = db.client_hosts.as_str();
    let u = &db.users;
    let mut out = vec![WRITABLE.to_string()];
    out.extend(user(&u.replication, hosts)?);
    out.push(format!(
        "GRANT REPLICATION SLAVE ON *.* TO {}@{}",
        literal(name(&u.replication.user)?),
        literal(hosts)
    ));
    out.extend(user(&u.app, hosts)?);
    out.push(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON `{APP_SCHEMA}`.* TO {}@{}",
        literal(name(&u.app.user)?),
        literal(hosts)
    ));
    out.extend(user(&u.monitor, "localhost")?);
    out.push(monitor_grant(db)?);
    out.push(format!("CREATE DATABASE IF NOT EXISTS `{APP_SCHEMA}`"));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS `{APP_SCHEMA}`.users (\
         id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         name VARCHAR(64) NOT NULL UNIQUE, \
         password_hash VARCHAR(255) NOT NULL, \
         created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB"
    ));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS `{APP_SCHEMA}`.posts (\
         id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         user_id BIGINT NOT NULL, \
         body TEXT NOT NULL, \
         created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, \
         INDEX (user_id)) ENGINE=InnoDB"
    ));
    Ok(out)
}

/// Points a replica at its primary: stop, `CHANGE MASTER TO` (GTID, retry every second, a
/// heartbeat every second so a silent primary is noticed), start. Nothing of it is written to
/// the replica's binlog. `current_pos`, not `slave_pos`: a former primary rejoining as a
/// replica starts from its own last write (its binlog), not from an empty replication
/// position; writes the new primary lacks then stop it with an error instead of forking.
pub fn change_master(db: &DbConfig) -> Result<Vec<String>, String> {
    let primary = db.primary.as_ref().ok_or("a replica without a primary")?;
    let repl = &db.users.replication;
    Ok(vec![
        "STOP SLAVE".to_string(),
        format!(
            "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, \
             MASTER_PASSWORD={}, MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1, \
             MASTER_HEARTBEAT_PERIOD=1",
            literal(&primary.host),
            primary.port,
            literal(name(&repl.user)?),
            literal(&repl.password)
        ),
        "START SLAVE".to_string(),
    ])
}

/// One row of a text result set: column names and values (`None` for NULL).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// Rows of `mysql_async` as text (the text protocol sends every value as bytes).
    pub fn from_rows(rows: Vec<mysql_async::Row>) -> ResultSet {
        let columns = rows
            .first()
            .map(|r| {
                r.columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let rows = rows
            .iter()
            .map(|r| (0..r.len()).map(|i| r.as_ref(i).and_then(text)).collect())
            .collect();
        ResultSet { columns, rows }
    }

    /// The value of column `column` in the first row.
    pub fn first(&self, column: &str) -> Option<&str> {
        let at = self.columns.iter().position(|c| c == column)?;
        self.rows.first()?.get(at)?.as_deref()
    }
}

fn text(value: &mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::spec::{DbPeer, DbUsers};

    fn db() -> DbConfig {
        let c = |u: &str, p: &str| Credential {
            user: u.into(),
            password: p.into(),
        };
        DbConfig {
            server_id: 2,
            bind: "10.77.0.42".into(),
            port: 3306,
            buffer_pool_mb: 64,
            semi_sync: false,
            client_hosts: "10.77.0.%".into(),
            users: DbUsers {
                replication: c("lab_repl", "r3pl"),
                app: c("lab_app", "a:pp"),
                monitor: c("lab_monitor", "m0n"),
            },
            primary: Some(DbPeer {
                board: "db-1".into(),
                host: "10.77.0.41".into(),
                port: 3306,
            }),
        }
    }

    #[test]
    fn literals_escape_what_mariadb_treats_specially() {
        assert_eq!(literal("plain"), "'plain'");
        assert_eq!(literal(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(literal("x\0y\nz"), r"'x\0y\nz'");
    }

    #[test]
    fn primary_setup_grants_least_privilege() {
        let sql = primary_setup(&db()).expect("sql");
        assert_eq!(sql[0], "SET GLOBAL read_only = OFF");
        assert!(sql.contains(
            &"CREATE USER IF NOT EXISTS 'lab_app'@'10.77.0.%' IDENTIFIED BY 'a:pp'".to_string()
        ));
        assert!(sql.contains(&"ALTER USER 'lab_app'@'10.77.0.%' IDENTIFIED BY 'a:pp'".to_string()));
        assert!(sql.contains(
            &"GRANT SELECT, INSERT, UPDATE, DELETE ON `labapp`.* TO 'lab_app'@'10.77.0.%'"
                .to_string()
        ));
        assert!(
            sql.contains(&"GRANT REPLICATION SLAVE ON *.* TO 'lab_repl'@'10.77.0.%'".to_string())
        );
        assert!(sql.contains(
            &"GRANT PROCESS, SLAVE MONITOR ON *.* TO 'lab_monitor'@'localhost'".to_string()
        ));
        assert!(sql.iter().any(|s| s.contains("`labapp`.posts")));
    }

    #[test]
    fn app_tables_counts_the_tables_the_primary_makes() {
        let sql = primary_setup(&db()).expect("sql");
        let tables = sql.iter().filter(|s| s.starts_with("CREATE TABLE")).count();
        assert_eq!(u64::try_from(tables).ok(), Some(APP_TABLES));
    }

    #[test]
    fn change_master_uses_gtid_and_refuses_bad_names() {
        let sql = change_master(&db()).expect("sql");
        assert_eq!(
            sql[1],
            "CHANGE MASTER TO MASTER_HOST='10.77.0.41', MASTER_PORT=3306, \
             MASTER_USER='lab_repl', MASTER_PASSWORD='r3pl', MASTER_USE_GTID=current_pos, \
             MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1"
        );
        let mut bad = db();
        bad.users.replication.user = "x' OR 1".into();
        assert!(change_master(&bad).is_err());
        assert!(primary_setup(&bad).is_err());
    }
}

//! MariaDB collector: keeps one `mysql_async` connection (any auth plugin the server
//! offers, caching_sha2_password included) and runs, each sample,
//! `SHOW GLOBAL STATUS WHERE Variable_name IN (...)`, `SELECT @@read_only,
//! @@gtid_current_pos` and `SHOW SLAVE STATUS` (MariaDB 10.11). The address is
//! `user:password@host:port`, `user@/path/to/socket` (unix_socket authentication) or a bare
//! socket path (user `root`).
//!
//! Figures (names stable):
//! - counter: `queries_total` (`Questions`; includes the collector's own 3 statements/s)
//! - gauges: `threads_connected`, `threads_running`, `read_only` (0/1), `replica` (1 when
//!   `SHOW SLAVE STATUS` has a row), and on a replica `slave_io_running`,
//!   `slave_sql_running` (0/1) and `seconds_behind_master` (absent when NULL)
//!
//! Labels: `gtid_current_pos`.

use mysql_async::prelude::Queryable;

use super::{counter, gauge, CollectError, Reading};
pub use crate::roles::sql::ResultSet;

/// Where and as whom the collector connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub password: String,
    /// `host:port`, or an absolute unix socket path.
    pub endpoint: String,
}

impl Target {
    fn opts(&self) -> mysql_async::Opts {
        let builder = mysql_async::OptsBuilder::default()
            .user(Some(self.user.clone()))
            .pass((!self.password.is_empty()).then(|| self.password.clone()));
        let builder = if self.endpoint.starts_with('/') {
            builder.socket(Some(self.endpoint.clone()))
        } else {
            let (host, port) = self
                .endpoint
                .rsplit_once(':')
                .map_or((self.endpoint.as_str(), "3306"), |(h, p)| (h, p));
            builder
                .ip_or_hostname(host)
                .tcp_port(port.parse().unwrap_or(3306))
                .prefer_socket(false)
        };
        builder.into()
    }
}

/// `user:password@host:port`, `user@/path/to/socket` or a bare endpoint (user `root`); the
/// password may contain `:` and `@` (the last `@` ends it). A host without a port gets 3306.
pub fn parse_target(address: &str) -> Target {
    let (userinfo, endpoint) = match address.rfind('@') {
        Some(at) => (&address[..at], &address[at + 1..]),
        None => ("root", address),
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let endpoint = if endpoint.starts_with('/') || endpoint.contains(':') {
        endpoint.to_string()
    } else {
        format!("{endpoint}:3306")
    };
    Target {
        user: user.to_string(),
        password: password.to_string(),
        endpoint,
    }
}

/// Where `address` points, without its password (for logs).
pub fn redacted(address: &str) -> String {
    let target = parse_target(address);
    format!("{}@{}", target.user, target.endpoint)
}

const STATUS: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN \
    ('Questions', 'Threads_connected', 'Threads_running')";
const FLAGS: &str = "SELECT @@read_only, @@gtid_current_pos";
const REPLICA: &str = "SHOW SLAVE STATUS";

/// The collector's state: where to connect and the open connection, if any.
pub struct Mariadb {
    target: Target,
    connection: Option<mysql_async::Conn>,
}

impl Mariadb {
    pub fn new(address: &str) -> Self {
        Mariadb {
            target: parse_target(address),
            connection: None,
        }
    }

    /// Forgets the connection (after a failure or timeout); the next call reconnects.
    pub fn disconnect(&mut self) {
        self.connection = None;
    }

    pub async fn collect(&mut self) -> Result<Reading, CollectError> {
        let conn = match &mut self.connection {
            Some(conn) => conn,
            None => self
                .connection
                .insert(mysql_async::Conn::new(self.target.opts()).await?),
        };
        let status = ResultSet::from_rows(conn.query(STATUS).await?);
        let flags = ResultSet::from_rows(conn.query(FLAGS).await?);
        let replica = ResultSet::from_rows(conn.query(REPLICA).await?);
        Ok(reading(&status, &flags, &replica))
    }
}

/// Turns the three result sets into figures and labels.
pub fn reading(status: &ResultSet, flags: &ResultSet, replica: &ResultSet) -> Reading {
    let mut r = Reading::default();
    for row in &status.rows {
        let (Some(Some(name)), Some(Some(value))) = (row.first(), row.get(1)) else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        match name.to_ascii_lowercase().as_str() {
            "questions" => r.figures.push(counter("queries_total", value)),
            "threads_connected" => r.figures.push(gauge("threads_connected", value)),
            "threads_running" => r.figures.push(gauge("threads_running", value)),
            _ => {}
        }
    }
    if let Some(row) = flags.rows.first() {
        if let Some(Some(ro)) = row.first() {
            r.figures.push(gauge("read_only", yes(ro)));
        }
        if let Some(Some(gtid)) = row.get(1) {
            r.labels.push(("gtid_current_pos".into(), gtid.clone()));
        }
    }
    let row = replica.rows.first();
    r.figures
        .push(gauge("replica", if row.is_some() { 1.0 } else { 0.0 }));
    if let Some(row) = row {
        let column = |name: &str| {
            let at = replica.columns.iter().position(|c| c == name)?;
            row.get(at)?.as_deref()
        };
        if let Some(v) = column("Slave_IO_Running") {
            r.figures.push(gauge("slave_io_running", yes(v)));
        }
        if let Some(v) = column("Slave_SQL_Running") {
            r.figures.push(gauge("slave_sql_running", yes(v)));
        }
        if let Some(lag) = column("Seconds_Behind_Master").and_then(|v| v.parse().ok()) {
            r.figures.push(gauge("seconds_behind_master", lag));
        }
    }
    r
}

fn yes(value: &str) -> f64 {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" => 1.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(columns: &[&str], rows: &[&[Option<&str>]]) -> ResultSet {
        ResultSet {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
                .collect(),
        }
    }

    #[test]
    fn replica_figures() {
        let status = set(
            &["Variable_name", "Value"],
            &[
                &[Some("Questions"), Some("1234")],
                &[Some("Threads_connected"), Some("3")],
                &[Some("Threads_running"), Some("1")],
            ],
        );
        let flags = set(
            &["@@read_only", "@@gtid_current_pos"],
            &[&[Some("1"), Some("0-1-42")]],
        );
        // Columns of MariaDB 10.11 `SHOW SLAVE STATUS` (the ones used, in their order).
        let replica = set(
            &[
                "Slave_IO_State",
                "Master_Host",
                "Slave_IO_Running",
                "Slave_SQL_Running",
                "Seconds_Behind_Master",
            ],
            &[&[
                Some("Waiting for master to send event"),
                Some("db1"),
                Some("Yes"),
                Some("No"),
                None,
            ]],
        );
        let r = reading(&status, &flags, &replica);
        let get = |n: &str| {
            r.figures
                .iter()
                .find(|f| f.name == n)
                .map(|f| (f.value, f.counter))
        };
        assert_eq!(get("queries_total"), Some((1234.0, true)));
        assert_eq!(get("threads_connected"), Some((3.0, false)));
        assert_eq!(get("threads_running"), Some((1.0, false)));
        assert_eq!(get("read_only"), Some((1.0, false)));
        assert_eq!(get("replica"), Some((1.0, false)));
        assert_eq!(get("slave_io_running"), Some((1.0, false)));
        assert_eq!(get("slave_sql_running"), Some((0.0, false)));
        assert_eq!(get("seconds_behind_master"), None);
        assert_eq!(
            r.labels,
            [("gtid_current_pos".to_string(), "0-1-42".to_string())]
        );
    }

    #[test]
    fn targets_keep_passwords_with_colons_and_ats() {
        let t = parse_target("lab:pa:ss@word@/run/mysqld.sock");
        assert_eq!(
            (t.user.as_str(), t.password.as_str(), t.endpoint.as_str()),
            ("lab", "pa:ss@word", "/run/mysqld.sock")
        );
        assert_eq!(parse_target("db1").endpoint, "db1:3306");
        assert_eq!(parse_target("/s").user, "root");
        assert_eq!(redacted("m:secret@10.0.0.1:3306"), "m@10.0.0.1:3306");
    }

    #[test]
    fn primary_has_no_slave_figures() {
        let r = reading(
            &ResultSet::default(),
            &ResultSet::default(),
            &ResultSet::default(),
        );
        assert_eq!(r.figures.len(), 1);
        assert_eq!(r.figures[0].name, "replica");
        assert_eq!(r.figures[0].value, 0.0);
    }
}

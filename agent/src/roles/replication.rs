//! `GET /v1/db`: the board's database as the failover manager sees it, read live over the
//! root socket ([`lab_api::spec::DbReplication`]): `read_only`, the GTID positions, whether a
//! replica's threads run and its relay log is applied, and whether it still reaches its
//! primary over TCP (the "confirm through other agents" of a dead primary: a primary that
//! lost only the control plane is still reached by its replicas).

use std::time::Duration;

use anyhow::Context;
use lab_api::spec::{DbConfig, DbReplication};
use mysql_async::prelude::Queryable;

use super::mariadb::DbPaths;
use super::sql::ResultSet;

/// How long the root connection and each query may take.
const QUERY_WITHIN: Duration = Duration::from_secs(2);
/// How long a TCP connection to the primary may take to open before it counts as unreachable
/// (a cluster network answers in milliseconds; this wait is on the failover's critical path).
pub const REACH_WITHIN: Duration = Duration::from_millis(500);

/// Reads the state of the database described by `db` (`replica`: it plays db-replica).
pub async fn read(
    board: &str,
    paths: &DbPaths,
    db: &DbConfig,
    replica: bool,
) -> anyhow::Result<DbReplication> {
    let reach = async {
        match db.primary.as_ref().filter(|_| replica) {
            Some(p) => Some(reaches(&p.host, p.port).await),
            None => None,
        }
    };
    let (server, primary_reachable) = tokio::join!(query(paths), reach);
    let (read_only, gtid_current_pos, gtid_binlog_state, slave) = server?;
    let io_running = slave.first("Slave_IO_Running") == Some("Yes");
    let relay_applied = !slave.rows.is_empty()
        && slave.first("Master_Log_File") == slave.first("Relay_Master_Log_File")
        && slave.first("Read_Master_Log_Pos") == slave.first("Exec_Master_Log_Pos");
    Ok(DbReplication {
        board: board.to_string(),
        read_only,
        gtid_current_pos,
        gtid_binlog_state,
        io_running,
        gtid_io_pos: slave.first("Gtid_IO_Pos").unwrap_or("").to_string(),
        relay_applied,
        primary_reachable,
    })
}

async fn query(paths: &DbPaths) -> anyhow::Result<(bool, String, String, ResultSet)> {
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(paths.socket.display().to_string()))
        .user(Some("root"));
    let mut conn = tokio::time::timeout(QUERY_WITHIN, mysql_async::Conn::new(opts))
        .await
        .context("the database did not answer within 2 s")?
        .with_context(|| format!("connecting to {}", paths.socket.display()))?;
    let work = async {
        let flags: Option<(u8, String, String)> = conn
            .query_first("SELECT @@read_only, @@gtid_current_pos, @@gtid_binlog_state")
            .await
            .context("reading read_only and the GTID positions")?;
        let (read_only, current, state) = flags.context("no answer to SELECT @@read_only")?;
        let rows: Vec<mysql_async::Row> = conn
            .query("SHOW SLAVE STATUS")
            .await
            .context("SHOW SLAVE STATUS")?;
        anyhow::Ok((read_only != 0, current, state, ResultSet::from_rows(rows)))
    };
    let out = tokio::time::timeout(QUERY_WITHIN, work)
        .await
        .context("the database did not answer within 2 s")?;
    let _ = conn.disconnect().await;
    out
}

/// Whether a TCP connection to `host:port` opens within [`REACH_WITHIN`].
async fn reaches(host: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(REACH_WITHIN, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

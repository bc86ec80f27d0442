//! Where the app's SQL runs: a `mysql_async` pool to the primary and one per replica.
//!
//! - Writes go to the primary; right after, on the same connection, `SELECT @@last_gtid`
//!   gives the write's GTID (the caller remembers it for read-your-writes).
//! - Reads go to the replicas in turn. A replica that fails (no connection, an error, no
//!   answer within [`REPLICA_BUDGET`]) is skipped for [`REPLICA_SKIP`] and the read tried on
//!   the next one, then on the primary: a dying replica never fails a read.
//! - A read that must see a write ([`Freshness::AtLeast`]) first runs
//!   `SELECT MASTER_GTID_WAIT(gtid, 0.2)` on the chosen replica; anything but 0 (it is
//!   behind) sends the read to the primary. [`Freshness::Primary`] goes to the primary at once
//!   (the app could not learn what the user wrote last).
//! - No replica configured: reads go to the primary.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab_api::spec::{AppDb, DbPeer};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tokio_util::sync::CancellationToken;

use super::stats::Stats;

/// A replica's part of a read (connection, GTID wait, query).
pub const REPLICA_BUDGET: Duration = Duration::from_secs(1);
/// How long a failed replica is left out.
pub const REPLICA_SKIP: Duration = Duration::from_secs(1);
/// The primary's part of a read or a write. Below the LB's wait for an answer (3 s, see
/// `roles/nginx.rs`): with a dead primary the app must answer 503 itself before NGINX gives
/// up on it, or NGINX counts the timeout against the app and takes every app out at once
/// (reads that need no primary included).
pub const PRIMARY_BUDGET: Duration = Duration::from_millis(2500);
/// Connections per pool.
const POOL_MAX: usize = 16;
/// MariaDB's duplicate-key error.
const ER_DUP_ENTRY: u16 = 1062;

/// A query on a connection, boxed so that it can be retried on another one.
pub type QueryFuture<'c, T> =
    Pin<Box<dyn Future<Output = Result<T, mysql_async::Error>> + Send + 'c>>;

/// How fresh a read must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Any replica will do.
    Any,
    /// The replica must have applied this GTID position.
    AtLeast(String),
    /// Only the primary will do.
    Primary,
}

/// Which server answered, for the `X-DB` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    Primary(String),
    Replica(String),
}

impl Served {
    pub fn header(&self) -> String {
        match self {
            Served::Primary(board) => format!("primary {board}"),
            Served::Replica(board) => format!("replica {board}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database primary is configured")]
    NoPrimary,
    #[error("the database is unavailable")]
    Unavailable,
    /// A unique key refused the write.
    #[error("duplicate")]
    Duplicate,
}

/// A write's outcome.
pub struct Written<T> {
    pub value: T,
    /// `@@last_gtid` after it; None when the primary keeps no binlog.
    pub gtid: Option<String>,
    pub served: Served,
}

struct Peer {
    board: String,
    pool: Pool,
}

impl Peer {
    fn new(peer: &DbPeer, db: &AppDb) -> Peer {
        let opts = OptsBuilder::default()
            .ip_or_hostname(peer.host.clone())
            .tcp_port(peer.port)
            .prefer_socket(false)
            .user(Some(db.user.user.clone()))
            .pass(Some(db.user.password.clone()))
            .db_name(Some(db.schema.clone()))
            .tcp_nodelay(true)
            .pool_opts(
                PoolOpts::default()
                    // One connection stays open while idle: a quiet app's next read does not
                    // pay a login inside the replica's budget.
                    .with_constraints(PoolConstraints::new(1, POOL_MAX).unwrap_or_default())
                    // Our sessions keep no state worth a reset round trip per checkout.
                    .with_reset_connection(false),
            );
        Peer {
            board: peer.board.clone(),
            pool: Pool::new(opts),
        }
    }
}

struct Replica {
    peer: Peer,
    /// Milliseconds since `Db::origin` until which it is skipped.
    skip_until_ms: AtomicU64,
}

/// The database side of one config.
pub struct Db {
    primary: Option<Peer>,
    /// Cancelled when a reload names another primary: what still waits on this one (a
    /// dead board answers nothing) fails at once, so the client can retry on the new one.
    primary_replaced: CancellationToken,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    origin: Instant,
    stats: Arc<Stats>,
}

enum ReplicaRead<T> {
    Done(T),
    Behind,
}

impl Db {
    /// Pools for `config` (no connection is made until a query needs one).
    pub fn new(config: &AppDb, stats: Arc<Stats>) -> Db {
        Db {
            primary: config.primary.as_ref().map(|p| Peer::new(p, config)),
            primary_replaced: CancellationToken::new(),
            replicas: config
                .replicas
                .iter()
                .map(|r| Replica {
                    peer: Peer::new(r, config),
                    skip_until_ms: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            origin: Instant::now(),
            stats,
        }
    }

    /// The primary's board, if there is one.
    pub fn primary_board(&self) -> Option<&str> {
        self.primary.as_ref().map(|p| p.board.as_str())
    }

    /// A reload named another primary: every operation still waiting on this one fails now
    /// ([`DbError::Unavailable`]) instead of at its budget's end.
    pub fn primary_replaced(&self) {
        self.primary_replaced.cancel();
    }

    /// `attempt` on the primary within [`PRIMARY_BUDGET`], cut short if it is replaced.
    async fn on_primary<T>(
        &self,
        attempt: impl Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<Result<T, mysql_async::Error>, DbError> {
        tokio::select! {
            _ = self.primary_replaced.cancelled() => Err(DbError::Unavailable),
            done = tokio::time::timeout(PRIMARY_BUDGET, attempt) => {
                done.map_err(|_| DbError::Unavailable)
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Opens one connection in every pool in the background (each put back for the first
    /// requests), so the first read on a replica does not pay the connect and login within
    /// its [`REPLICA_BUDGET`] and fall to the primary. Failures are only logged: requests
    /// find their own way.
    pub fn warm(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peers = self
            .primary
            .iter()
            .chain(self.replicas.iter().map(|r| &r.peer));
        for peer in peers {
            let pool = peer.pool.clone();
            let board = peer.board.clone();
            runtime.spawn(async move {
                match tokio::time::timeout(PRIMARY_BUDGET, pool.get_conn()).await {
                    Ok(Ok(_conn)) => log::debug!("connected to {board}"),
                    Ok(Err(err)) => log::info!("warming the pool of {board}: {err}"),
                    Err(_) => log::info!("warming the pool of {board}: no answer in time"),
                }
            });
        }
    }

    /// The pools, for the start and reload log line.
    pub fn describe(&self) -> String {
        let replicas: Vec<&str> = self
            .replicas
            .iter()
            .map(|r| r.peer.board.as_str())
            .collect();
        format!(
            "database primary {}, replicas [{}]",
            self.primary.as_ref().map_or("none", |p| p.board.as_str()),
            replicas.join(", ")
        )
    }

    /// Runs `query` where `freshness` allows, replicas first.
    pub async fn read<T, Q>(&self, freshness: &Freshness, query: Q) -> Result<(T, Served), DbError>
    where
        Q: for<'c> Fn(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let n = self.replicas.len();
        if *freshness != Freshness::Primary && n > 0 {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for step in 0..n {
                let replica = &self.replicas[(start + step) % n];
                if self.now_ms() < replica.skip_until_ms.load(Ordering::Relaxed) {
                    continue;
                }
                let attempt = async {
                    let mut conn = replica.peer.pool.get_conn().await?;
                    if let Freshness::AtLeast(gtid) = freshness {
                        let waited: Option<Option<i64>> = conn
                            .exec_first("SELECT MASTER_GTID_WAIT(?, 0.2)", (gtid.as_str(),))
                            .await?;
                        if waited != Some(Some(0)) {
                            return Ok(ReplicaRead::Behind);
                        }
                    }
                    query(&mut conn).await.map(ReplicaRead::Done)
                };
                match tokio::time::timeout(REPLICA_BUDGET, attempt).await {
                    Ok(Ok(ReplicaRead::Done(value))) => {
                        self.stats.db_read(true);
                        return Ok((value, Served::Replica(replica.peer.board.clone())));
                    }
                    Ok(Ok(ReplicaRead::Behind)) => break,
                    failed => {
                        // Logged once per skip window at most: the skip stops the next tries.
                        match failed {
                            Ok(Err(err)) => log::warn!(
                                "read on replica {}: {err}; skipping it for {} s",
                                replica.peer.board,
                                REPLICA_SKIP.as_secs()
                            ),
                            _ => log::warn!(
                                "read on replica {}: no answer within {} ms; skipping it for {} s",
                                replica.peer.board,
                                REPLICA_BUDGET.as_millis(),
                                REPLICA_SKIP.as_secs()
                            ),
                        }
                        let until =
                            self.now_ms() + u64::try_from(REPLICA_SKIP.as_millis()).unwrap_or(1000);
                        replica.skip_until_ms.store(until, Ordering::Relaxed);
                    }
                }
            }
        }
        let primary = self.primary.as_ref().ok_or(DbError::NoPrimary)?;
        let attempt = async {
            let mut conn = primary.pool.get_conn().await?;
            query(&mut conn).await
        };
        match self.on_primary(attempt).await? {
            Ok(value) => {
                self.stats.db_read(false);
                Ok((value, Served::Primary(primary.board.clone())))
            }
            Err(err) => {
                log::debug!("read on {}: {err}", primary.board);
                Err(DbError::Unavailable)
            }
        }
    }

    /// Runs `query` on the primary, then reads the GTID it wrote.
    pub async fn write<T, Q>(&self, query: Q) -> Result<Written<T>, DbError>
    where
        Q: for<'c> FnOnce(&'c mut Conn) -> QueryFuture<'c, T>,
    {
        let primary = self.primary.as_ref().ok_or(DbError::NoPrimary)?;
        let attempt = async {
            let mut conn = primary.pool.get_conn().await?;
            let value = query(&mut conn).await?;
            let gtid: Option<String> = conn.query_first("SELECT @@last_gtid").await?;
            Ok::<_, mysql_async::Error>((value, gtid.filter(|g| !g.is_empty())))
        };
        match self.on_primary(attempt).await? {
            Ok((value, gtid)) => {
                self.stats.db_write();
                Ok(Written {
                    value,
                    gtid,
                    served: Served::Primary(primary.board.clone()),
                })
            }
            Err(mysql_async::Error::Server(e)) if e.code == ER_DUP_ENTRY => Err(DbError::Duplicate),
            Err(err) => {
                log::debug!("write on {}: {err}", primary.board);
                Err(DbError::Unavailable)
            }
        }
    }

    /// Closes every pool (waits for connections in use, at most `limit`).
    pub async fn close(self, limit: Duration) {
        let pools = self
            .primary
            .into_iter()
            .chain(self.replicas.into_iter().map(|r| r.peer))
            .map(|p| p.pool);
        for pool in pools {
            let _ = tokio::time::timeout(limit, pool.disconnect()).await;
        }
    }
}

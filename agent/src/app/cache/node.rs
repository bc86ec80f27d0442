//! One memcached board as the app uses it: a few pooled TCP connections, every operation
//! bounded ([`CONNECT_TIMEOUT`], [`OP_TIMEOUT`]), and whether the board is live. A board that
//! fails an operation is ejected at once (its idle connections dropped) and probed again
//! after [`RETRY_AFTER`]; see [`super::Cache`] for who probes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::BufStream;
use tokio::net::TcpStream;

use super::protocol::{self, ProtocolError, Reply, Request};

/// Opening a connection to a board.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// One request and its whole reply.
pub const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// How long an ejected board is left alone before it is probed again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Idle connections kept per board (more are opened under load, and closed after use).
const MAX_IDLE: usize = 4;

type Connection = BufStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("no connection to {0} within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout(String),
    #[error("{addr}: {source}")]
    Protocol { addr: String, source: ProtocolError },
    #[error("{0}: no reply within {OP_TIMEOUT:?}")]
    Timeout(String),
}

/// A cache board.
pub struct Node {
    pub board: String,
    /// `host:port`.
    pub addr: String,
    idle: Mutex<Vec<Connection>>,
    /// Milliseconds since `origin` after which an ejected board may be probed; 0 = live.
    retry_at_ms: AtomicU64,
    origin: Instant,
}

impl Node {
    pub fn new(board: String, addr: String) -> Node {
        Node {
            board,
            addr,
            idle: Mutex::new(Vec::new()),
            retry_at_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn is_live(&self) -> bool {
        self.retry_at_ms.load(Ordering::Acquire) == 0
    }

    /// Ejected and due for a probe.
    pub fn due_for_probe(&self) -> bool {
        let at = self.retry_at_ms.load(Ordering::Acquire);
        at != 0 && self.now_ms() >= at
    }

    /// Takes the board out of use; true when it was live until now.
    pub fn eject(&self) -> bool {
        let retry = (self.now_ms() + u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(1000)).max(1);
        let was = self.retry_at_ms.swap(retry, Ordering::AcqRel);
        self.take_idle();
        was == 0
    }

    /// Puts the board back in use; true when it was ejected until now.
    pub fn restore(&self) -> bool {
        self.retry_at_ms.swap(0, Ordering::AcqRel) != 0
    }

    fn take_idle(&self) -> Vec<Connection> {
        match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn pop_idle(&self) -> Option<Connection> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    fn push_idle(&self, connection: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(connection);
            }
        }
    }

    async fn connect(&self) -> Result<Connection, NodeError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| NodeError::ConnectTimeout(self.addr.clone()))?
            .map_err(|source| NodeError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(BufStream::new(stream))
    }

    /// Runs `request` on a pooled connection (or a new one). On any failure the connection
    /// is dropped; ejecting the board is the caller's decision.
    pub async fn run(&self, request: &Request<'_>) -> Result<Reply, NodeError> {
        let mut connection = match self.pop_idle() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let reply = tokio::time::timeout(OP_TIMEOUT, protocol::exchange(&mut connection, request))
            .await
            .map_err(|_| NodeError::Timeout(self.addr.clone()))?
            .map_err(|source| NodeError::Protocol {
                addr: self.addr.clone(),
                source,
            })?;
        self.push_idle(connection);
        Ok(reply)
    }

    /// A probe on a fresh connection (an ejected board's pooled ones are gone).
    pub async fn probe(&self) -> Result<(), NodeError> {
        let mut connection = self.connect().await?;
        tokio::time::timeout(
            OP_TIMEOUT,
            protocol::exchange(&mut connection, &Request::Version),
        )
        .await
        .map_err(|_| NodeError::Timeout(self.addr.clone()))?
        .map_err(|source| NodeError::Protocol {
            addr: self.addr.clone(),
            source,
        })?;
        self.push_idle(connection);
        Ok(())
    }
}

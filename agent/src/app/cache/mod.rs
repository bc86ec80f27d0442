//! The app's memcached client: our own small text-protocol client ([`protocol`]) with pooled
//! connections per board ([`node`]), keys spread by consistent hashing ([`ring`]).
//!
//! A board that fails an operation (refused, reset, timed out) is ejected at once, and its
//! keys go to the next live board on the ring; a checker task per board sends `version`
//! every [`CHECK_EVERY`] to live boards (so a dead board is noticed within about a second
//! even when no request touched it) and probes an ejected one after [`node::RETRY_AFTER`].
//! A cache failure is never the client's problem: it is counted
//! ([`Stats::cache_errors_total`](super::stats::Stats)) and the request goes on to the
//! database.
//!
//! Known limit: a board that comes back after a partition (not a restart) still holds what
//! it held; a key deleted meanwhile on the board that stood in for it (a user's post list)
//! may be served stale from it until its TTL (`cache_ttl_secs`) ends. Posts never change, so
//! only lists are affected, and an author's own list skips the cache while their write is
//! recent (see [`super::handlers`]).

pub mod node;
pub mod protocol;
pub mod ring;

use std::sync::Arc;
use std::time::Duration;

use lab_api::spec::{CacheHashing, CachePeer};
use tokio_util::sync::{CancellationToken, DropGuard};

use self::node::Node;
use self::protocol::{Reply, Request};
use self::ring::Ring;
use super::stats::Stats;

/// How often each live board is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// What a cache read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// No live board, or the board failed: the caller reads the database.
    Unavailable,
}

/// The cache boards of one config.
pub struct Cache {
    ring: Ring,
    nodes: Vec<Arc<Node>>,
    stats: Arc<Stats>,
    /// Stops the checkers when the cache is dropped (a reload replaced it).
    _checkers: DropGuard,
}

impl Cache {
    /// The cache over `peers`; starts one checker task per board (inside a Tokio runtime).
    pub fn new(peers: &[CachePeer], hashing: CacheHashing, stats: Arc<Stats>) -> Cache {
        let names: Vec<&str> = peers.iter().map(|p| p.board.as_str()).collect();
        let nodes: Vec<Arc<Node>> = peers
            .iter()
            .map(|p| Arc::new(Node::new(p.board.clone(), format!("{}:{}", p.host, p.port))))
            .collect();
        let stop = CancellationToken::new();
        for node in &nodes {
            tokio::spawn(check(node.clone(), stop.clone()));
        }
        Cache {
            ring: Ring::with_hashing(&names, hashing),
            nodes,
            stats,
            _checkers: stop.drop_guard(),
        }
    }

    /// Boards configured.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Boards in use now.
    pub fn live(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_live()).count()
    }

    /// Whether the board `key` lives on when all are up is up now: if not, what was stored
    /// under `key` recently is out of reach (the next board never had it).
    pub fn home_is_live(&self, key: &str) -> bool {
        self.ring
            .home(key.as_bytes())
            .is_some_and(|i| self.nodes[i].is_live())
    }

    fn node_for(&self, key: &str) -> Option<&Arc<Node>> {
        let index = self
            .ring
            .pick(key.as_bytes(), |i| self.nodes[i].is_live())?;
        self.nodes.get(index)
    }

    /// Runs `request` on the board of `key`; None when there is none or it failed (then it
    /// is ejected and the failure counted).
    async fn run(&self, key: &str, request: &Request<'_>) -> Option<Reply> {
        let node = self.node_for(key)?;
        match node.run(request).await {
            Ok(reply) => Some(reply),
            Err(err) => {
                self.stats.cache_error();
                if node.eject() {
                    log::warn!("cache board {} ejected: {err}", node.board);
                }
                None
            }
        }
    }

    pub async fn get(&self, key: &str) -> Lookup {
        match self.run(key, &Request::Get(key)).await {
            Some(Reply::Value(Some(v))) => Lookup::Hit(v),
            Some(Reply::Value(None)) => Lookup::Miss,
            _ => Lookup::Unavailable,
        }
    }

    /// Stores `value`; true when stored.
    pub async fn set(&self, key: &str, value: &[u8], ttl_secs: u32) -> bool {
        let request = Request::Set {
            key,
            value,
            ttl_secs,
        };
        matches!(self.run(key, &request).await, Some(Reply::Stored))
    }

    /// Deletes `key`; true when the board answered (whether or not there was a value).
    pub async fn delete(&self, key: &str) -> bool {
        matches!(
            self.run(key, &Request::Delete(key)).await,
            Some(Reply::Deleted(_))
        )
    }
}

/// One board's checker: `version` on live boards, a probe on ejected ones once due.
async fn check(node: Arc<Node>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.is_live() {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                outcome = node.run(&Request::Version) => outcome,
            };
            if let Err(err) = outcome {
                if node.eject() {
                    log::warn!("cache board {} ejected: {err}", node.board);
                }
            }
        } else if node.due_for_probe() {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                outcome = node.probe() => outcome,
            };
            match outcome {
                Ok(()) => {
                    if node.restore() {
                        log::info!("cache board {} back in use", node.board);
                    }
                }
                Err(_) => {
                    node.eject();
                }
            }
        }
    }
}

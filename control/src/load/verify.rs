//! After a run (`--verify-writes`): read back every write the app acknowledged (2xx), each
//! with `Cache-Control: no-cache` so the database answers, and count the ones it no longer
//! has: the writes a failover lost. A 404 is retried until [`SETTLE`] has passed (a replica
//! may still be applying the last writes); what still 404s then is lost, what never got an
//! answer at all is unverified, not lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use lab_api::app::paths;
use serde::Serialize;

use super::client::{request, Connection};
use super::target::Target;

/// How long a write that is not found yet may take to show up.
pub const SETTLE: Duration = Duration::from_secs(10);
/// Reads in flight at once.
const PARALLEL: usize = 16;
/// Lost ids kept in the summary (the count is whole).
const LOST_IDS_KEPT: usize = 20;

/// What reading the acknowledged writes back found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WriteCheck {
    /// Writes answered 2xx during the run.
    pub acknowledged: u64,
    /// Read back afterwards.
    pub found: u64,
    /// Answered 404 until the end: acknowledged, then lost.
    pub lost: u64,
    /// Never answered (refused, timed out, 5xx): neither found nor shown lost.
    pub unverified: u64,
    /// The first lost post ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_ids: Vec<u64>,
}

/// How one read back ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Found,
    Missing,
    NoAnswer,
}

/// Read back `ids` through `target`; what is not found is asked again until `settle` has
/// passed ([`SETTLE`] for a run).
pub async fn read_back(
    target: Arc<Target>,
    ids: &[u64],
    timeout: Duration,
    settle: Duration,
) -> WriteCheck {
    let deadline = Instant::now() + settle;
    let mut pending: Vec<u64> = ids.to_vec();
    let mut found = 0u64;
    loop {
        let outcomes = read_all(&target, &pending, timeout).await;
        found += outcomes.iter().filter(|(_, s)| *s == Seen::Found).count() as u64;
        let left: Vec<(u64, Seen)> = outcomes
            .into_iter()
            .filter(|(_, s)| *s != Seen::Found)
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            let lost: Vec<u64> = left
                .iter()
                .filter(|(_, s)| *s == Seen::Missing)
                .map(|(id, _)| *id)
                .collect();
            let acknowledged = ids.len() as u64;
            return WriteCheck {
                acknowledged,
                found,
                lost: lost.len() as u64,
                // What is neither found nor missing (no answer, or a reader that died).
                unverified: acknowledged.saturating_sub(found + lost.len() as u64),
                lost_ids: lost.into_iter().take(LOST_IDS_KEPT).collect(),
            };
        }
        pending = left.into_iter().map(|(id, _)| id).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One read of each id, [`PARALLEL`] at a time.
async fn read_all(target: &Arc<Target>, ids: &[u64], timeout: Duration) -> Vec<(u64, Seen)> {
    let post_path = target.app_path(paths::POST_PREFIX);
    let chunk = ids.len().div_ceil(PARALLEL).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for part in ids.chunks(chunk) {
        let (target, part, post_path) = (target.clone(), part.to_vec(), post_path.clone());
        tasks.spawn(async move {
            let mut conn = Connection::new(target.clone());
            let mut out = Vec::with_capacity(part.len());
            for id in part {
                let mut req = request(
                    &target,
                    Method::GET,
                    &format!("{post_path}{id}"),
                    None,
                    None,
                );
                req.headers_mut().insert(
                    hyper::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache"),
                );
                let seen = match conn.send(req, timeout).await {
                    Ok(a) if a.status.is_success() => Seen::Found,
                    Ok(a) if a.status == StatusCode::NOT_FOUND => Seen::Missing,
                    _ => Seen::NoAnswer,
                };
                out.push((id, seen));
            }
            out
        });
    }
    let mut all = Vec::with_capacity(ids.len());
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap_or_default());
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A keep-alive HTTP/1.1 server on loopback: post ids below 100 exist, 100 and up do not,
    /// id 7 shows up only from the second time it is asked (a replica catching up).
    async fn posts_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let asked_for_7 = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let asked_for_7 = asked_for_7.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let id: u64 = head
                            .split_whitespace()
                            .nth(1)
                            .and_then(|p| p.rsplit('/').next())
                            .and_then(|i| i.parse().ok())
                            .unwrap_or(u64::MAX);
                        let found = match id {
                            7 => asked_for_7.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0,
                            _ => id < 100,
                        };
                        let answer = if found {
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
                        } else {
                            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
                        };
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn what_still_is_not_found_after_settling_is_lost() {
        let addr = posts_server().await;
        let url = super::super::target::parse_url(&format!("http://{addr}/")).expect("url");
        let target = Arc::new(super::super::target::resolve(url).await.expect("target"));
        let ids: Vec<u64> = (1..=40).chain([100, 101, 7]).collect();
        let check = read_back(
            target,
            &ids,
            Duration::from_secs(2),
            Duration::from_millis(800),
        )
        .await;
        assert_eq!(check.acknowledged, 43);
        assert_eq!(check.found, 41, "{check:?}");
        assert_eq!(check.lost, 2, "{check:?}");
        assert_eq!(check.unverified, 0);
        let mut lost = check.lost_ids.clone();
        lost.sort_unstable();
        assert_eq!(lost, [100, 101]);
    }
}

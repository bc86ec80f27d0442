//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per worker (hyper's
//! `client::conn`, its I/O driven inside the worker's task), opened on first use and again
//! whenever the server closed it or a request on it failed. Every request, connecting included,
//! is bounded by a timeout; a failure says which kind it was (connect, timeout, I/O) so the
//! summary can count them apart.
//!
//! Like a browser, a request that went out on a *reused* connection which the server closed
//! before any byte of an answer (the keep-alive race: an idle timeout or an NGINX reload closes
//! the connection just as the request is written) is sent once more on a fresh connection.
//! The server never saw it, so that is not a retry of work done; any other failure counts.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::target::Target;

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// The TCP connection could not be opened.
    Connect,
    /// No complete answer within the timeout.
    Timeout,
    /// The connection broke mid-request (reset, closed early, malformed answer).
    Io,
}

/// A request that got no HTTP answer, with what went wrong in words.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request ready to send: method, path (origin form) and body.
pub fn request(
    target: &Target,
    method: Method,
    path: &str,
    json_body: Option<Bytes>,
    authorization: Option<&HeaderValue>,
) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(json_body.clone().unwrap_or_default()));
    *req.method_mut() = method;
    // A path that does not parse is sent as "/" rather than not at all (paths are built here
    // from numbers and the validated URL, so this does not happen).
    *req.uri_mut() = path
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    let headers = req.headers_mut();
    headers.insert(HOST, target.host_header.clone());
    if json_body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(auth) = authorization {
        headers.insert(hyper::header::AUTHORIZATION, auth.clone());
    }
    req
}

/// The connection's I/O half: driven by the worker's own task while it waits for an answer
/// (no task of its own, so an answer wakes the worker directly).
type Driver = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// One keep-alive connection to the target.
pub struct Connection {
    target: Arc<Target>,
    open: Option<(http1::SendRequest<Full<Bytes>>, Driver)>,
    /// The address being connected to, while that lasts (a timeout then counts against it).
    connecting: Option<std::net::SocketAddr>,
}

impl Connection {
    /// Not connected yet: the first [`Connection::send`] connects.
    pub fn new(target: Arc<Target>) -> Self {
        Connection {
            target,
            open: None,
            connecting: None,
        }
    }

    /// Send `req` and read the whole answer, within `timeout` (connecting included).
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let attempt = async {
            let copy = duplicate(&req);
            match self.exchange(req).await {
                Err(Exchange::ClosedUnanswered(_)) => {
                    self.exchange(copy).await.map_err(Exchange::into_failure)
                }
                r => r.map_err(Exchange::into_failure),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => {
                // The connection's state is unknown: start afresh next time. A board whose
                // plug was pulled sends nothing back: a connect that timed out means gone.
                self.open = None;
                if let Some(addr) = self.connecting.take() {
                    self.target.failed(addr);
                }
                Err(Failure {
                    kind: FailureKind::Timeout,
                    detail: format!("no answer within {timeout:?}"),
                })
            }
        }
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Exchange> {
        let reusable = match self.open.take() {
            Some((sender, mut driver)) if !sender.is_closed() => {
                // A server that closed the idle connection (keepalive_timeout) has left an
                // EOF to read: one poll finds it, and a fresh connection is opened instead.
                let ended =
                    std::future::poll_fn(|cx| Poll::Ready(driver.as_mut().poll(cx).is_ready()))
                        .await;
                (!ended).then_some((sender, driver))
            }
            _ => None,
        };
        let reused = reusable.is_some();
        let (mut sender, driver) = match reusable {
            Some(open) => open,
            None => {
                let addr = self.target.now();
                self.connecting = Some(addr);
                let connected = connect(addr).await;
                self.connecting = None;
                connected.map_err(|e| {
                    self.target.failed(addr);
                    Exchange::Failed(e)
                })?
            }
        };
        let mut driver = Some(driver);
        // The driver first: it delivers the answer that `work` then finds ready. When it ends
        // (the server closed, or said `Connection: close`) it is dropped at once, so `work`
        // finishes with what was delivered or with the error rather than wait for nothing.
        let result = {
            let work = async {
                // No answer head yet: on a reused connection, a close here is the race.
                let unanswered = |e: hyper::Error| {
                    if reused && closed_unanswered(&e) {
                        Exchange::ClosedUnanswered(io_failure(e))
                    } else {
                        Exchange::Failed(io_failure(e))
                    }
                };
                sender.ready().await.map_err(unanswered)?;
                let answer = sender.send_request(req).await.map_err(unanswered)?;
                let (parts, body) = answer.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| Exchange::Failed(io_failure(e)))?
                    .to_bytes();
                Ok(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            };
            tokio::pin!(work);
            std::future::poll_fn(|cx| {
                if let Some(d) = driver.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        driver = None;
                    }
                }
                work.as_mut().poll(cx)
            })
            .await
        };
        if let (Ok(_), Some(driver)) = (&result, driver) {
            self.open = Some((sender, driver));
        }
        result
    }
}

/// How one exchange on one connection ended, when it got no answer.
enum Exchange {
    /// A reused connection closed before any byte of an answer: worth one fresh try.
    ClosedUnanswered(Failure),
    Failed(Failure),
}

impl Exchange {
    fn into_failure(self) -> Failure {
        match self {
            Exchange::ClosedUnanswered(f) | Exchange::Failed(f) => f,
        }
    }
}

/// Did the connection close (EOF, reset, broken pipe) before an answer began?
fn closed_unanswered(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

/// The same request again (its body is shared bytes, so this copies no payload).
fn duplicate(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

async fn connect(addr: SocketAddr) -> Result<(http1::SendRequest<Full<Bytes>>, Driver), Failure> {
    let stream = TcpStream::connect(addr).await.map_err(|e| Failure {
        kind: FailureKind::Connect,
        detail: format!("connect to {addr}: {e}"),
    })?;
    let _ = stream.set_nodelay(true);
    let (sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure {
            kind: FailureKind::Connect,
            detail: format!("HTTP handshake with {addr}: {e}"),
        })?;
    Ok((sender, Box::pin(driver)))
}

fn io_failure(e: hyper::Error) -> Failure {
    Failure {
        kind: FailureKind::Io,
        detail: crate::report::error_chain(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// A server whose first connection answers one request, then reads the next one and closes
    /// without a word (the keep-alive race); later connections answer every request.
    async fn racing_server() -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut connections = 0;
            while connections < 2 {
                let Ok((mut s, _)) = listener.accept().await else {
                    break;
                };
                connections += 1;
                let mut buf = [0u8; 4096];
                let mut answered = 0;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || (connections == 1 && answered == 1) {
                        break;
                    }
                    if s.write_all(OK).await.is_err() {
                        break;
                    }
                    answered += 1;
                }
            }
            connections
        });
        (addr, task)
    }

    async fn target(addr: SocketAddr) -> Arc<Target> {
        let url = super::super::target::parse_url(&format!("http://{addr}/")).expect("url");
        Arc::new(super::super::target::resolve(url).await.expect("target"))
    }

    #[tokio::test]
    async fn a_reused_connection_closed_unanswered_is_tried_once_afresh() {
        let (addr, server) = racing_server().await;
        let target = target(addr).await;
        let mut conn = Connection::new(target.clone());
        let timeout = Duration::from_secs(5);
        for _ in 0..3 {
            let post = request(
                &target,
                Method::POST,
                "/api/login",
                Some(Bytes::from("{}")),
                None,
            );
            let answer = conn.send(post, timeout).await.expect("answered");
            assert_eq!(answer.status, StatusCode::OK);
        }
        drop(conn);
        assert_eq!(server.await.expect("server"), 2, "one fresh connection");
    }

    #[tokio::test]
    async fn a_fresh_connection_closed_unanswered_is_a_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            // Reads the request, then closes: every connection, so a retry would fail too,
            // but the server counts how many connections came.
            while let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                accepted += 1;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
            }
            accepted
        });
        let target = target(addr).await;
        let mut conn = Connection::new(target.clone());
        let get = request(&target, Method::GET, "/", None, None);
        let failure = conn
            .send(get, Duration::from_secs(5))
            .await
            .expect_err("no answer");
        assert_eq!(failure.kind, FailureKind::Io, "{failure:?}");
        assert_eq!(server.await.expect("server"), 1, "no second connection");
    }
}

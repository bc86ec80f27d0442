//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per worker (hyper's
//! `client::conn`, its I/O driven inside the worker's task), opened on first use and again
//! whenever the server closed it or a request on it failed. Every request, connecting included, is bounded by a timeout; a failure says which
//! kind it was (connect, timeout, I/O) so the summary can count them apart.

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
}

impl Connection {
    /// Not connected yet: the first [`Connection::send`] connects.
    pub fn new(target: Arc<Target>) -> Self {
        Connection { target, open: None }
    }

    /// Send `req` and read the whole answer, within `timeout` (connecting included).
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(r) => r,
            Err(_) => {
                // The connection's state is unknown: start afresh next time.
                self.open = None;
                Err(Failure {
                    kind: FailureKind::Timeout,
                    detail: format!("no answer within {timeout:?}"),
                })
            }
        }
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Failure> {
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
        let (mut sender, driver) = match reusable {
            Some(open) => open,
            None => connect(self.target.addr).await?,
        };
        let mut driver = Some(driver);
        // The driver first: it delivers the answer that `work` then finds ready. When it ends
        // (the server closed, or said `Connection: close`) it is dropped at once, so `work`
        // finishes with what was delivered or with the error rather than wait for nothing.
        let result = {
            let work = async {
                sender.ready().await.map_err(io_failure)?;
                let answer = sender.send_request(req).await.map_err(io_failure)?;
                let (parts, body) = answer.into_parts();
                let body = body.collect().await.map_err(io_failure)?.to_bytes();
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

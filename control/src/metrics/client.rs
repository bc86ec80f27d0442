//! Finding the running control plane (`lab serve`) of a cluster and reading its HTTP API:
//! what `lab metrics export` (and `lab top`) use. `lab serve` writes its listen address to
//! `<state>/serve.addr` and its pid to `<state>/serve.pid`; [`ServeClient::discover`] reads
//! the address and checks that something answers there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// File in the state dir holding `lab serve`'s listen address (`127.0.0.1:7480`).
pub const ADDR_FILE: &str = "serve.addr";
/// File in the state dir holding `lab serve`'s pid.
pub const PID_FILE: &str = "serve.pid";
/// Log of a `lab serve` started by `lab up`.
pub const LOG_FILE: &str = "serve.log";
/// Events appended by `lab serve`, one JSON object per line.
pub const EVENTS_FILE: &str = "events.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control plane not running: start it with `lab up` or `lab serve` ({detail})")]
    NotRunning { detail: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: HTTP error")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: unreadable answer")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A client for one running `lab serve`.
#[derive(Debug, Clone)]
pub struct ServeClient {
    addr: String,
    timeout: Duration,
}

impl ServeClient {
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Self {
        Self {
            addr: addr.into(),
            timeout,
        }
    }

    /// The listen address `lab serve` recorded in `state_dir`, if any.
    pub fn recorded_addr(state_dir: &Path) -> Option<String> {
        std::fs::read_to_string(state_dir.join(ADDR_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The `lab serve` of the cluster whose state dir is `state_dir`; `NotRunning` when it
    /// recorded no address or nothing accepts connections there.
    pub async fn discover(state_dir: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let file: PathBuf = state_dir.join(ADDR_FILE);
        let Some(addr) = Self::recorded_addr(state_dir) else {
            return Err(ClientError::NotRunning {
                detail: format!("no {}", file.display()),
            });
        };
        match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => Ok(Self::new(addr, timeout)),
            Ok(Err(e)) => Err(ClientError::NotRunning {
                detail: format!("nothing answers on {addr}: {e}"),
            }),
            Err(_) => Err(ClientError::NotRunning {
                detail: format!("nothing answers on {addr} within {timeout:?}"),
            }),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// GET `path_and_query` and decode its JSON answer.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, ClientError> {
        let url = format!("http://{}{path_and_query}", self.addr);
        let body = self.get(path_and_query).await?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode { url, source })
    }

    /// GET `path_and_query`; the body of a 2xx answer.
    pub async fn get(&self, path_and_query: &str) -> Result<Bytes, ClientError> {
        let url = format!("http://{}{path_and_query}", self.addr);
        match tokio::time::timeout(self.timeout, self.fetch(&url, path_and_query)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                url,
                timeout: self.timeout,
            }),
        }
    }

    async fn fetch(&self, url: &str, path_and_query: &str) -> Result<Bytes, ClientError> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| ClientError::NotRunning {
                detail: format!("nothing answers on {}: {e}", self.addr),
            })?;
        let http = |source| ClientError::Http {
            url: url.to_string(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(http)?;
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(path_and_query)
            .header(hyper::header::HOST, self.addr.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| ClientError::Status {
                url: url.to_string(),
                status: 0,
                message: e.to_string(),
            })?;
        let result = async {
            let resp = sender.send_request(req).await.map_err(http)?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
            Ok::<_, ClientError>((status, body))
        }
        .await;
        conn_task.abort();
        let (status, body) = result?;
        if !status.is_success() {
            #[derive(serde::Deserialize)]
            struct ErrorBody {
                error: String,
            }
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        Ok(body)
    }
}

/// Percent-encode a query parameter value (board and series names are plain, but `:` and
/// anything unusual are escaped to be safe).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(encode_query_value("role:app:req s"), "role%3Aapp%3Areq%20s");
        assert_eq!(encode_query_value("pi-4"), "pi-4");
    }

    #[tokio::test]
    async fn missing_addr_file_says_how_to_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ServeClient::discover(dir.path(), Duration::from_millis(200))
            .await
            .expect_err("nothing recorded");
        assert!(err
            .to_string()
            .starts_with("control plane not running: start it with `lab up` or `lab serve`"));
    }
}

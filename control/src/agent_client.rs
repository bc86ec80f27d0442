//! HTTPS client for the agent API, with mutual TLS: `lab` presents its client certificate and
//! accepts only agents whose certificate the cluster CA signed for the address it dialled.
//! Requests carry the protocol version header; answers are `lab-api` types.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::pki::ClusterPki;

#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    #[error("bad TLS material: {0}")]
    Tls(String),
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr}: cannot connect")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: TLS handshake failed")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: HTTP error")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{addr}: agent answered {status}: {message}")]
    Status {
        addr: String,
        status: u16,
        message: String,
    },
    #[error("{addr}: {message}")]
    Protocol { addr: String, message: String },
    #[error("{addr}: unreadable answer")]
    Decode {
        addr: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A cheap-to-clone mTLS client for every agent of one cluster.
#[derive(Clone)]
pub struct AgentClient {
    connector: TlsConnector,
    timeout: Duration,
}

impl AgentClient {
    pub fn new(pki: &ClusterPki, timeout: Duration) -> Result<Self, AgentClientError> {
        Self::from_pem(
            &pki.ca_cert_pem,
            &pki.control.cert_pem,
            &pki.control.key_pem,
            timeout,
        )
    }

    pub fn from_pem(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        timeout: Duration,
    ) -> Result<Self, AgentClientError> {
        crate::install_crypto_provider();
        let tls = |e: &dyn std::fmt::Display| AgentClientError::Tls(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls(&e))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// `GET /v1/health` of the agent at `host` (IP or DNS name as in its certificate).
    pub async fn health(&self, host: &str, port: u16) -> Result<lab_api::Health, AgentClientError> {
        self.get_json(host, port, lab_api::paths::HEALTH).await
    }

    /// GET `path` and decode its JSON answer, all within the client's timeout.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        host: &str,
        port: u16,
        path: &str,
    ) -> Result<T, AgentClientError> {
        self.request_json(host, port, hyper::Method::GET, path, Bytes::new())
            .await
    }

    /// `GET /v1/spec`: the spec the agent holds (None before its first).
    pub async fn spec(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Option<lab_api::spec::BoardSpec>, AgentClientError> {
        self.get_json(host, port, lab_api::paths::SPEC).await
    }

    /// `GET /v1/db` on the default agent port: the board's database replication state.
    pub async fn db_replication(
        &self,
        host: &str,
    ) -> Result<lab_api::spec::DbReplication, AgentClientError> {
        self.get_json(host, lab_api::DEFAULT_AGENT_PORT, lab_api::paths::DB)
            .await
    }

    /// `POST /v1/db/reclone`: the board's database replica copied afresh from its primary.
    pub async fn db_reclone(
        &self,
        host: &str,
    ) -> Result<lab_api::spec::Recloned, AgentClientError> {
        self.request_json(
            host,
            lab_api::DEFAULT_AGENT_PORT,
            hyper::Method::POST,
            lab_api::paths::DB_RECLONE,
            Bytes::new(),
        )
        .await
    }

    /// `POST /v1/cdn/purge`: drop objects from the board's CDN edge.
    pub async fn cdn_purge(
        &self,
        host: &str,
        ask: &lab_api::spec::CdnPurge,
    ) -> Result<lab_api::spec::CdnPurged, AgentClientError> {
        let body = serde_json::to_vec(ask).map_err(|source| AgentClientError::Decode {
            addr: format!("{}:{}", bracket_v6(host), lab_api::DEFAULT_AGENT_PORT),
            source,
        })?;
        self.request_json(
            host,
            lab_api::DEFAULT_AGENT_PORT,
            hyper::Method::POST,
            lab_api::paths::CDN_PURGE,
            Bytes::from(body),
        )
        .await
    }

    /// `PUT /v1/spec`: hand the agent its desired state. A refusal (older epoch, another
    /// board's spec, an unusable spec) is [`AgentClientError::Status`] with the agent's words.
    pub async fn put_spec(
        &self,
        host: &str,
        port: u16,
        spec: &lab_api::spec::BoardSpec,
    ) -> Result<lab_api::spec::SpecAccepted, AgentClientError> {
        let body = serde_json::to_vec(spec).map_err(|source| AgentClientError::Decode {
            addr: format!("{}:{port}", bracket_v6(host)),
            source,
        })?;
        self.request_json(
            host,
            port,
            hyper::Method::PUT,
            lab_api::paths::SPEC,
            body.into(),
        )
        .await
    }

    /// One request with a JSON answer, all within the client's timeout.
    async fn request_json<T: DeserializeOwned>(
        &self,
        host: &str,
        port: u16,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, AgentClientError> {
        let addr = format!("{}:{port}", bracket_v6(host));
        let exchange = async {
            let (resp, conn_task) = self.send(host, &addr, method, path, body).await?;
            let body = resp.into_body().collect().await;
            conn_task.abort();
            body.map(|b| b.to_bytes())
                .map_err(|source| AgentClientError::Http {
                    addr: addr.clone(),
                    source,
                })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(body) => serde_json::from_slice(&body?).map_err(|source| AgentClientError::Decode {
                addr: addr.clone(),
                source,
            }),
            Err(_) => Err(AgentClientError::Timeout {
                addr,
                timeout: self.timeout,
            }),
        }
    }

    /// Connect, handshake (TLS, then HTTP/1), send `method path` (with a JSON `body` when
    /// not empty) and the protocol header, and wait for the answer's head. A non-2xx answer
    /// becomes [`AgentClientError::Status`] with the agent's message. On success the caller
    /// owns the connection task: abort it when done with the body.
    async fn send(
        &self,
        host: &str,
        addr: &str,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> Result<
        (
            hyper::Response<hyper::body::Incoming>,
            tokio::task::JoinHandle<()>,
        ),
        AgentClientError,
    > {
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|e| AgentClientError::Tls(format!("{host}: {e}")))?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| AgentClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(server_name, tcp)
            .await
            .map_err(|source| AgentClientError::Handshake {
                addr: addr.to_string(),
                source,
            })?;
        let http = |source| AgentClientError::Http {
            addr: addr.to_string(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http)?;
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder().method(method).uri(path);
        if !body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .header(hyper::header::HOST, host)
            .header(
                lab_api::PROTOCOL_HEADER,
                lab_api::PROTOCOL_VERSION.to_string(),
            )
            .body(Full::new(body))
            .map_err(|e| AgentClientError::Tls(e.to_string()))?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                conn_task.abort();
                return Err(http(e));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok((resp, conn_task));
        }
        let body = resp.into_body().collect().await.map_err(http);
        conn_task.abort();
        let body = body?.to_bytes();
        let message = serde_json::from_slice::<lab_api::ApiError>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        Err(AgentClientError::Status {
            addr: addr.to_string(),
            status: status.as_u16(),
            message,
        })
    }
}

/// Longest line a [`LineStream`] accepts (a sample is a few KB).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The body of a streaming answer (e.g. [`lab_api::paths::SAMPLES_STREAM`]), read line by
/// line. Dropping it closes the connection.
pub struct LineStream {
    addr: String,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    /// Start of the not yet returned bytes in `buf`.
    start: usize,
    conn_task: tokio::task::JoinHandle<()>,
}

impl Drop for LineStream {
    fn drop(&mut self) {
        self.conn_task.abort();
    }
}

impl LineStream {
    /// The next line (without its newline); `None` when the agent ended the stream. No
    /// timeout here: the caller decides how long silence may last.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, AgentClientError> {
        loop {
            if let Some(pos) = self.buf[self.start..].iter().position(|b| *b == b'\n') {
                let line = self.buf[self.start..self.start + pos].to_vec();
                self.start += pos + 1;
                return Ok(Some(line));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(AgentClientError::Protocol {
                    addr: self.addr.clone(),
                    message: format!("stream line longer than {MAX_LINE_BYTES} bytes"),
                });
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(AgentClientError::Http {
                        addr: self.addr.clone(),
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

impl AgentClient {
    /// GET `path` and return its body as a stream of lines once the answer's head arrived
    /// (connect, handshake and head within the client's timeout). A non-2xx answer is an
    /// error carrying the agent's message.
    pub async fn get_lines(
        &self,
        host: &str,
        port: u16,
        path: &str,
    ) -> Result<LineStream, AgentClientError> {
        let addr = format!("{}:{port}", bracket_v6(host));
        match tokio::time::timeout(self.timeout, self.open_stream(host, &addr, path)).await {
            Ok(result) => result,
            Err(_) => Err(AgentClientError::Timeout {
                addr,
                timeout: self.timeout,
            }),
        }
    }

    async fn open_stream(
        &self,
        host: &str,
        addr: &str,
        path: &str,
    ) -> Result<LineStream, AgentClientError> {
        let (resp, conn_task) = self
            .send(host, addr, hyper::Method::GET, path, Bytes::new())
            .await?;
        Ok(LineStream {
            addr: addr.to_string(),
            body: resp.into_body(),
            buf: Vec::new(),
            start: 0,
            conn_task,
        })
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

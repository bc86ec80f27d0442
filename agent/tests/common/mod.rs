//! Shared by the integration tests: a throwaway cluster PKI made with rcgen, agent config
//! files in a temp dir, a real rustls + hyper client, and polling with a deadline; real
//! engines and the check that nothing of them is left ([`engines`]).

#![allow(dead_code)] // each test binary uses a different subset

pub mod engines;
pub mod plain_http;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use lab_api::AgentConfig;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tempfile::TempDir;
use tokio_rustls::TlsConnector;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate authority, like the cluster CA `lab` makes.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// A certificate and its key, PEM encoded.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `common_name` with subject alternative names `sans` (IPs become IP SANs)
    /// and the single extended key usage `usage`.
    pub fn issue(&self, common_name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The control plane's client certificate.
    pub fn control_client(&self) -> Leaf {
        self.issue(
            lab_api::CONTROL_CLIENT_NAME,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// A board's files in a temp dir: CA, board certificate and key, `agent.toml`.
pub struct Board {
    pub dir: TempDir,
    pub ca: Ca,
    pub config: AgentConfig,
    pub config_path: PathBuf,
}

pub const BOARD_NAME: &str = "pi-test";

impl Board {
    pub fn new(listen: &str) -> Board {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::new("lab test CA");
        // Valid for the address it listens on (a test's own loopback address) too.
        let host = listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
        let names: Vec<&str> = if host == "127.0.0.1" {
            vec!["127.0.0.1"]
        } else {
            vec!["127.0.0.1", host]
        };
        let agent = ca.issue(BOARD_NAME, &names, ExtendedKeyUsagePurpose::ServerAuth);
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ca.pem"), ca.pem()).expect("write CA");
        std::fs::write(path("agent.pem"), &agent.cert_pem).expect("write cert");
        std::fs::write(path("agent.key"), &agent.key_pem).expect("write key");
        let config = AgentConfig {
            cluster: "test".to_string(),
            board: BOARD_NAME.to_string(),
            listen: listen.to_string(),
            tls_ca: path("ca.pem").display().to_string(),
            tls_cert: path("agent.pem").display().to_string(),
            tls_key: path("agent.key").display().to_string(),
            state_dir: path("state").display().to_string(),
            log_dir: path("log").display().to_string(),
            collectors: Vec::new(),
        };
        let config_path = path("agent.toml");
        std::fs::write(
            &config_path,
            toml::to_string(&config).expect("render config"),
        )
        .expect("write config");
        Board {
            dir,
            ca,
            config,
            config_path,
        }
    }
}

/// A rustls client trusting `ca_pem`, presenting `identity` if given.
pub fn client_config(ca_pem: &str, identity: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA root");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => {
            let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert PEM");
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// One `GET path` over a fresh mTLS connection, with the protocol header if given.
pub async fn get(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
    path: &str,
    protocol: Option<&str>,
) -> Result<(StatusCode, Bytes), BoxError> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut sender, _connection) = connect(addr, client).await?;
        let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
        if let Some(version) = protocol {
            request = request.header(lab_api::PROTOCOL_HEADER, version);
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new())?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    })
    .await
    .map_err(|_| BoxError::from("request timed out"))?
}

/// One `PUT path` with a JSON `body` over a fresh mTLS connection, with this build's
/// protocol header.
pub async fn put(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), BoxError> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(client)
            .connect(ServerName::from(addr.ip()), tcp)
            .await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::put(path)
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(lab_api::PROTOCOL_HEADER, protocol())
            .body(http_body_util::Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    })
    .await
    .map_err(|_| BoxError::from("request timed out"))?
}

/// An HTTP/1 connection over mTLS; the task driving it is returned so callers can keep the
/// connection open.
pub async fn connect(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        tokio::task::JoinHandle<()>,
    ),
    BoxError,
> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(client)
        .connect(ServerName::from(addr.ip()), tcp)
        .await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, task))
}

/// The protocol version this build speaks, as a header value.
/// A server running in this process; cancelled when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Bind and run the agent's server for `board` in this process.
pub async fn start(board: &Board) -> Running {
    let server = lab_agent::server::Server::bind(&board.config)
        .await
        .expect("bind");
    let addr = server.local_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Running {
        addr,
        shutdown,
        task: Some(task),
    }
}

pub fn protocol() -> String {
    lab_api::PROTOCOL_VERSION.to_string()
}

/// Polls `check` every 100 ms until it succeeds or `limit` passes; panics with the last
/// failure seen.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

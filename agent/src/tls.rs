//! The agent's TLS configuration: mutual TLS with the cluster CA.
//!
//! The agent presents its board certificate and requires a client certificate that chains to
//! the cluster CA and carries the clientAuth extended key usage (checked by rustls'
//! [`WebPkiClientVerifier`]). Board certificates carry serverAuth only, so one board cannot
//! drive another; only `lab` holds a clientAuth certificate.
//!
//! The ring provider is passed explicitly, so building a config never depends on which
//! process-wide default was installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is not valid PEM")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("CA certificate in {path} is not usable as a trust anchor")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the client certificate verifier from {path}")]
    Verifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("certificate {cert} and key {key} do not form a usable pair")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Builds the server config: `cert` and `key` identify the board, `ca` is the cluster CA that
/// must have signed every client certificate.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut roots = RootCertStore::empty();
    for ca_cert in read_certs("CA certificate", ca)? {
        roots.add(ca_cert).map_err(|source| TlsError::BadCa {
            path: ca.to_path_buf(),
            source,
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|source| TlsError::Verifier {
            path: ca.to_path_buf(),
            source,
        })?;

    let chain = read_certs("board certificate", cert)?;
    let key_der = read_key(key)?;
    let identity_error = |source| TlsError::Identity {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(identity_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(identity_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Installs ring as the process-wide rustls provider (for any code that builds a config
/// without naming one); harmless if one is installed already.
pub fn install_default_provider() {
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        log::debug!("a rustls crypto provider was already installed");
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "private key";
    let pem = read_file(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_names_the_file() {
        let err = server_config(
            Path::new("/nonexistent/ca.pem"),
            Path::new("/nonexistent/agent.pem"),
            Path::new("/nonexistent/agent.key"),
        )
        .expect_err("missing files");
        assert_eq!(
            err.to_string(),
            "cannot read CA certificate /nonexistent/ca.pem"
        );
    }

    #[test]
    fn garbage_ca_is_reported() {
        let dir = std::env::temp_dir().join(format!("lab-agent-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").expect("write");
        let err = server_config(&ca, &ca, &ca).expect_err("garbage");
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The cluster's certificates. `lab` is the only certificate authority: it makes a CA once per
//! cluster, one client certificate for itself (clientAuth usage only) and one server
//! certificate per board (serverAuth usage only). An agent therefore accepts `lab` and
//! nothing else, and a board's certificate is useless for talking to another board.
//!
//! Everything is kept under `<state>/pki/`, keys 0600. The CA certificate is re-derived from
//! its stored key and fixed parameters when signing, so only the key needs to persist for
//! signing while `ca.pem` stays the trust anchor that boards hold.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::state::{write_atomic, WriteError, PUBLIC_MODE, SECRET_MODE};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("certificate operation failed for {what}")]
    Rcgen {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

/// PEM-encoded certificate and private key.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA plus the control plane's client identity.
pub struct ClusterPki {
    dir: PathBuf,
    cluster: String,
    ca_key: KeyPair,
    pub ca_cert_pem: String,
    pub control: CertPair,
}

impl std::fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPki")
            .field("dir", &self.dir)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

fn rc(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Rcgen { what, source }
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn ca_params(cluster: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("lab cluster CA ({cluster})"));
    dn.push(DnType::OrganizationName, "lab");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

impl ClusterPki {
    /// Load the cluster's PKI from `dir`, creating whatever is missing.
    pub fn load_or_create(dir: &Path, cluster: &str) -> Result<Self, PkiError> {
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.pem");
        let (ca_key, ca_cert_pem) = if ca_key_path.exists() && ca_cert_path.exists() {
            let key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(rc("cluster CA key"))?;
            (key, read(&ca_cert_path)?)
        } else {
            let key = KeyPair::generate().map_err(rc("cluster CA key"))?;
            let cert = ca_params(cluster)
                .self_signed(&key)
                .map_err(rc("cluster CA"))?;
            write_atomic(&ca_key_path, key.serialize_pem().as_bytes(), SECRET_MODE)?;
            write_atomic(&ca_cert_path, cert.pem().as_bytes(), PUBLIC_MODE)?;
            (key, cert.pem())
        };
        let mut pki = ClusterPki {
            dir: dir.to_path_buf(),
            cluster: cluster.to_string(),
            ca_key,
            ca_cert_pem,
            control: CertPair {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
        };
        pki.control = pki.leaf(
            "control",
            lab_api::CONTROL_CLIENT_NAME,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(pki)
    }

    /// The server certificate of a board, valid for `names` (IP addresses and DNS names),
    /// made on first use and re-made when the names change.
    pub fn board_cert(&self, board: &str, names: &[String]) -> Result<CertPair, PkiError> {
        self.leaf(
            &format!("boards/{board}"),
            board,
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn leaf(
        &self,
        stem: &str,
        common_name: &str,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertPair, PkiError> {
        let cert_path = self.dir.join(format!("{stem}.pem"));
        let key_path = self.dir.join(format!("{stem}.key"));
        let names_path = self.dir.join(format!("{stem}.names"));
        let names_line = names.join(",");
        if cert_path.exists() && key_path.exists() {
            let same_names = fs::read_to_string(&names_path)
                .map(|s| s.trim() == names_line)
                .unwrap_or(false);
            if same_names {
                return Ok(CertPair {
                    cert_pem: read(&cert_path)?,
                    key_pem: read(&key_path)?,
                });
            }
        }
        let key = KeyPair::generate().map_err(rc(common_name))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(rc(common_name))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, format!("lab ({})", self.cluster));
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let issuer = ca_params(&self.cluster)
            .self_signed(&self.ca_key)
            .map_err(rc("cluster CA"))?;
        let cert = params
            .signed_by(&key, &issuer, &self.ca_key)
            .map_err(rc(common_name))?;
        let pair = CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write_atomic(&key_path, pair.key_pem.as_bytes(), SECRET_MODE)?;
        write_atomic(&cert_path, pair.cert_pem.as_bytes(), PUBLIC_MODE)?;
        write_atomic(&names_path, names_line.as_bytes(), PUBLIC_MODE)?;
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ClusterPki::load_or_create(dir.path(), "t").expect("create");
        let b = ClusterPki::load_or_create(dir.path(), "t").expect("load");
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.control.cert_pem, b.control.cert_pem);
        let names = vec!["10.0.0.2".to_string(), "pi-1".to_string()];
        let c1 = a.board_cert("pi-1", &names).expect("board");
        let c2 = b.board_cert("pi-1", &names).expect("board again");
        assert_eq!(c1.cert_pem, c2.cert_pem, "unchanged names keep the cert");
        let c3 = b
            .board_cert("pi-1", &["10.0.0.3".to_string()])
            .expect("renamed");
        assert_ne!(c1.cert_pem, c3.cert_pem, "changed names re-issue");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("ca.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

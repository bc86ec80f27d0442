//! The cluster's certificates. `lab` is the only certificate authority: it makes a CA once per
//! cluster, one client certificate for itself (clientAuth usage only) and one server
//! certificate per board (serverAuth usage only). An agent therefore accepts `lab` and
//! nothing else, and a board's certificate is useless for talking to another board.
//!
//! Everything is kept under `<state>/pki/`, keys 0600. The CA certificate is re-derived from
//! its stored key and fixed parameters when signing, so only the key needs to persist for
//! signing while `ca.pem` stays the trust anchor that boards hold.
//!
//! Lifetimes: the CA is valid for [`CA_VALIDITY_DAYS`], leaf certificates (control client,
//! boards) for [`LEAF_VALIDITY_DAYS`]. A leaf is re-issued when it is used within the renewal
//! window of its end ([`DEFAULT_RENEW_BEFORE_DAYS`], or [`RENEW_BEFORE_ENV`]), when it has
//! expired, or when it was made before lab limited lifetimes (rcgen's default, 1975 to 4096).
//! The control client certificate renews itself whenever a command opens the cluster; a
//! board's is re-issued by bootstrap, which then uploads it and restarts the agent. The CA is
//! never renewed in place: [`ClusterPki::expiry_report`] warns about it (and the leaves) for
//! `lab status`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

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
    #[error("cannot read the validity of the certificate in {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("no cluster CA in {dir}")]
    NoCa { dir: PathBuf },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long a new cluster CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a new leaf certificate (control client, board) is valid.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// Leaf certificates start this long before they are made, so that a board whose clock lags
/// (a Raspberry Pi without a battery clock, before NTP) accepts a freshly issued one.
pub const BACKDATE_DAYS: i64 = 1;
/// A leaf is re-issued (and `lab status` warns) this many days before it expires.
pub const DEFAULT_RENEW_BEFORE_DAYS: i64 = 30;
/// Environment variable overriding [`DEFAULT_RENEW_BEFORE_DAYS`] (whole days). Keep it below
/// [`LEAF_VALIDITY_DAYS`]: above it, every bootstrap re-issues every certificate.
pub const RENEW_BEFORE_ENV: &str = "LAB_CERT_RENEW_BEFORE_DAYS";

/// The renewal window in force: [`RENEW_BEFORE_ENV`] when it holds a whole number of days,
/// else [`DEFAULT_RENEW_BEFORE_DAYS`].
pub fn renew_before() -> Duration {
    let days = std::env::var(RENEW_BEFORE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map(i64::from)
        .unwrap_or(DEFAULT_RENEW_BEFORE_DAYS);
    Duration::days(days)
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Why a leaf certificate must be made anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Its end has passed.
    Expired,
    /// Its end falls within the renewal window.
    ExpiresSoon,
    /// Valid far longer than [`LEAF_VALIDITY_DAYS`]: made before lab limited lifetimes.
    Unlimited,
}

impl Renewal {
    pub fn describe(self) -> &'static str {
        match self {
            Renewal::Expired => "expired",
            Renewal::ExpiresSoon => "expires soon",
            Renewal::Unlimited => "made without an end date by an older lab",
        }
    }
}

/// Whether a leaf with validity `v` must be re-issued at `now`, given the renewal window.
pub fn leaf_renewal(v: Validity, now: OffsetDateTime, renew_before: Duration) -> Option<Renewal> {
    // A day of slack over the lifetime lab gives, so that leaves lab made are never "unlimited".
    let longest = Duration::days(LEAF_VALIDITY_DAYS + BACKDATE_DAYS + 1);
    if v.not_after <= now {
        Some(Renewal::Expired)
    } else if v.not_after - now <= renew_before {
        Some(Renewal::ExpiresSoon)
    } else if v.not_after - v.not_before > longest {
        Some(Renewal::Unlimited)
    } else {
        None
    }
}

/// How close a certificate is to its end, as `lab status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Valid,
    /// Ends within the renewal window.
    Soon,
    Expired,
}

pub fn expiry(v: Validity, now: OffsetDateTime, renew_before: Duration) -> Expiry {
    if v.not_after <= now {
        Expiry::Expired
    } else if v.not_after - now <= renew_before {
        Expiry::Soon
    } else {
        Expiry::Valid
    }
}

/// `2026-05-01` (UTC) for a certificate date.
pub fn day(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The validity of the first certificate in `pem`.
pub fn validity_of_pem(pem: &str) -> Result<Validity, String> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or("no certificate in the PEM text")?
        .map_err(|e| format!("bad PEM: {e}"))?;
    validity_of_der(&der)
}

/// The validity of a DER certificate: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
/// [0] version OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE { notBefore,
/// notAfter }, ... }, signatureAlgorithm, signatureValue }`.
pub fn validity_of_der(der: &[u8]) -> Result<Validity, String> {
    use yasna::tags::{TAG_GENERALIZEDTIME, TAG_UTCTIME};
    use yasna::{ASN1Error, ASN1ErrorKind, BERReader, Tag};
    fn read_time(r: BERReader<'_, '_>) -> Result<OffsetDateTime, ASN1Error> {
        let tag = r.lookahead_tag()?;
        if tag == TAG_UTCTIME {
            Ok(*r.read_utctime()?.datetime())
        } else if tag == TAG_GENERALIZEDTIME {
            Ok(*r.read_generalized_time()?.datetime())
        } else {
            Err(ASN1Error::new(ASN1ErrorKind::Invalid))
        }
    }
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let validity = r.next().read_sequence(|tbs| {
                tbs.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                tbs.next().read_der()?; // serialNumber
                tbs.next().read_der()?; // signature algorithm
                tbs.next().read_der()?; // issuer
                let validity = tbs.next().read_sequence(|v| {
                    Ok(Validity {
                        not_before: read_time(v.next())?,
                        not_after: read_time(v.next())?,
                    })
                })?;
                // subject, subjectPublicKeyInfo and the optional tail.
                while tbs.read_optional(|r| r.read_der())?.is_some() {}
                Ok(validity)
            })?;
            r.next().read_der()?; // signatureAlgorithm
            r.next().read_der()?; // signatureValue
            Ok(validity)
        })
    })
    .map_err(|e| format!("not an X.509 certificate ({e})"))
}

fn validity_of_file(path: &Path) -> Result<Validity, PkiError> {
    validity_of_pem(&read(path)?).map_err(|reason| PkiError::Parse {
        path: path.to_path_buf(),
        reason,
    })
}

/// One certificate's standing, for `lab status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertStanding {
    /// `cluster CA`, `control client` or `board NAME`.
    pub what: String,
    /// The board, for board certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    pub path: PathBuf,
    /// `YYYY-MM-DD` (UTC).
    pub not_after: String,
    pub days_left: i64,
    /// A warning line with what to do, when it expires within the window or has expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
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
    renew_before: Duration,
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

/// Holds an exclusive lock on `<pki>/.lock` while alive, so that two `lab` processes never
/// interleave writing one certificate and its key.
struct PkiLock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

fn lock(dir: &Path) -> Result<PkiLock, PkiError> {
    let path = dir.join(".lock");
    let wrap = |source| PkiError::Lock {
        path: path.clone(),
        source,
    };
    crate::state::create_private_dir(dir).map_err(wrap)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(wrap)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(PkiLock)
        .map_err(|(_, errno)| wrap(std::io::Error::from(errno)))
}

impl ClusterPki {
    /// Load the cluster's PKI from `dir`, creating whatever is missing.
    pub fn load_or_create(dir: &Path, cluster: &str) -> Result<Self, PkiError> {
        Self::open(dir, cluster, true)
    }

    /// Load the PKI of a cluster that was brought up: a missing CA is an error (a new CA
    /// would be trusted by no agent). The control client certificate is still renewed when
    /// close to its end.
    pub fn load(dir: &Path, cluster: &str) -> Result<Self, PkiError> {
        Self::open(dir, cluster, false)
    }

    fn open(dir: &Path, cluster: &str, create_ca: bool) -> Result<Self, PkiError> {
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.pem");
        let have_ca = ca_key_path.exists() && ca_cert_path.exists();
        if !have_ca && !create_ca {
            return Err(PkiError::NoCa {
                dir: dir.to_path_buf(),
            });
        }
        let (ca_key, ca_cert_pem) = if have_ca {
            let key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(rc("cluster CA key"))?;
            (key, read(&ca_cert_path)?)
        } else {
            let key = KeyPair::generate().map_err(rc("cluster CA key"))?;
            let mut params = ca_params(cluster);
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::days(BACKDATE_DAYS);
            params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
            let cert = params.self_signed(&key).map_err(rc("cluster CA"))?;
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
            renew_before: renew_before(),
        };
        pki.control = pki.leaf(
            "control",
            lab_api::CONTROL_CLIENT_NAME,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            OffsetDateTime::now_utc(),
        )?;
        Ok(pki)
    }

    /// Why the stored certificate of `board` would be re-issued now, with its validity; None
    /// when it is fine or not made yet (bootstrap says so before re-issuing).
    pub fn board_cert_renewal(&self, board: &str) -> Option<(Renewal, Validity)> {
        let v = validity_of_file(&self.dir.join(format!("boards/{board}.pem"))).ok()?;
        leaf_renewal(v, OffsetDateTime::now_utc(), self.renew_before).map(|r| (r, v))
    }

    /// The standing of the CA, the control client certificate and the certificates of
    /// `boards` that exist, at `now`; `fix` is the command that re-issues leaf certificates.
    pub fn expiry_report(
        &self,
        boards: &[String],
        now: OffsetDateTime,
        fix: &str,
    ) -> Vec<CertStanding> {
        let mut out = Vec::new();
        let mut check = |what: String, board: Option<String>, path: PathBuf, advice: String| {
            if !path.exists() {
                return;
            }
            let standing = match validity_of_file(&path) {
                Ok(v) => {
                    let when = match expiry(v, now, self.renew_before) {
                        Expiry::Valid => None,
                        Expiry::Soon => Some(format!(
                            "expires on {} (in {} days)",
                            day(v.not_after),
                            (v.not_after - now).whole_days()
                        )),
                        Expiry::Expired => Some(format!("EXPIRED on {}", day(v.not_after))),
                    };
                    CertStanding {
                        warning: when.map(|w| {
                            format!(
                                "certificate of the {what} ({}) {w}: {advice}",
                                path.display()
                            )
                        }),
                        what,
                        board,
                        not_after: day(v.not_after),
                        days_left: (v.not_after - now).whole_days(),
                        path,
                    }
                }
                Err(e) => CertStanding {
                    warning: Some(format!("{e}: {advice}")),
                    what,
                    board,
                    not_after: String::new(),
                    days_left: 0,
                    path,
                },
            };
            out.push(standing);
        };
        let pki = self.dir.display();
        check(
            "cluster CA".into(),
            None,
            self.dir.join("ca.pem"),
            format!(
                "lab does not renew the CA in place; to replace it stop `lab serve` (`lab down` \
                 for a virtual cluster), move {pki} aside and run `lab up` again: every board \
                 gets the new CA and certificates"
            ),
        );
        check(
            "control client".into(),
            None,
            self.dir.join("control.pem"),
            format!("any lab command re-issues it (then restart `lab serve`); try `{fix}`"),
        );
        for b in boards {
            check(
                format!("board {b}"),
                Some(b.clone()),
                self.dir.join(format!("boards/{b}.pem")),
                format!("`{fix}` re-issues it and restarts the agent"),
            );
        }
        out
    }

    /// The server certificate of a board, valid for `names` (IP addresses and DNS names),
    /// made on first use and re-made when the names change or its end is near (see
    /// [`leaf_renewal`]).
    pub fn board_cert(&self, board: &str, names: &[String]) -> Result<CertPair, PkiError> {
        self.board_cert_at(board, names, OffsetDateTime::now_utc())
    }

    /// [`ClusterPki::board_cert`] as of `now`.
    fn board_cert_at(
        &self,
        board: &str,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<CertPair, PkiError> {
        self.leaf(
            &format!("boards/{board}"),
            board,
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            now,
        )
    }

    fn leaf(
        &self,
        stem: &str,
        common_name: &str,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
        now: OffsetDateTime,
    ) -> Result<CertPair, PkiError> {
        let cert_path = self.dir.join(format!("{stem}.pem"));
        let key_path = self.dir.join(format!("{stem}.key"));
        let names_path = self.dir.join(format!("{stem}.names"));
        let names_line = names.join(",");
        let _lock = lock(&self.dir)?;
        if cert_path.exists() && key_path.exists() {
            let same_names = fs::read_to_string(&names_path)
                .map(|s| s.trim() == names_line)
                .unwrap_or(false);
            let cert_pem = read(&cert_path)?;
            // An unreadable certificate is made anew, like an expired one.
            let fresh = validity_of_pem(&cert_pem)
                .is_ok_and(|v| leaf_renewal(v, now, self.renew_before).is_none());
            if same_names && fresh {
                return Ok(CertPair {
                    cert_pem,
                    key_pem: read(&key_path)?,
                });
            }
        }
        let key = KeyPair::generate().map_err(rc(common_name))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(rc(common_name))?;
        params.not_before = now - Duration::days(BACKDATE_DAYS);
        params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
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

    fn at(y: i32, m: u8, d: u8) -> OffsetDateTime {
        rcgen::date_time_ymd(y, m, d)
    }

    fn validity(from: OffsetDateTime, to: OffsetDateTime) -> Validity {
        Validity {
            not_before: from,
            not_after: to,
        }
    }

    #[test]
    fn renewal_decisions_on_known_dates() {
        let window = Duration::days(30);
        // Issued 2026-01-01 for a year (backdated a day), as lab does.
        let v = validity(at(2025, 12, 31), at(2027, 1, 1));
        assert_eq!(leaf_renewal(v, at(2026, 1, 1), window), None);
        assert_eq!(
            leaf_renewal(v, at(2026, 12, 1), window),
            None,
            "31 days left"
        );
        assert_eq!(
            leaf_renewal(v, at(2026, 12, 2), window),
            Some(Renewal::ExpiresSoon),
            "30 days left"
        );
        assert_eq!(
            leaf_renewal(v, at(2027, 1, 1), window),
            Some(Renewal::Expired)
        );
        assert_eq!(
            leaf_renewal(v, at(2030, 1, 1), window),
            Some(Renewal::Expired)
        );
        // rcgen's default validity (clusters made before lifetimes were limited).
        let legacy = validity(at(1975, 1, 1), at(4096, 1, 1));
        assert_eq!(
            leaf_renewal(legacy, at(2026, 1, 1), window),
            Some(Renewal::Unlimited)
        );
        // A wider window (LAB_CERT_RENEW_BEFORE_DAYS) renews earlier.
        assert_eq!(
            leaf_renewal(v, at(2026, 6, 1), Duration::days(400)),
            Some(Renewal::ExpiresSoon)
        );

        assert_eq!(expiry(v, at(2026, 12, 1), window), Expiry::Valid);
        assert_eq!(expiry(v, at(2026, 12, 2), window), Expiry::Soon);
        assert_eq!(expiry(v, at(2027, 1, 1), window), Expiry::Expired);
        // The CA is never "unlimited": a legacy CA is simply valid.
        assert_eq!(expiry(legacy, at(2026, 1, 1), window), Expiry::Valid);
        assert_eq!(day(at(2027, 1, 1)), "2027-01-01");
    }

    #[test]
    fn new_certificates_have_limited_lifetimes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(dir.path(), "t").expect("create");
        let now = OffsetDateTime::now_utc();
        let ca = validity_of_pem(&pki.ca_cert_pem).expect("CA validity");
        let ca_days = (ca.not_after - now).whole_days();
        assert!(
            (CA_VALIDITY_DAYS - 1..=CA_VALIDITY_DAYS).contains(&ca_days),
            "{ca_days}"
        );
        assert!(ca.not_before < now);
        let control = validity_of_pem(&pki.control.cert_pem).expect("control validity");
        let days = (control.not_after - now).whole_days();
        assert!(
            (LEAF_VALIDITY_DAYS - 1..=LEAF_VALIDITY_DAYS).contains(&days),
            "{days}"
        );
        assert_eq!(leaf_renewal(control, now, Duration::days(30)), None);
        let board = pki.board_cert("pi-1", &["10.0.0.2".into()]).expect("board");
        let v = validity_of_pem(&board.cert_pem).expect("board validity");
        assert!((v.not_after - control.not_after).abs() < Duration::minutes(1));
        assert!(validity_of_pem("not a certificate").is_err());
    }

    #[test]
    fn a_board_cert_is_reissued_near_its_end_and_kept_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(dir.path(), "t").expect("create");
        let names = vec!["10.0.0.2".to_string()];
        let t0 = OffsetDateTime::now_utc();
        let first = pki.board_cert_at("pi-1", &names, t0).expect("issue");
        let later = pki
            .board_cert_at("pi-1", &names, t0 + Duration::days(300))
            .expect("300 days on");
        assert_eq!(first.cert_pem, later.cert_pem, "35 days left: kept");
        let renewed = pki
            .board_cert_at("pi-1", &names, t0 + Duration::days(340))
            .expect("340 days on");
        assert_ne!(first.cert_pem, renewed.cert_pem, "25 days left: re-issued");
        assert_ne!(first.key_pem, renewed.key_pem, "with a new key");
        let v = validity_of_pem(&renewed.cert_pem).expect("validity");
        // Certificates keep whole seconds: a year from the renewal, less a fraction of a second.
        let days = (v.not_after - t0).whole_days();
        assert!(
            (339 + LEAF_VALIDITY_DAYS..=340 + LEAF_VALIDITY_DAYS).contains(&days),
            "a year from the renewal: {days}"
        );
        let stored = fs::read_to_string(dir.path().join("boards/pi-1.pem")).expect("stored");
        assert_eq!(
            stored, renewed.cert_pem,
            "the renewed cert is what bootstrap uploads"
        );
    }

    #[test]
    fn certificates_from_before_lifetimes_are_replaced_and_the_ca_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["10.0.0.2".to_string()];
        // A cluster as an older lab made it: every certificate valid 1975..4096.
        {
            let ca_key = KeyPair::generate().expect("key");
            let ca = ca_params("t").self_signed(&ca_key).expect("ca");
            write_atomic(
                &dir.path().join("ca.key"),
                ca_key.serialize_pem().as_bytes(),
                SECRET_MODE,
            )
            .expect("write");
            write_atomic(&dir.path().join("ca.pem"), ca.pem().as_bytes(), PUBLIC_MODE)
                .expect("write");
            for (stem, line) in [("control", ""), ("boards/pi-1", "10.0.0.2")] {
                let key = KeyPair::generate().expect("key");
                let cert = CertificateParams::new(names.clone())
                    .expect("params")
                    .signed_by(&key, &ca, &ca_key)
                    .expect("sign");
                let p = |ext: &str| dir.path().join(format!("{stem}.{ext}"));
                write_atomic(&p("pem"), cert.pem().as_bytes(), PUBLIC_MODE).expect("write");
                write_atomic(&p("key"), key.serialize_pem().as_bytes(), SECRET_MODE)
                    .expect("write");
                write_atomic(&p("names"), line.as_bytes(), PUBLIC_MODE).expect("write");
            }
        }
        let old_board = fs::read_to_string(dir.path().join("boards/pi-1.pem")).expect("read");
        let old_ca = fs::read_to_string(dir.path().join("ca.pem")).expect("read");
        assert_eq!(
            validity_of_pem(&old_board).expect("old").not_after,
            at(4096, 1, 1)
        );
        let pki = ClusterPki::load_or_create(dir.path(), "t").expect("load");
        assert_eq!(
            pki.ca_cert_pem, old_ca,
            "the CA (the boards' trust anchor) stays"
        );
        let control = validity_of_pem(&pki.control.cert_pem).expect("control");
        assert!(
            control.not_after < at(2200, 1, 1),
            "control client re-issued"
        );
        assert!(pki
            .board_cert_renewal("pi-1")
            .is_some_and(|(r, _)| r == Renewal::Unlimited));
        let board = pki.board_cert("pi-1", &names).expect("board");
        assert_ne!(board.cert_pem, old_board);
        assert_eq!(pki.board_cert_renewal("pi-1"), None);
        // Status says nothing about them: nothing is close to its end.
        let report =
            pki.expiry_report(&["pi-1".into()], OffsetDateTime::now_utc(), "lab bootstrap");
        assert_eq!(report.len(), 3);
        assert!(report.iter().all(|c| c.warning.is_none()), "{report:?}");
    }

    #[test]
    fn status_warns_per_certificate_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(dir.path(), "t").expect("create");
        pki.board_cert("pi-1", &["10.0.0.2".into()]).expect("board");
        let boards = vec!["pi-1".to_string(), "pi-2".to_string()];
        let now = OffsetDateTime::now_utc();
        let report = pki.expiry_report(&boards, now, "lab bootstrap -i inv.toml");
        assert_eq!(report.len(), 3, "pi-2 has no certificate yet: {report:?}");
        assert!(report.iter().all(|c| c.warning.is_none()), "{report:?}");

        let report = pki.expiry_report(
            &boards,
            now + Duration::days(350),
            "lab bootstrap -i inv.toml",
        );
        let board = report
            .iter()
            .find(|c| c.board.as_deref() == Some("pi-1"))
            .expect("pi-1");
        let w = board.warning.as_deref().expect("warns 15 days before");
        assert!(w.contains("board pi-1") && w.contains("expires on"), "{w}");
        assert!(
            w.contains("`lab bootstrap -i inv.toml` re-issues it"),
            "{w}"
        );
        assert!((14..=15).contains(&board.days_left), "{board:?}");
        let ca = report.iter().find(|c| c.what == "cluster CA").expect("CA");
        assert!(ca.warning.is_none(), "the CA has ten years: {ca:?}");

        let report = pki.expiry_report(
            &boards,
            now + Duration::days(CA_VALIDITY_DAYS),
            "lab bootstrap",
        );
        let ca = report.iter().find(|c| c.what == "cluster CA").expect("CA");
        let w = ca.warning.as_deref().expect("an expired CA warns");
        assert!(
            w.contains("EXPIRED") && w.contains("does not renew the CA"),
            "{w}"
        );
        assert!(report
            .iter()
            .all(|c| c.warning.as_deref().is_some_and(|w| w.contains("EXPIRED"))));
    }
}

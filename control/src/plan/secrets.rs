//! The secrets the roles use, generated once per cluster and kept in the state dir (0600
//! from the first byte): the database users' passwords in `<state>/secrets/db.json`, the
//! key the apps sign login tokens with in `<state>/secrets/app.json`. They reach boards only
//! inside the specs sent over mTLS, never on a command line.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use lab_api::spec::{Credential, DbUsers};
use serde::{Deserialize, Serialize};

use crate::state::write_atomic;

/// File inside the state dir.
pub const DB_SECRETS_FILE: &str = "secrets/db.json";
/// File inside the state dir.
pub const APP_SECRETS_FILE: &str = "secrets/app.json";

/// Every secret a plan needs.
#[derive(Clone)]
pub struct Secrets {
    pub db: DbUsers,
    /// HS256 key of the apps' login tokens (64 hex characters).
    pub jwt_key: String,
}

/// The cluster's secrets, each made on first use.
pub fn load(state_dir: &Path) -> anyhow::Result<Secrets> {
    Ok(Secrets {
        db: db_users(state_dir)?,
        jwt_key: jwt_key(state_dir)?,
    })
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredApp {
    jwt_key: String,
}

/// The apps' token key, made on first use.
pub fn jwt_key(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join(APP_SECRETS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let stored: StoredApp = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt (fix or remove it)", path.display()))?;
            Ok(stored.jwt_key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let stored = StoredApp {
                jwt_key: format!("{}{}", password()?, password()?)[..64].to_string(),
            };
            write_atomic(&path, &serde_json::to_vec_pretty(&stored)?, 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(stored.jwt_key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    replication: String,
    app: String,
    monitor: String,
}

/// The database users with the cluster's passwords, made on first use.
pub fn db_users(state_dir: &Path) -> anyhow::Result<DbUsers> {
    let path = state_dir.join(DB_SECRETS_FILE);
    let stored: Stored = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt (fix or remove it)", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = Stored {
                replication: password()?,
                app: password()?,
                monitor: password()?,
            };
            write_atomic(&path, &serde_json::to_vec_pretty(&s)?, 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
            s
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let c = |user: &str, password: String| Credential {
        user: user.into(),
        password,
    };
    Ok(DbUsers {
        replication: c("lab_repl", stored.replication),
        app: c("lab_app", stored.app),
        monitor: c("lab_monitor", stored.monitor),
    })
}

/// 24 random bytes from the kernel, hex: 192 bits, no character SQL or a shell cares about.
fn password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = db_users(dir.path()).expect("made");
        let again = db_users(dir.path()).expect("read");
        assert!(first == again, "passwords changed between runs");
        assert_ne!(first.app.password, first.replication.password);
        assert_eq!(first.app.password.len(), 48);
        let mode = std::fs::metadata(dir.path().join(DB_SECRETS_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = jwt_key(dir.path()).expect("made");
        assert_eq!(key.len(), 64);
        assert_eq!(jwt_key(dir.path()).expect("read"), key);
        let mode = std::fs::metadata(dir.path().join(APP_SECRETS_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

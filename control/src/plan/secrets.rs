//! The passwords the roles use, generated once per cluster and kept in
//! `<state>/secrets/db.json` (0600 from its first byte). They reach boards only inside the
//! specs sent over mTLS, never on a command line.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use lab_api::spec::{Credential, DbUsers};
use serde::{Deserialize, Serialize};

use crate::state::write_atomic;

/// File inside the state dir.
pub const DB_SECRETS_FILE: &str = "secrets/db.json";

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
    }
}

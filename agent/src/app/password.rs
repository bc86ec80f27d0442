//! Password hashes: argon2id with the argon2 crate's default cost (19 MiB, 2 passes), a
//! 16-byte salt from the system's random source (ring), stored in the PHC string format
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! Hashing takes tens of milliseconds of CPU and 19 MiB: it runs on `spawn_blocking`
//! threads, never on the async runtime, and at most [`MAX_CONCURRENT`] at a time (a burst
//! of logins queues instead of holding 19 MiB each on a board with 256 MiB). A login for an
//! unknown name verifies against a fixed hash all the same, so the answer's timing does not
//! tell which names exist.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::rand::SecureRandom;
use tokio::sync::Semaphore;

/// Hashes computed at once.
pub const MAX_CONCURRENT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("no random bytes for a salt")]
    Random,
    #[error("hashing: {0}")]
    Hash(String),
    #[error("the hashing thread failed: {0}")]
    Join(String),
}

/// Hashes and verifies, bounded.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        // The semaphore is never closed. The permit goes with the work: a request dropped
        // meanwhile (its client gone) does not free a place while the hash still runs.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| PasswordError::Join(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| PasswordError::Join(e.to_string()))
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.blocking(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `stored` (a PHC string); an unreadable `stored` does not
    /// match. With `stored` None (no such user) a fixed hash is checked, for the time.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.blocking(move || {
            let (phc, real) = match &stored {
                Some(s) => (s.as_str(), true),
                None => (decoy(), false),
            };
            verify_now(&password, phc) && real
        })
        .await
    }
}

/// Hashes on this thread (tests, and inside `spawn_blocking`).
pub fn hash_now(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Verifies on this thread.
pub fn verify_now(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of nothing anyone types, made once.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_now("\u{0}decoy\u{0}").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash_now("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_now("correct horse", &phc));
        assert!(!verify_now("correct hors", &phc));
        assert!(!verify_now("correct horse", "not a hash"));
        // Salted: the same password hashes differently.
        assert_ne!(phc, hash_now("correct horse").expect("hash"));
    }

    #[tokio::test]
    async fn unknown_users_never_match() {
        let hasher = Hasher::new();
        assert!(!hasher
            .verify("\u{0}decoy\u{0}".into(), None)
            .await
            .expect("verify"));
        let phc = hasher.hash("secret-pw".into()).await.expect("hash");
        assert!(hasher
            .verify("secret-pw".into(), Some(phc))
            .await
            .expect("verify"));
    }
}

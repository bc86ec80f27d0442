//! Where a login lives (`AppConfig::sessions`, the stateless-tier exercise's switch):
//! - `jwt`: nowhere. The token is a signed JWT ([`super::token`]); any app board checks it.
//! - `local`: in this process's memory ([`LocalSessions`]), under a random opaque token.
//!   Another app board does not know it, and it is gone when this board dies.
//! - `shared`: in memcached, on the cache ring, under `session:<token>`: every app board
//!   finds it; it is gone when its cache board dies.
//!
//! [`open`] makes a login's token, [`check`] turns a request's token back into its claims.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lab_api::spec::Sessions;
use ring::rand::{SecureRandom, SystemRandom};

use super::cache::Lookup;
use super::error::Failure;
use super::state::Backends;
use super::token::{Claims, TokenError};

/// Sessions one app board keeps in memory, at most; the oldest-expiring go first.
pub const MAX_LOCAL_SESSIONS: usize = 100_000;
/// Opaque session tokens start with this (a JWT never does: it starts with `eyJ`).
const OPAQUE_PREFIX: &str = "s.";

/// The sessions of `local` mode: this process's memory (it outlives config reloads).
#[derive(Default)]
pub struct LocalSessions {
    by_token: Mutex<HashMap<String, Claims>>,
}

impl LocalSessions {
    fn insert(&self, token: &str, claims: &Claims, now: u64) {
        let mut map = match self.by_token.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= MAX_LOCAL_SESSIONS {
            map.retain(|_, c| c.exp > now);
        }
        if map.len() >= MAX_LOCAL_SESSIONS {
            if let Some(first) = map
                .iter()
                .min_by_key(|(_, c)| c.exp)
                .map(|(t, _)| t.clone())
            {
                map.remove(&first);
            }
        }
        map.insert(token.to_owned(), claims.clone());
    }

    fn get(&self, token: &str) -> Option<Claims> {
        match self.by_token.lock() {
            Ok(m) => m.get(token).cloned(),
            Err(poisoned) => poisoned.into_inner().get(token).cloned(),
        }
    }
}

/// A fresh opaque token: 32 random bytes, base64url.
fn opaque_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Failure::internal("no randomness for a session token"))?;
    Ok(format!("{OPAQUE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn shared_key(token: &str) -> String {
    format!("session:{token}")
}

/// The token for a login with `claims`, kept where the config says.
pub async fn open(
    backends: &Backends,
    local: &LocalSessions,
    claims: &Claims,
    now: u64,
) -> Result<String, Failure> {
    match backends.config.sessions {
        Sessions::Jwt => Ok(backends.tokens.sign(claims)),
        Sessions::Local => {
            let token = opaque_token()?;
            local.insert(&token, claims, now);
            Ok(token)
        }
        Sessions::Shared => {
            let token = opaque_token()?;
            let value = serde_json::to_vec(claims).unwrap_or_default();
            let ttl = u32::try_from(claims.exp.saturating_sub(now)).unwrap_or(u32::MAX);
            if backends
                .cache
                .set(&shared_key(&token), &value, ttl.max(1))
                .await
            {
                Ok(token)
            } else {
                Err(Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the session store (the cache boards) did not take the login: try again",
                ))
            }
        }
    }
}

/// The claims of `token`, if it names a live session here.
pub async fn check(
    backends: &Backends,
    local: &LocalSessions,
    token: &str,
    now: u64,
) -> Result<Claims, Failure> {
    let claims = match backends.config.sessions {
        Sessions::Jwt => {
            return backends.tokens.verify(token, now).map_err(|err| {
                Failure::unauthorized(match err {
                    TokenError::Expired => "the token expired: log in again".to_string(),
                    other => other.to_string(),
                })
            })
        }
        Sessions::Local => local.get(token).ok_or_else(|| {
            Failure::unauthorized(format!(
                "no such session on app board {}: sessions are kept in the memory of the app \
                 board that logged you in (log in again)",
                backends.config.board
            ))
        })?,
        Sessions::Shared => match backends.cache.get(&shared_key(token)).await {
            Lookup::Hit(bytes) => serde_json::from_slice(&bytes)
                .map_err(|_| Failure::unauthorized("the stored session is unreadable"))?,
            Lookup::Miss => {
                return Err(Failure::unauthorized(
                    "no such session in the shared session store (expired, or its cache board \
                     was lost): log in again",
                ))
            }
            Lookup::Unavailable => {
                return Err(Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the session store (the cache boards) cannot be reached",
                ))
            }
        },
    };
    if now >= claims.exp {
        return Err(Failure::unauthorized("the session expired: log in again"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "7".into(),
            name: "ana".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn opaque_tokens_are_random_and_never_look_like_a_jwt() {
        let a = opaque_token().expect("token");
        let b = opaque_token().expect("token");
        assert_ne!(a, b);
        assert!(a.starts_with(OPAQUE_PREFIX) && a.matches('.').count() == 1);
        assert!(!a.starts_with("eyJ"));
        assert!(a.len() > 40, "{a}");
    }

    #[test]
    fn local_sessions_are_bounded_and_drop_the_expired_first() {
        let local = LocalSessions::default();
        for i in 0..MAX_LOCAL_SESSIONS {
            local.insert(&format!("t{i}"), &claims(if i == 5 { 10 } else { 1000 }), 0);
        }
        // Full: the next one pushes out the one expiring first.
        local.insert("new", &claims(1000), 0);
        assert!(local.get("new").is_some());
        assert!(local.get("t5").is_none());
        assert!(local.get("t6").is_some());
    }
}

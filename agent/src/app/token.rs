//! Login tokens: JWT (RFC 7519) signed with HMAC-SHA256 (`HS256`) under the cluster's
//! `jwt_key`, carrying the user's id (`sub`), name and expiry (`exp`, Unix seconds). Ours
//! in a few lines on `ring::hmac` (its `verify` compares in constant time) and base64url
//! without padding. Only `{"alg":"HS256","typ":"JWT"}` is accepted as header, so a token
//! cannot choose `none` or another algorithm.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Longest token looked at (ours are about 200 bytes).
pub const MAX_TOKEN_BYTES: usize = 2048;
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The user's id, as a string (RFC 7519's `sub` is a string).
    pub sub: String,
    pub name: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
}

impl Claims {
    pub fn user_id(&self) -> Option<u64> {
        self.sub.parse().ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is wrong")]
    BadSignature,
    #[error("the token expired")]
    Expired,
}

/// The signing key.
pub struct TokenKey {
    key: hmac::Key,
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        // Claims of plain strings and numbers always serialise.
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let mut token = URL_SAFE_NO_PAD.encode(HEADER_JSON);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        token
    }

    /// The claims of `token` if it is ours, untampered, and not expired at `now` (Unix
    /// seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token[..header.len() + 1 + payload.len()];
        hmac::verify(&self.key, signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        // Signed by us, so the rest was made by `sign`; checked all the same.
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        if header != HEADER_JSON.as_bytes() {
            return Err(TokenError::Malformed);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.user_id().is_none() {
            return Err(TokenError::Malformed);
        }
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "42".into(),
            name: "ada".into(),
            iat: 1000,
            exp,
        }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let key = TokenKey::new(b"k3y");
        let token = key.sign(&claims(2000));
        assert_eq!(token.split('.').count(), 3);
        let got = key.verify(&token, 1999).expect("valid");
        assert_eq!(got, claims(2000));
        assert_eq!(got.user_id(), Some(42));
        assert_eq!(key.verify(&token, 2000), Err(TokenError::Expired));
    }

    #[test]
    fn the_encoding_is_standard_jwt() {
        // Checked against the RFC 7515 shape: the header part is fixed.
        let token = TokenKey::new(b"k").sign(&claims(2000));
        assert!(
            token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."),
            "{token}"
        );
        assert!(!token.contains('='));
    }

    #[test]
    fn tampered_tokens_and_other_keys_are_refused() {
        let key = TokenKey::new(b"k3y");
        let token = key.sign(&claims(2000));
        assert_eq!(
            TokenKey::new(b"other").verify(&token, 1000),
            Err(TokenError::BadSignature)
        );
        // Another payload (a longer expiry) under the old signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(9999)).expect("json"));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key.verify(&forged, 1000), Err(TokenError::BadSignature));
        // alg "none", without a signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(key.verify(&none, 1000).is_err());
        for junk in ["", "a.b", "a.b.c.d", "...", "x.y.z", &"a".repeat(5000)] {
            assert!(key.verify(junk, 1000).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_signed_but_odd_payload_is_malformed() {
        let key = TokenKey::new(b"k");
        let odd = Claims {
            sub: "not-a-number".into(),
            ..claims(2000)
        };
        assert_eq!(
            key.verify(&key.sign(&odd), 1000),
            Err(TokenError::Malformed)
        );
    }
}

//! What the app accepts from clients, as pure functions: user names, passwords, post bodies,
//! ids in paths and GTIDs in headers. Each refusal is the sentence the client reads.

use lab_api::app::{MAX_NAME_CHARS, MAX_PASSWORD_CHARS, MAX_POST_CHARS, MIN_PASSWORD_CHARS};

/// `[a-z0-9_-]{1,32}`.
pub fn name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_CHARS {
        return Err(format!("a name has 1 to {MAX_NAME_CHARS} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("a name has only a-z, 0-9, _ and -".to_string());
    }
    Ok(())
}

/// 8..=128 characters, no control characters.
pub fn password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(format!(
            "a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("a password has no control characters".to_string());
    }
    Ok(())
}

/// 1..=2000 characters, not only white space; no control characters but new lines and tabs.
pub fn post_body(body: &str) -> Result<(), String> {
    if body.trim().is_empty() {
        return Err("a post is not empty".to_string());
    }
    if body.chars().count() > MAX_POST_CHARS {
        return Err(format!("a post has at most {MAX_POST_CHARS} characters"));
    }
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("a post has no control characters but new lines and tabs".to_string());
    }
    Ok(())
}

/// An id in a path: decimal digits, 1 or more, fitting a u64, not 0. None otherwise (the
/// caller answers 404: no such thing).
pub fn id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&id| id > 0)
}

/// Longest GTID list taken from a client.
pub const MAX_GTID_BYTES: usize = 256;

/// A MariaDB GTID position as `MASTER_GTID_WAIT` takes it: `domain-server-sequence`,
/// comma-separated, at most a few. Anything else is refused (it goes into SQL as a
/// parameter, but a wrong one would only make every read wait and fall back).
pub fn gtid(text: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{:?} is not a GTID (domain-server-sequence)",
            truncate(text)
        )
    };
    if text.is_empty() || text.len() > MAX_GTID_BYTES {
        return Err(bad());
    }
    for one in text.split(',') {
        let parts: Vec<&str> = one.trim().split('-').collect();
        let numbers_ok = parts.len() == 3
            && parts[0].parse::<u32>().is_ok()
            && parts[1].parse::<u32>().is_ok()
            && parts[2].parse::<u64>().is_ok()
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if !numbers_ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ada", "a", "x_y-z9", &"a".repeat(32)] {
            assert!(name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Ada", "a b", "é", "a;drop", &"a".repeat(33), "a\0"] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(password("12345678").is_ok());
        assert!(password("pässwörd").is_ok(), "8 characters, more bytes");
        assert!(password(&"p".repeat(128)).is_ok());
        for bad in ["", "1234567", &"p".repeat(129), "pass\nword"] {
            assert!(password(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn post_bodies() {
        assert!(post_body("hello").is_ok());
        assert!(post_body("line 1\nline 2\ttab").is_ok());
        assert!(post_body(&"é".repeat(2000)).is_ok());
        for bad in ["", "   \n", &"x".repeat(2001), "bell\u{7}"] {
            assert!(post_body(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(id("1"), Some(1));
        assert_eq!(id("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.5",
            "abc",
            "18446744073709551616",
            " 1",
        ] {
            assert_eq!(id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn gtids() {
        assert!(gtid("0-1-42").is_ok());
        assert!(gtid("0-1-42,1-2-7").is_ok());
        for bad in [
            "",
            "0-1",
            "0-1-x",
            "a-b-c",
            "0-1-42;",
            "0--1-2",
            "-0-1-2",
            &"0-1-1,".repeat(50),
        ] {
            assert!(gtid(bad).is_err(), "{bad:?}");
        }
    }
}

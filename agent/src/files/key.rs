//! What a bucket name and an object key may be, checked before anything touches the disk: a
//! key is one or more `/`-separated segments of printable characters, never `.` or `..`,
//! never empty (no leading, trailing or double slash), no NUL or control character, at most
//! [`MAX_KEY_BYTES`]; so a key can never name a path outside its bucket. Pure.

use std::path::PathBuf;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Longest segment (most file systems allow 255 bytes per name; the index adds `.json`).
pub const MAX_SEGMENT_BYTES: usize = 200;

/// Why a key (or bucket name) is refused; the text is the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
    #[error("the key has an empty segment (a leading, trailing or double `/`)")]
    EmptySegment,
    #[error("the key has a `.` or `..` segment")]
    DotSegment,
    #[error("a segment of the key is longer than {MAX_SEGMENT_BYTES} bytes")]
    SegmentTooLong,
    #[error("the key holds a NUL, a control character or a backslash")]
    BadCharacter,
    #[error("`{0}` is not a bucket name (a-z, 0-9 and -, 1 to 63 characters)")]
    BadBucket(String),
}

/// A checked key: its segments, each safe as one file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    text: String,
}

impl ObjectKey {
    /// Checks `text` (already percent-decoded).
    pub fn parse(text: &str) -> Result<ObjectKey, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if text.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong);
        }
        if text.chars().any(|c| c.is_control() || c == '\\') {
            return Err(KeyError::BadCharacter);
        }
        for segment in text.split('/') {
            match segment {
                "" => return Err(KeyError::EmptySegment),
                "." | ".." => return Err(KeyError::DotSegment),
                s if s.len() > MAX_SEGMENT_BYTES => return Err(KeyError::SegmentTooLong),
                _ => {}
            }
        }
        Ok(ObjectKey {
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The relative path of the key's index entry: directories get `.d` appended and the
    /// last segment `.json`, so no file ever has a directory's name (`a` and `a/b` both
    /// exist as `a.json` beside `a.d/b.json`; `a.json/b` is `a.json.d/b.json`).
    pub fn index_path(&self) -> PathBuf {
        let mut path = PathBuf::new();
        let mut segments = self.text.split('/').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_some() {
                path.push(format!("{segment}.d"));
            } else {
                path.push(format!("{segment}.json"));
            }
        }
        path
    }
}

/// Checks a bucket name ([`lab_api::files::is_bucket_name`]).
pub fn check_bucket(name: &str) -> Result<(), KeyError> {
    if lab_api::files::is_bucket_name(name) {
        Ok(())
    } else {
        Err(KeyError::BadBucket(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_leave_the_bucket_are_refused() {
        for (bad, why) in [
            ("", KeyError::Empty),
            ("../etc/passwd", KeyError::DotSegment),
            ("a/../../b", KeyError::DotSegment),
            ("./a", KeyError::DotSegment),
            ("/etc/passwd", KeyError::EmptySegment),
            ("a//b", KeyError::EmptySegment),
            ("a/", KeyError::EmptySegment),
            ("a\0b", KeyError::BadCharacter),
            ("a\nb", KeyError::BadCharacter),
            ("..\\..\\x", KeyError::BadCharacter),
        ] {
            assert_eq!(ObjectKey::parse(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            ObjectKey::parse(&"a".repeat(MAX_KEY_BYTES + 1)),
            Err(KeyError::TooLong)
        );
        assert_eq!(
            ObjectKey::parse(&"a".repeat(MAX_SEGMENT_BYTES + 1)),
            Err(KeyError::SegmentTooLong)
        );
    }

    #[test]
    fn ordinary_keys_map_to_paths_inside_the_bucket() {
        let key = ObjectKey::parse("users/42/avatar.png").expect("key");
        assert_eq!(
            key.index_path(),
            PathBuf::from("users.d/42.d/avatar.png.json")
        );
        let dots = ObjectKey::parse("..a/b..c/...").expect("dots inside names are fine");
        assert_eq!(dots.index_path(), PathBuf::from("..a.d/b..c.d/....json"));
        // A key and a key under it never collide, whatever their names.
        let path = |k: &str| ObjectKey::parse(k).expect(k).index_path();
        assert_eq!(path("a"), PathBuf::from("a.json"));
        assert_eq!(path("a.json/b"), PathBuf::from("a.json.d/b.json"));
        assert_ne!(path("a.d"), PathBuf::from("a.d"));
        let unicode = ObjectKey::parse("photos/café 1.jpg").expect("unicode");
        assert_eq!(unicode.as_str(), "photos/café 1.jpg");
    }

    #[test]
    fn bucket_names_are_plain() {
        assert!(check_bucket("avatars").is_ok());
        assert!(check_bucket("videos-2").is_ok());
        for bad in ["", "Avatars", "a/b", "..", "-x", &"a".repeat(64)] {
            assert!(check_bucket(bad).is_err(), "{bad:?}");
        }
    }
}

//! memcached's text protocol, the part the app speaks: `get`, `set`, `delete`, `version`.
//! Requests are encoded and reply lines parsed by pure functions (tested on the exact bytes);
//! [`exchange`] runs one request on a connection, reading no more than it was told to.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest reply line read (a `VALUE` header, an error text).
const MAX_LINE: u64 = 512;
/// Largest value the app stores or reads (memcached's default item limit is 1 MiB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Longest key memcached takes.
pub const MAX_KEY_BYTES: usize = 250;

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Get(&'a str),
    Set {
        key: &'a str,
        value: &'a [u8],
        ttl_secs: u32,
    },
    Delete(&'a str),
    Version,
}

/// What a request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `get`: the value, or None (`END` alone).
    Value(Option<Vec<u8>>),
    Stored,
    /// `delete`: whether there was something to delete.
    Deleted(bool),
    Version(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("unexpected reply {0:?}")]
    Unexpected(String),
    #[error("key unusable by memcached: {0:?}")]
    BadKey(String),
    #[error("value of {0} bytes is over the limit")]
    TooLarge(usize),
}

/// A key memcached takes: 1..=250 bytes, no whitespace or control characters.
pub fn key_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The bytes of `request` on the wire.
pub fn encode(request: &Request<'_>) -> Result<Vec<u8>, ProtocolError> {
    let check = |key: &str| {
        if key_ok(key) {
            Ok(())
        } else {
            Err(ProtocolError::BadKey(key.to_string()))
        }
    };
    Ok(match *request {
        Request::Get(key) => {
            check(key)?;
            format!("get {key}\r\n").into_bytes()
        }
        Request::Set {
            key,
            value,
            ttl_secs,
        } => {
            check(key)?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(ProtocolError::TooLarge(value.len()));
            }
            let mut out = format!("set {key} 0 {ttl_secs} {}\r\n", value.len()).into_bytes();
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            out
        }
        Request::Delete(key) => {
            check(key)?;
            format!("delete {key}\r\n").into_bytes()
        }
        Request::Version => b"version\r\n".to_vec(),
    })
}

/// A reply line of a `get`: a value header (its length) or the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetLine {
    Value { bytes: usize },
    End,
}

/// Parses a line of a `get` reply for `key` (without its `\r\n`).
pub fn parse_get_line(line: &str, key: &str) -> Result<GetLine, ProtocolError> {
    if line == "END" {
        return Ok(GetLine::End);
    }
    let unexpected = || ProtocolError::Unexpected(line.to_string());
    let mut words = line.split(' ');
    if words.next() != Some("VALUE") || words.next() != Some(key) {
        return Err(unexpected());
    }
    let _flags: u32 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(unexpected)?;
    let bytes: usize = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(unexpected)?;
    // A fifth word is the CAS unique of `gets`, which we do not send.
    if words.next().is_some() {
        return Err(unexpected());
    }
    if bytes > MAX_VALUE_BYTES {
        return Err(ProtocolError::TooLarge(bytes));
    }
    Ok(GetLine::Value { bytes })
}

/// Parses the one-line reply of `set`, `delete` or `version`.
pub fn parse_status_line(request: &Request<'_>, line: &str) -> Result<Reply, ProtocolError> {
    match (request, line) {
        (Request::Set { .. }, "STORED") => Ok(Reply::Stored),
        (Request::Delete(_), "DELETED") => Ok(Reply::Deleted(true)),
        (Request::Delete(_), "NOT_FOUND") => Ok(Reply::Deleted(false)),
        (Request::Version, line) if line.starts_with("VERSION ") => {
            Ok(Reply::Version(line["VERSION ".len()..].to_string()))
        }
        _ => Err(ProtocolError::Unexpected(line.to_string())),
    }
}

/// One line without its `\r\n`, at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, ProtocolError> {
    let mut buf = Vec::with_capacity(64);
    let n = (&mut *reader)
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Err(ProtocolError::Closed);
    }
    let Some(line) = buf.strip_suffix(b"\r\n") else {
        return Err(ProtocolError::Unexpected(
            String::from_utf8_lossy(&buf).into_owned(),
        ));
    };
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// Sends `request` on `stream` and reads its whole reply. An error leaves the connection in
/// an unknown state: the caller drops it.
pub async fn exchange<S>(stream: &mut S, request: &Request<'_>) -> Result<Reply, ProtocolError>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    let bytes = encode(request)?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    match request {
        Request::Get(key) => match parse_get_line(&read_line(stream).await?, key)? {
            GetLine::End => Ok(Reply::Value(None)),
            GetLine::Value { bytes } => {
                let mut value = vec![0u8; bytes + 2];
                stream.read_exact(&mut value).await?;
                if !value.ends_with(b"\r\n") {
                    return Err(ProtocolError::Unexpected("value without CRLF".into()));
                }
                value.truncate(bytes);
                match parse_get_line(&read_line(stream).await?, key)? {
                    GetLine::End => Ok(Reply::Value(Some(value))),
                    GetLine::Value { .. } => Err(ProtocolError::Unexpected("two values".into())),
                }
            }
        },
        other => parse_status_line(other, &read_line(stream).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_encoded_exactly() {
        assert_eq!(
            encode(&Request::Get("post:7")).expect("get"),
            b"get post:7\r\n"
        );
        assert_eq!(
            encode(&Request::Set {
                key: "k",
                value: b"ab\r\nc",
                ttl_secs: 30
            })
            .expect("set"),
            b"set k 0 30 5\r\nab\r\nc\r\n"
        );
        assert_eq!(encode(&Request::Delete("k")).expect("del"), b"delete k\r\n");
        assert_eq!(encode(&Request::Version).expect("version"), b"version\r\n");
    }

    #[test]
    fn bad_keys_and_values_are_refused_before_sending() {
        assert!(encode(&Request::Get("a b")).is_err());
        assert!(encode(&Request::Get("")).is_err());
        assert!(encode(&Request::Get("a\r\nflush_all")).is_err());
        assert!(encode(&Request::Get(&"k".repeat(251))).is_err());
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(encode(&Request::Set {
            key: "k",
            value: &big,
            ttl_secs: 1
        })
        .is_err());
    }

    #[test]
    fn get_lines_parse() {
        assert_eq!(parse_get_line("END", "k").expect("end"), GetLine::End);
        assert_eq!(
            parse_get_line("VALUE k 0 12", "k").expect("value"),
            GetLine::Value { bytes: 12 }
        );
        assert!(parse_get_line("VALUE other 0 12", "k").is_err());
        assert!(parse_get_line("VALUE k 0", "k").is_err());
        assert!(parse_get_line("SERVER_ERROR out of memory", "k").is_err());
        assert!(parse_get_line("VALUE k 0 99999999999", "k").is_err());
    }

    #[test]
    fn status_lines_parse() {
        let set = Request::Set {
            key: "k",
            value: b"v",
            ttl_secs: 1,
        };
        assert_eq!(
            parse_status_line(&set, "STORED").expect("set"),
            Reply::Stored
        );
        assert!(parse_status_line(&set, "NOT_STORED").is_err());
        let del = Request::Delete("k");
        assert_eq!(
            parse_status_line(&del, "DELETED").expect("del"),
            Reply::Deleted(true)
        );
        assert_eq!(
            parse_status_line(&del, "NOT_FOUND").expect("del"),
            Reply::Deleted(false)
        );
        assert_eq!(
            parse_status_line(&Request::Version, "VERSION 1.6.18").expect("version"),
            Reply::Version("1.6.18".into())
        );
        assert!(parse_status_line(&Request::Version, "ERROR").is_err());
    }

    #[tokio::test]
    async fn a_get_reads_exactly_its_reply() {
        // The server's side of the conversation, captured: a value with CRLF inside it.
        let (client, mut server) = tokio::io::duplex(1024);
        let mut client = tokio::io::BufStream::new(client);
        let serve = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = server.read(&mut buf).await.expect("read");
            assert_eq!(&buf[..n], b"get k\r\n");
            server
                .write_all(b"VALUE k 0 4\r\na\r\nb\r\nEND\r\n")
                .await
                .expect("write");
            server
        });
        let reply = exchange(&mut client, &Request::Get("k"))
            .await
            .expect("get");
        assert_eq!(reply, Reply::Value(Some(b"a\r\nb".to_vec())));
        drop(serve.await.expect("server"));
        // The server went away: the next request says so.
        assert!(exchange(&mut client, &Request::Get("k")).await.is_err());
    }
}

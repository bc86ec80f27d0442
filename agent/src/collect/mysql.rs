//! A minimal MySQL/MariaDB client: handshake v10, `mysql_native_password` (or no password,
//! e.g. `unix_socket` authentication over the server's socket), `COM_QUERY` with text
//! result sets. Just enough for the [`super::mariadb`] collector; no TLS, no prepared
//! statements, no compression, results well under 16 MiB.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where and as whom to connect, parsed from a collector address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub password: String,
    /// A unix socket path (starts with `/`) or `host:port`.
    pub endpoint: String,
}

/// Parses `user:password@host:port`, `user@/path/to/socket`, `/path/to/socket` (user
/// `root`) or `host[:port]` (port 3306 when absent).
pub fn parse_target(address: &str) -> Target {
    let (userinfo, endpoint) = match address.rfind('@') {
        Some(at) => (&address[..at], &address[at + 1..]),
        None => ("root", address),
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let endpoint = if endpoint.starts_with('/') || endpoint.contains(':') {
        endpoint.to_string()
    } else {
        format!("{endpoint}:3306")
    };
    Target {
        user: user.to_string(),
        password: password.to_string(),
        endpoint,
    }
}

/// A failure of the protocol or of the server.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
}

fn protocol(what: &str) -> MysqlError {
    MysqlError::Protocol(what.to_string())
}

/// One row of a text result set (`None` for SQL NULL).
pub type Row = Vec<Option<String>>;

/// A result set: column names and rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An authenticated connection.
pub struct Connection {
    stream: Box<dyn Stream>,
    seq: u8,
}

const CLIENT_LONG_PASSWORD: u32 = 1;
const CLIENT_LONG_FLAG: u32 = 4;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x80000;
const NATIVE: &str = "mysql_native_password";

impl Connection {
    /// Connects and authenticates.
    pub async fn connect(target: &Target) -> Result<Connection, MysqlError> {
        let stream: Box<dyn Stream> = if target.endpoint.starts_with('/') {
            Box::new(tokio::net::UnixStream::connect(&target.endpoint).await?)
        } else {
            Box::new(tokio::net::TcpStream::connect(&target.endpoint).await?)
        };
        let mut conn = Connection { stream, seq: 0 };
        let greeting = conn.read_packet().await?;
        if greeting.first() == Some(&0xff) {
            return Err(server_error(&greeting));
        }
        let (scramble, plugin) = parse_greeting(&greeting)?;
        let auth = auth_response(&plugin, &scramble, &target.password);
        let mut response = Vec::with_capacity(64 + target.user.len());
        let caps = CLIENT_LONG_PASSWORD
            | CLIENT_LONG_FLAG
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH;
        response.extend_from_slice(&caps.to_le_bytes());
        response.extend_from_slice(&(1u32 << 24).to_le_bytes());
        response.push(33); // utf8_general_ci
        response.extend_from_slice(&[0; 23]);
        response.extend_from_slice(target.user.as_bytes());
        response.push(0);
        response.push(u8::try_from(auth.len()).map_err(|_| protocol("auth too long"))?);
        response.extend_from_slice(&auth);
        response.extend_from_slice(plugin.as_bytes());
        response.push(0);
        conn.write_packet(&response).await?;
        loop {
            let answer = conn.read_packet().await?;
            match answer.first() {
                Some(0x00) => return Ok(conn),
                Some(0xff) => return Err(server_error(&answer)),
                Some(0xfe) => {
                    // Auth switch: plugin name, NUL, new scramble.
                    let rest = &answer[1..];
                    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                    let plugin = String::from_utf8_lossy(&rest[..end]).into_owned();
                    let data = rest.get(end + 1..).unwrap_or_default();
                    let data = data.strip_suffix(&[0]).unwrap_or(data);
                    let reply = auth_response(&plugin, data, &target.password);
                    conn.write_packet(&reply).await?;
                }
                _ => return Err(protocol("unsupported authentication exchange")),
            }
        }
    }

    /// Runs `sql` and reads its text result set (empty for a statement without one).
    pub async fn query(&mut self, sql: &str) -> Result<ResultSet, MysqlError> {
        self.seq = 0;
        let mut command = Vec::with_capacity(sql.len() + 1);
        command.push(0x03);
        command.extend_from_slice(sql.as_bytes());
        self.write_packet(&command).await?;
        let first = self.read_packet().await?;
        match first.first() {
            Some(0x00) => return Ok(ResultSet::default()),
            Some(0xff) => return Err(server_error(&first)),
            _ => {}
        }
        let mut pos = 0;
        let count = lenenc_int(&first, &mut pos).ok_or_else(|| protocol("column count"))?;
        let mut set = ResultSet::default();
        for _ in 0..count {
            let def = self.read_packet().await?;
            let mut pos = 0;
            for _ in 0..4 {
                lenenc_str(&def, &mut pos).ok_or_else(|| protocol("column definition"))?;
            }
            let name = lenenc_str(&def, &mut pos).ok_or_else(|| protocol("column name"))?;
            set.columns.push(name.unwrap_or_default());
        }
        let eof = self.read_packet().await?;
        if !is_eof(&eof) {
            return Err(protocol("missing EOF after columns"));
        }
        loop {
            let packet = self.read_packet().await?;
            if is_eof(&packet) {
                return Ok(set);
            }
            if packet.first() == Some(&0xff) {
                return Err(server_error(&packet));
            }
            let mut pos = 0;
            let mut row = Vec::with_capacity(set.columns.len());
            for _ in 0..set.columns.len() {
                row.push(lenenc_str(&packet, &mut pos).ok_or_else(|| protocol("row"))?);
            }
            set.rows.push(row);
        }
    }

    async fn read_packet(&mut self) -> Result<Vec<u8>, MysqlError> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).await?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        self.seq = header[3].wrapping_add(1);
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await?;
        Ok(payload)
    }

    async fn write_packet(&mut self, payload: &[u8]) -> Result<(), MysqlError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l < 0xff_ffff)
            .ok_or_else(|| protocol("packet too long"))?;
        let mut packet = Vec::with_capacity(payload.len() + 4);
        packet.extend_from_slice(&len.to_le_bytes()[..3]);
        packet.push(self.seq);
        packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.stream.write_all(&packet).await?;
        Ok(())
    }
}

fn is_eof(packet: &[u8]) -> bool {
    packet.first() == Some(&0xfe) && packet.len() < 9
}

fn server_error(packet: &[u8]) -> MysqlError {
    let code = match packet.get(1..3) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
        _ => 0,
    };
    let mut message = packet.get(3..).unwrap_or_default();
    if message.first() == Some(&b'#') {
        message = message.get(6..).unwrap_or_default();
    }
    MysqlError::Server {
        code,
        message: String::from_utf8_lossy(message).into_owned(),
    }
}

/// The scramble (20 bytes) and the auth plugin of a v10 greeting.
pub fn parse_greeting(greeting: &[u8]) -> Result<(Vec<u8>, String), MysqlError> {
    if greeting.first() != Some(&10) {
        return Err(protocol("not a protocol v10 greeting"));
    }
    let version_end = greeting[1..]
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| protocol("greeting version"))?
        + 1;
    let mut pos = version_end + 1 + 4; // NUL, connection id
    let part1 = greeting
        .get(pos..pos + 8)
        .ok_or_else(|| protocol("greeting scramble"))?;
    let mut scramble = part1.to_vec();
    pos += 8 + 1 + 2 + 1 + 2 + 2; // filler, caps low, charset, status, caps high
    let data_len = usize::from(*greeting.get(pos).unwrap_or(&0));
    pos += 1 + 10;
    let part2_len = data_len.saturating_sub(8).max(13);
    if let Some(part2) = greeting.get(pos..pos + part2_len) {
        scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
        pos += part2_len;
    }
    let plugin = greeting
        .get(pos..)
        .map(|rest| {
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| NATIVE.to_string());
    Ok((scramble, plugin))
}

/// What to answer for `plugin`: the native-password scramble, or nothing (no password, or
/// a plugin such as `unix_socket` that needs no client data).
fn auth_response(plugin: &str, scramble: &[u8], password: &str) -> Vec<u8> {
    if plugin == NATIVE && !password.is_empty() {
        native_password(scramble, password).to_vec()
    } else {
        Vec::new()
    }
}

/// `SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))`.
pub fn native_password(scramble: &[u8], password: &str) -> [u8; 20] {
    use ring::digest::{digest, Context, SHA1_FOR_LEGACY_USE_ONLY as SHA1};
    let stage1 = digest(&SHA1, password.as_bytes());
    let stage2 = digest(&SHA1, stage1.as_ref());
    let mut ctx = Context::new(&SHA1);
    ctx.update(scramble);
    ctx.update(stage2.as_ref());
    let mix = ctx.finish();
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = stage1.as_ref()[i] ^ mix.as_ref()[i];
    }
    out
}

fn lenenc_int(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *buf.get(*pos)?;
    *pos += 1;
    let width = match first {
        0..=0xfa => return Some(u64::from(first)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = buf.get(*pos..*pos + width)?;
    *pos += width;
    Some(
        bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
    )
}

/// A length-encoded string; `Some(None)` for NULL (0xfb).
fn lenenc_str(buf: &[u8], pos: &mut usize) -> Option<Option<String>> {
    if buf.get(*pos) == Some(&0xfb) {
        *pos += 1;
        return Some(None);
    }
    let len = usize::try_from(lenenc_int(buf, pos)?).ok()?;
    let bytes = buf.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("lab:s3cr@t@10.0.0.2:3307"),
            Target {
                user: "lab".into(),
                password: "s3cr@t".into(),
                endpoint: "10.0.0.2:3307".into()
            }
        );
        assert_eq!(
            parse_target("root@/run/mysqld/mysqld.sock"),
            Target {
                user: "root".into(),
                password: "".into(),
                endpoint: "/run/mysqld/mysqld.sock".into()
            }
        );
        assert_eq!(parse_target("db1").endpoint, "db1:3306");
        assert_eq!(parse_target("/tmp/s").user, "root");
    }

    // A MariaDB 10.11 greeting, built from the documented layout.
    fn greeting() -> Vec<u8> {
        let mut g = vec![10];
        g.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
        g.extend_from_slice(&7u32.to_le_bytes());
        g.extend_from_slice(b"abcdefgh\0");
        g.extend_from_slice(&[0xfe, 0xf7, 45, 2, 0, 0xff, 0x81, 21]);
        g.extend_from_slice(&[0; 10]);
        g.extend_from_slice(b"ijklmnopqrst\0");
        g.extend_from_slice(b"mysql_native_password\0");
        g
    }

    #[test]
    fn greeting_scramble_and_plugin() {
        let (scramble, plugin) = parse_greeting(&greeting()).expect("greeting");
        assert_eq!(scramble, b"abcdefghijklmnopqrst");
        assert_eq!(plugin, NATIVE);
        assert!(parse_greeting(&[9, 0]).is_err());
    }

    #[test]
    fn native_password_known_answer() {
        // Computed independently with Python's hashlib for scramble "abcdefghijklmnopqrst".
        let out = native_password(b"abcdefghijklmnopqrst", "pw");
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "12909d72d875523f8c9d6da44cbd3a6c1ce794db");
        assert!(auth_response(NATIVE, b"x", "").is_empty());
        assert!(auth_response("unix_socket", b"x", "pw").is_empty());
    }

    #[test]
    fn lenenc_values() {
        let buf = [0x05, b'h', b'e', b'l', b'l', b'o', 0xfb, 0xfc, 0x01, 0x01];
        let mut pos = 0;
        assert_eq!(lenenc_str(&buf, &mut pos), Some(Some("hello".into())));
        assert_eq!(lenenc_str(&buf, &mut pos), Some(None));
        assert_eq!(lenenc_int(&buf, &mut pos), Some(257));
        assert_eq!(lenenc_int(&buf, &mut pos), None);
    }
}

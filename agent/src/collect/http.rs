//! The one plain-HTTP `GET` the collectors and readiness probes use (NGINX's `stub_status`,
//! the app's stats and health): a hyper client on a tokio TCP stream, one request per
//! connection, the body bounded.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::CollectError;

/// Splits `http://host:port/path` into (`host:port`, `/path`); port 80 when absent.
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Some((authority, path.to_string()))
}

/// `GET url`; the body when the status is 2xx and the body at most `max_body` bytes.
pub async fn get(url: &str, max_body: usize) -> Result<Bytes, CollectError> {
    let (authority, path) = split_url(url).ok_or_else(|| format!("not an http:// URL: {url:?}"))?;
    let tcp = TcpStream::connect(&authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await;
    let result = async {
        let response = response?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()).into());
        }
        let body = http_body_util::Limited::new(response.into_body(), max_body)
            .collect()
            .await?
            .to_bytes();
        Ok(body)
    }
    .await;
    driver.abort();
    result
}

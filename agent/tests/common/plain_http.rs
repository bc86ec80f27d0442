//! Plain HTTP on loopback for the file store and CDN tests: one request per connection
//! (hyper's client), and `lab-agent files` started in this process.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use lab_api::spec::{FilesBucket, FilesConfig};
use tokio_util::sync::CancellationToken;

/// `lab-agent files` in this process on a loopback port.
pub struct FilesServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl FilesServer {
    pub async fn start(data: &Path, buckets: &[(&str, u64)]) -> FilesServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let buckets: Vec<(&str, u64, Option<String>)> =
            buckets.iter().map(|(n, m)| (*n, *m, None)).collect();
        FilesServer::start_on(listener, "files-test", data, &buckets)
    }

    /// On `listener`, as `board`, each bucket with its replica's `host:port` if any.
    pub fn start_on(
        listener: tokio::net::TcpListener,
        board: &str,
        data: &Path,
        buckets: &[(&str, u64, Option<String>)],
    ) -> FilesServer {
        let config = FilesConfig {
            board: board.into(),
            bind: "127.0.0.1".into(),
            port: 0,
            buckets: buckets
                .iter()
                .map(|(name, max, replica)| FilesBucket {
                    name: name.to_string(),
                    max_object_bytes: *max,
                    replica: replica.clone(),
                })
                .collect(),
        };
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let data = data.to_path_buf();
        let token = stop.clone();
        let task =
            tokio::spawn(
                async move { lab_agent::files::serve(listener, &config, &data, token).await },
            );
        FilesServer { addr, stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the store stops");
        ended.expect("task").expect("served without error");
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request over a fresh connection; panics when there is no answer within 20 s.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::from(body))).expect("request"))
            .await
            .expect("answer");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("answer within 20 s")
}

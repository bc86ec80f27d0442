//! The control plane on the network, through the real `lab` binary on a real virtual cluster:
//! `lab serve` answers only requests whose `Host` names the address it serves (a foreign
//! Host, as DNS rebinding produces, gets 421 on every route), and certificates near their
//! end are reported by `lab status` and re-issued by `lab bootstrap`, which uploads the new
//! one and restarts the agent so that it serves it. The renewal window is widened with
//! LAB_CERT_RENEW_BEFORE_DAYS so that a fresh one-year certificate counts as "expiring".

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::{describe, TestCluster};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A raw HTTP/1.0 GET to `addr` (loopback) with the given `Host` line (None: no Host).
fn get_with_host(addr: &str, path: &str, host: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let host_line = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\n{host_line}\r\n").expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The DER of the certificate the agent at `ip` presents, over a real mTLS handshake with the
/// control plane's client certificate.
fn served_cert(state: &std::path::Path, ip: &str) -> Vec<u8> {
    lab::install_crypto_provider();
    let read = |f: &str| std::fs::read(state.join("pki").join(f)).expect("read pki file");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read("ca.pem")) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("control.pem"))
        .collect::<Result<_, _>>()
        .expect("control cert");
    let key = PrivateKeyDer::from_pem_slice(&read("control.key")).expect("control key");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client config");
    let name = ServerName::try_from(ip.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
    let mut tcp = TcpStream::connect((ip, lab_api::DEFAULT_AGENT_PORT)).expect("connect agent");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .expect("TLS handshake with the agent");
    }
    conn.peer_certificates()
        .and_then(|c| c.first())
        .expect("the agent presents a certificate")
        .to_vec()
}

fn pem_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

#[test]
fn serve_refuses_foreign_hosts_and_bootstrap_renews_certificates() {
    let cluster = TestCluster::new("sec", &[("node-a", "native")]);
    let addr = cluster.up_with_serve();
    let port = addr.rsplit_once(':').expect("port").1.to_string();

    // 1. Host check, on a real `lab serve`, every route.
    let (status, body) = get_with_host(&addr, "/api/boards", Some(&addr));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("node-a"), "{body}");
    let (status, _) = get_with_host(&addr, "/api/boards", Some(&format!("localhost:{port}")));
    assert_eq!(status, 200, "localhost names a loopback-bound server");
    let evil = format!("evil.example:{port}");
    for path in [
        "/api/boards",
        "/metrics",
        "/",
        "/api/stream",
        "/no/such/page",
    ] {
        let (status, body) = get_with_host(&addr, path, Some(&evil));
        assert_eq!(status, 421, "{path} with Host {evil}: {body}");
        assert!(body.contains(&format!("`{evil}`")), "{body}");
        assert!(body.contains("--allow-host"), "{body}");
        assert!(
            !body.contains("node-a"),
            "no cluster data in a refusal: {body}"
        );
    }
    let (status, body) = get_with_host(&addr, "/api/boards", None);
    assert_eq!(status, 421, "no Host: {body}");
    let (status, body) = get_with_host(&addr, "/metrics", Some("127.0.0.1:1"));
    assert_eq!(status, 421, "another port: {body}");
    // The tools that read the API still work (they send the address served as Host).
    cluster.lab_ok(&["metrics", "export", "-o", "/dev/null"]);

    // 2. Nothing is near its end: no warnings.
    let state = cluster.state_dir();
    let board_ip = cluster.boards[0].1.clone();
    let out = cluster.lab(&["status", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{}", describe(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let not_after = status[0]["cert"]["not_after"]
        .as_str()
        .unwrap_or_else(|| panic!("board cert end date in status --json: {status}"))
        .to_string();

    // 3. With a 400-day window the one-year certificates count as expiring: status warns
    // about the board's, naming the fix.
    let wide = [("LAB_CERT_RENEW_BEFORE_DAYS", "400")];
    let out = cluster.lab_env(&["status"], &wide);
    let text = describe(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning: certificate of the board node-a")
            && text.contains(&format!("expires on {not_after}"))
            && text.contains("bootstrap")
            && text.contains("re-issues it"),
        "{text}"
    );

    // 4. Bootstrap re-issues it, uploads it (cert and key) and restarts the agent, which then
    // serves the new certificate.
    let old_pem = std::fs::read_to_string(state.join("pki/boards/node-a.pem")).expect("cert");
    assert_eq!(served_cert(&state, &board_ip), pem_der(&old_pem));
    let out = cluster.lab_env(&["bootstrap"], &wide);
    let text = describe(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("node-a: certificate expires soon"),
        "says why: {text}"
    );
    assert!(text.contains("2 file(s) updated, restarted"), "{text}");
    let new_pem = std::fs::read_to_string(state.join("pki/boards/node-a.pem")).expect("cert");
    assert_ne!(new_pem, old_pem, "a new certificate in the state dir");
    assert_eq!(
        served_cert(&state, &board_ip),
        pem_der(&new_pem),
        "the restarted agent serves the new certificate"
    );
    let on_board = cluster.ssh(&board_ip, "cat /etc/lab/tls/agent.pem");
    assert_eq!(String::from_utf8_lossy(&on_board.stdout), new_pem);

    // 5. With the normal window the new certificate is fine: nothing to do, nothing said.
    let again = cluster.lab_ok(&["bootstrap"]);
    assert!(again.contains("unchanged"), "{again}");
    assert!(!again.contains("certificate"), "{again}");
    let out = cluster.lab(&["status"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        describe(&out)
    );
    cluster.lab_ok(&["down"]);
}

//! The agent's API over real mutual TLS: certificates made by a throwaway CA, the server
//! running in-process, a real rustls client. Who gets in, who does not, and what they hear.

mod common;

use std::time::Duration;

use common::{client_config, get, protocol, start, Board, Ca, Running, BOARD_NAME};
use hyper::StatusCode;
use lab_agent::server::Server;
use lab_api::{paths, ApiError, Health};
use rcgen::ExtendedKeyUsagePurpose;

fn api_error(body: &[u8]) -> ApiError {
    serde_json::from_slice(body).unwrap_or_else(|err| {
        panic!(
            "not ApiError JSON ({err}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

#[tokio::test]
async fn control_client_gets_health() {
    let board = Board::new("127.0.0.1:0");
    let server = start(&board).await;
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));

    let (status, body) = get(server.addr, client, paths::HEALTH, Some(&protocol()))
        .await
        .expect("health request");
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let health: Health = serde_json::from_slice(&body).expect("Health JSON");
    assert_eq!(health.board, BOARD_NAME);
    assert_eq!(health.protocol_version, lab_api::PROTOCOL_VERSION);
    assert_eq!(health.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(health.arch, std::env::consts::ARCH);
    assert!(!health.hostname.is_empty());
    assert!(!health.os.is_empty());
    assert!(!health.kernel.is_empty());
    assert!(health.uptime_secs >= health.agent_uptime_secs);
    assert!(health.cpu_count > 0);
    assert!((0.0..=100.0).contains(&health.cpu_percent));
    assert!(health.mem_total_bytes > 0);
    assert!(health.mem_used_bytes <= health.mem_total_bytes);
}

/// Each refused client must fail with the TLS alert `alert` (the reason, not some other
/// failure), and the server must keep serving the right client afterwards.
async fn assert_refused(
    board: &Board,
    server: &Running,
    identity: Option<&common::Leaf>,
    alert: &str,
) {
    let client = client_config(&board.ca.pem(), identity);
    let result = get(server.addr, client, paths::HEALTH, Some(&protocol())).await;
    match result {
        Ok(answer) => panic!("expected refusal, got {answer:?}"),
        Err(err) => {
            let err = format!("{err:?}");
            assert!(err.contains(&format!("AlertReceived({alert})")), "{err}");
        }
    }

    let good = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
    let (status, _) = get(server.addr, good, paths::HEALTH, Some(&protocol()))
        .await
        .expect("server still serves after a refused handshake");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let board = Board::new("127.0.0.1:0");
    let server = start(&board).await;
    assert_refused(&board, &server, None, "CertificateRequired").await;
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let board = Board::new("127.0.0.1:0");
    let server = start(&board).await;
    let stranger = Ca::new("someone else's CA").control_client();
    assert_refused(&board, &server, Some(&stranger), "UnknownCA").await;
}

#[tokio::test]
async fn board_certificate_cannot_act_as_client() {
    let board = Board::new("127.0.0.1:0");
    let server = start(&board).await;
    // Signed by the right CA, but serverAuth only: what another board holds.
    let other_board = board
        .ca
        .issue("pi-2", &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    assert_refused(
        &board,
        &server,
        Some(&other_board),
        "UnsupportedCertificate",
    )
    .await;
}

#[tokio::test]
async fn protocol_mismatch_is_409_with_reason() {
    let board = Board::new("127.0.0.1:0");
    let server = start(&board).await;
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
    let speaks = lab_api::PROTOCOL_VERSION;

    let (status, body) = get(server.addr, client.clone(), paths::HEALTH, None)
        .await
        .expect("request without header");
    assert_eq!(status, StatusCode::CONFLICT);
    let error = api_error(&body).error;
    assert!(
        error.starts_with(&format!(
            "protocol mismatch: agent speaks {speaks}, request says none"
        )),
        "{error}"
    );
    assert!(error.contains("lab bootstrap"), "{error}");

    let newer = (speaks + 1).to_string();
    let (status, body) = get(server.addr, client.clone(), paths::HEALTH, Some(&newer))
        .await
        .expect("request with a newer protocol");
    assert_eq!(status, StatusCode::CONFLICT);
    let error = api_error(&body).error;
    assert!(
        error.contains(&format!("agent speaks {speaks}, request says \"{newer}\"")),
        "{error}"
    );

    // The protocol check comes first, even for unknown paths.
    let (status, _) = get(server.addr, client, "/v1/nope", None)
        .await
        .expect("unknown path without header");
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn unknown_path_is_404_with_reason() {
    let board = Board::new("127.0.0.1:0");
    let server = start(&board).await;
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));
    let (status, body) = get(server.addr, client, "/v1/nope", Some(&protocol()))
        .await
        .expect("request");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api_error(&body).error, "no such endpoint: /v1/nope");
}

#[tokio::test]
async fn shutdown_stops_the_server_even_with_an_open_connection() {
    let board = Board::new("127.0.0.1:0");
    let mut server = start(&board).await;
    let client = client_config(&board.ca.pem(), Some(&board.ca.control_client()));

    // An idle keep-alive connection must not hold shutdown up.
    let (mut sender, connection) = common::connect(server.addr, client.clone())
        .await
        .expect("connect");
    let request = hyper::Request::get(paths::HEALTH)
        .header(hyper::header::HOST, server.addr.to_string())
        .header(lab_api::PROTOCOL_HEADER, protocol())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);

    server.shutdown.cancel();
    let task = server.task.take().expect("task");
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("server did not stop within 3 s of shutdown")
        .expect("server task panicked");

    // The open connection was closed, and nothing listens any more.
    tokio::time::timeout(Duration::from_secs(3), connection)
        .await
        .expect("connection not closed by shutdown")
        .expect("connection task");
    assert!(get(server.addr, client, paths::HEALTH, Some(&protocol()))
        .await
        .is_err());
}

#[tokio::test]
async fn bad_tls_material_is_reported_at_bind() {
    let mut board = Board::new("127.0.0.1:0");
    board.config.tls_key = board.dir.path().join("missing.key").display().to_string();
    let err = match Server::bind(&board.config).await {
        Ok(_) => panic!("bind succeeded without a key"),
        Err(err) => err,
    };
    let chain = format!("{err}: {}", std::error::Error::source(&err).expect("cause"));
    assert!(chain.contains("missing.key"), "{chain}");
}

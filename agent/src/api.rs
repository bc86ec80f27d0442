//! The agent's HTTP API: an axum router behind the mTLS accept loop of [`crate::server`].
//!
//! Every request must carry [`lab_api::PROTOCOL_HEADER`] equal to
//! [`lab_api::PROTOCOL_VERSION`]; anything else is refused with `409 Conflict` before routing,
//! so a stale agent or a stale `lab` says so instead of half-working, except on
//! [`paths::METRICS`], which Prometheus scrapes without our header (mTLS still applies).
//! Every non-2xx answer has an [`ApiError`] JSON body, unknown paths and wrong methods
//! included.
//!
//! - `GET /v1/health`: [`Health`], from the sampler's latest sample and the roles' statuses.
//! - `PUT /v1/spec`: the board's desired state ([`crate::roles::store`] decides; the body is
//!   parsed here by hand so a malformed one gets a 400 naming the JSON error). `GET
//!   /v1/spec`: the spec held, `null` before the first (500 when the stored one is unusable).
//! - `GET /v1/db`: the database's replication state ([`crate::roles::replication`]); 404
//!   without a database role, 503 when it does not answer.
//! - `GET /v1/samples/stream`: NDJSON samples ([`crate::stream`]).
//! - `GET /metrics`: Prometheus text of the latest sample ([`lab_api::prometheus`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use lab_api::{paths, ApiError, Health, PROTOCOL_HEADER, PROTOCOL_VERSION};
use tokio::sync::watch;

use crate::host::{BootClock, HostFacts};
use crate::roles::Roles;
use crate::sampler::Latest;
use crate::stream::SampleStream;

/// What handlers share: fixed facts, clocks and the sampler's latest values.
#[derive(Clone)]
pub struct AppState {
    board: Arc<str>,
    facts: Arc<HostFacts>,
    boot: BootClock,
    started: Instant,
    samples: watch::Receiver<Latest>,
    roles: Roles,
}

impl AppState {
    /// State for board `board`, reading the host facts now; `started` is when the agent
    /// process started.
    pub fn new(
        board: &str,
        started: Instant,
        samples: watch::Receiver<Latest>,
        roles: Roles,
    ) -> Self {
        AppState {
            board: board.into(),
            facts: Arc::new(HostFacts::read()),
            boot: BootClock::measure(),
            started,
            samples,
            roles,
        }
    }

    fn health(&self) -> Health {
        let sample = self.samples.borrow().sample.clone();
        let host = &sample.host;
        let (spec_epoch, roles) = self.roles.health();
        Health {
            protocol_version: PROTOCOL_VERSION,
            agent_version: crate::VERSION.to_string(),
            board: self.board.to_string(),
            hostname: self.facts.hostname.clone(),
            arch: self.facts.arch.to_string(),
            os: self.facts.os.clone(),
            kernel: self.facts.kernel.clone(),
            uptime_secs: self.boot.uptime_secs(),
            agent_uptime_secs: self.started.elapsed().as_secs(),
            cpu_percent: host.cpu_percent,
            cpu_count: u32::try_from(host.cpu_per_core.len()).unwrap_or(u32::MAX),
            cpus: host.cpus,
            mem_used_bytes: host
                .mem_total_bytes
                .saturating_sub(host.mem_available_bytes),
            mem_total_bytes: host.mem_total_bytes,
            binary_sha256: self.facts.binary_sha256.clone(),
            spec_epoch,
            roles,
        }
    }
}

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::SPEC, get(get_spec).put(put_spec))
        .route(paths::SAMPLES_STREAM, get(samples_stream))
        .route(paths::METRICS, get(metrics))
        .route(paths::DB, get(db))
        .route(paths::DB_RECLONE, post(db_reclone))
        .route(paths::CDN_PURGE, post(cdn_purge))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(require_protocol))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(state.health())
}

async fn put_spec(State(state): State<AppState>, body: Bytes) -> Response {
    match state.roles.put(&body).await {
        Ok(accepted) => Json(accepted).into_response(),
        Err(err) => {
            let message = crate::roles::error_chain(&err);
            log::warn!("refused a spec: {message}");
            error_response(err.status(), message)
        }
    }
}

async fn get_spec(State(state): State<AppState>) -> Response {
    if let Some(problem) = state.roles.load_problem() {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, problem.to_string());
    }
    Json(state.roles.held().as_deref().cloned()).into_response()
}

async fn db(State(state): State<AppState>) -> Response {
    match state.roles.db_replication(&state.board).await {
        Some(Ok(replication)) => Json(replication).into_response(),
        Some(Err(err)) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database not answering: {err:#}"),
        ),
        None => error_response(
            StatusCode::NOT_FOUND,
            "this board runs no database role".to_string(),
        ),
    }
}

async fn db_reclone(State(state): State<AppState>) -> Response {
    match state.roles.reclone_db().await {
        Ok(message) => {
            log::warn!("reclone: {message}");
            Json(lab_api::spec::Recloned {
                board: state.board.to_string(),
                message,
            })
            .into_response()
        }
        Err(why) => error_response(StatusCode::CONFLICT, why),
    }
}

async fn cdn_purge(State(state): State<AppState>, body: Bytes) -> Response {
    let ask: lab_api::spec::CdnPurge = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("not a purge: {e}")),
    };
    let admin_port = state.roles.held().and_then(|spec| {
        spec.roles.iter().find_map(|r| match r {
            lab_api::spec::RoleConfig::Cdn(c) => Some(c.admin_port),
            _ => None,
        })
    });
    let Some(port) = admin_port else {
        return error_response(
            StatusCode::NOT_FOUND,
            "this board runs no cdn role".to_string(),
        );
    };
    match crate::cdn::purge_local(port, &ask).await {
        Ok(purged) => Json(lab_api::spec::CdnPurged {
            board: state.board.to_string(),
            purged,
        })
        .into_response(),
        Err(why) => error_response(StatusCode::BAD_GATEWAY, why),
    }
}

async fn samples_stream(State(state): State<AppState>) -> Response {
    let body = Body::new(SampleStream::new(state.samples.clone()));
    ([(CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let sample = state.samples.borrow().sample.clone();
    let text = lab_api::prometheus::render(&[(&state.board, &sample)], false);
    ([(CONTENT_TYPE, lab_api::prometheus::CONTENT_TYPE)], text).into_response()
}

async fn not_found(request: Request) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn require_protocol(request: Request, next: Next) -> Response {
    if request.uri().path() == paths::METRICS {
        return next.run(request).await; // Prometheus cannot send our header
    }
    match check_protocol(request.headers().get(PROTOCOL_HEADER)) {
        Ok(()) => next.run(request).await,
        Err(message) => {
            log::info!("refused {} {}: {message}", request.method(), request.uri());
            error_response(StatusCode::CONFLICT, message)
        }
    }
}

/// Checks the caller's protocol header; the error is the message sent back.
pub fn check_protocol(header: Option<&HeaderValue>) -> Result<(), String> {
    let said = match header.map(|value| value.to_str().map(str::trim)) {
        None => "none".to_string(),
        Some(Err(_)) => "an unreadable value".to_string(),
        Some(Ok(value)) if value == PROTOCOL_VERSION.to_string() => return Ok(()),
        Some(Ok(value)) => format!("{value:?}"),
    };
    Err(format!(
        "protocol mismatch: agent speaks {PROTOCOL_VERSION}, request says {said} \
         (header {PROTOCOL_HEADER}); redeploy with `lab bootstrap`"
    ))
}

/// A non-2xx answer with an [`ApiError`] body.
pub fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_version_passes() {
        let value = HeaderValue::from_str(&PROTOCOL_VERSION.to_string()).expect("header");
        assert_eq!(check_protocol(Some(&value)), Ok(()));
    }

    #[test]
    fn mismatch_names_both_versions() {
        let other = PROTOCOL_VERSION + 1;
        let value = HeaderValue::from_str(&other.to_string()).expect("header");
        let message = check_protocol(Some(&value)).expect_err("mismatch");
        assert!(
            message.starts_with(&format!(
                "protocol mismatch: agent speaks {PROTOCOL_VERSION}, request says \"{other}\""
            )),
            "{message}"
        );
        assert!(
            message.ends_with("redeploy with `lab bootstrap`"),
            "{message}"
        );
    }

    #[test]
    fn missing_header_says_none() {
        let message = check_protocol(None).expect_err("missing");
        assert!(message.contains("request says none"), "{message}");
    }

    #[test]
    fn non_utf8_header_is_refused() {
        let value = HeaderValue::from_bytes(&[0xff, 0xfe]).expect("header");
        let message = check_protocol(Some(&value)).expect_err("garbage");
        assert!(message.contains("an unreadable value"), "{message}");
    }
}

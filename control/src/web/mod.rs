//! The HTTP side of `lab serve`: an axum router on plain HTTP (loopback by default) serving
//! the JSON API ([`api`]), the Prometheus exposition and the embedded web dashboard
//! (`dashboard/index.html`, `app.js`, `style.css`, compiled into the binary), and the server
//! loop that stops gracefully when the shutdown token is cancelled (SSE streams included).
//! Every route answers only requests whose `Host` names the address served ([`host_check`]).

pub mod api;
pub mod host_check;

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::store::MetricsStore;

/// What handlers share.
#[derive(Clone)]
pub struct WebState {
    pub store: Arc<MetricsStore>,
    /// Cancelled on shutdown; long-lived answers (the SSE stream) end on it.
    pub shutdown: CancellationToken,
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

/// The whole router.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/dashboard/", get(index))
        .route("/dashboard/index.html", get(index))
        .route("/dashboard/app.js", get(app_js))
        .route("/dashboard/style.css", get(style_css))
        .route("/api/boards", get(api::get_boards))
        .route("/api/history", get(api::get_history))
        .route("/api/series", get(api::get_series))
        .route("/api/events", get(api::get_events))
        .route("/api/stream", get(api::get_stream))
        .route("/metrics", get(api::get_metrics))
        .fallback(api::not_found)
        .with_state(state)
}

/// Serve `router(state)` on `listener` until `state.shutdown` is cancelled, then finish the
/// requests in flight (SSE streams end on the same token). Requests whose `Host` is not in
/// `allowed` are refused on every route, the fallback included.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    allowed: host_check::AllowedHosts,
) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let app = router(state).layer(axum::middleware::from_fn_with_state(
        Arc::new(allowed),
        host_check::check_host,
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

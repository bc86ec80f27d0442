//! The router: [`lab_api::app::paths`] to [`super::handlers`], the body limit, JSON answers
//! for unknown paths and methods, and the layer every answer goes through: `X-Served-By`,
//! and the request counted with its status and latency (except `/_lab/`, the agent's own
//! probes and collector, which would otherwise count themselves).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use lab_api::app::{paths, MAX_BODY_BYTES, SERVED_BY};

use super::error::Failure;
use super::handlers;
use super::state::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(paths::ROOT, get(handlers::root))
        .route(paths::SIGNUP, post(handlers::signup))
        .route(paths::LOGIN, post(handlers::login))
        .route(paths::WHOAMI, get(handlers::whoami))
        .route(paths::POSTS, post(handlers::create_post))
        .route(
            &format!("{}{{id}}", paths::POST_PREFIX),
            get(handlers::get_post),
        )
        .route(
            &format!("{}{{id}}/posts", paths::USERS_PREFIX),
            get(handlers::user_posts),
        )
        .route(
            &format!("{}{{bucket}}/{{name}}", paths::FILES_PREFIX),
            put(super::uploads::upload),
        )
        .route(paths::HEALTH, get(handlers::health))
        .route(paths::STATS, get(handlers::stats))
        .fallback(|| async { Failure::not_found("no such path") })
        .method_not_allowed_fallback(|| async {
            Failure::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(app.clone(), every_answer))
        .with_state(app)
}

async fn every_answer(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let begun = Instant::now();
    let counted = !request.uri().path().starts_with("/_lab/");
    let mut response = next.run(request).await.into_response();
    if let Ok(board) = HeaderValue::from_str(&app.backends().config.board) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SERVED_BY), board);
    }
    if counted {
        app.stats
            .request(response.status().as_u16(), begun.elapsed());
    }
    response
}

//! Error answers: a status and the sentence the client reads, sent as JSON
//! [`lab_api::app::AppError`] (`{"error": "..."}`). Database trouble becomes 503 (its
//! details go to the debug log, not to clients).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lab_api::app::AppError;

use super::db::DbError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<DbError> for Failure {
    fn from(err: DbError) -> Failure {
        match err {
            DbError::NoPrimary => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no database primary to write to",
            ),
            DbError::Unavailable => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            ),
            DbError::Duplicate => Failure::new(StatusCode::CONFLICT, "already exists"),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(AppError {
                error: self.message,
            }),
        )
            .into_response()
    }
}

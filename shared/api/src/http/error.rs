//! Client-facing errors: a small enum mapped to an HTTP status and a stable `code`. The cause chain is logged
//! where the error is made, never returned.

use crate::http::ApiResponse;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401: missing or bad authentication (`missing_auth`, `unknown_app`, `invalid_timestamp`,
    /// `stale_timestamp`, `invalid_nonce`, `bad_signature`, `app_disabled`).
    #[error("{code}: {message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403: authenticated, but the app may not do this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 404 `order_not_found`: no such order for this app (another app's order is not found either).
    #[error("order not found")]
    OrderNotFound,
    /// 404 with a code naming what is missing (`app_not_found`).
    #[error("{code}: {message}")]
    NotFound { code: &'static str, message: String },
    /// 404 `not_found`: no such route.
    #[error("no such route")]
    RouteNotFound,
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400: the request is malformed (`invalid_json`, `invalid_field`, `invalid_notify_url`, …).
    #[error("{code}: {message}")]
    BadRequest { code: &'static str, message: String },
    /// 409 `idempotency_conflict` and friends.
    #[error("{code}: {message}")]
    Conflict { code: &'static str, message: String },
    /// 403 `origin_not_allowed`: a browser page whose origin the app does not list (client routes, issue 18).
    #[error("this origin may not call the client routes")]
    OriginNotAllowed,
    /// 429 `rate_limited` / `too_many_attempts` (client routes, issue 18).
    #[error("{code}: {message}")]
    TooManyRequests { code: &'static str, message: String },
    /// 413 `body_too_large`.
    #[error("body over {0} bytes")]
    TooLarge(usize),
    /// 422 `no_route` / `product_unavailable`.
    #[error("{code}: {message}")]
    Unprocessable { code: &'static str, message: String },
    /// 503 `unavailable`: a dependency failed; the request may be retried with the same body.
    #[error("temporarily unavailable")]
    Unavailable,
    /// 500 `internal`: a bug or a broken configuration; details are in the log.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized { .. } => 401,
            ApiError::Forbidden(_) | ApiError::OriginNotAllowed => 403,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::OrderNotFound | ApiError::RouteNotFound | ApiError::NotFound { .. } => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::BadRequest { .. } => 400,
            ApiError::Conflict { .. } => 409,
            ApiError::TooLarge(_) => 413,
            ApiError::Unprocessable { .. } => 422,
            ApiError::Unavailable => 503,
            ApiError::Internal => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { code, .. }
            | ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::TooManyRequests { code, .. } => code,
            ApiError::Forbidden(_) => "forbidden",
            ApiError::OriginNotAllowed => "origin_not_allowed",
            ApiError::OrderNotFound => "order_not_found",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Unauthorized { message, .. }
            | ApiError::BadRequest { message, .. }
            | ApiError::Conflict { message, .. }
            | ApiError::Unprocessable { message, .. }
            | ApiError::NotFound { message, .. }
            | ApiError::TooManyRequests { message, .. } => message.clone(),
            ApiError::Forbidden(why) => (*why).to_owned(),
            other => other.to_string(),
        }
    }

    /// `{"error":{"code":"…","message":"…"}}` with the status.
    pub fn to_response(&self) -> ApiResponse {
        ApiResponse::json(
            self.status(),
            &json!({"error": {"code": self.code(), "message": self.message()}}),
        )
    }
}

impl From<recharge_core::store::StoreError> for ApiError {
    fn from(e: recharge_core::store::StoreError) -> ApiError {
        tracing::error!(error = %e, source = ?std::error::Error::source(&e), "order store failed");
        if e.is_retryable() {
            ApiError::Unavailable
        } else {
            ApiError::Internal
        }
    }
}

//! Errors: [`DashboardError`] for the crate's fallible setup, [`ApiError`] for
//! HTTP answers. Every error reaches the client as JSON
//! `{"error": "<code>", "message": "<what to fix>"}` and never carries internals
//! (paths, SQL, backend messages): those go to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sysmon_core::StoreError;
use thiserror::Error;
use tracing::error;

/// The dashboard crate's error.
#[derive(Debug, Error)]
pub enum DashboardError {
    /// The listen address could not be bound or served.
    #[error("dashboard server on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// What happened.
        source: std::io::Error,
    },
}

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    allowed: Option<Vec<&'static str>>,
}

impl ApiError {
    /// 400 with a message saying what is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            allowed: None,
        }
    }

    /// 400 for a parameter outside a fixed set, listing the set.
    pub fn not_allowed(message: impl Into<String>, allowed: Vec<&'static str>) -> Self {
        ApiError {
            allowed: Some(allowed),
            ..ApiError::bad_request(message)
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            allowed: None,
        }
    }

    /// 429: too many wrong credentials from this address (see `guesses`).
    pub fn too_many_guesses(wait: std::time::Duration) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_requests",
            message: format!(
                "too many wrong tokens from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
            allowed: None,
        }
    }

    /// 401 (with `WWW-Authenticate: Bearer`).
    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "a valid token is required: send `Authorization: Bearer <token>` or log in at /login".into(),
            allowed: None,
        }
    }

    /// 503 for a failing backend; the details are logged, not sent.
    pub fn backend(e: &StoreError) -> Self {
        error!(error = %e, "store query failed");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "store_unavailable",
            message: "the metrics store could not answer; see the dashboard's log".into(),
            allowed: None,
        }
    }

    /// Any status with a generic code derived from it.
    pub fn status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "timeout",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            422 => "unprocessable",
            429 => "too_many_requests",
            503 => "unavailable",
            s if s >= 500 => "internal",
            _ => "error",
        };
        ApiError {
            status,
            code,
            message: message.into(),
            allowed: None,
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(a) = self.allowed {
            body["allowed"] = json!(a);
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::backend(&e)
    }
}

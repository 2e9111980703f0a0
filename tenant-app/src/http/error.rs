//! Errors as the API answers them: JSON with a stable `code` for programs and a `message` for
//! people, and the matching HTTP status.

use axum::{
    extract::rejection::{JsonRejection, PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds after which a retry may succeed (`Retry-After`), on answers worth retrying.
    pub retry_after: Option<u32>,
    /// What is wrong with each field of the request, keyed by its path (`delivery.phone`).
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: e.g. `sold_out`, `not_admitted`, `invalid_quantity`.
    pub code: String,
    /// For people: what went wrong and what to do.
    pub message: String,
    /// On `invalid_delivery`: what is wrong with each field, keyed by its path in the request
    /// (`delivery.phone`, `delivery.address.postalCode`), so a form can mark each one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        // Every 503 is a passing state (a store away, figures being restored): say when to
        // come back.
        let retry_after = match status {
            StatusCode::SERVICE_UNAVAILABLE => Some(2),
            StatusCode::TOO_MANY_REQUESTS => Some(1),
            _ => None,
        };
        Self {
            status,
            code,
            message: message.into(),
            retry_after,
            fields: None,
        }
    }

    /// A refusal that names what is wrong with each field.
    pub fn with_fields(mut self, fields: std::collections::BTreeMap<String, String>) -> Self {
        self.fields = Some(fields);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                fields: self.fields,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        // Lets the metrics layer count refusals by code.
        response.extensions_mut().insert(RejectionCode(self.code));
        response
    }
}

/// The error code of an answer, for the metrics layer.
#[derive(Clone, Copy)]
pub struct RejectionCode(pub &'static str);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        tracing::warn!(%error, "request failed");
        ApiError::unavailable(match error {
            Error::Database(_) => "the order store is unreachable; try again in a moment",
            Error::Redis(_) => "the queue is unreachable; try again in a moment",
            _ => "the storefront cannot answer right now; try again in a moment",
        })
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with the header Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => ApiError::bad_request(
                "invalid_body",
                format!(
                    "the body does not have the expected fields: {}",
                    e.body_text()
                ),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the body is too large; requests to this API are a few hundred bytes",
                )
            }
            other => ApiError::bad_request("invalid_body", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

//! The one error type of the HTTP API, rendered once into the shape of `API.md`:
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service;

/// Everything a route can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON or form, a missing field, an empty message with no files (400).
    #[error("{0}")]
    BadRequest(String),
    /// Authentication is on and the token is missing or wrong (401).
    #[error("{0}")]
    Unauthorized(String),
    /// An unknown id, or one owned by another user (404).
    #[error("{0}")]
    NotFound(String),
    /// The method is not served on this path (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// An upload over the limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A type the product does not read, or content that does not match its claimed type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A valid shape with an invalid value: title too long, corrupt or encrypted document (422).
    #[error("{0}")]
    Unprocessable(String),
    /// Over a rate limit (429, with `Retry-After`).
    #[error("{message}")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
        /// What to tell the person.
        message: String,
    },
    /// The model provider failed (502).
    #[error("{0}")]
    Upstream(String),
    /// A dependency (store, blob store, limiter) is down (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500). The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `not_found`, `payload_too_large`,
    /// `unsupported_media_type`, `unprocessable`, `rate_limited`, `upstream_error`, `unavailable`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// The HTTP status of each variant.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code of each variant.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What the client is told; internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "Something went wrong on our side. Please try again.".into(),
            other => other.to_string(),
        }
    }

    /// The body, for places that send errors inside a stream.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.public_message(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let ApiError::RateLimited {
            retry_after_secs, ..
        } = &self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// The one conversion from what a use case answers to what the API answers: a status per kind,
/// the message as the service wrote it.
impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        match e {
            service::Error::Invalid(m) => ApiError::BadRequest(m),
            service::Error::NotFound(m) => ApiError::NotFound(m),
            service::Error::TooLarge(m) => ApiError::PayloadTooLarge(m),
            service::Error::Unsupported(m) => ApiError::UnsupportedMediaType(m),
            service::Error::Unprocessable(m) => ApiError::Unprocessable(m),
            service::Error::RateLimited {
                retry_after_secs,
                message,
            } => ApiError::RateLimited {
                retry_after_secs,
                message,
            },
            service::Error::Upstream(m) => ApiError::Upstream(m),
            service::Error::Unavailable(m) => ApiError::Unavailable(m),
            service::Error::Internal(m) => ApiError::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = ApiError::Internal("secret path /var/x".into());
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.public_message().contains("secret"));
    }

    #[test]
    fn service_errors_map_to_the_statuses_and_codes_of_the_contract() {
        use crate::service::Error as E;
        for (e, status, code) in [
            (
                E::Invalid("m".into()),
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (E::NotFound("m".into()), StatusCode::NOT_FOUND, "not_found"),
            (
                E::TooLarge("m".into()),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                E::Unsupported("m".into()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                E::Unprocessable("m".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
            ),
            (
                E::RateLimited {
                    retry_after_secs: 7,
                    message: "m".into(),
                },
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
            ),
            (
                E::Upstream("m".into()),
                StatusCode::BAD_GATEWAY,
                "upstream_error",
            ),
            (
                E::Unavailable("m".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                E::Internal("m".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ] {
            let public = e.public_message();
            let api = ApiError::from(e);
            assert_eq!(api.status_code(), status);
            assert_eq!(api.code(), code);
            assert_eq!(api.public_message(), public, "the message is the service's");
        }
        let response = ApiError::from(E::RateLimited {
            retry_after_secs: 7,
            message: "slow down".into(),
        })
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}

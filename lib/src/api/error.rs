//! The one error type of the HTTP API, rendered once into the shape of `API.md`:
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status. A service's
//! [`service::Error`] becomes an [`ApiError`] here and nowhere else (`From`, derived), and its kind
//! decides the status and code in one table.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service;

/// Everything a route can answer instead of success: what a use case answered, or a refusal of
/// the HTTP layer itself.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// What a service answered instead of success; its kind decides the status. Malformed
    /// requests (400), unknown addresses (404) and oversized bodies (413) refused here take the
    /// same kinds ([`ApiError::bad_request`], [`ApiError::not_found`], [`ApiError::too_large`]).
    #[error(transparent)]
    Service(#[from] service::Error),
    /// The method is not served on this path (405).
    #[error("{0}")]
    MethodNotAllowed(String),
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
    /// Machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `unprocessable`, `rate_limited`, `quota_exceeded`,
    /// `upstream_error`, `unavailable`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// Malformed JSON or form, a missing field (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        service::Error::Invalid(message.into()).into()
    }

    /// Missing, invalid or expired credentials (401).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        service::Error::Unauthorized(message.into()).into()
    }

    /// Nothing at this address, or an id that does not parse (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        service::Error::NotFound(message.into()).into()
    }

    /// A body or field over its size limit (413).
    pub fn too_large(message: impl Into<String>) -> Self {
        service::Error::TooLarge(message.into()).into()
    }

    /// The status and machine-readable code of each kind: the table of `API.md`, exhaustive, so
    /// a new kind of service error cannot go without its status.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use service::Error as E;
        match self {
            ApiError::Service(e) => match e {
                E::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                E::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
                E::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
                E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                E::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                E::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
                E::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
                E::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
                E::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
                E::Quota { .. } => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
                E::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
                E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// The machine-readable code: `bad_request`, `unauthorized`, `not_found`, … (`API.md`).
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// What the client is told; internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Service(e) => e.public_message(),
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
        if let ApiError::Service(
            service::Error::RateLimited {
                retry_after_secs, ..
            }
            | service::Error::Quota {
                retry_after_secs, ..
            },
        ) = &self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = ApiError::from(service::Error::Internal("secret path /var/x".into()));
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
            (
                E::Unauthorized("m".into()),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (E::Forbidden("m".into()), StatusCode::FORBIDDEN, "forbidden"),
            (E::NotFound("m".into()), StatusCode::NOT_FOUND, "not_found"),
            (E::Conflict("m".into()), StatusCode::CONFLICT, "conflict"),
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
                E::Quota {
                    retry_after_secs: 11_520,
                    message: "m".into(),
                },
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
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
        let response = ApiError::from(E::Quota {
            retry_after_secs: 11_520,
            message: "over budget".into(),
        })
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "11520");
    }
}

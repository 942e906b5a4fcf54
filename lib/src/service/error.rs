//! What a use case can answer instead of success, in the product's words.
//!
//! Every service and the job worker return [`Error`]; the ports' errors convert into it here, each
//! with the message a person is shown. The HTTP layer turns it into a status and a body in one
//! place (`api/error.rs`); nothing here knows about HTTP.

use crate::blobs::BlobError;
use crate::extract::ExtractError;
use crate::jobs::JobError;
use crate::limits::LimiterError;
use crate::llm::LlmError;
use crate::store::StoreError;

/// Why a use case did not succeed. Messages are for people; `Internal`'s is for the logs only.
///
/// A turn's log keeps the error that ended it as `{"kind": "<variant>", "detail": …}` (the serde
/// form below), so a replayed turn ends with the same error event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Error {
    /// The request is malformed or incomplete: an empty message with no files, a bad page size or
    /// cursor, a file that has not arrived yet.
    #[error("{0}")]
    Invalid(String),
    /// The caller is not signed in, or their credentials are wrong or expired. The message is
    /// one generic sentence; the reason goes to the log.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but not allowed: a non-admin on an admin route, a disabled account, a
    /// registration that is closed.
    #[error("{0}")]
    Forbidden(String),
    /// No such record for this owner (another owner's record is not found either).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored: an email already registered.
    #[error("{0}")]
    Conflict(String),
    /// A file over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A file type the product does not read, or content that does not match its claimed type.
    #[error("{0}")]
    Unsupported(String),
    /// A well-formed request with a value that cannot be accepted: a title too long, an empty,
    /// corrupt or encrypted document, a message over the length limit.
    #[error("{0}")]
    Unprocessable(String),
    /// Over a rate limit; the client may try again after `retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        /// Seconds until the client may try again (at least 1).
        retry_after_secs: u64,
        /// What to tell the person.
        message: String,
    },
    /// Over a budget of the caller's tier: the turn's worst case does not fit. The message says
    /// the numbers and when the budget resets; the client may try again after `retry_after_secs`.
    #[error("{message}")]
    Quota {
        /// Seconds until the budget resets (at least 1).
        retry_after_secs: u64,
        /// What to tell the person.
        message: String,
    },
    /// The model provider failed; the message is the provider's, safe to show.
    #[error("{0}")]
    Upstream(String),
    /// A dependency (store, blob store, limiter, job queue) cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a bug or damaged data. The detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the same request would fail the same way if tried again: a job that failed
    /// permanently is settled, not retried. Rate limits, failed dependencies and internal faults
    /// may pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Invalid(_)
            | Error::Unauthorized(_)
            | Error::Forbidden(_)
            | Error::NotFound(_)
            | Error::Conflict(_)
            | Error::TooLarge(_)
            | Error::Unsupported(_)
            | Error::Unprocessable(_) => true,
            Error::RateLimited { .. }
            | Error::Quota { .. }
            | Error::Upstream(_)
            | Error::Unavailable(_)
            | Error::Internal(_) => false,
        }
    }

    /// What a person is told; an internal fault's detail stays in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "Something went wrong on our side. Please try again.".into(),
            other => other.to_string(),
        }
    }

    /// The same kind of error with another message (the detail of `Internal` is kept for the log).
    pub fn with_message(self, message: impl Into<String>) -> Self {
        let message = message.into();
        match self {
            Error::Invalid(_) => Error::Invalid(message),
            Error::Unauthorized(_) => Error::Unauthorized(message),
            Error::Forbidden(_) => Error::Forbidden(message),
            Error::NotFound(_) => Error::NotFound(message),
            Error::Conflict(_) => Error::Conflict(message),
            Error::TooLarge(_) => Error::TooLarge(message),
            Error::Unsupported(_) => Error::Unsupported(message),
            Error::Unprocessable(_) => Error::Unprocessable(message),
            Error::RateLimited {
                retry_after_secs, ..
            } => Error::RateLimited {
                retry_after_secs,
                message,
            },
            Error::Quota {
                retry_after_secs, ..
            } => Error::Quota {
                retry_after_secs,
                message,
            },
            Error::Upstream(_) => Error::Upstream(message),
            Error::Unavailable(_) => Error::Unavailable(message),
            Error::Internal(detail) => Error::Internal(format!("{message} ({detail})")),
        }
    }
}

/// A dependency that cannot be reached: the detail goes to the log, the person is told `message`.
fn unavailable(dependency: &str, detail: &dyn std::fmt::Display, message: &str) -> Error {
    tracing::error!(%detail, "{dependency} unavailable");
    Error::Unavailable(message.into())
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => unavailable(
                "store",
                &detail,
                "The database is unavailable right now. Please try again shortly.",
            ),
            StoreError::InvalidCursor => {
                Error::Invalid("The cursor is not valid for this list.".into())
            }
            StoreError::Corrupt(detail) => Error::Internal(format!("store: {detail}")),
        }
    }
}

impl From<BlobError> for Error {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unavailable(detail) => unavailable(
                "blob store",
                &detail,
                "File storage is unavailable right now. Please try again shortly.",
            ),
            BlobError::InvalidKey(k) => Error::Internal(format!("blob key {k}")),
        }
    }
}

impl From<LimiterError> for Error {
    fn from(e: LimiterError) -> Self {
        let LimiterError::Unavailable(detail) = e;
        unavailable(
            "rate limiter",
            &detail,
            "The service is busy right now. Please try again shortly.",
        )
    }
}

impl From<JobError> for Error {
    fn from(e: JobError) -> Self {
        unavailable(
            "job queue",
            &e,
            "Background processing is unavailable right now. Please try again shortly.",
        )
    }
}

impl From<LlmError> for Error {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::Invalid(m) => Error::Unprocessable(m),
            other => Error::Upstream(other.to_string()),
        }
    }
}

impl From<ExtractError> for Error {
    fn from(e: ExtractError) -> Self {
        match e {
            ExtractError::Unsupported(m) | ExtractError::Mismatch(m) => Error::Unsupported(m),
            ExtractError::Corrupt(m)
            | ExtractError::Encrypted(m)
            | ExtractError::TooLarge(m)
            | ExtractError::Timeout(m) => Error::Unprocessable(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = Error::Internal("secret path /var/x".into());
        assert!(!e.public_message().contains("secret"));
        assert!(e.to_string().contains("secret"), "the log keeps it");
    }

    #[test]
    fn port_errors_keep_their_meaning() {
        assert!(matches!(
            Error::from(StoreError::Unavailable("x".into())),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            Error::from(StoreError::InvalidCursor),
            Error::Invalid(_)
        ));
        assert!(matches!(
            Error::from(StoreError::Corrupt("x".into())),
            Error::Internal(_)
        ));
        assert!(matches!(
            Error::from(BlobError::Unavailable("x".into())),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            Error::from(LimiterError::Unavailable("x".into())),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            Error::from(JobError::Unavailable("x".into())),
            Error::Unavailable(_)
        ));
        assert_eq!(
            Error::from(ExtractError::Mismatch("m".into())),
            Error::Unsupported("m".into())
        );
        assert_eq!(
            Error::from(ExtractError::Encrypted("e".into())),
            Error::Unprocessable("e".into())
        );
        assert_eq!(
            Error::from(LlmError::Invalid("too long".into())),
            Error::Unprocessable("too long".into())
        );
        let upstream = Error::from(LlmError::Upstream {
            status: Some(500),
            message: "boom".into(),
        });
        assert!(
            matches!(&upstream, Error::Upstream(m) if m.contains("boom")),
            "{upstream:?}"
        );
    }

    #[test]
    fn only_request_faults_are_permanent() {
        for e in [
            Error::Invalid("x".into()),
            Error::Unauthorized("x".into()),
            Error::Forbidden("x".into()),
            Error::NotFound("x".into()),
            Error::Conflict("x".into()),
            Error::TooLarge("x".into()),
            Error::Unsupported("x".into()),
            Error::Unprocessable("x".into()),
        ] {
            assert!(e.is_permanent(), "{e:?}");
        }
        for e in [
            Error::RateLimited {
                retry_after_secs: 1,
                message: "x".into(),
            },
            Error::Upstream("x".into()),
            Error::Unavailable("x".into()),
            Error::Internal("x".into()),
        ] {
            assert!(!e.is_permanent(), "{e:?}");
        }
    }

    #[test]
    fn a_new_message_keeps_the_kind() {
        assert_eq!(
            Error::Unavailable("db".into()).with_message("not saved"),
            Error::Unavailable("not saved".into())
        );
        let e = Error::Internal("corrupt row".into()).with_message("not saved");
        assert!(matches!(&e, Error::Internal(d) if d.contains("corrupt row")));
    }
}

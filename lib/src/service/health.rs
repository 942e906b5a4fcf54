//! Whether the dependencies answer: the store, the blob store and the rate limiter, each checked
//! with a cheap round trip under a time limit.

use std::sync::Arc;
use std::time::Duration;

use crate::blobs::BlobStore;
use crate::limits::RateLimiter;
use crate::llm::Registry;
use crate::store::Store;

/// How long one dependency may take to answer a health check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How one dependency answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// It answered.
    Ok,
    /// It answered with an error (logged).
    Unavailable,
    /// It did not answer in time.
    Timeout,
}

impl Check {
    /// `ok`, `unavailable` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Ok => "ok",
            Check::Unavailable => "unavailable",
            Check::Timeout => "timeout",
        }
    }
}

/// The health report of the dependencies.
#[derive(Debug, Clone)]
pub struct Report {
    /// Each dependency by name (`store`, `blobs`, `limiter`).
    pub checks: Vec<(&'static str, Check)>,
    /// The default model: provider and name.
    pub model: String,
}

impl Report {
    /// Whether every dependency answered.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|(_, c)| *c == Check::Ok)
    }
}

/// Checks the dependencies.
#[derive(Clone)]
pub struct HealthService {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    limiter: Arc<dyn RateLimiter>,
    models: Arc<Registry>,
}

async fn check<E: std::fmt::Display>(f: impl std::future::Future<Output = Result<(), E>>) -> Check {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(())) => Check::Ok,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check failed");
            Check::Unavailable
        }
        Err(_) => Check::Timeout,
    }
}

impl HealthService {
    /// Checks these ports.
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        limiter: Arc<dyn RateLimiter>,
        models: Arc<Registry>,
    ) -> Self {
        Self {
            store,
            blobs,
            limiter,
            models,
        }
    }

    /// The default model: its provider and name, never an address or a key.
    pub fn model(&self) -> String {
        self.models.describe()
    }

    /// Every dependency checked at once.
    pub async fn report(&self) -> Report {
        let (store, blobs, limiter) = tokio::join!(
            check(self.store.health()),
            check(self.blobs.health()),
            check(self.limiter.health())
        );
        Report {
            checks: vec![("store", store), ("blobs", blobs), ("limiter", limiter)],
            model: self.model(),
        }
    }
}

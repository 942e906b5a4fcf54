//! The `RateLimiter` port: chat turns per client per minute, fixed one-minute windows.

use async_trait::async_trait;

pub mod memory;

/// What can go wrong in a limiter.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// The backing service cannot be reached.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Over the limit; retry after this many seconds (at least 1).
    Limited {
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
}

/// Counts requests per key in one-minute windows.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// A cheap round trip proving the limiter answers.
    async fn health(&self) -> Result<(), LimiterError>;
    /// Counts one request for `key` (refused ones count too) and says whether it may proceed
    /// under `limit_per_minute`.
    async fn hit(&self, key: &str, limit_per_minute: u32) -> Result<Decision, LimiterError>;
}

/// The window a moment falls in, and the seconds left in it (shared by every adapter).
pub fn window(now_millis: i64) -> (i64, u64) {
    let window = now_millis.div_euclid(60_000);
    let left_ms = 60_000 - now_millis.rem_euclid(60_000);
    (window, (left_ms as u64).div_ceil(1000).max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn window_math() {
        assert_eq!(super::window(0), (0, 60));
        assert_eq!(super::window(59_001), (0, 1));
        assert_eq!(super::window(60_000), (1, 60));
        assert_eq!(super::window(90_500), (1, 30));
    }
}

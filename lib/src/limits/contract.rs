//! The contract every `RateLimiter` adapter passes. Each adapter's tests call [`run_all`]; the
//! checks use unique keys, so a shared server is fine too. Time is injected through [`ClockedLimiter`]
//! so that a window's reset is tested without waiting a minute.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use async_trait::async_trait;

use super::memory::MemoryLimiter;
use super::{window, Decision, LimiterError, RateLimiter};

/// A limiter that can count a hit at a given moment (milliseconds since the epoch).
#[async_trait]
pub trait ClockedLimiter: RateLimiter {
    /// Counts one request for `key` at `now_millis` under `limit_per_minute`.
    async fn hit_at(
        &self,
        key: &str,
        limit_per_minute: u32,
        now_millis: i64,
    ) -> Result<Decision, LimiterError>;
}

#[async_trait]
impl ClockedLimiter for MemoryLimiter {
    async fn hit_at(
        &self,
        key: &str,
        limit_per_minute: u32,
        now_millis: i64,
    ) -> Result<Decision, LimiterError> {
        Ok(MemoryLimiter::hit_at(
            self,
            key,
            limit_per_minute,
            now_millis,
        ))
    }
}

/// The start of a minute (milliseconds since the epoch) far from any real request.
const MINUTE: i64 = 1_800_000_000_000;

fn unique_key(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::now_v7().simple())
}

/// Runs every check.
pub async fn run_all(limiter: &dyn ClockedLimiter) {
    limiter.health().await.expect("health");
    limits_each_key_within_a_window(limiter).await;
    resets_with_the_next_window(limiter).await;
    counts_through_the_trait(limiter).await;
}

async fn limits_each_key_within_a_window(limiter: &dyn ClockedLimiter) {
    let (a, b) = (unique_key("a"), unique_key("b"));
    // 15 s into a minute: 45 s are left.
    let t = MINUTE + 15_000;
    assert_eq!(limiter.hit_at(&a, 2, t).await.unwrap(), Decision::Allowed);
    assert_eq!(
        limiter.hit_at(&a, 2, t + 10).await.unwrap(),
        Decision::Allowed
    );
    assert_eq!(
        limiter.hit_at(&a, 2, t + 20).await.unwrap(),
        Decision::Limited {
            retry_after_secs: 45
        }
    );
    assert!(
        matches!(
            limiter.hit_at(&a, 2, t + 30).await.unwrap(),
            Decision::Limited { .. }
        ),
        "refused requests count too"
    );
    assert_eq!(
        limiter.hit_at(&b, 2, t).await.unwrap(),
        Decision::Allowed,
        "keys are counted apart"
    );
    // The last moment of a window still says at least one second.
    let end = t - 15_000 + 59_999;
    let c = unique_key("c");
    assert_eq!(limiter.hit_at(&c, 1, end).await.unwrap(), Decision::Allowed);
    assert_eq!(
        limiter.hit_at(&c, 1, end).await.unwrap(),
        Decision::Limited {
            retry_after_secs: 1
        }
    );
}

async fn resets_with_the_next_window(limiter: &dyn ClockedLimiter) {
    let k = unique_key("reset");
    let t = MINUTE + 50_000;
    assert_eq!(limiter.hit_at(&k, 1, t).await.unwrap(), Decision::Allowed);
    assert!(matches!(
        limiter.hit_at(&k, 1, t + 1).await.unwrap(),
        Decision::Limited { .. }
    ));
    let (w0, _) = window(t);
    let (w1, _) = window(t + 10_000);
    assert_eq!(w1, w0 + 1);
    assert_eq!(
        limiter.hit_at(&k, 1, t + 10_000).await.unwrap(),
        Decision::Allowed,
        "a new minute starts a new count"
    );
}

async fn counts_through_the_trait(limiter: &dyn ClockedLimiter) {
    let k = unique_key("now");
    // Real time: a window boundary may pass between the hits, so allow one reset.
    let mut limited = false;
    for _ in 0..4 {
        if let Decision::Limited { retry_after_secs } = limiter.hit(&k, 1).await.unwrap() {
            assert!((1..=60).contains(&retry_after_secs));
            limited = true;
        }
    }
    assert!(
        limited,
        "four hits over a limit of one are refused at least once"
    );
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_limiter_passes() {
        super::run_all(&super::MemoryLimiter::new()).await;
    }
}

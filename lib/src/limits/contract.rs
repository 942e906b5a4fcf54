//! The contract every `RateLimiter` adapter passes, one test per check through
//! [`limiter_contract_tests!`](crate::limiter_contract_tests). The checks use unique keys, so a
//! shared server is fine; windows are chosen, not read from the wall clock, so no check depends on
//! when it runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;
use std::time::Duration;

use super::{Decision, ManualClock, Policy, RateLimit, RateLimiter, Window};

/// One `#[tokio::test]` per check of the `RateLimiter` contract, in `mod $name`, against the
/// adapter the setup (an `async` block giving `Option<Subject<_>>`) builds.
#[macro_export]
macro_rules! limiter_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(limits; $name, $setup;
            health_answers,
            counts_from_one_in_each_window,
            keys_are_counted_apart,
            concurrent_increments_lose_no_count,
            the_policy_limits_through_this_counter,
            counts_are_read_without_adding,
            windows_of_other_lengths_are_counted_apart,
            a_fifteen_minute_policy_through_this_counter,
        );
    };
}

/// The start of a minute (milliseconds since the epoch) far from any real request.
const MINUTE: i64 = 1_800_000_000_000;

fn unique_key(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::now_v7().simple())
}

/// The limiter answers a health check.
pub async fn health_answers(limiter: Arc<dyn RateLimiter>) {
    limiter.health().await.expect("health");
}

/// A key's count starts at 1 in every window and goes up by one per increment.
pub async fn counts_from_one_in_each_window(limiter: Arc<dyn RateLimiter>) {
    let k = unique_key("count");
    let w = Window::minute(MINUTE + 15_000);
    for want in 1..=3 {
        assert_eq!(limiter.increment(&k, &w).await.unwrap(), want);
    }
    let next = Window::minute(MINUTE + 60_000);
    assert_eq!(next.index, w.index + 1);
    assert_eq!(
        limiter.increment(&k, &next).await.unwrap(),
        1,
        "a new minute starts a new count"
    );
}

/// Two keys in the same window have their own counts.
pub async fn keys_are_counted_apart(limiter: Arc<dyn RateLimiter>) {
    let (a, b) = (unique_key("a"), unique_key("b"));
    let w = Window::minute(MINUTE);
    limiter.increment(&a, &w).await.unwrap();
    limiter.increment(&a, &w).await.unwrap();
    assert_eq!(limiter.increment(&b, &w).await.unwrap(), 1);
    assert_eq!(limiter.increment(&a, &w).await.unwrap(), 3);
}

/// Increments sent at the same time each get their own count: none is lost or repeated.
pub async fn concurrent_increments_lose_no_count(limiter: Arc<dyn RateLimiter>) {
    let k = unique_key("race");
    let w = Window::minute(MINUTE + 30_000);
    let mut counts = futures::future::try_join_all((0..20).map(|_| limiter.increment(&k, &w)))
        .await
        .unwrap();
    counts.sort_unstable();
    assert_eq!(counts, (1..=20).collect::<Vec<u64>>());
}

/// The policy over this counter: the limit is allowed, the next request is told the seconds left
/// in its minute, and the next minute allows again.
pub async fn the_policy_limits_through_this_counter(limiter: Arc<dyn RateLimiter>) {
    let clock = Arc::new(ManualClock::at(MINUTE + 15_000));
    let limit = RateLimit::new(limiter, clock.clone());
    let k = unique_key("policy");
    assert_eq!(limit.check(&k, 2).await.unwrap(), Decision::Allowed);
    assert_eq!(limit.check(&k, 2).await.unwrap(), Decision::Allowed);
    assert_eq!(
        limit.check(&k, 2).await.unwrap(),
        Decision::Limited {
            retry_after_secs: 45
        }
    );
    clock.advance(Duration::from_secs(45));
    assert_eq!(limit.check(&k, 2).await.unwrap(), Decision::Allowed);
}

/// `count` reads a key's count in a window without changing it: 0 before anything is counted,
/// then what `increment` last returned, and 0 again in the next window.
pub async fn counts_are_read_without_adding(limiter: Arc<dyn RateLimiter>) {
    let k = unique_key("read");
    let w = Window::minute(MINUTE + 5_000);
    assert_eq!(limiter.count(&k, &w).await.unwrap(), 0);
    limiter.increment(&k, &w).await.unwrap();
    limiter.increment(&k, &w).await.unwrap();
    assert_eq!(limiter.count(&k, &w).await.unwrap(), 2);
    assert_eq!(
        limiter.count(&k, &w).await.unwrap(),
        2,
        "reading added nothing"
    );
    assert_eq!(limiter.increment(&k, &w).await.unwrap(), 3);
    let next = Window::minute(MINUTE + 65_000);
    assert_eq!(limiter.count(&k, &next).await.unwrap(), 0);
}

/// One key counted in windows of two lengths has a counter for each.
pub async fn windows_of_other_lengths_are_counted_apart(limiter: Arc<dyn RateLimiter>) {
    let k = unique_key("lengths");
    let minute = Window::minute(MINUTE);
    let quarter = Window::at(MINUTE, 900);
    assert_eq!(limiter.increment(&k, &minute).await.unwrap(), 1);
    assert_eq!(limiter.increment(&k, &minute).await.unwrap(), 2);
    assert_eq!(limiter.increment(&k, &quarter).await.unwrap(), 1);
    assert_eq!(limiter.count(&k, &minute).await.unwrap(), 2);
    assert_eq!(limiter.count(&k, &quarter).await.unwrap(), 1);
}

/// Failed sign-ins: ten in a 15-minute window are allowed, the next is told the seconds left in
/// the window (looking counts nothing), and the next window allows again.
pub async fn a_fifteen_minute_policy_through_this_counter(limiter: Arc<dyn RateLimiter>) {
    // MINUTE is also the start of a 15-minute window; ten minutes into it.
    let clock = Arc::new(ManualClock::at(MINUTE + 600_000));
    let limit = RateLimit::new(limiter, clock.clone());
    let policy = Policy::per(10, Duration::from_secs(900));
    let k = unique_key("signin");
    for _ in 0..10 {
        assert_eq!(limit.peek(&k, policy).await.unwrap(), Decision::Allowed);
        limit.add(&k, policy).await.unwrap();
    }
    for _ in 0..2 {
        assert_eq!(
            limit.peek(&k, policy).await.unwrap(),
            Decision::Limited {
                retry_after_secs: 300
            }
        );
    }
    clock.advance(Duration::from_secs(300));
    assert_eq!(limit.peek(&k, policy).await.unwrap(), Decision::Allowed);
}

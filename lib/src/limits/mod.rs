//! Rate limits: requests per client key in fixed windows — chat turns per minute, failed sign-ins
//! per 15 minutes.
//!
//! Two halves. The `RateLimiter` port only counts: it increments (or reads) the counter of a key in
//! a window and returns the count, giving the counter an expiry so past windows go away by
//! themselves (adapters: `memory`, `dynamodb`, `redis`). [`RateLimit`] is the policy, the one place
//! that turns that count, a [`Policy`] (a limit per window length, passed per call: callers may
//! give different users different limits) and the time of an injected [`Clock`] into a
//! [`Decision`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

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

/// How long a counter is kept after its window ends (a margin for clocks that disagree).
pub const KEEP_AFTER_SECS: i64 = 60;

/// A limit: at most `limit` requests of one key in each fixed window of `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Requests allowed per window (0: no limit, nothing is counted).
    pub limit: u32,
    /// The window's length in seconds (at least 1).
    pub window_secs: u32,
}

impl Policy {
    /// `limit` requests per minute.
    pub const fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            window_secs: 60,
        }
    }

    /// `limit` requests per window of `window`.
    pub fn per(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window_secs: u32::try_from(window.as_secs()).unwrap_or(u32::MAX).max(1),
        }
    }
}

/// One fixed window, as a counter sees it. A key is always counted with windows of one length
/// (each policy has its own keys); [`Window::slot`] names the window with its length anyway, so
/// two lengths never share a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Windows since the Unix epoch: which counter of a key is meant.
    pub index: i64,
    /// The window's length in seconds.
    pub length_secs: u32,
    /// When the counter may be deleted, in seconds since the epoch: the window's end plus
    /// [`KEEP_AFTER_SECS`] (for stores with absolute expiries, such as DynamoDB's TTL).
    pub expires_at_secs: i64,
    /// The same moment in seconds from now (for stores with relative expiries, such as Redis).
    pub expires_in_secs: u64,
}

impl Window {
    /// The window of `length_secs` that `now_millis` (milliseconds since the epoch) falls in.
    pub fn at(now_millis: i64, length_secs: u32) -> Self {
        let length_ms = window_ms(length_secs);
        let index = now_millis.div_euclid(length_ms);
        let end_secs = (index + 1) * (length_ms / 1000);
        Self {
            index,
            length_secs: length_secs.max(1),
            expires_at_secs: end_secs + KEEP_AFTER_SECS,
            expires_in_secs: seconds_left(now_millis, length_secs) + KEEP_AFTER_SECS as u64,
        }
    }

    /// The one-minute window `now_millis` falls in.
    pub fn minute(now_millis: i64) -> Self {
        Self::at(now_millis, 60)
    }

    /// The window's name in counter keys: `{length}:{index}`.
    pub fn slot(&self) -> String {
        format!("{}:{}", self.length_secs, self.index)
    }

    /// When the window starts, in seconds since the epoch.
    pub fn start_secs(&self) -> i64 {
        self.index * i64::from(self.length_secs)
    }
}

fn window_ms(length_secs: u32) -> i64 {
    i64::from(length_secs.max(1)) * 1000
}

/// Whole seconds left in the window of `length_secs` that `now_millis` falls in, rounded up and at
/// least 1.
pub fn seconds_left(now_millis: i64, length_secs: u32) -> u64 {
    let length_ms = window_ms(length_secs);
    let left_ms = length_ms - now_millis.rem_euclid(length_ms);
    (left_ms as u64).div_ceil(1000).max(1)
}

/// The policy: the `count`-th request of a window (refused ones count too) under `policy`, at
/// `now_millis`.
pub fn decide(count: u64, policy: Policy, now_millis: i64) -> Decision {
    if count > u64::from(policy.limit) {
        Decision::Limited {
            retry_after_secs: seconds_left(now_millis, policy.window_secs),
        }
    } else {
        Decision::Allowed
    }
}

/// Counts requests per key in fixed windows.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// A cheap round trip proving the limiter answers.
    async fn health(&self) -> Result<(), LimiterError>;

    /// Adds one to the counter of `key` in `window` and returns the new count (1 for the first
    /// request of the window). Concurrent calls never lose a count. The counter may be deleted
    /// after `window`'s expiry.
    async fn increment(&self, key: &str, window: &Window) -> Result<u64, LimiterError>;

    /// The count of `key` in `window`, without adding to it (0 when nothing was counted).
    async fn count(&self, key: &str, window: &Window) -> Result<u64, LimiterError>;
}

/// Where the time comes from.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> i64 {
        self.now_millis().div_euclid(1000)
    }
}

/// The system's wall clock (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that stands still until told to move (tests: a window's end without waiting for it).
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock showing `millis` since the epoch.
    pub fn at(millis: i64) -> Self {
        Self {
            millis: AtomicI64::new(millis),
        }
    }

    /// A clock showing the system's time now, standing still from then on.
    pub fn now() -> Self {
        Self::at(SystemClock.now_millis())
    }

    /// Shows `millis` from now on.
    pub fn set(&self, millis: i64) {
        self.millis.store(millis, Ordering::SeqCst);
    }

    /// Moves forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(by, Ordering::SeqCst);
    }

    /// Moves back by `by`.
    pub fn rewind(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_sub(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

/// A limiter's counts under the policy: what callers ask. Cheap to clone.
#[derive(Clone)]
pub struct RateLimit {
    counter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
}

impl RateLimit {
    /// Counts with `counter` at the time `clock` shows.
    pub fn new(counter: Arc<dyn RateLimiter>, clock: Arc<dyn Clock>) -> Self {
        Self { counter, clock }
    }

    /// Counts with `counter` on the system clock.
    pub fn system(counter: Arc<dyn RateLimiter>) -> Self {
        Self::new(counter, Arc::new(SystemClock))
    }

    /// The counting port underneath.
    pub fn counter(&self) -> Arc<dyn RateLimiter> {
        Arc::clone(&self.counter)
    }

    /// The clock the windows are read from.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// A cheap round trip proving the counter answers.
    pub async fn health(&self) -> Result<(), LimiterError> {
        self.counter.health().await
    }

    /// Counts one request for `key` (refused ones count too) and says whether it may proceed
    /// under `limit_per_minute`. A limit of 0 means no limit: nothing is counted.
    pub async fn check(&self, key: &str, limit_per_minute: u32) -> Result<Decision, LimiterError> {
        self.hit(key, Policy::per_minute(limit_per_minute)).await
    }

    /// Counts one request for `key` (refused ones count too) and says whether it may proceed
    /// under `policy`. A limit of 0 means no limit: nothing is counted.
    pub async fn hit(&self, key: &str, policy: Policy) -> Result<Decision, LimiterError> {
        if policy.limit == 0 {
            return Ok(Decision::Allowed);
        }
        let now = self.clock.now_millis();
        let count = self
            .counter
            .increment(key, &Window::at(now, policy.window_secs))
            .await?;
        Ok(decide(count, policy, now))
    }

    /// Whether one more request of `key` would be allowed under `policy`, counting nothing (a
    /// sign-in is checked before the password is, and counted only when it fails: [`Self::add`]).
    pub async fn peek(&self, key: &str, policy: Policy) -> Result<Decision, LimiterError> {
        if policy.limit == 0 {
            return Ok(Decision::Allowed);
        }
        let now = self.clock.now_millis();
        let count = self
            .counter
            .count(key, &Window::at(now, policy.window_secs))
            .await?;
        Ok(decide(count.saturating_add(1), policy, now))
    }

    /// Counts one event of `key` in `policy`'s window, deciding nothing.
    pub async fn add(&self, key: &str, policy: Policy) -> Result<(), LimiterError> {
        if policy.limit == 0 {
            return Ok(());
        }
        let now = self.clock.now_millis();
        self.counter
            .increment(key, &Window::at(now, policy.window_secs))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::limits::memory::MemoryLimiter;

    /// The start of a minute (milliseconds since the epoch).
    const MINUTE: i64 = 1_800_000_000_000;

    fn policy(at: i64) -> (RateLimit, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::at(at));
        (
            RateLimit::new(Arc::new(MemoryLimiter::new()), clock.clone()),
            clock,
        )
    }

    #[test]
    fn windows_and_the_seconds_left_in_them() {
        assert_eq!(Window::minute(0).index, 0);
        assert_eq!(Window::minute(59_999).index, 0);
        assert_eq!(Window::minute(60_000).index, 1);
        assert_eq!(Window::minute(-1).index, -1);
        assert_eq!(seconds_left(0, 60), 60);
        assert_eq!(seconds_left(59_001, 60), 1);
        assert_eq!(seconds_left(59_999, 60), 1, "the last moment still says 1");
        assert_eq!(seconds_left(90_500, 60), 30);
    }

    #[test]
    fn windows_of_any_length() {
        let quarter = 15 * 60;
        assert_eq!(Window::at(899_999, quarter).index, 0);
        assert_eq!(Window::at(900_000, quarter).index, 1);
        assert_eq!(Window::at(900_000, quarter).start_secs(), 900);
        assert_eq!(seconds_left(60_000, quarter), 840);
        assert_eq!(Window::at(60_000, quarter).slot(), "900:0");
        assert_ne!(
            Window::at(60_000, quarter).slot(),
            Window::minute(60_000).slot()
        );
        assert_eq!(Policy::per(10, Duration::from_secs(900)).window_secs, 900);
        assert_eq!(Policy::per(1, Duration::ZERO).window_secs, 1, "never empty");
    }

    #[test]
    fn a_counter_outlives_its_window_by_the_margin() {
        let w = Window::minute(90_500);
        assert_eq!(w.expires_at_secs, 120 + KEEP_AFTER_SECS);
        assert_eq!(w.expires_in_secs, 30 + KEEP_AFTER_SECS as u64);
    }

    #[test]
    fn the_decision_follows_the_count() {
        let t = MINUTE + 15_000;
        let p = Policy::per_minute(2);
        assert_eq!(decide(1, p, t), Decision::Allowed);
        assert_eq!(decide(2, p, t), Decision::Allowed);
        assert_eq!(
            decide(3, p, t),
            Decision::Limited {
                retry_after_secs: 45
            }
        );
    }

    #[tokio::test]
    async fn peek_counts_nothing_and_add_decides_nothing() {
        let (limit, clock) = policy(MINUTE);
        let fifteen = Policy::per(2, Duration::from_secs(900));
        assert_eq!(limit.peek("k", fifteen).await.unwrap(), Decision::Allowed);
        limit.add("k", fifteen).await.unwrap();
        assert_eq!(limit.peek("k", fifteen).await.unwrap(), Decision::Allowed);
        limit.add("k", fifteen).await.unwrap();
        // MINUTE is 1_800_000_000_000 ms, 0 s into a 15-minute window.
        assert_eq!(
            limit.peek("k", fifteen).await.unwrap(),
            Decision::Limited {
                retry_after_secs: 900
            },
            "a third would be over"
        );
        assert_eq!(
            limit.peek("k", fifteen).await.unwrap(),
            Decision::Limited {
                retry_after_secs: 900
            },
            "looking again counted nothing"
        );
        assert_eq!(
            limit.check("k", 5).await.unwrap(),
            Decision::Allowed,
            "a one-minute policy on the same key has its own counter"
        );
        clock.advance(Duration::from_secs(900));
        assert_eq!(limit.peek("k", fifteen).await.unwrap(), Decision::Allowed);
    }

    #[tokio::test]
    async fn allows_the_limit_then_says_when_the_window_resets() {
        let (limit, _) = policy(MINUTE + 15_000);
        assert_eq!(limit.check("k", 2).await.unwrap(), Decision::Allowed);
        assert_eq!(limit.check("k", 2).await.unwrap(), Decision::Allowed);
        assert_eq!(
            limit.check("k", 2).await.unwrap(),
            Decision::Limited {
                retry_after_secs: 45
            }
        );
        assert_eq!(
            limit.check("other", 2).await.unwrap(),
            Decision::Allowed,
            "keys are counted apart"
        );
    }

    #[tokio::test]
    async fn a_new_minute_starts_a_new_count() {
        let (limit, clock) = policy(MINUTE + 50_000);
        assert_eq!(limit.check("k", 1).await.unwrap(), Decision::Allowed);
        assert_eq!(
            limit.check("k", 1).await.unwrap(),
            Decision::Limited {
                retry_after_secs: 10
            }
        );
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(
            limit.check("k", 1).await.unwrap(),
            Decision::Limited {
                retry_after_secs: 1
            },
            "refused requests count, and the last moment of a window still refuses"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(limit.check("k", 1).await.unwrap(), Decision::Allowed);
    }

    #[tokio::test]
    async fn the_limit_is_given_per_call() {
        let (limit, _) = policy(MINUTE);
        for _ in 0..3 {
            limit.check("free", 1).await.unwrap();
        }
        // The same counter under a larger limit (another tier) still has room.
        assert_eq!(limit.check("free", 10).await.unwrap(), Decision::Allowed);
        assert!(matches!(
            limit.check("free", 3).await.unwrap(),
            Decision::Limited { .. }
        ));
    }

    #[tokio::test]
    async fn no_limit_counts_nothing() {
        let (limit, _) = policy(MINUTE);
        for _ in 0..5 {
            assert_eq!(limit.check("k", 0).await.unwrap(), Decision::Allowed);
        }
        let counted = limit
            .counter()
            .increment("k", &Window::minute(MINUTE))
            .await
            .unwrap();
        assert_eq!(counted, 1, "unlimited requests were not counted");
    }
}

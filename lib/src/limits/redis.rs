//! Redis rate limiter: one counter per key and minute, `conversa:rl:{key}:{window}`, incremented and
//! given an expiry in one atomic `MULTI` so a counter never outlives its window by more than a minute.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;

use super::{window, Decision, LimiterError, RateLimiter};

/// How long a window's counter is kept (its minute plus a margin for clock skew).
const KEEP_SECS: i64 = 120;

/// Counters shared by every instance through Redis.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
}

fn unavailable(e: ::redis::RedisError) -> LimiterError {
    LimiterError::Unavailable(e.to_string())
}

impl RedisLimiter {
    /// Connects to `url` (`redis://host:port[/db]`, `rediss://` for TLS); the connection is
    /// re-established by itself when it drops.
    pub async fn connect(url: &str) -> Result<Self, LimiterError> {
        let client = ::redis::Client::open(url).map_err(unavailable)?;
        // A limiter that cannot answer quickly fails the request (503) rather than holding it.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Self { conn })
    }

    /// The counter's key for `key` in `window`.
    pub fn counter_key(key: &str, window: i64) -> String {
        format!("conversa:rl:{key}:{window}")
    }

    /// Counts a hit at a given time (milliseconds since the epoch).
    pub async fn hit_at(
        &self,
        key: &str,
        limit: u32,
        now_millis: i64,
    ) -> Result<Decision, LimiterError> {
        let (win, left) = window(now_millis);
        let k = Self::counter_key(key, win);
        let mut conn = self.conn.clone();
        let (count,): (u64,) = ::redis::pipe()
            .atomic()
            .incr(&k, 1u64)
            .expire(&k, KEEP_SECS)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(if count > u64::from(limit) {
            Decision::Limited {
                retry_after_secs: left,
            }
        } else {
            Decision::Allowed
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn health(&self) -> Result<(), LimiterError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn hit(&self, key: &str, limit_per_minute: u32) -> Result<Decision, LimiterError> {
        self.hit_at(key, limit_per_minute, chrono::Utc::now().timestamp_millis())
            .await
    }
}

#[cfg(any(test, feature = "test-support"))]
#[async_trait]
impl super::contract::ClockedLimiter for RedisLimiter {
    async fn hit_at(
        &self,
        key: &str,
        limit_per_minute: u32,
        now_millis: i64,
    ) -> Result<Decision, LimiterError> {
        RedisLimiter::hit_at(self, key, limit_per_minute, now_millis).await
    }
}

//! Redis counters: one per key and window, `conversa:rl:{key}:{length}:{index}`, incremented and
//! given the window's expiry in one atomic `MULTI`, so a counter never outlives its window by much.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;

use super::{LimiterError, RateLimiter, Window};

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
    pub fn counter_key(key: &str, window: &Window) -> String {
        format!("conversa:rl:{key}:{}", window.slot())
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

    async fn increment(&self, key: &str, window: &Window) -> Result<u64, LimiterError> {
        let k = Self::counter_key(key, window);
        let mut conn = self.conn.clone();
        let (count,): (u64,) = ::redis::pipe()
            .atomic()
            .incr(&k, 1u64)
            .expire(
                &k,
                i64::try_from(window.expires_in_secs).unwrap_or(i64::MAX),
            )
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(count)
    }

    async fn count(&self, key: &str, window: &Window) -> Result<u64, LimiterError> {
        let mut conn = self.conn.clone();
        let count: Option<u64> = ::redis::cmd("GET")
            .arg(Self::counter_key(key, window))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(count.unwrap_or(0))
    }
}

//! In-memory rate limiter: one counter per key and minute, in a mutex-guarded map that forgets
//! past windows as it goes.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{window, Decision, LimiterError, RateLimiter};

/// Counters in this process only (the local server; one Lambda instance would not share them).
#[derive(Default)]
pub struct MemoryLimiter {
    counts: Mutex<HashMap<String, (i64, u32)>>,
}

impl MemoryLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a hit at a given time (milliseconds since the epoch).
    pub fn hit_at(&self, key: &str, limit: u32, now_millis: i64) -> Decision {
        let (win, left) = window(now_millis);
        let mut counts = match self.counts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if counts.len() > 100_000 {
            counts.retain(|_, (w, _)| *w == win);
        }
        let entry = counts.entry(key.to_owned()).or_insert((win, 0));
        if entry.0 != win {
            *entry = (win, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > limit {
            Decision::Limited {
                retry_after_secs: left,
            }
        } else {
            Decision::Allowed
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn health(&self) -> Result<(), LimiterError> {
        Ok(())
    }

    async fn hit(&self, key: &str, limit_per_minute: u32) -> Result<Decision, LimiterError> {
        Ok(self.hit_at(key, limit_per_minute, chrono::Utc::now().timestamp_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_resets_each_minute() {
        let l = MemoryLimiter::new();
        let t = 120_000 + 15_000;
        assert_eq!(l.hit_at("a", 2, t), Decision::Allowed);
        assert_eq!(l.hit_at("a", 2, t), Decision::Allowed);
        assert_eq!(
            l.hit_at("a", 2, t),
            Decision::Limited {
                retry_after_secs: 45
            }
        );
        assert_eq!(l.hit_at("b", 2, t), Decision::Allowed);
        assert_eq!(l.hit_at("a", 2, t + 45_000), Decision::Allowed);
    }
}

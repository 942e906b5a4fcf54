//! In-memory counters: one per key and window length, in a mutex-guarded map that forgets past
//! windows as it goes.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{LimiterError, RateLimiter, Window};

/// Past windows are dropped once the map holds this many keys.
const PRUNE_AT: usize = 100_000;

/// Counters in this process only (the local server; one Lambda instance would not share them).
#[derive(Default)]
pub struct MemoryLimiter {
    counts: Mutex<HashMap<(String, u32), Counter>>,
}

/// The count of one key in its latest window.
#[derive(Debug, Clone, Copy)]
struct Counter {
    index: i64,
    count: u64,
    expires_at_secs: i64,
}

impl MemoryLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Counter>> {
        match self.counts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn health(&self) -> Result<(), LimiterError> {
        Ok(())
    }

    async fn increment(&self, key: &str, window: &Window) -> Result<u64, LimiterError> {
        let mut counts = self.lock();
        if counts.len() > PRUNE_AT {
            let now = window.start_secs();
            counts.retain(|_, c| c.expires_at_secs > now);
        }
        let fresh = Counter {
            index: window.index,
            count: 0,
            expires_at_secs: window.expires_at_secs,
        };
        let entry = counts
            .entry((key.to_owned(), window.length_secs))
            .or_insert(fresh);
        if entry.index != window.index {
            *entry = fresh;
        }
        entry.count = entry.count.saturating_add(1);
        Ok(entry.count)
    }

    async fn count(&self, key: &str, window: &Window) -> Result<u64, LimiterError> {
        Ok(self
            .lock()
            .get(&(key.to_owned(), window.length_secs))
            .filter(|c| c.index == window.index)
            .map_or(0, |c| c.count))
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryLimiter;
    use crate::contract::Subject;

    crate::limiter_contract_tests!(contract, async { Some(Subject::new(MemoryLimiter::new())) });
}

//! In-memory counters: one per key and window, in a mutex-guarded map that forgets past windows as
//! it goes.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{LimiterError, RateLimiter, Window};

/// Past windows are dropped once the map holds this many keys.
const PRUNE_AT: usize = 100_000;

/// Counters in this process only (the local server; one Lambda instance would not share them).
#[derive(Default)]
pub struct MemoryLimiter {
    counts: Mutex<HashMap<String, (i64, u64)>>,
}

impl MemoryLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn health(&self) -> Result<(), LimiterError> {
        Ok(())
    }

    async fn increment(&self, key: &str, window: &Window) -> Result<u64, LimiterError> {
        let mut counts = match self.counts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if counts.len() > PRUNE_AT {
            counts.retain(|_, (w, _)| *w >= window.index);
        }
        let entry = counts.entry(key.to_owned()).or_insert((window.index, 0));
        if entry.0 != window.index {
            *entry = (window.index, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Ok(entry.1)
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryLimiter;
    use crate::contract::Subject;

    crate::limiter_contract_tests!(contract, async { Some(Subject::new(MemoryLimiter::new())) });
}

//! The users and API keys this instance has looked up lately, over the `Accounts` port: each entry
//! is kept at most a minute, so a request costs no store read while a change made on another
//! instance (a user disabled, a key deleted) takes effect here within a minute. Changes made
//! through this instance drop their entry at once. Entries are refreshed from the store when they
//! expire, and that is also when a user's `last_active_at` and a key's `last_used_at` move — at
//! most about once a minute, never a write per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::accounts::{Accounts, ApiKey, User, UserPatch};
use crate::domain::Timestamp;
use crate::limits::Clock;
use crate::store::StoreError;

/// How long an entry is trusted, in milliseconds.
pub const TTL_MS: i64 = 60_000;
/// Entries beyond this many are dropped (the oldest first is not worth tracking: all of them).
const MAX_ENTRIES: usize = 50_000;

struct Entry<T> {
    value: T,
    loaded_ms: i64,
}

/// Cached users and keys of this instance.
pub struct Directory {
    accounts: Arc<dyn Accounts>,
    clock: Arc<dyn Clock>,
    users: Mutex<HashMap<String, Entry<User>>>,
    keys: Mutex<HashMap<String, Entry<ApiKey>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Directory {
    /// A directory over `accounts`, its entries timed by `clock`.
    pub fn new(accounts: Arc<dyn Accounts>, clock: Arc<dyn Clock>) -> Self {
        Self {
            accounts,
            clock,
            users: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The store underneath.
    pub fn accounts(&self) -> &Arc<dyn Accounts> {
        &self.accounts
    }

    fn fresh<T: Clone>(&self, map: &Mutex<HashMap<String, Entry<T>>>, key: &str) -> Option<T> {
        let now = self.clock.now_millis();
        lock(map)
            .get(key)
            .filter(|e| now - e.loaded_ms < TTL_MS && e.loaded_ms <= now)
            .map(|e| e.value.clone())
    }

    fn keep<T>(&self, map: &Mutex<HashMap<String, Entry<T>>>, key: &str, value: T) {
        let mut map = lock(map);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            key.to_owned(),
            Entry {
                value,
                loaded_ms: self.clock.now_millis(),
            },
        );
    }

    /// Marks a user active now when they were last seen more than a minute ago.
    async fn touched(&self, user: User) -> Result<User, StoreError> {
        let now = self.clock.now_millis();
        let stale = user
            .last_active_at
            .is_none_or(|t| now - t.millis() >= TTL_MS);
        if !stale {
            return Ok(user);
        }
        let patch = UserPatch {
            last_active_at: Some(Timestamp::from_millis(now)),
            ..UserPatch::default()
        };
        Ok(self
            .accounts
            .update_user(&user.id, &patch)
            .await?
            .unwrap_or(user))
    }

    /// A user by id (a local account's token names it).
    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        if let Some(u) = self.fresh(&self.users, id) {
            return Ok(Some(u));
        }
        let Some(user) = self.accounts.get_user(id).await? else {
            return Ok(None);
        };
        let user = self.touched(user).await?;
        self.keep(&self.users, id, user.clone());
        Ok(Some(user))
    }

    /// A user of another mode as their credentials describe them (`seen`: id, email, name and
    /// role from the provider, tier for a first visit): stored the first time, and kept in step
    /// with what the provider says about email, name and role.
    pub async fn seen(&self, seen: &User) -> Result<User, StoreError> {
        if let Some(u) = self.fresh(&self.users, &seen.id) {
            if !differs(&u, seen) {
                return Ok(u);
            }
        }
        let stored = self.accounts.ensure_user(seen).await?;
        let stored = if differs(&stored, seen) {
            let patch = UserPatch {
                role: Some(seen.role),
                email: seen
                    .email
                    .clone()
                    .filter(|e| stored.email.as_ref() != Some(e)),
                name: seen
                    .name
                    .clone()
                    .filter(|n| stored.name.as_ref() != Some(n)),
                ..UserPatch::default()
            };
            self.accounts
                .update_user(&seen.id, &patch)
                .await?
                .unwrap_or(stored)
        } else {
            stored
        };
        let user = self.touched(stored).await?;
        self.keep(&self.users, &seen.id, user.clone());
        Ok(user)
    }

    /// Forgets a user (changed through this instance).
    pub fn forget_user(&self, id: &str) {
        lock(&self.users).remove(id);
    }

    /// An API key by its hash, its use recorded at most about once a minute.
    pub async fn key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        if let Some(k) = self.fresh(&self.keys, hash) {
            return Ok(Some(k));
        }
        let Some(mut key) = self.accounts.key_by_hash(hash).await? else {
            return Ok(None);
        };
        let now = self.clock.now_millis();
        if key.last_used_at.is_none_or(|t| now - t.millis() >= TTL_MS) {
            let at = Timestamp::from_millis(now);
            self.accounts.touch_key(&key.owner, &key.id, at).await?;
            key.last_used_at = Some(at);
        }
        self.keep(&self.keys, hash, key.clone());
        Ok(Some(key))
    }

    /// Forgets a key (deleted through this instance: it stops working here at once).
    pub fn forget_key(&self, hash: &str) {
        lock(&self.keys).remove(hash);
    }
}

/// Whether the provider now says something else about a user than what is stored.
fn differs(stored: &User, seen: &User) -> bool {
    stored.role != seen.role
        || seen
            .email
            .as_ref()
            .is_some_and(|e| stored.email.as_ref() != Some(e))
        || seen
            .name
            .as_ref()
            .is_some_and(|n| stored.name.as_ref() != Some(n))
}

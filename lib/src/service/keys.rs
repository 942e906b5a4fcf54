//! Personal API keys: create (the key is shown this once, only its SHA-256 is kept), list, delete.
//! A deleted key stops working on this instance at once, and on others within a minute (their
//! cached entry expires).

use std::sync::Arc;

use crate::accounts::ApiKey;
use crate::auth::{secrets, AuthMode, Authenticator, Principal};
use crate::domain::{Page, Timestamp};
use crate::service::Error;
use crate::store::PageRequest;

/// The most keys one person may have.
pub const MAX_KEYS: usize = 100;
/// The longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// The keys use case. Cheap to clone.
#[derive(Clone)]
pub struct KeyService {
    auth: Arc<Authenticator>,
}

impl KeyService {
    /// A service over the authenticator (its store and its cache of keys).
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }

    /// Keys are for people who sign in, and are managed with a sign-in rather than with a key
    /// (a leaked key cannot mint others).
    fn allowed(&self, principal: &Principal) -> Result<(), Error> {
        if principal.mode == AuthMode::None {
            return Err(Error::NotFound(
                "API keys need sign-in: this server runs without it (CONVERSA_AUTH=none).".into(),
            ));
        }
        if principal.api_key {
            return Err(Error::Forbidden(
                "API keys are managed when signed in, not with an API key.".into(),
            ));
        }
        Ok(())
    }

    /// A new key named `name`: the record, and the key itself (shown once).
    pub async fn create(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<(ApiKey, String), Error> {
        self.allowed(principal)?;
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(Error::Unprocessable(format!(
                "A key's name is 1–{MAX_NAME_CHARS} characters."
            )));
        }
        let accounts = self.auth.directory().accounts();
        let owner = principal.owner.as_str();
        let existing = accounts
            .list_keys(
                owner,
                &PageRequest {
                    limit: MAX_KEYS as u32,
                    cursor: None,
                },
            )
            .await?;
        if existing.items.len() >= MAX_KEYS {
            return Err(Error::Unprocessable(format!(
                "You have {MAX_KEYS} API keys: delete one first."
            )));
        }
        let secret = secrets::random_token(secrets::API_KEY_PREFIX)
            .map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let key = ApiKey {
            id: uuid::Uuid::now_v7().to_string(),
            owner: owner.to_owned(),
            name: name.to_owned(),
            hash: secrets::sha256_hex(&secret),
            created_at: Timestamp::from_millis(self.auth.clock().now_millis()),
            last_used_at: None,
        };
        accounts.create_key(&key).await?;
        tracing::info!(user = owner, key = %key.id, "API key created");
        Ok((key, secret))
    }

    /// The caller's keys, oldest first.
    pub async fn list(
        &self,
        principal: &Principal,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, Error> {
        self.allowed(principal)?;
        Ok(self
            .auth
            .directory()
            .accounts()
            .list_keys(principal.owner.as_str(), &page)
            .await?)
    }

    /// Deletes one of the caller's keys.
    pub async fn delete(&self, principal: &Principal, id: &str) -> Result<(), Error> {
        self.allowed(principal)?;
        let directory = self.auth.directory();
        let key = directory
            .accounts()
            .delete_key(principal.owner.as_str(), id)
            .await?
            .ok_or_else(|| Error::NotFound("No such API key.".into()))?;
        directory.forget_key(&key.hash);
        tracing::info!(user = principal.owner.as_str(), key = id, "API key deleted");
        Ok(())
    }
}

//! The `Accounts` port: the people the product knows, and what proves who they are.
//!
//! - **Users**: everyone who has signed in, in any mode (their tier, whether they are disabled,
//!   when they were last active), and the local accounts among them (those with a login: a
//!   normalised email and an Argon2id password hash).
//! - **Refresh tokens** of local sign-ins, in families: each refresh uses one token up and adds
//!   the next to its family; a family is revoked as a whole (sign-out, or a token used twice).
//! - **API keys**, per owner.
//! - The **signing secret** of local access tokens, generated once and kept with the data.
//!
//! Only hashes are stored: SHA-256 (hex) of refresh tokens and API keys, Argon2id of passwords.
//! Adapters: SQLite, DynamoDB and MongoDB (each implemented on that store's type, in the same
//! database); every one passes the contract suite in `accounts::contract`.

use async_trait::async_trait;

use crate::auth::Role;
use crate::domain::{Page, Timestamp};
use crate::store::cursor::Keyset;
use crate::store::{PageRequest, StoreError};

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Someone the product knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id: the owner of their records (a local account's UUIDv7, the `sub` of an OpenID
    /// provider, a name of `CONVERSA_AUTH_TOKENS`).
    pub id: String,
    /// Their email, when known; for a local account, its normalised login.
    pub email: Option<String>,
    /// Their name, when known.
    pub name: Option<String>,
    /// What they may do. For local accounts this is the truth; in the other modes the identity
    /// provider (groups) or `CONVERSA_ADMINS` decides, and this is what was seen last.
    pub role: Role,
    /// Their tier (budgets per tier).
    pub tier: String,
    /// A disabled user gets 403 on every route.
    pub disabled: bool,
    /// The Argon2id hash (PHC string) of a local account's password; `None` for everyone else.
    pub password_hash: Option<String>,
    /// When they were first seen (or registered).
    pub created_at: Timestamp,
    /// When they were last seen (updated at most about once a minute).
    pub last_active_at: Option<Timestamp>,
}

impl User {
    /// Whether this is a local account (it signs in with a password).
    pub fn is_local(&self) -> bool {
        self.password_hash.is_some()
    }
}

impl Keyset for User {
    fn keyset(&self) -> (String, &str) {
        (self.created_at.to_rfc3339(), &self.id)
    }
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// A new role.
    pub role: Option<Role>,
    /// A new tier.
    pub tier: Option<String>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// A new email: for users without a login only (a local account's email is its login).
    pub email: Option<String>,
    /// A new name.
    pub name: Option<String>,
    /// A new password hash: for local accounts only.
    pub password_hash: Option<String>,
    /// Seen at this time.
    pub last_active_at: Option<Timestamp>,
}

/// A family of refresh tokens: one sign-in, refreshed again and again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Opaque id.
    pub id: String,
    /// Whose sign-in.
    pub user_id: String,
    /// When the sign-in happened.
    pub created_at: Timestamp,
    /// No token of the family works after this (an absolute lifetime).
    pub expires_at: Timestamp,
    /// Signed out, or a token was used twice: no token of the family works.
    pub revoked: bool,
}

/// One refresh token, by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// SHA-256 of the token, lowercase hex.
    pub hash: String,
    /// Its family.
    pub family_id: String,
    /// Whose.
    pub user_id: String,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was used up (a refresh that returned the next token).
    pub used_at: Option<Timestamp>,
}

/// A personal API key, by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Opaque id (what lists show and `DELETE` names).
    pub id: String,
    /// The user it acts for.
    pub owner: String,
    /// What its owner called it.
    pub name: String,
    /// SHA-256 of the key, lowercase hex.
    pub hash: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last used (updated at most about once a minute).
    pub last_used_at: Option<Timestamp>,
}

impl Keyset for ApiKey {
    fn keyset(&self) -> (String, &str) {
        (self.created_at.to_rfc3339(), &self.id)
    }
}

/// Why a local account was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Its login (email) belongs to another account already.
    #[error("the email is registered already")]
    Taken,
    /// It was to be the first local account, and another one was first.
    #[error("another account was first")]
    NotFirst,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Users, refresh tokens, API keys and the signing secret.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates a local account (`user.email` is its login, `user.password_hash` is set). With
    /// `first`, only if no local account was ever created before ([`CreateError::NotFirst`]
    /// otherwise): of concurrent first registrations exactly one succeeds. A login that exists is
    /// [`CreateError::Taken`]. Nothing is written when it fails.
    async fn create_account(&self, user: &User, first: bool) -> Result<(), CreateError>;

    /// Whether a local account was ever created (the first-run screen asks).
    async fn has_accounts(&self) -> Result<bool, StoreError>;

    /// The stored user with `user.id`, inserting `user` first when there is none (people of the
    /// other modes, seen for the first time). Concurrent calls store one user.
    async fn ensure_user(&self, user: &User) -> Result<User, StoreError>;

    /// One user.
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError>;

    /// The local account whose login is `email` (normalised).
    async fn find_login(&self, email: &str) -> Result<Option<User>, StoreError>;

    /// Users by `created_at`, then id, oldest first.
    async fn list_users(&self, page: &PageRequest) -> Result<Page<User>, StoreError>;

    /// Applies `patch`; the user after it, or `None` when there is no such user.
    async fn update_user(&self, id: &str, patch: &UserPatch) -> Result<Option<User>, StoreError>;

    /// Stores a new family with its first token.
    async fn start_family(&self, family: &Family, first: &RefreshToken) -> Result<(), StoreError>;

    /// A refresh token with its family, by the token's hash.
    async fn refresh_token(&self, hash: &str)
        -> Result<Option<(RefreshToken, Family)>, StoreError>;

    /// Uses up the token `used` (marks it used at `at`) and stores `next` in the same family, as
    /// one step. `false`, with nothing written, when `used` was used up already (by a concurrent
    /// refresh too) or does not exist.
    async fn rotate(
        &self,
        used: &str,
        at: Timestamp,
        next: &RefreshToken,
    ) -> Result<bool, StoreError>;

    /// Revokes a family: none of its tokens works any more.
    async fn revoke_family(&self, id: &str) -> Result<(), StoreError>;

    /// Stores a new API key.
    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// An API key by its hash.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// An owner's keys by `created_at`, then id, oldest first.
    async fn list_keys(&self, owner: &str, page: &PageRequest) -> Result<Page<ApiKey>, StoreError>;

    /// Deletes an owner's key; the deleted key (its hash tells caches what to forget), or `None`
    /// when the owner has no key with this id.
    async fn delete_key(&self, owner: &str, id: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Records that an owner's key was used at `at`.
    async fn touch_key(&self, owner: &str, id: &str, at: Timestamp) -> Result<(), StoreError>;

    /// The secret that signs local access tokens: the stored one, or `candidate` stored now when
    /// there is none. Concurrent first calls all get the one that was stored.
    async fn signing_secret(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// The page `request` asks for out of all the items of a small list (one person's keys), sorted
/// here (for adapters that read such lists whole).
#[cfg(any(feature = "dynamodb", feature = "mongodb"))]
pub(crate) fn page_after<T: Keyset>(
    mut items: Vec<T>,
    request: &PageRequest,
) -> Result<Page<T>, StoreError> {
    items.sort_by(|a, b| {
        let (ka, ia) = a.keyset();
        let (kb, ib) = b.keyset();
        (ka, ia).cmp(&(kb, ib))
    });
    if let Some((key, id)) = request.after()? {
        items.retain(|item| {
            let (k, i) = item.keyset();
            (k.as_str(), i) > (key.as_str(), id.as_str())
        });
    }
    items.truncate(request.fetch());
    Ok(crate::store::cursor::page(items, request))
}

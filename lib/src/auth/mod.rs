//! Who is calling: one layer that turns a request's credentials into a [`Principal`] — the owner
//! whose records it may see, a role and a tier — in every mode of `CONVERSA_AUTH`:
//!
//! | mode | credentials |
//! |---|---|
//! | `none` | none: one user, `local`, an admin |
//! | `tokens` | a bearer token of `CONVERSA_AUTH_TOKENS`; admins listed in `CONVERSA_ADMINS` |
//! | `oidc` | a bearer JWT of an OpenID provider ([`oidc`]); admins by the groups claim |
//! | `local` | a bearer access token of a local account ([`local`]) |
//!
//! Every mode but `none` also takes personal API keys (`cvk_…`). Handlers take the principal as an
//! extractor (`api::extract`); admin routes say so once, on their router (`api::admin`). Stores
//! still filter by the principal's `owner`. Any credential that does not check out is one generic
//! 401; the reason goes to the log only. A disabled user is 403 everywhere.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{Accounts, User};
use crate::domain::{Owner, Timestamp};
use crate::limits::Clock;
use crate::service;

pub mod config;
pub mod directory;
pub mod local;
pub mod oidc;
pub mod password;
pub mod secrets;

pub use config::{AuthConfig, Registration};
pub use directory::Directory;

/// The largest credential looked at, in bytes; a longer one is refused unread.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// What every refused credential is told (the reason goes to the log).
pub const UNAUTHORIZED: &str =
    "Sign in to continue: the credentials are missing, not valid, or expired.";

/// What a user may do (`UserRole` in the OpenAPI document: `Role` is a message's author).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = UserRole)]
pub enum Role {
    /// Sees usage, manages users; never other people's conversations or files.
    Admin,
    /// Everyone else.
    User,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// How people sign in (`CONVERSA_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Nobody signs in: one local user.
    None,
    /// Fixed bearer tokens (`CONVERSA_AUTH_TOKENS`).
    Tokens,
    /// An OpenID provider (Cognito in AWS).
    Oidc,
    /// Accounts kept by the product.
    Local,
}

impl AuthMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Tokens => "tokens",
            AuthMode::Oidc => "oidc",
            AuthMode::Local => "local",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(AuthMode::None),
            "tokens" => Some(AuthMode::Tokens),
            "oidc" => Some(AuthMode::Oidc),
            "local" => Some(AuthMode::Local),
            _ => None,
        }
    }
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Whose records it may see (the user id).
    pub owner: Owner,
    /// What it may do.
    pub role: Role,
    /// The user's tier.
    pub tier: String,
    /// The user's email, when known.
    pub email: Option<String>,
    /// The user's name, when known.
    pub name: Option<String>,
    /// The mode it signed in with.
    pub mode: AuthMode,
    /// Whether it came with an API key (rather than the mode's own credentials).
    pub api_key: bool,
}

impl Principal {
    /// The one user of mode `none`.
    pub fn local(tier: &str) -> Self {
        Self {
            owner: Owner::local(),
            role: Role::Admin,
            tier: tier.to_owned(),
            email: None,
            name: None,
            mode: AuthMode::None,
            api_key: false,
        }
    }

    /// Whether it may use admin routes.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether it proved who it is (every mode but `none`): rate limits then count per user.
    pub fn signed_in(&self) -> bool {
        self.mode != AuthMode::None
    }

    fn of(user: &User, role: Role, mode: AuthMode, api_key: bool) -> Self {
        Self {
            owner: Owner::new(user.id.clone()),
            role,
            tier: user.tier.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            mode,
            api_key,
        }
    }
}

/// Why a request has no principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, unknown, expired or forged credentials: 401 with one generic message;
    /// this reason is logged.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Signed in, but not allowed (a disabled account): 403 with this message.
    #[error("{0}")]
    Forbidden(String),
    /// What is needed to check the credentials cannot be reached (the provider's keys, the
    /// store): 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A fault of this server: 500.
    #[error("internal: {0}")]
    Internal(String),
}

impl AuthError {
    /// A refused credential and why (for the log).
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        AuthError::Unauthorized(reason.into())
    }

    /// A disabled account.
    pub fn disabled() -> Self {
        AuthError::Forbidden("This account is disabled. Ask an administrator.".into())
    }
}

impl From<crate::store::StoreError> for AuthError {
    fn from(e: crate::store::StoreError) -> Self {
        AuthError::Unavailable(e.to_string())
    }
}

impl From<AuthError> for service::Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(reason) => {
                tracing::info!(%reason, "credentials refused");
                service::Error::Unauthorized(UNAUTHORIZED.into())
            }
            AuthError::Forbidden(m) => service::Error::Forbidden(m),
            AuthError::Unavailable(detail) => {
                tracing::error!(%detail, "cannot check credentials");
                service::Error::Unavailable(
                    "Signing in is unavailable right now. Please try again shortly.".into(),
                )
            }
            AuthError::Internal(detail) => service::Error::Internal(detail),
        }
    }
}

/// The credential of an `Authorization` header value: `Bearer <token>` (the scheme in any case),
/// one token of visible ASCII, at most [`MAX_CREDENTIAL_BYTES`]. `None` without a header.
pub fn bearer(value: Option<&[u8]>) -> Result<Option<&str>, AuthError> {
    let Some(raw) = value else {
        return Ok(None);
    };
    if raw.len() > MAX_CREDENTIAL_BYTES + 16 {
        return Err(AuthError::unauthorized(format!(
            "authorization header of {} bytes",
            raw.len()
        )));
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| AuthError::unauthorized("authorization header is not text"))?;
    let (scheme, token) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| AuthError::unauthorized("authorization header without a scheme"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::unauthorized(format!(
            "authorization scheme {:?}",
            scheme.chars().take(20).collect::<String>()
        )));
    }
    let token = token.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::unauthorized("malformed bearer token"));
    }
    if token.len() > MAX_CREDENTIAL_BYTES {
        return Err(AuthError::unauthorized(format!(
            "bearer token of {} bytes",
            token.len()
        )));
    }
    Ok(Some(token))
}

/// The owner id of an OpenID subject: the `sub` itself when it is made of the characters owners
/// are (letters, digits, `-`, `_`, `.`, `@`; up to 128), else `sub-` and its SHA-256, so any
/// provider's subjects are safe keys in every store.
pub fn owner_of_subject(sub: &str) -> String {
    if config::valid_user_id(sub) && !sub.starts_with("sub-") {
        sub.to_owned()
    } else {
        format!("sub-{}", &secrets::sha256_hex(sub)[..40])
    }
}

/// Turns credentials into principals, in the configured mode. Built once per process, shared by
/// every request.
pub struct Authenticator {
    mode: AuthMode,
    default_tier: String,
    registration: Registration,
    /// `CONVERSA_AUTH_TOKENS` by the SHA-256 of each token.
    tokens: HashMap<String, String>,
    admins: BTreeSet<String>,
    directory: Arc<Directory>,
    local: Option<Arc<local::LocalTokens>>,
    oidc: Option<Arc<oidc::OidcVerifier>>,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    /// The authenticator of `config`, over `accounts`, on `clock`. Fails (naming the variable)
    /// only when the configuration cannot work; nothing is fetched here.
    pub fn new(
        config: &AuthConfig,
        accounts: Arc<dyn Accounts>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        if config.mode != AuthMode::None
            && jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none()
        {
            return Err("CONVERSA_AUTH: this binary has no JWT crypto backend".into());
        }
        let oidc = match (&config.mode, &config.oidc) {
            (AuthMode::Oidc, Some(o)) => Some(Arc::new(
                oidc::OidcVerifier::new(o.clone(), Arc::clone(&clock))
                    .map_err(|e| format!("CONVERSA_OIDC_ISSUER: {e}"))?,
            )),
            (AuthMode::Oidc, None) => {
                return Err("CONVERSA_OIDC_ISSUER: required when CONVERSA_AUTH=oidc".into())
            }
            _ => None,
        };
        let local = (config.mode == AuthMode::Local).then(|| {
            Arc::new(local::LocalTokens::new(
                config.jwt_secret.clone(),
                Arc::clone(&accounts),
            ))
        });
        Ok(Self {
            mode: config.mode,
            default_tier: config.default_tier.clone(),
            registration: config.registration,
            tokens: config
                .tokens
                .iter()
                .map(|(token, user)| (secrets::sha256_hex(token), user.clone()))
                .collect(),
            admins: config.admins.clone(),
            directory: Arc::new(Directory::new(accounts, Arc::clone(&clock))),
            local,
            oidc,
            clock,
        })
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Whether people may register themselves.
    pub fn registration(&self) -> Registration {
        self.registration
    }

    /// The tier of people seen for the first time.
    pub fn default_tier(&self) -> &str {
        &self.default_tier
    }

    /// The cached users and keys (changes made through this instance drop their entries).
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The local access tokens (mode `local`).
    pub fn local_tokens(&self) -> Option<&Arc<local::LocalTokens>> {
        self.local.as_ref()
    }

    /// The OpenID provider (mode `oidc`).
    pub fn oidc(&self) -> Option<&Arc<oidc::OidcVerifier>> {
        self.oidc.as_ref()
    }

    /// The clock tokens and caches are timed by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The principal of a request whose `Authorization` header value is `header`.
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(Principal::local(&self.default_tier));
        }
        let token = bearer(header)?.ok_or_else(|| AuthError::unauthorized("no credentials"))?;
        let (user, role, api_key) = if token.starts_with(secrets::API_KEY_PREFIX) {
            let user = self.by_api_key(token).await?;
            let role = match self.mode {
                AuthMode::Tokens => self.token_role(&user.id),
                _ => user.role,
            };
            (user, role, true)
        } else {
            let (user, role) = self.by_mode(token).await?;
            (user, role, false)
        };
        if user.disabled {
            tracing::info!(user = %user.id, "a disabled user was refused");
            return Err(AuthError::disabled());
        }
        Ok(Principal::of(&user, role, self.mode, api_key))
    }

    /// The user of a credential of the mode itself, with the role it has.
    async fn by_mode(&self, token: &str) -> Result<(User, Role), AuthError> {
        match self.mode {
            AuthMode::None => Err(AuthError::Internal("no credentials in mode none".into())),
            AuthMode::Tokens => {
                let id = self
                    .tokens
                    .get(&secrets::sha256_hex(token))
                    .ok_or_else(|| AuthError::unauthorized("unknown token"))?;
                let role = self.token_role(id);
                let user = self
                    .directory
                    .seen(&self.visitor(id, None, None, role))
                    .await?;
                Ok((user, role))
            }
            AuthMode::Oidc => {
                let verifier = self
                    .oidc
                    .as_ref()
                    .ok_or_else(|| AuthError::Internal("no OpenID provider".into()))?;
                let identity = verifier.verify(token).await?;
                let id = owner_of_subject(&identity.subject);
                let seen = self.visitor(&id, identity.email, identity.name, identity.role);
                Ok((self.directory.seen(&seen).await?, identity.role))
            }
            AuthMode::Local => {
                let tokens = self
                    .local
                    .as_ref()
                    .ok_or_else(|| AuthError::Internal("no local tokens".into()))?;
                let id = tokens.verify(token, self.clock.now_secs()).await?;
                let user = self
                    .directory
                    .user(&id)
                    .await?
                    .ok_or_else(|| AuthError::unauthorized("a token of an unknown user"))?;
                let role = user.role;
                Ok((user, role))
            }
        }
    }

    /// The user of an API key.
    async fn by_api_key(&self, token: &str) -> Result<User, AuthError> {
        if !secrets::looks_like(token, secrets::API_KEY_PREFIX) {
            return Err(AuthError::unauthorized("malformed API key"));
        }
        let hash = secrets::sha256_hex(token);
        let key = self
            .directory
            .key(&hash)
            .await?
            .filter(|k| secrets::same(k.hash.as_bytes(), hash.as_bytes()))
            .ok_or_else(|| AuthError::unauthorized("unknown API key"))?;
        self.directory
            .user(&key.owner)
            .await?
            .ok_or_else(|| AuthError::unauthorized("an API key of an unknown user"))
    }

    fn token_role(&self, id: &str) -> Role {
        if self.admins.contains(id) {
            Role::Admin
        } else {
            Role::User
        }
    }

    /// A user of another mode as their credentials describe them.
    fn visitor(&self, id: &str, email: Option<String>, name: Option<String>, role: Role) -> User {
        User {
            id: id.to_owned(),
            email,
            name,
            role,
            tier: self.default_tier.clone(),
            disabled: false,
            password_hash: None,
            created_at: Timestamp::from_millis(self.clock.now_millis()),
            last_active_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn bearer_headers_are_read_strictly() {
        assert_eq!(bearer(None).unwrap(), None);
        assert_eq!(bearer(Some(b"Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(bearer(Some(b"bearer   abc  ")).unwrap(), Some("abc"));
        assert_eq!(bearer(Some(b"BEARER abc")).unwrap(), Some("abc"));
        for bad in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearer \xff\xfe",
            b"Bearer caf\xc3\xa9",
            b"abc",
            b"Bearer a\tb",
        ] {
            assert!(
                matches!(bearer(Some(bad)), Err(AuthError::Unauthorized(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_BYTES + 1));
        assert!(bearer(Some(big.as_bytes())).is_err());
        let just = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_BYTES));
        assert!(bearer(Some(just.as_bytes())).unwrap().is_some());
    }

    #[test]
    fn subjects_become_safe_owner_ids() {
        assert_eq!(
            owner_of_subject("f2821171-db81-4737-b8d7-bb6baf606666"),
            "f2821171-db81-4737-b8d7-bb6baf606666"
        );
        assert_eq!(owner_of_subject("alice"), "alice");
        let odd = owner_of_subject("auth0|12345");
        assert!(
            odd.starts_with("sub-") && config::valid_user_id(&odd),
            "{odd}"
        );
        assert_ne!(odd, owner_of_subject("auth0|12346"));
        assert_ne!(
            owner_of_subject("sub-x"),
            "sub-x",
            "no look-alikes of hashed ids"
        );
        assert!(config::valid_user_id(&owner_of_subject(&"x".repeat(300))));
    }
}

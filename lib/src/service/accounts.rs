//! Signing in with a local account — register (the first account is an admin), sign in, refresh,
//! sign out — and the administration of users (list, add, change). Failed sign-ins are counted
//! per email and per client address: ten in 15 minutes and that email or address waits.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::{Accounts, CreateError, Family, RefreshToken, User, UserPatch};
use crate::auth::config::valid_tier;
use crate::auth::{
    password, secrets, AuthError, AuthMode, Authenticator, Principal, Registration, Role,
};
use crate::domain::{Page, Timestamp};
use crate::ledger::Tiers;
use crate::limits::{Decision, Policy, RateLimit};
use crate::service::Error;
use crate::store::PageRequest;

/// Failed sign-ins allowed per email and per address in [`SIGN_IN_WINDOW`].
pub const SIGN_IN_FAILURES: u32 = 10;
/// The window failed sign-ins are counted in.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a sign-in lasts without a password, refreshed or not.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// What signing in gives: the user, a short-lived access token and the refresh token that renews
/// it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub user: User,
    /// The bearer token of API requests.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: i64,
    /// Renews the access token once (`POST /api/auth/refresh`).
    pub refresh_token: String,
}

/// A new local account, as typed.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    /// Any form; it is normalised.
    pub email: String,
    /// At least 10 characters, at most 1 KB.
    pub password: String,
    /// Optional.
    pub name: Option<String>,
    /// Admins may give a role (default `user`).
    pub role: Option<Role>,
    /// Admins may give a tier (default `CONVERSA_DEFAULT_TIER`).
    pub tier: Option<String>,
}

/// What an admin changes about a user.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// A new tier.
    pub tier: Option<String>,
    /// A new role (local accounts only: elsewhere the identity provider decides).
    pub role: Option<Role>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// What the sign-in page needs to know (`GET /api/auth/config`).
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// The mode.
    pub mode: AuthMode,
    /// Whether people may register themselves (always while no account exists).
    pub registration: Registration,
    /// No local account exists yet: the first to register becomes the admin.
    pub first_account: bool,
    /// The OpenID provider, in mode `oidc`.
    pub oidc: Option<OidcSettings>,
}

/// The OpenID provider, for the sign-in page's authorization-code flow.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer.
    pub issuer: String,
    /// The app client id.
    pub client_id: String,
    /// Where to send people to sign in.
    pub authorization_endpoint: String,
    /// Where to exchange the code (and refresh tokens).
    pub token_endpoint: String,
    /// The scopes to ask for.
    pub scopes: String,
}

/// The accounts use case. Cheap to clone.
#[derive(Clone)]
pub struct AccountService {
    auth: Arc<Authenticator>,
    limiter: RateLimit,
    tiers: Arc<Tiers>,
}

fn local_only() -> Error {
    Error::NotFound(
        "Local accounts are not enabled on this server (CONVERSA_AUTH=local enables them).".into(),
    )
}

fn wrong_credentials() -> Error {
    Error::Unauthorized("The email or password is wrong.".into())
}

fn unprocessable(e: password::Rejected) -> Error {
    Error::Unprocessable(e.0)
}

/// A name as typed: trimmed, `None` when empty, at most [`MAX_NAME_CHARS`].
pub fn clean_name(name: Option<&str>) -> Result<Option<String>, Error> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::Unprocessable(format!(
            "The name must be at most {MAX_NAME_CHARS} characters, without control characters."
        )));
    }
    Ok(Some(name.to_owned()))
}

/// A tier name that names a tier of `CONVERSA_TIERS` (or `default`); else 422 naming them.
fn check_tier(tiers: &Tiers, tier: &str) -> Result<(), Error> {
    if valid_tier(tier) && tiers.contains(tier) {
        Ok(())
    } else {
        Err(Error::Unprocessable(format!(
            "Unknown tier {:?}; the tiers are {}.",
            tier.chars().take(64).collect::<String>(),
            tiers.names().join(", ")
        )))
    }
}

impl AccountService {
    /// A service over the authenticator (its mode, store, tokens and caches), the rate limiter
    /// (failed sign-ins are counted in it) and the tiers users may be given.
    pub fn new(auth: Arc<Authenticator>, limiter: RateLimit, tiers: Tiers) -> Self {
        Self {
            auth,
            limiter,
            tiers: Arc::new(tiers),
        }
    }

    fn accounts(&self) -> &Arc<dyn Accounts> {
        self.auth.directory().accounts()
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.auth.clock().now_millis())
    }

    fn require_local(&self) -> Result<(), Error> {
        if self.auth.mode() == AuthMode::Local {
            Ok(())
        } else {
            Err(local_only())
        }
    }

    /// What the sign-in page needs to know.
    pub async fn sign_in_settings(&self) -> Result<SignInSettings, Error> {
        let mode = self.auth.mode();
        let first_account = mode == AuthMode::Local && !self.accounts().has_accounts().await?;
        let registration = if first_account {
            Registration::Open
        } else {
            self.auth.registration()
        };
        let oidc = match self.auth.oidc() {
            None => None,
            Some(verifier) => {
                let discovery = verifier.discovery().await?;
                let missing = |what: &str| {
                    Error::from(AuthError::Unavailable(format!(
                        "the identity provider's discovery document has no {what}"
                    )))
                };
                Some(OidcSettings {
                    issuer: verifier.issuer().to_owned(),
                    client_id: verifier.audience().await?.to_owned(),
                    authorization_endpoint: discovery
                        .authorization_endpoint
                        .ok_or_else(|| missing("authorization_endpoint"))?,
                    token_endpoint: discovery
                        .token_endpoint
                        .ok_or_else(|| missing("token_endpoint"))?,
                    scopes: verifier.scopes().to_owned(),
                })
            }
        };
        Ok(SignInSettings {
            mode,
            registration,
            first_account,
            oidc,
        })
    }

    /// Creates a local account and signs it in. The first account is an admin; later ones only
    /// while registration is open.
    pub async fn register(&self, input: NewAccount) -> Result<Session, Error> {
        self.require_local()?;
        password::check_new_password(&input.password).map_err(unprocessable)?;
        let email = password::normalize_email(&input.email).map_err(unprocessable)?;
        let name = clean_name(input.name.as_deref())?;
        let open = self.auth.registration() == Registration::Open;
        if !open && self.accounts().has_accounts().await? {
            return Err(closed());
        }
        let hash = password::hash(&input.password)
            .await
            .map_err(Error::Internal)?;
        let mut user = self.new_user(email, name, hash, Role::Admin, None);
        match self.accounts().create_account(&user, true).await {
            Ok(()) => {}
            Err(CreateError::NotFirst) if open => {
                user.role = Role::User;
                self.accounts()
                    .create_account(&user, false)
                    .await
                    .map_err(create_error)?;
            }
            Err(CreateError::NotFirst) => return Err(closed()),
            Err(e) => return Err(create_error(e)),
        }
        tracing::info!(user = %user.id, role = user.role.as_str(), "account registered");
        self.session(user).await
    }

    fn new_user(
        &self,
        email: String,
        name: Option<String>,
        hash: String,
        role: Role,
        tier: Option<String>,
    ) -> User {
        User {
            id: uuid::Uuid::now_v7().to_string(),
            email: Some(email),
            name,
            role,
            tier: tier.unwrap_or_else(|| self.auth.default_tier().to_owned()),
            disabled: false,
            password_hash: Some(hash),
            created_at: self.now(),
            last_active_at: None,
        }
    }

    /// Signs in with email and password. Wrong email and wrong password answer alike, in the
    /// same time; ten failures for one email or one address within 15 minutes are 429.
    pub async fn login(
        &self,
        email: &str,
        pass: &str,
        client: Option<IpAddr>,
    ) -> Result<Session, Error> {
        self.require_local()?;
        if pass.len() > password::MAX_PASSWORD_BYTES {
            return Err(Error::Unprocessable(format!(
                "The password is too long: at most {} bytes.",
                password::MAX_PASSWORD_BYTES
            )));
        }
        let email = password::normalize_email(email).map_err(unprocessable)?;
        let keys = throttle_keys(&email, client);
        let policy = Policy::per(SIGN_IN_FAILURES, SIGN_IN_WINDOW);
        for key in &keys {
            if let Decision::Limited { retry_after_secs } = self.limiter.peek(key, policy).await? {
                tracing::info!(key = %key, "sign-in throttled");
                return Err(Error::RateLimited {
                    retry_after_secs,
                    message: format!(
                        "Too many failed sign-ins. Try again in {} min.",
                        retry_after_secs.div_ceil(60)
                    ),
                });
            }
        }
        let user = self.accounts().find_login(&email).await?;
        let ok =
            password::verify(pass, user.as_ref().and_then(|u| u.password_hash.as_deref())).await;
        let Some(user) = user.filter(|_| ok) else {
            for key in &keys {
                self.limiter.add(key, policy).await?;
            }
            tracing::info!("sign-in failed: wrong email or password");
            return Err(wrong_credentials());
        };
        if user.disabled {
            return Err(AuthError::disabled().into());
        }
        let user = match user.password_hash.as_deref() {
            Some(stored) if password::needs_rehash(stored) => {
                let hash = password::hash(pass).await.map_err(Error::Internal)?;
                let patch = UserPatch {
                    password_hash: Some(hash),
                    ..UserPatch::default()
                };
                self.accounts()
                    .update_user(&user.id, &patch)
                    .await?
                    .unwrap_or(user)
            }
            _ => user,
        };
        self.session(user).await
    }

    /// A new family: an access token and the first refresh token.
    async fn session(&self, user: User) -> Result<Session, Error> {
        let now = self.now();
        let family = Family {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            created_at: now,
            expires_at: later(now, SESSION_LIFETIME),
            revoked: false,
        };
        let (refresh_token, record) = self.refresh_record(&family)?;
        self.accounts().start_family(&family, &record).await?;
        self.access(user, refresh_token).await
    }

    fn refresh_record(&self, family: &Family) -> Result<(String, RefreshToken), Error> {
        let token = secrets::random_token(secrets::REFRESH_PREFIX)
            .map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let record = RefreshToken {
            hash: secrets::sha256_hex(&token),
            family_id: family.id.clone(),
            user_id: family.user_id.clone(),
            created_at: self.now(),
            expires_at: family.expires_at,
            used_at: None,
        };
        Ok((token, record))
    }

    async fn access(&self, user: User, refresh_token: String) -> Result<Session, Error> {
        let tokens = self.auth.local_tokens().ok_or_else(local_only)?;
        let (access_token, expires_in) =
            tokens.issue(&user.id, self.auth.clock().now_secs()).await?;
        Ok(Session {
            user,
            access_token,
            expires_in,
            refresh_token,
        })
    }

    /// Trades a refresh token for a new pair. A token presented a second time revokes its whole
    /// family (someone else has a copy): 401 for both holders from then on.
    pub async fn refresh(&self, token: &str) -> Result<Session, Error> {
        self.require_local()?;
        let refused = |why: &str| -> Error { AuthError::unauthorized(why.to_owned()).into() };
        if !secrets::looks_like(token, secrets::REFRESH_PREFIX) {
            return Err(refused("malformed refresh token"));
        }
        let hash = secrets::sha256_hex(token);
        let Some((record, family)) = self.accounts().refresh_token(&hash).await? else {
            return Err(refused("unknown refresh token"));
        };
        let now = self.now();
        if family.revoked {
            return Err(refused("refresh token of a revoked family"));
        }
        if family.expires_at <= now || record.expires_at <= now {
            return Err(refused("expired refresh token"));
        }
        if record.used_at.is_some() {
            self.accounts().revoke_family(&family.id).await?;
            tracing::warn!(user = %family.user_id, family = %family.id, "a refresh token was used twice: its family is revoked");
            return Err(refused("refresh token reused"));
        }
        let user = self
            .auth
            .directory()
            .user(&family.user_id)
            .await?
            .ok_or_else(|| refused("refresh token of an unknown user"))?;
        if user.disabled {
            return Err(AuthError::disabled().into());
        }
        let (next, next_record) = self.refresh_record(&family)?;
        if !self.accounts().rotate(&hash, now, &next_record).await? {
            self.accounts().revoke_family(&family.id).await?;
            tracing::warn!(user = %family.user_id, family = %family.id, "a refresh token was used twice at once: its family is revoked");
            return Err(refused("refresh token reused"));
        }
        self.access(user, next).await
    }

    /// Signs out: the refresh token's family is revoked (an unknown token changes nothing).
    pub async fn logout(&self, token: &str) -> Result<(), Error> {
        self.require_local()?;
        if !secrets::looks_like(token, secrets::REFRESH_PREFIX) {
            return Ok(());
        }
        if let Some((_, family)) = self
            .accounts()
            .refresh_token(&secrets::sha256_hex(token))
            .await?
        {
            self.accounts().revoke_family(&family.id).await?;
        }
        Ok(())
    }

    /// Users, oldest first (admin).
    pub async fn list_users(&self, page: PageRequest) -> Result<Page<User>, Error> {
        Ok(self.accounts().list_users(&page).await?)
    }

    /// An admin adds a local account.
    pub async fn create_user(&self, input: NewAccount) -> Result<User, Error> {
        self.require_local()?;
        password::check_new_password(&input.password).map_err(unprocessable)?;
        let email = password::normalize_email(&input.email).map_err(unprocessable)?;
        let name = clean_name(input.name.as_deref())?;
        if let Some(tier) = &input.tier {
            check_tier(&self.tiers, tier)?;
        }
        let hash = password::hash(&input.password)
            .await
            .map_err(Error::Internal)?;
        let user = self.new_user(
            email,
            name,
            hash,
            input.role.unwrap_or(Role::User),
            input.tier,
        );
        self.accounts()
            .create_account(&user, false)
            .await
            .map_err(create_error)?;
        tracing::info!(user = %user.id, role = user.role.as_str(), "account added by an admin");
        Ok(user)
    }

    /// An admin changes a user's tier, role or whether they are disabled. Admins cannot disable
    /// or demote themselves (someone must be left to undo it).
    pub async fn change_user(
        &self,
        admin: &Principal,
        id: &str,
        change: Change,
    ) -> Result<User, Error> {
        if let Some(tier) = &change.tier {
            check_tier(&self.tiers, tier)?;
        }
        let no_such_user = || Error::NotFound("No such user.".into());
        self.accounts()
            .get_user(id)
            .await?
            .ok_or_else(no_such_user)?;
        if change.role.is_some() {
            match self.auth.mode() {
                AuthMode::Local => {}
                AuthMode::Oidc => {
                    return Err(Error::Unprocessable(
                        "Roles come from the identity provider's groups (CONVERSA_ADMIN_GROUP)."
                            .into(),
                    ))
                }
                AuthMode::Tokens | AuthMode::None => {
                    return Err(Error::Unprocessable(
                        "Roles come from CONVERSA_ADMINS in this mode.".into(),
                    ))
                }
            }
        }
        if admin.owner.as_str() == id
            && (change.disabled == Some(true) || change.role == Some(Role::User))
        {
            return Err(Error::Unprocessable(
                "You cannot disable yourself or give up your own admin role.".into(),
            ));
        }
        let patch = UserPatch {
            role: change.role,
            tier: change.tier,
            disabled: change.disabled,
            ..UserPatch::default()
        };
        let user = self
            .accounts()
            .update_user(id, &patch)
            .await?
            .ok_or_else(no_such_user)?;
        self.auth.directory().forget_user(id);
        tracing::info!(
            admin = admin.owner.as_str(),
            user = id,
            ?patch,
            "user changed"
        );
        Ok(user)
    }
}

fn closed() -> Error {
    Error::Forbidden("Registration is closed: ask an administrator to add you.".into())
}

fn create_error(e: CreateError) -> Error {
    match e {
        CreateError::Taken => Error::Conflict("An account with this email exists already.".into()),
        CreateError::NotFirst => closed(),
        CreateError::Store(e) => e.into(),
    }
}

fn later(t: Timestamp, by: Duration) -> Timestamp {
    Timestamp::from_millis(t.millis() + i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2))
}

/// The counters of failed sign-ins: per email (hashed: no address in the limiter) and per client
/// address.
fn throttle_keys(email: &str, client: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("signin:email:{}", secrets::sha256_hex(email))];
    if let Some(ip) = client {
        keys.push(format!("signin:ip:{ip}"));
    }
    keys
}

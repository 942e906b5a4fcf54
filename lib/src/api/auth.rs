//! Signing in: `GET /api/auth/config` (what the sign-in page needs), `GET /api/me`, and the local
//! accounts' `POST /api/auth/register`, `/login`, `/refresh`, `/logout`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{client_ip_for, Json};
use super::{ApiError, ErrorBody};
use crate::accounts::User;
use crate::auth::{AuthMode, Principal, Role};
use crate::service::accounts::{AccountService, NewAccount, Session};
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/config", get(config))
        .route("/api/me", get(me))
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
}

/// What the sign-in page needs.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthConfigReply {
    /// How people sign in.
    pub mode: AuthMode,
    /// Whether people may register themselves (`open` while no local account exists).
    #[schema(example = "closed")]
    pub registration: String,
    /// Mode `local` only: no account exists yet, and the first to register becomes the admin.
    pub first_account: bool,
    /// The OpenID provider, in mode `oidc`.
    pub oidc: Option<OidcReply>,
}

/// The OpenID provider, for the authorization-code flow with PKCE.
#[derive(Debug, Serialize, ToSchema)]
pub struct OidcReply {
    /// The issuer.
    pub issuer: String,
    /// The app client id (a public client: no secret).
    pub client_id: String,
    /// Where to send people to sign in.
    pub authorization_endpoint: String,
    /// Where to exchange the code, and refresh tokens.
    pub token_endpoint: String,
    /// Scopes to ask for, separated by spaces.
    pub scopes: String,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The user id (the owner of their conversations and files).
    pub id: String,
    /// Their email, when known.
    pub email: Option<String>,
    /// Their name, when known.
    pub name: Option<String>,
    /// `admin` or `user`.
    pub role: Role,
    /// Their tier.
    pub tier: String,
    /// The server's mode.
    pub auth: AuthMode,
}

impl Me {
    fn of(user: &User, auth: AuthMode) -> Self {
        Self {
            id: user.id.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            role: user.role,
            tier: user.tier.clone(),
            auth,
        }
    }
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Normalised: trimmed, Unicode NFKC, lowercase.
    pub email: String,
    /// At least 10 characters, at most 1024 bytes.
    pub password: String,
    /// Optional, up to 100 characters.
    pub name: Option<String>,
}

/// Email and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The account's email (any case).
    pub email: String,
    /// Its password.
    pub password: String,
}

/// A refresh token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The `refresh_token` of the last sign-in or refresh.
    pub refresh_token: String,
}

/// A signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionReply {
    /// Who signed in.
    pub user: Me,
    /// `Authorization: Bearer <access_token>` on API requests.
    pub access_token: String,
    /// The access token's lifetime in seconds (900).
    pub expires_in: i64,
    /// Trade it for a new pair with `POST /api/auth/refresh`, once.
    pub refresh_token: String,
}

impl From<Session> for SessionReply {
    fn from(s: Session) -> Self {
        Self {
            user: Me::of(&s.user, AuthMode::Local),
            access_token: s.access_token,
            expires_in: s.expires_in,
            refresh_token: s.refresh_token,
        }
    }
}

/// What the sign-in page needs: the mode, whether registration is open, the OpenID provider.
#[utoipa::path(get, path = "/api/auth/config", tag = "auth",
    responses((status = 200, body = AuthConfigReply), (status = 503, body = ErrorBody)))]
pub async fn config(
    State(accounts): State<Arc<AccountService>>,
) -> Result<Json<AuthConfigReply>, ApiError> {
    let s = accounts.sign_in_settings().await?;
    Ok(Json(AuthConfigReply {
        mode: s.mode,
        registration: s.registration.as_str().to_owned(),
        first_account: s.first_account,
        oidc: s.oidc.map(|o| OidcReply {
            issuer: o.issuer,
            client_id: o.client_id,
            authorization_endpoint: o.authorization_endpoint,
            token_endpoint: o.token_endpoint,
            scopes: o.scopes,
        }),
    }))
}

/// The caller: id, email, name, role, tier.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn me(principal: Principal) -> Json<Me> {
    Json(Me {
        id: principal.owner.as_str().to_owned(),
        email: principal.email,
        name: principal.name,
        role: principal.role,
        tier: principal.tier,
        auth: principal.mode,
    })
}

/// Creates a local account and signs it in. The first account is an admin; later ones only
/// while `CONVERSA_REGISTRATION=open`.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterBody,
    responses((status = 201, body = SessionReply), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn register(
    State(accounts): State<Arc<AccountService>>,
    Json(body): Json<RegisterBody>,
) -> Result<(StatusCode, Json<SessionReply>), ApiError> {
    let session = accounts
        .register(NewAccount {
            email: body.email,
            password: body.password,
            name: body.name,
            role: None,
            tier: None,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(session.into())))
}

/// The client's address, for counting failed sign-ins.
pub struct SignInClient(Option<std::net::IpAddr>);

impl axum::extract::FromRequestParts<AppState> for SignInClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(client_ip_for(parts, state)))
    }
}

/// Signs in with email and password. Wrong email or password: 401, the same for both; ten
/// failures for one email or one address in 15 minutes: 429.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = SessionReply), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn login(
    State(accounts): State<Arc<AccountService>>,
    SignInClient(client): SignInClient,
    Json(body): Json<LoginBody>,
) -> Result<Json<SessionReply>, ApiError> {
    let session = accounts.login(&body.email, &body.password, client).await?;
    Ok(Json(session.into()))
}

/// Trades a refresh token for a new pair. Refresh tokens rotate: presenting one a second time
/// revokes its whole family (401).
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = SessionReply), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn refresh(
    State(accounts): State<Arc<AccountService>>,
    Json(body): Json<RefreshBody>,
) -> Result<Json<SessionReply>, ApiError> {
    Ok(Json(accounts.refresh(&body.refresh_token).await?.into()))
}

/// Signs out: the refresh token's family is revoked.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = RefreshBody,
    responses((status = 204, description = "Signed out"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn logout(
    State(accounts): State<Arc<AccountService>>,
    Json(body): Json<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    accounts.logout(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! `/api/admin/*`: what only admins may do. Every route of this router requires an admin — said
//! once, here, by the layer in [`routes`]; admins still never see other people's conversations or
//! files.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::conversations::PageParams;
use super::extract::{Json, Path, Query, RequireAdmin};
use super::{openapi, ApiError, ErrorBody};
use crate::accounts::User;
use crate::auth::Role;
use crate::domain::{Page, Timestamp};
use crate::service::accounts::{AccountService, Change, NewAccount};
use crate::service::conversations::page_request;
use crate::AppState;

/// The routes of this group, all behind the admin check.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", get(list_users).post(create_user))
        .route("/api/admin/users/{id}", patch(change_user))
        .route_layer(axum::middleware::from_extractor::<RequireAdmin>())
}

/// Usage totals of a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    /// Chat turns.
    pub turns: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// Cost in USD, when every model used has a price.
    pub cost_usd: Option<f64>,
}

/// A user as admins see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUser {
    /// The user id.
    pub id: String,
    /// Their email, when known.
    pub email: Option<String>,
    /// Their name, when known.
    pub name: Option<String>,
    /// `admin` or `user`.
    pub role: Role,
    /// Their tier.
    pub tier: String,
    /// A disabled user gets 403 on every route.
    pub disabled: bool,
    /// When they were first seen (or registered).
    pub created_at: Timestamp,
    /// When they were last active (to the minute).
    pub last_active_at: Option<Timestamp>,
    /// This month's usage; `null` until usage is recorded.
    pub usage_this_month: Option<UsageTotals>,
}

impl From<User> for AdminUser {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            tier: u.tier,
            disabled: u.disabled,
            created_at: u.created_at,
            last_active_at: u.last_active_at,
            usage_this_month: None,
        }
    }
}

/// A local account added by an admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    /// Normalised: trimmed, Unicode NFKC, lowercase.
    pub email: String,
    /// At least 10 characters, at most 1024 bytes.
    pub password: String,
    /// Optional, up to 100 characters.
    pub name: Option<String>,
    /// `user` (default) or `admin`.
    pub role: Option<Role>,
    /// Default: `CONVERSA_DEFAULT_TIER`.
    #[schema(schema_with = tier_schema)]
    pub tier: Option<String>,
}

/// A tier's name: 1–64 letters, digits, `-` or `_`.
fn tier_schema() -> utoipa::openapi::schema::Object {
    openapi::string_with_pattern(
        "^[A-Za-z0-9_-]{1,64}$".into(),
        "A tier: 1–64 letters, digits, - or _.",
    )
}

/// What to change about a user; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChangeBody {
    /// A new tier.
    #[schema(schema_with = tier_schema)]
    pub tier: Option<String>,
    /// A new role (local accounts; elsewhere the identity provider decides).
    pub role: Option<Role>,
    /// Disable (every route answers 403) or enable.
    pub disabled: Option<bool>,
}

/// Everyone who has signed in, oldest first.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(PageParams),
    responses((status = 200, body = Page<AdminUser>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_users(
    State(accounts): State<Arc<AccountService>>,
    Query(p): Query<PageParams>,
) -> Result<Json<Page<AdminUser>>, ApiError> {
    let page = accounts
        .list_users(page_request(p.limit, p.cursor)?)
        .await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(AdminUser::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Adds a local account (mode `local`).
#[utoipa::path(post, path = "/api/admin/users", tag = "admin", request_body = NewUserBody,
    responses((status = 201, body = AdminUser), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_user(
    State(accounts): State<Arc<AccountService>>,
    Json(body): Json<NewUserBody>,
) -> Result<(StatusCode, Json<AdminUser>), ApiError> {
    let user = accounts
        .create_user(NewAccount {
            email: body.email,
            password: body.password,
            name: body.name,
            role: body.role,
            tier: body.tier,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Changes a user's tier, role or whether they are disabled.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", params(("id" = String, Path)),
    request_body = UserChangeBody,
    responses((status = 200, body = AdminUser), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn change_user(
    State(accounts): State<Arc<AccountService>>,
    RequireAdmin(admin): RequireAdmin,
    Path(id): Path<String>,
    Json(body): Json<UserChangeBody>,
) -> Result<Json<AdminUser>, ApiError> {
    let user = accounts
        .change_user(
            &admin,
            &id,
            Change {
                tier: body.tier,
                role: body.role,
                disabled: body.disabled,
            },
        )
        .await?;
    Ok(Json(user.into()))
}

//! `/api/admin/*`: what only admins may do — people (list with this month's usage, add, change
//! tier, role or whether they are disabled) and everyone's usage. Every route of this router
//! requires an admin — said once, here, by the layer in [`routes`]; admins still never see other
//! people's conversations or files.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::conversations::PageParams;
use super::extract::{Json, Path, Query, RequireAdmin};
use super::usage::UsageTotals;
use super::{openapi, ApiError, ErrorBody};
use crate::accounts::User;
use crate::auth::Role;
use crate::domain::{Page, Timestamp};
use crate::service::accounts::{AccountService, Change, NewAccount};
use crate::service::conversations::page_request;
use crate::service::usage::{GroupBy, UsageService};
use crate::AppState;

/// The routes of this group, all behind the admin check.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", get(list_users).post(create_user))
        .route("/api/admin/users/{id}", patch(change_user))
        .route("/api/admin/usage", get(usage))
        .route_layer(axum::middleware::from_extractor::<RequireAdmin>())
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
    /// This month's usage (UTC).
    pub usage_this_month: UsageTotals,
}

impl AdminUser {
    /// A user with this month's usage.
    fn of(u: User, usage: crate::ledger::Totals) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            tier: u.tier,
            disabled: u.disabled,
            created_at: u.created_at,
            last_active_at: u.last_active_at,
            usage_this_month: usage.into(),
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

/// Everyone who has signed in, oldest first, with this month's usage.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(PageParams),
    responses((status = 200, body = Page<AdminUser>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_users(
    State(accounts): State<Arc<AccountService>>,
    State(usage): State<Arc<UsageService>>,
    Query(p): Query<PageParams>,
) -> Result<Json<Page<AdminUser>>, ApiError> {
    let page = accounts
        .list_users(page_request(p.limit, p.cursor)?)
        .await?;
    let month = usage.this_month_by_user().await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|u| {
                let used = month.get(&u.id).copied().unwrap_or_default();
                AdminUser::of(u, used)
            })
            .collect(),
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
    Ok((
        StatusCode::CREATED,
        Json(AdminUser::of(user, crate::ledger::Totals::default())),
    ))
}

/// Changes a user's tier, role or whether they are disabled.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", params(("id" = String, Path)),
    request_body = UserChangeBody,
    responses((status = 200, body = AdminUser), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn change_user(
    State(accounts): State<Arc<AccountService>>,
    State(usage): State<Arc<UsageService>>,
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
    let used = usage
        .this_month_by_user()
        .await?
        .get(&user.id)
        .copied()
        .unwrap_or_default();
    Ok(Json(AdminUser::of(user, used)))
}

/// How everyone's usage is grouped.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupByParam {
    /// Per user id.
    User,
    /// Per model id.
    Model,
    /// Per UTC day.
    Day,
}

/// The days and the grouping of everyone's usage.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminUsageParams {
    /// The first day, `YYYY-MM-DD` (UTC). Default: the first of this month.
    #[param(format = Date)]
    pub from: Option<String>,
    /// The last day, included. Default: the last of this month. At most 400 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
    /// `user` (default), `model` or `day`.
    #[param(inline)]
    pub group_by: Option<GroupByParam>,
}

/// One group of everyone's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageGroup {
    /// The user id, the model id or the day (`YYYY-MM-DD`).
    pub key: String,
    /// Answers.
    pub turns: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// Cost in USD; `null` when a model used has no price.
    pub cost_usd: Option<f64>,
}

/// `GET /api/admin/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUsage {
    /// The groups, sorted by key.
    pub items: Vec<UsageGroup>,
    /// Everything in the range.
    pub totals: UsageTotals,
}

/// Everyone's usage in a range of days, grouped by user, model or day.
#[utoipa::path(get, path = "/api/admin/usage", tag = "admin", params(AdminUsageParams),
    responses((status = 200, body = AdminUsage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn usage(
    State(usage): State<Arc<UsageService>>,
    Query(p): Query<AdminUsageParams>,
) -> Result<Json<AdminUsage>, ApiError> {
    let range = usage.range(p.from.as_deref(), p.to.as_deref())?;
    let group_by = match p.group_by.unwrap_or(GroupByParam::User) {
        GroupByParam::User => GroupBy::User,
        GroupByParam::Model => GroupBy::Model,
        GroupByParam::Day => GroupBy::Day,
    };
    let (groups, totals) = usage.everyone(range, group_by).await?;
    Ok(Json(AdminUsage {
        items: groups
            .into_iter()
            .map(|(key, t)| {
                let t = UsageTotals::from(t);
                UsageGroup {
                    key,
                    turns: t.turns,
                    prompt_tokens: t.prompt_tokens,
                    completion_tokens: t.completion_tokens,
                    cost_usd: t.cost_usd,
                }
            })
            .collect(),
        totals: totals.into(),
    }))
}

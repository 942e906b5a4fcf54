//! `GET /api/usage`: the caller's usage by day and model, and their budget. The admin view of
//! everyone's usage is in `api::admin`; both speak in the [`UsageTotals`] defined here.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Json, Query};
use super::{ApiError, ErrorBody};
use crate::auth::Principal;
use crate::domain::Timestamp;
use crate::ledger::{nanos_to_usd, TierLimits, Totals};
use crate::service::usage::{DayRange, UsageService};
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/usage", get(usage))
}

/// Usage added up.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageTotals {
    /// Answers (each has a receipt).
    pub turns: u64,
    /// Prompt tokens (titles included).
    pub prompt_tokens: u64,
    /// Answer tokens (titles included).
    pub completion_tokens: u64,
    /// Cost in USD; `null` when a model used has no price.
    pub cost_usd: Option<f64>,
}

impl From<Totals> for UsageTotals {
    fn from(t: Totals) -> Self {
        Self {
            turns: t.turns,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cost_usd: t.cost_usd(),
        }
    }
}

/// One day's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayUsage {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Answers.
    pub turns: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// Cost in USD; `null` when a model used has no price.
    pub cost_usd: Option<f64>,
}

/// One model's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelUsage {
    /// The model's id.
    pub model: String,
    /// Answers.
    pub turns: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// Cost in USD; `null` when the model has no price.
    pub cost_usd: Option<f64>,
}

/// What counts against each budget now (settled usage and answers in progress), by the name of
/// the limit it is measured against.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetUsed {
    /// Tokens today.
    pub tokens_per_day: u64,
    /// Tokens this month.
    pub tokens_per_month: u64,
    /// USD today.
    pub usd_per_day: f64,
    /// USD this month.
    pub usd_per_month: f64,
}

/// When the budgets reset (UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetResets {
    /// The day's budgets: the next midnight.
    pub day: Timestamp,
    /// The month's budgets: the first of next month.
    pub month: Timestamp,
}

/// The caller's budget.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetReply {
    /// Their tier.
    pub tier: String,
    /// Its limits (absent: no limit).
    pub limits: TierLimits,
    /// What counts against them now.
    pub used: BudgetUsed,
    /// When they reset.
    pub resets_at: BudgetResets,
}

/// `GET /api/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReply {
    /// The first day reported (`YYYY-MM-DD`, UTC).
    pub from: String,
    /// The last day reported (included).
    pub to: String,
    /// Everything in the range.
    pub totals: UsageTotals,
    /// Per day with usage, oldest first.
    pub by_day: Vec<DayUsage>,
    /// Per model.
    pub by_model: Vec<ModelUsage>,
    /// The caller's budget now.
    pub budget: BudgetReply,
}

/// The days a report covers.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// The first day, `YYYY-MM-DD` (UTC; an RFC 3339 time names its day). Default: the first of
    /// this month.
    #[param(format = Date)]
    pub from: Option<String>,
    /// The last day, included. Default: the last of this month. At most 400 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
}

/// Dates as the reply shows them.
pub(crate) fn ends(range: &DayRange) -> (String, String) {
    (
        range.from.format("%Y-%m-%d").to_string(),
        range.to.format("%Y-%m-%d").to_string(),
    )
}

/// The caller's usage (default: this month) and their budget.
#[utoipa::path(get, path = "/api/usage", tag = "usage", params(RangeParams),
    responses((status = 200, body = UsageReply), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn usage(
    State(usage): State<Arc<UsageService>>,
    who: Principal,
    Query(p): Query<RangeParams>,
) -> Result<Json<UsageReply>, ApiError> {
    let range = usage.range(p.from.as_deref(), p.to.as_deref())?;
    let report = usage.report(&who, range).await?;
    let (from, to) = ends(&report.range);
    let totals = |t: &Totals| UsageTotals::from(*t);
    Ok(Json(UsageReply {
        from,
        to,
        totals: totals(&report.totals),
        by_day: report
            .by_day
            .iter()
            .map(|(day, t)| {
                let t = totals(t);
                DayUsage {
                    day: day.clone(),
                    turns: t.turns,
                    prompt_tokens: t.prompt_tokens,
                    completion_tokens: t.completion_tokens,
                    cost_usd: t.cost_usd,
                }
            })
            .collect(),
        by_model: report
            .by_model
            .iter()
            .map(|(model, t)| {
                let t = totals(t);
                ModelUsage {
                    model: model.clone(),
                    turns: t.turns,
                    prompt_tokens: t.prompt_tokens,
                    completion_tokens: t.completion_tokens,
                    cost_usd: t.cost_usd,
                }
            })
            .collect(),
        budget: BudgetReply {
            tier: report.tier,
            limits: report.limits,
            used: BudgetUsed {
                tokens_per_day: report.used.day.tokens,
                tokens_per_month: report.used.month.tokens,
                usd_per_day: nanos_to_usd(report.used.day.usd_nanos),
                usd_per_month: nanos_to_usd(report.used.month.usd_nanos),
            },
            resets_at: BudgetResets {
                day: Timestamp::from_millis(report.resets_at_ms.0),
                month: Timestamp::from_millis(report.resets_at_ms.1),
            },
        },
    }))
}

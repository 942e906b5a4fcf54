//! Budgets and usage: the tiers' limits over the [`Ledger`], as the chat turn and the usage routes
//! need them.
//!
//! [`Budgets`] is the policy a turn goes through: the turns per minute of the caller's tier, and a
//! reservation of the worst case before a model is called — refused, when it does not fit, with
//! [`Error::Quota`] saying the numbers in words and when the budget resets. [`UsageService`]
//! reports usage: the caller's (`/api/usage`) and everyone's (`/api/admin/usage`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};

use crate::auth::Principal;
use crate::ledger::{
    nanos_to_usd, usd_to_nanos, Amount, Ledger, Limit, Periods, Refusal, Reservation, Reserved,
    Spend, TierLimits, Tiers, Totals, Used,
};
use crate::limits::Clock;
use crate::llm::prices::cost_nanos;
use crate::llm::ModelEntry;
use crate::service::Error;

/// The longest range `/api/usage` and `/api/admin/usage` report, in days.
pub const MAX_RANGE_DAYS: i64 = 400;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A wait in words: `3 h 12 min`, `2 d 5 h`, `1 min`.
pub fn wait_in_words(secs: u64) -> String {
    let mins = secs.div_ceil(60).max(1);
    let (d, h, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (d, h, m) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn money(nanos: u64) -> String {
    format!("${:.2}", nanos_to_usd(nanos))
}

/// What a person is told when a budget refuses a turn.
pub fn refusal_message(r: &Refusal, now_ms: i64) -> String {
    let when = match r.limit {
        Limit::TokensPerDay | Limit::UsdPerDay => "today",
        Limit::TokensPerMonth | Limit::UsdPerMonth => "this month",
    };
    let period = match r.limit {
        Limit::TokensPerDay | Limit::UsdPerDay => "a day",
        Limit::TokensPerMonth | Limit::UsdPerMonth => "a month",
    };
    let wait = wait_in_words(retry_after_secs(r, now_ms));
    let (used, allowed, asked) = if r.limit.is_usd() {
        (money(r.used), money(r.allowed), money(r.asked))
    } else {
        (
            thousands(r.used),
            format!("{} tokens", thousands(r.allowed)),
            format!("{} tokens", thousands(r.asked)),
        )
    };
    if r.asked > r.allowed {
        return format!(
            "This message could take up to {asked}, more than your budget of {allowed} {period}. \
             Start a new conversation or attach less."
        );
    }
    format!("You have used {used} of your {allowed} {when}; the budget resets in {wait}.")
}

/// Seconds until the refused limit's period resets (at least 1).
pub fn retry_after_secs(r: &Refusal, now_ms: i64) -> u64 {
    u64::try_from((r.resets_at_ms - now_ms).max(1000))
        .unwrap_or(1000)
        .div_ceil(1000)
}

/// What a model call may cost at most: `prompt` tokens and `answer_cap` tokens of answer, priced
/// by `model` (0 dollars for a model without a price).
pub fn worst_case(model: &ModelEntry, prompt: u64, answer_cap: u64) -> Amount {
    Amount {
        tokens: prompt.saturating_add(answer_cap),
        usd_nanos: model.price.map_or(0, |p| cost_nanos(p, prompt, answer_cap)),
    }
}

/// What a receipt says was spent, as the ledger counts it.
pub fn spend_of(receipt: &crate::domain::Receipt, turns: u64) -> Spend {
    Spend {
        model: receipt.model.clone(),
        turns,
        prompt_tokens: receipt.prompt_tokens,
        completion_tokens: receipt.completion_tokens,
        cost_nanos: receipt.cost_usd.map(usd_to_nanos),
    }
}

/// The tiers' limits over the ledger, on a clock. Cheap to clone.
#[derive(Clone)]
pub struct Budgets {
    ledger: Arc<dyn Ledger>,
    tiers: Arc<Tiers>,
    default_tier: String,
    clock: Arc<dyn Clock>,
}

/// A reservation held for a model call; settle it when the call ends.
pub struct Hold {
    ledger: Arc<dyn Ledger>,
    reservation: Reservation,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("reservation", &self.reservation)
            .finish_non_exhaustive()
    }
}

impl Hold {
    /// What it holds.
    pub fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// Settles it to what was really spent. A failure is logged: the reservation then expires,
    /// and the usage of this call goes unrecorded.
    pub async fn settle(self, spend: Spend) {
        if let Err(e) = self.ledger.settle(&self.reservation, &spend).await {
            tracing::error!(error = %e, owner = %self.reservation.owner, model = %spend.model,
                "could not settle a reservation; it will expire");
        }
    }
}

impl Budgets {
    /// Budgets of `tiers` (people whose tier no longer exists get `default_tier`'s) over
    /// `ledger`, on `clock`.
    pub fn new(
        ledger: Arc<dyn Ledger>,
        tiers: Tiers,
        default_tier: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            ledger,
            tiers: Arc::new(tiers),
            default_tier: default_tier.to_owned(),
            clock,
        }
    }

    /// The ledger underneath.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// The tiers.
    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    /// Now, on this policy's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The limits of a tier.
    pub fn limits(&self, tier: &str) -> TierLimits {
        self.tiers.limits(tier, &self.default_tier)
    }

    /// The chat turns per minute of a tier: its own, else `global`.
    pub fn turns_per_minute(&self, tier: &str, global: u32) -> u32 {
        self.limits(tier).turns_per_minute.unwrap_or(global)
    }

    /// Holds `worst` against the caller's budgets, or refuses with [`Error::Quota`].
    pub async fn reserve(&self, who: &Principal, worst: Amount) -> Result<Hold, Error> {
        let budget = self.limits(&who.tier).budget();
        let now = self.now_ms();
        match self
            .ledger
            .reserve(who.owner.as_str(), worst, &budget, now)
            .await?
        {
            Reserved::Granted(reservation) => Ok(Hold {
                ledger: Arc::clone(&self.ledger),
                reservation,
            }),
            Reserved::Refused(r) => {
                tracing::info!(user = who.owner.as_str(), tier = %who.tier, limit = r.limit.as_str(),
                    used = r.used, allowed = r.allowed, asked = r.asked, "a turn was refused by its budget");
                Err(Error::Quota {
                    retry_after_secs: retry_after_secs(&r, now),
                    message: refusal_message(&r, now),
                })
            }
        }
    }
}

/// A range of days, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// The first day.
    pub from: NaiveDate,
    /// The last day.
    pub to: NaiveDate,
}

impl DayRange {
    fn ends(&self) -> (String, String) {
        (day(self.from), day(self.to))
    }
}

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A day as the query gives it: `YYYY-MM-DD`, or an RFC 3339 time (its UTC day).
fn parse_day(name: &str, s: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(|t| t.with_timezone(&Utc).date_naive())
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "`{name}` must be a day (YYYY-MM-DD) or an RFC 3339 time."
            ))
        })
}

/// The range a query asks for: `from` and `to` (both included; default: this month, UTC).
/// `from` after `to` is invalid (400); more than [`MAX_RANGE_DAYS`] days is unprocessable (422).
pub fn day_range(from: Option<&str>, to: Option<&str>, now_ms: i64) -> Result<DayRange, Error> {
    let today = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_default()
        .date_naive();
    let month_start = today.with_day(1).unwrap_or(today);
    let p = Periods::at(now_ms);
    let month_end = Utc
        .timestamp_millis_opt(p.month_ends_ms - 1)
        .single()
        .unwrap_or_default()
        .date_naive();
    let from = from
        .map(|s| parse_day("from", s))
        .transpose()?
        .unwrap_or(month_start);
    let to = to
        .map(|s| parse_day("to", s))
        .transpose()?
        .unwrap_or(month_end);
    if from > to {
        return Err(Error::Invalid(format!(
            "`from` ({}) is after `to` ({}).",
            day(from),
            day(to)
        )));
    }
    if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
        return Err(Error::Unprocessable(format!(
            "The range is {} days long; at most {MAX_RANGE_DAYS} days are reported at once.",
            (to - from).num_days() + 1
        )));
    }
    Ok(DayRange { from, to })
}

/// The caller's usage and budget.
#[derive(Debug, Clone)]
pub struct Report {
    /// The days reported.
    pub range: DayRange,
    /// Everything in the range.
    pub totals: Totals,
    /// Per day with usage, oldest first.
    pub by_day: Vec<(String, Totals)>,
    /// Per model, by id.
    pub by_model: Vec<(String, Totals)>,
    /// The caller's tier.
    pub tier: String,
    /// Its limits.
    pub limits: TierLimits,
    /// What counts against them now.
    pub used: Used,
    /// When the day's and the month's budgets reset (ms since the epoch).
    pub resets_at_ms: (i64, i64),
}

/// How admins group usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Per user id.
    User,
    /// Per model id.
    Model,
    /// Per UTC day.
    Day,
}

impl GroupBy {
    /// Parses the query's value (default: `user`).
    pub fn parse(s: Option<&str>) -> Result<Self, Error> {
        match s.map(str::trim) {
            None | Some("user") => Ok(GroupBy::User),
            Some("model") => Ok(GroupBy::Model),
            Some("day") => Ok(GroupBy::Day),
            Some(other) => Err(Error::Invalid(format!(
                "`group_by` must be user, model or day, not {:?}.",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// The usage reports. Cheap to clone.
#[derive(Clone)]
pub struct UsageService {
    budgets: Budgets,
}

fn grouped(rows: impl Iterator<Item = (String, Totals)>) -> Vec<(String, Totals)> {
    let mut map: BTreeMap<String, Totals> = BTreeMap::new();
    for (k, t) in rows {
        map.entry(k).or_default().add(&t);
    }
    map.into_iter().collect()
}

impl UsageService {
    /// Reports over `budgets` (its ledger, tiers and clock).
    pub fn new(budgets: Budgets) -> Self {
        Self { budgets }
    }

    /// The budgets (limits per tier).
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// The range a query asks for, on this service's clock.
    pub fn range(&self, from: Option<&str>, to: Option<&str>) -> Result<DayRange, Error> {
        day_range(from, to, self.budgets.now_ms())
    }

    /// The caller's usage in `range`, and their budget now.
    pub async fn report(&self, who: &Principal, range: DayRange) -> Result<Report, Error> {
        let (from, to) = range.ends();
        let rows = self
            .budgets
            .ledger
            .usage(Some(who.owner.as_str()), &from, &to)
            .await?;
        let mut totals = Totals::default();
        for r in &rows {
            totals.add(&r.totals);
        }
        let now = self.budgets.now_ms();
        let used = self.budgets.ledger.used(who.owner.as_str(), now).await?;
        let p = Periods::at(now);
        Ok(Report {
            range,
            totals,
            by_day: grouped(rows.iter().map(|r| (r.day.clone(), r.totals))),
            by_model: grouped(rows.iter().map(|r| (r.model.clone(), r.totals))),
            tier: who.tier.clone(),
            limits: self.budgets.limits(&who.tier),
            used,
            resets_at_ms: (p.day_ends_ms, p.month_ends_ms),
        })
    }

    /// Everyone's usage in `range`, grouped: the groups (sorted by key) and the totals.
    pub async fn everyone(
        &self,
        range: DayRange,
        group_by: GroupBy,
    ) -> Result<(Vec<(String, Totals)>, Totals), Error> {
        let (from, to) = range.ends();
        let rows = self.budgets.ledger.usage(None, &from, &to).await?;
        let mut totals = Totals::default();
        for r in &rows {
            totals.add(&r.totals);
        }
        let items = grouped(rows.into_iter().map(|r| {
            let key = match group_by {
                GroupBy::User => r.owner,
                GroupBy::Model => r.model,
                GroupBy::Day => r.day,
            };
            (key, r.totals)
        }));
        Ok((items, totals))
    }

    /// This month's usage per user.
    pub async fn this_month_by_user(&self) -> Result<HashMap<String, Totals>, Error> {
        let range = self.range(None, None)?;
        Ok(self
            .everyone(range, GroupBy::User)
            .await?
            .0
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// 2026-12-01T20:48:00Z.
    const NOW: i64 = 1_796_158_080_000;

    #[test]
    fn numbers_and_waits_in_words() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(98_400), "98,400");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(wait_in_words(3 * 3600 + 12 * 60), "3 h 12 min");
        assert_eq!(wait_in_words(1), "1 min");
        assert_eq!(wait_in_words(7200), "2 h");
        assert_eq!(wait_in_words(2 * 86_400 + 5 * 3600), "2 d 5 h");
    }

    #[test]
    fn a_refusal_says_the_numbers_and_when_it_resets() {
        let p = Periods::at(NOW);
        let r = Refusal {
            limit: Limit::TokensPerDay,
            used: 98_400,
            allowed: 100_000,
            asked: 2_000,
            resets_at_ms: p.day_ends_ms,
        };
        assert_eq!(retry_after_secs(&r, NOW), 3 * 3600 + 12 * 60);
        assert_eq!(
            refusal_message(&r, NOW),
            "You have used 98,400 of your 100,000 tokens today; the budget resets in 3 h 12 min."
        );
        let r = Refusal {
            limit: Limit::UsdPerMonth,
            used: 19_500_000_000,
            allowed: 20_000_000_000,
            asked: 600_000_000,
            resets_at_ms: p.month_ends_ms,
        };
        assert_eq!(
            refusal_message(&r, NOW),
            "You have used $19.50 of your $20.00 this month; the budget resets in 30 d 3 h."
        );
        let r = Refusal {
            limit: Limit::TokensPerDay,
            used: 0,
            allowed: 1_000,
            asked: 5_000,
            resets_at_ms: p.day_ends_ms,
        };
        assert!(refusal_message(&r, NOW).contains("up to 5,000 tokens"));
    }

    #[test]
    fn ranges_default_to_this_month_and_are_checked() {
        let r = day_range(None, None, NOW).unwrap();
        assert_eq!(
            (day(r.from), day(r.to)),
            ("2026-12-01".into(), "2026-12-31".into())
        );
        let r = day_range(Some("2026-11-05"), Some("2026-11-30T23:00:00Z"), NOW).unwrap();
        assert_eq!(
            (day(r.from), day(r.to)),
            ("2026-11-05".into(), "2026-11-30".into())
        );
        assert!(matches!(
            day_range(Some("2026-12-02"), Some("2026-12-01"), NOW),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            day_range(Some("yesterday"), None, NOW),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            day_range(Some("2025-01-01"), Some("2026-02-05"), NOW),
            Err(Error::Unprocessable(_))
        ));
        // 400 days exactly are fine.
        assert!(day_range(Some("2025-01-01"), Some("2026-02-04"), NOW).is_ok());
    }

    #[test]
    fn group_by_is_one_of_three() {
        assert_eq!(GroupBy::parse(None).unwrap(), GroupBy::User);
        assert_eq!(GroupBy::parse(Some("model")).unwrap(), GroupBy::Model);
        assert!(GroupBy::parse(Some("tier")).is_err());
    }
}

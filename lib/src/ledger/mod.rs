//! The `Ledger` port: budgets that hold and usage that adds up.
//!
//! Before a model is called, the turn **reserves** its worst case (prompt tokens plus the answer
//! cap, priced) against the caller's budgets: the reservation is added to the counters of the day
//! and the month (UTC) at once, and only when every limited counter stays within its limit — one
//! atomic step on every adapter, so concurrent turns of one user (on any instance) never reserve
//! past a budget. When the answer ends the reservation is **settled**: the counters move to the real
//! usage, and the usage of that day and model grows by it. A reservation that is never settled (its
//! instance crashed) **expires** after [`HOLD_TTL_MS`]: the next reservation or read of the owner's
//! counters gives its amount back, so a crash never locks a budget.
//!
//! Adapters: SQLite (one transaction), DynamoDB (conditional updates in one transaction) and
//! MongoDB (conditional `$inc` with undo), in the same database as the store; each passes the
//! contract suite in `ledger::contract`. The policy — which limit a reservation breaks — is
//! [`check`], shared by all of them. Costs are kept in whole nano-dollars so sums are exact.

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate, TimeZone, Utc};

use crate::store::StoreError;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod tiers;

pub use tiers::{TierLimits, Tiers};

/// How long a reservation holds its amount unless it is settled (longer than any turn).
pub const HOLD_TTL_MS: i64 = 15 * 60 * 1000;

/// Nano-dollars per dollar.
pub const NANOS_PER_USD: f64 = 1e9;

/// Dollars as whole nano-dollars (rounded; negative and non-finite amounts are 0).
pub fn usd_to_nanos(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * NANOS_PER_USD).round() as u64
    } else {
        0
    }
}

/// Whole nano-dollars as dollars.
pub fn nanos_to_usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

/// Tokens and money together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amount {
    /// Prompt and answer tokens.
    pub tokens: u64,
    /// Cost in nano-dollars.
    pub usd_nanos: u64,
}

/// The limits a reservation must stay within; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    /// Tokens per UTC day.
    pub tokens_per_day: Option<u64>,
    /// Tokens per UTC month.
    pub tokens_per_month: Option<u64>,
    /// Nano-dollars per UTC day.
    pub usd_nanos_per_day: Option<u64>,
    /// Nano-dollars per UTC month.
    pub usd_nanos_per_month: Option<u64>,
}

impl Budget {
    /// Every limit that is set, with its value.
    pub fn limits(&self) -> Vec<(Limit, u64)> {
        [
            (Limit::TokensPerDay, self.tokens_per_day),
            (Limit::TokensPerMonth, self.tokens_per_month),
            (Limit::UsdPerDay, self.usd_nanos_per_day),
            (Limit::UsdPerMonth, self.usd_nanos_per_month),
        ]
        .into_iter()
        .filter_map(|(l, v)| v.map(|v| (l, v)))
        .collect()
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.limits().is_empty()
    }

    /// The most of `what` (tokens or nano-dollars) the counter of `period` may hold before a
    /// reservation of `amount`, per limited dimension: `(tokens, usd_nanos)`. `Err` when `amount`
    /// alone breaks a limit.
    pub fn ceilings(
        &self,
        period: Period,
        amount: Amount,
    ) -> Result<(Option<u64>, Option<u64>), Limit> {
        let (t, u, lt, lu) = match period {
            Period::Day => (
                self.tokens_per_day,
                self.usd_nanos_per_day,
                Limit::TokensPerDay,
                Limit::UsdPerDay,
            ),
            Period::Month => (
                self.tokens_per_month,
                self.usd_nanos_per_month,
                Limit::TokensPerMonth,
                Limit::UsdPerMonth,
            ),
        };
        let tokens = t
            .map(|l| l.checked_sub(amount.tokens).ok_or(lt))
            .transpose()?;
        let usd = u
            .map(|l| l.checked_sub(amount.usd_nanos).ok_or(lu))
            .transpose()?;
        Ok((tokens, usd))
    }
}

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A UTC day.
    Day,
    /// A UTC month.
    Month,
}

/// One of a tier's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `tokens_per_day`.
    TokensPerDay,
    /// `tokens_per_month`.
    TokensPerMonth,
    /// `usd_per_day`.
    UsdPerDay,
    /// `usd_per_month`.
    UsdPerMonth,
}

impl Limit {
    /// Its name in `CONVERSA_TIERS` and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::TokensPerDay => "tokens_per_day",
            Limit::TokensPerMonth => "tokens_per_month",
            Limit::UsdPerDay => "usd_per_day",
            Limit::UsdPerMonth => "usd_per_month",
        }
    }

    /// The period it counts in.
    pub fn period(self) -> Period {
        match self {
            Limit::TokensPerDay | Limit::UsdPerDay => Period::Day,
            Limit::TokensPerMonth | Limit::UsdPerMonth => Period::Month,
        }
    }

    /// Whether it counts money (else tokens).
    pub fn is_usd(self) -> bool {
        matches!(self, Limit::UsdPerDay | Limit::UsdPerMonth)
    }

    /// What of `amount` it counts.
    pub fn of(self, amount: Amount) -> u64 {
        if self.is_usd() {
            amount.usd_nanos
        } else {
            amount.tokens
        }
    }
}

/// The day and month (UTC) of a moment, and when they end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// `YYYY-MM`.
    pub month: String,
    /// When the day ends, in milliseconds since the epoch.
    pub day_ends_ms: i64,
    /// When the month ends, in milliseconds since the epoch.
    pub month_ends_ms: i64,
}

fn midnight_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| Utc.from_utc_datetime(&t).timestamp_millis())
        .unwrap_or(i64::MAX / 2)
}

impl Periods {
    /// The periods `now_ms` falls in.
    pub fn at(now_ms: i64) -> Self {
        let date = Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_default()
            .date_naive();
        let next_day = date.succ_opt().unwrap_or(date);
        let (y, m) = if date.month() == 12 {
            (date.year() + 1, 1)
        } else {
            (date.year(), date.month() + 1)
        };
        let next_month = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(next_day);
        Self {
            day: date.format("%Y-%m-%d").to_string(),
            month: date.format("%Y-%m").to_string(),
            day_ends_ms: midnight_ms(next_day),
            month_ends_ms: midnight_ms(next_month),
        }
    }

    /// When `period` ends.
    pub fn ends_ms(&self, period: Period) -> i64 {
        match period {
            Period::Day => self.day_ends_ms,
            Period::Month => self.month_ends_ms,
        }
    }

    /// The month of a day (`YYYY-MM-DD` → `YYYY-MM`).
    pub fn month_of(day: &str) -> &str {
        day.get(..7).unwrap_or(day)
    }
}

/// An amount held against an owner's budgets until it is settled or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Opaque id.
    pub id: String,
    /// Whose budgets.
    pub owner: String,
    /// The day counter it was added to (`YYYY-MM-DD`).
    pub day: String,
    /// The month counter it was added to (`YYYY-MM`).
    pub month: String,
    /// What it holds.
    pub amount: Amount,
    /// When it stops holding, in milliseconds since the epoch.
    pub expires_at_ms: i64,
}

impl Reservation {
    /// A new reservation of `amount` for `owner`, made at `now_ms`.
    pub fn new(owner: &str, amount: Amount, now_ms: i64) -> Self {
        let p = Periods::at(now_ms);
        Self {
            id: uuid::Uuid::now_v7().simple().to_string(),
            owner: owner.to_owned(),
            day: p.day,
            month: p.month,
            amount,
            expires_at_ms: now_ms.saturating_add(HOLD_TTL_MS),
        }
    }
}

/// Why a reservation was refused: the first limit it would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The limit.
    pub limit: Limit,
    /// What its counter holds now (settled usage and reservations in flight).
    pub used: u64,
    /// The limit's value.
    pub allowed: u64,
    /// What was asked for.
    pub asked: u64,
    /// When its period ends, in milliseconds since the epoch.
    pub resets_at_ms: i64,
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// It fits: settle it when the answer ends.
    Granted(Reservation),
    /// It does not fit.
    Refused(Refusal),
}

/// What a model call really took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    /// The id of the model that answered.
    pub model: String,
    /// 1 for an answer with a receipt, 0 otherwise (titles, answers no model started).
    pub turns: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// Cost in nano-dollars; `None` when the model has no price.
    pub cost_nanos: Option<u64>,
}

impl Spend {
    /// Nothing (a turn that failed before any model answered).
    pub fn nothing(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            turns: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_nanos: Some(0),
        }
    }

    /// What it counts against budgets.
    pub fn amount(&self) -> Amount {
        Amount {
            tokens: self.prompt_tokens.saturating_add(self.completion_tokens),
            usd_nanos: self.cost_nanos.unwrap_or(0),
        }
    }

    /// Whether it is worth a usage row.
    pub fn is_empty(&self) -> bool {
        self.turns == 0 && self.prompt_tokens == 0 && self.completion_tokens == 0
    }

    /// Its totals.
    pub fn totals(&self) -> Totals {
        Totals {
            turns: self.turns,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_nanos: self.cost_nanos.unwrap_or(0),
            unpriced: u64::from(self.cost_nanos.is_none() && !self.is_empty()),
        }
    }
}

/// Usage added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Answers with a receipt.
    pub turns: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// Cost of the priced calls, in nano-dollars.
    pub cost_nanos: u64,
    /// Calls to models without a price.
    pub unpriced: u64,
}

impl Totals {
    /// Adds `other`.
    pub fn add(&mut self, other: &Totals) {
        self.turns += other.turns;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_nanos += other.cost_nanos;
        self.unpriced += other.unpriced;
    }

    /// The cost in dollars; `None` when a call had no price.
    pub fn cost_usd(&self) -> Option<f64> {
        (self.unpriced == 0).then(|| nanos_to_usd(self.cost_nanos))
    }
}

/// The usage of one owner, day and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Whose.
    pub owner: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The model id.
    pub model: String,
    /// What was used.
    pub totals: Totals,
}

/// What counts against an owner's budgets now: settled usage and reservations in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Used {
    /// This UTC day.
    pub day: Amount,
    /// This UTC month.
    pub month: Amount,
}

impl Used {
    /// What the counter of `limit` holds.
    pub fn of(&self, limit: Limit) -> u64 {
        match limit.period() {
            Period::Day => limit.of(self.day),
            Period::Month => limit.of(self.month),
        }
    }
}

/// The policy every adapter applies: the first limit of `budget` that `amount` added to `used`
/// would break, or `None` when it fits.
pub fn check(budget: &Budget, used: &Used, amount: Amount, periods: &Periods) -> Option<Refusal> {
    budget.limits().into_iter().find_map(|(limit, allowed)| {
        let now = used.of(limit);
        let asked = limit.of(amount);
        (now.saturating_add(asked) > allowed).then(|| Refusal {
            limit,
            used: now,
            allowed,
            asked,
            resets_at_ms: periods.ends_ms(limit.period()),
        })
    })
}

/// Tries of a reservation that keeps meeting concurrent ones.
#[cfg(any(feature = "dynamodb", feature = "mongodb"))]
const ATTEMPTS: usize = 40;

/// The steps of a reservation on a store that writes one item atomically but has no transaction
/// over several: hold against each counter with a condition, give expired holds back, read the
/// counters to say which limit is broken.
#[cfg(any(feature = "dynamodb", feature = "mongodb"))]
#[async_trait]
pub(crate) trait Holds: Send + Sync {
    /// Tries to hold `r` once: `false` when a counter is full.
    async fn try_hold(&self, r: &Reservation, budget: &Budget) -> Result<bool, StoreError>;

    /// Gives back what the owner's holds that expired by `now_ms` hold; how many there were.
    async fn release_expired(&self, owner: &str, now_ms: i64) -> Result<usize, StoreError>;

    /// The owner's counters of the periods `p`.
    async fn counters(&self, owner: &str, p: &Periods) -> Result<Used, StoreError>;
}

/// [`Ledger::reserve`] by [`Holds`]: a hold that does not fit gives the owner's expired holds back
/// and tries again once; then the counters say which limit it breaks, or (when a concurrent turn
/// settled meanwhile) it tries again, [`ATTEMPTS`] times at most.
#[cfg(any(feature = "dynamodb", feature = "mongodb"))]
pub(crate) async fn reserve_by_holding<H: Holds + ?Sized>(
    h: &H,
    owner: &str,
    amount: Amount,
    budget: &Budget,
    now_ms: i64,
) -> Result<Reserved, StoreError> {
    let periods = Periods::at(now_ms);
    let mut released = false;
    for _ in 0..ATTEMPTS {
        let r = Reservation::new(owner, amount, now_ms);
        if h.try_hold(&r, budget).await? {
            return Ok(Reserved::Granted(r));
        }
        // It does not fit: holds that expired may be what fills the budget.
        if !released {
            released = true;
            if h.release_expired(owner, now_ms).await? > 0 {
                continue;
            }
        }
        let used = h.counters(owner, &periods).await?;
        if let Some(refusal) = check(budget, &used, amount, &periods) {
            return Ok(Reserved::Refused(refusal));
        }
        // A concurrent turn settled or undid meanwhile: try again.
        tokio::task::yield_now().await;
    }
    Err(StoreError::Unavailable(
        "the budget counters are too busy; try again".into(),
    ))
}

/// Budgets and usage.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Holds `amount` against the owner's counters of the day and month of `now_ms`, if it keeps
    /// every limit of `budget`; else says which limit it breaks. Reservations of the owner that
    /// expired by `now_ms` give their amounts back first. Atomic: concurrent reservations of one
    /// owner never hold more than a limit together.
    async fn reserve(
        &self,
        owner: &str,
        amount: Amount,
        budget: &Budget,
        now_ms: i64,
    ) -> Result<Reserved, StoreError>;

    /// Settles a reservation to what was really spent: its counters move from the amount held to
    /// the real one (the whole real one when the reservation had expired), and the usage of its
    /// day and `spend.model` grows by `spend`. Call it once per reservation.
    async fn settle(&self, reservation: &Reservation, spend: &Spend) -> Result<(), StoreError>;

    /// What counts against the owner's budgets at `now_ms` (expired reservations given back).
    async fn used(&self, owner: &str, now_ms: i64) -> Result<Used, StoreError>;

    /// Usage rows of days `from` to `to` (`YYYY-MM-DD`, both included): the owner's, or everyone's
    /// when `owner` is `None`. In no particular order.
    async fn usage(
        &self,
        owner: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageRow>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-12-31T23:59:59.999Z
        let p = Periods::at(1_798_761_599_999);
        assert_eq!(p.day, "2026-12-31");
        assert_eq!(p.month, "2026-12");
        assert_eq!(p.day_ends_ms, 1_798_761_600_000);
        assert_eq!(p.month_ends_ms, 1_798_761_600_000);
        let p = Periods::at(1_798_761_600_000);
        assert_eq!(
            (p.day.as_str(), p.month.as_str()),
            ("2027-01-01", "2027-01")
        );
        assert_eq!(p.month_ends_ms - p.day_ends_ms, 30 * 86_400_000);
        assert_eq!(Periods::month_of("2027-01-05"), "2027-01");
    }

    #[test]
    fn the_first_broken_limit_refuses() {
        let budget = Budget {
            tokens_per_day: Some(100),
            usd_nanos_per_month: Some(1_000),
            ..Budget::default()
        };
        let periods = Periods::at(0);
        let used = Used {
            day: Amount {
                tokens: 90,
                usd_nanos: 0,
            },
            month: Amount {
                tokens: 90,
                usd_nanos: 900,
            },
        };
        let fits = Amount {
            tokens: 10,
            usd_nanos: 100,
        };
        assert_eq!(check(&budget, &used, fits, &periods), None);
        let r = check(
            &budget,
            &used,
            Amount {
                tokens: 11,
                usd_nanos: 0,
            },
            &periods,
        )
        .unwrap();
        assert_eq!(
            (r.limit, r.used, r.allowed, r.asked, r.resets_at_ms),
            (Limit::TokensPerDay, 90, 100, 11, 86_400_000)
        );
        let r = check(
            &budget,
            &used,
            Amount {
                tokens: 1,
                usd_nanos: 101,
            },
            &periods,
        )
        .unwrap();
        assert_eq!(r.limit, Limit::UsdPerMonth);
        assert!(check(&Budget::default(), &used, fits, &periods).is_none());
    }

    #[test]
    fn ceilings_leave_room_for_the_amount() {
        let budget = Budget {
            tokens_per_day: Some(100),
            ..Budget::default()
        };
        let a = Amount {
            tokens: 30,
            usd_nanos: 5,
        };
        assert_eq!(budget.ceilings(Period::Day, a), Ok((Some(70), None)));
        assert_eq!(budget.ceilings(Period::Month, a), Ok((None, None)));
        let big = Amount {
            tokens: 101,
            usd_nanos: 0,
        };
        assert_eq!(budget.ceilings(Period::Day, big), Err(Limit::TokensPerDay));
    }

    #[test]
    fn costs_are_whole_nano_dollars() {
        assert_eq!(usd_to_nanos(0.004_581), 4_581_000);
        assert_eq!(usd_to_nanos(-1.0), 0);
        assert_eq!(usd_to_nanos(f64::NAN), 0);
        assert_eq!(nanos_to_usd(usd_to_nanos(12.345_678_9)), 12.345_678_9);
        let spend = Spend {
            model: "m".into(),
            turns: 1,
            prompt_tokens: 3,
            completion_tokens: 4,
            cost_nanos: None,
        };
        assert_eq!(spend.totals().unpriced, 1);
        assert_eq!(spend.totals().cost_usd(), None);
        assert_eq!(spend.amount().tokens, 7);
    }
}

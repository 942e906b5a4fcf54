//! The contract every `Ledger` adapter passes, one test per check through
//! [`ledger_contract_tests!`](crate::ledger_contract_tests). Every check uses owners of its own, so
//! a shared server is fine; time is passed in (no wall clock), so expiry is tested by moving it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;

use chrono::TimeZone;

use super::{Amount, Budget, Ledger, Limit, Reservation, Reserved, Spend, Totals, HOLD_TTL_MS};

/// One `#[tokio::test]` per check of the `Ledger` contract, in `mod $name`, against the adapter
/// the setup (an `async` block giving `Option<Subject<_>>`) builds.
#[macro_export]
macro_rules! ledger_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(ledger; $name, $setup;
            a_reservation_that_fits_is_granted_and_counted,
            a_reservation_past_a_limit_is_refused_with_the_numbers,
            every_kind_of_limit_is_enforced,
            settling_moves_the_counters_to_the_real_usage,
            an_unsettled_reservation_expires,
            a_late_settlement_counts_the_real_usage,
            usage_is_by_owner_day_and_model,
            a_new_day_resets_the_day_but_not_the_month,
            concurrent_reservations_never_overspend,
        );
    };
}

/// 2026-12-01T10:00:00Z.
fn now() -> i64 {
    chrono::Utc
        .with_ymd_and_hms(2026, 12, 1, 10, 0, 0)
        .unwrap()
        .timestamp_millis()
}

const HOUR: i64 = 3_600_000;

fn owner() -> String {
    format!("ledger-{}", uuid::Uuid::now_v7().simple())
}

fn tokens(n: u64) -> Amount {
    Amount {
        tokens: n,
        usd_nanos: 0,
    }
}

fn day_tokens(limit: u64) -> Budget {
    Budget {
        tokens_per_day: Some(limit),
        ..Budget::default()
    }
}

fn spend(model: &str, prompt: u64, completion: u64, cost: Option<u64>) -> Spend {
    Spend {
        model: model.into(),
        turns: 1,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_nanos: cost,
    }
}

async fn granted<L: Ledger + ?Sized>(
    ledger: &L,
    owner: &str,
    amount: Amount,
    budget: &Budget,
    at: i64,
) -> Reservation {
    match ledger.reserve(owner, amount, budget, at).await.unwrap() {
        Reserved::Granted(r) => r,
        Reserved::Refused(r) => panic!("refused: {r:?}"),
    }
}

pub async fn a_reservation_that_fits_is_granted_and_counted<L: Ledger + ?Sized>(l: Arc<L>) {
    let o = owner();
    let amount = Amount {
        tokens: 1_200,
        usd_nanos: 3_000,
    };
    let r = granted(&*l, &o, amount, &day_tokens(10_000), now()).await;
    assert_eq!((r.owner.as_str(), r.amount), (o.as_str(), amount));
    assert_eq!(
        (r.day.as_str(), r.month.as_str()),
        ("2026-12-01", "2026-12")
    );
    assert_eq!(r.expires_at_ms, now() + HOLD_TTL_MS);
    let used = l.used(&o, now()).await.unwrap();
    assert_eq!((used.day, used.month), (amount, amount));
    // Another owner's counters are their own.
    let other = l.used(&owner(), now()).await.unwrap();
    assert_eq!(other.day, Amount::default());
    // With no limits, anything goes, and it still counts.
    granted(&*l, &o, tokens(1_000_000), &Budget::default(), now()).await;
    assert_eq!(l.used(&o, now()).await.unwrap().day.tokens, 1_001_200);
}

pub async fn a_reservation_past_a_limit_is_refused_with_the_numbers<L: Ledger + ?Sized>(l: Arc<L>) {
    let o = owner();
    let budget = day_tokens(100_000);
    granted(&*l, &o, tokens(98_400), &budget, now()).await;
    let Reserved::Refused(r) = l.reserve(&o, tokens(2_000), &budget, now()).await.unwrap() else {
        panic!("a reservation past the limit was granted");
    };
    assert_eq!(r.limit, Limit::TokensPerDay);
    assert_eq!((r.used, r.allowed, r.asked), (98_400, 100_000, 2_000));
    assert_eq!(r.resets_at_ms, now() + 14 * HOUR, "the next UTC midnight");
    // Nothing was held for it; what still fits is granted.
    assert_eq!(l.used(&o, now()).await.unwrap().day.tokens, 98_400);
    granted(&*l, &o, tokens(1_600), &budget, now()).await;
    assert!(matches!(
        l.reserve(&o, tokens(1), &budget, now()).await.unwrap(),
        Reserved::Refused(_)
    ));
    // More than the whole limit is refused even when nothing was used.
    let Reserved::Refused(r) = l
        .reserve(&owner(), tokens(100_001), &budget, now())
        .await
        .unwrap()
    else {
        panic!("more than the limit was granted");
    };
    assert_eq!(r.used, 0);
}

pub async fn every_kind_of_limit_is_enforced<L: Ledger + ?Sized>(l: Arc<L>) {
    let month_end = chrono::Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let cases = [
        (
            Budget {
                tokens_per_month: Some(50),
                ..Budget::default()
            },
            tokens(30),
            Limit::TokensPerMonth,
            month_end,
        ),
        (
            Budget {
                usd_nanos_per_day: Some(5_000),
                ..Budget::default()
            },
            Amount {
                tokens: 1,
                usd_nanos: 3_000,
            },
            Limit::UsdPerDay,
            now() + 14 * HOUR,
        ),
        (
            Budget {
                usd_nanos_per_month: Some(5_000),
                tokens_per_day: Some(1_000_000),
                ..Budget::default()
            },
            Amount {
                tokens: 1,
                usd_nanos: 3_000,
            },
            Limit::UsdPerMonth,
            month_end,
        ),
    ];
    for (budget, amount, limit, resets) in cases {
        let o = owner();
        granted(&*l, &o, amount, &budget, now()).await;
        let Reserved::Refused(r) = l.reserve(&o, amount, &budget, now()).await.unwrap() else {
            panic!("{limit:?} was not enforced");
        };
        assert_eq!(
            (r.limit, r.used, r.resets_at_ms),
            (limit, limit.of(amount), resets)
        );
    }
}

pub async fn settling_moves_the_counters_to_the_real_usage<L: Ledger + ?Sized>(l: Arc<L>) {
    let o = owner();
    let budget = day_tokens(10_000);
    let held = Amount {
        tokens: 5_000,
        usd_nanos: 50_000,
    };
    let r = granted(&*l, &o, held, &budget, now()).await;
    l.settle(&r, &spend("gpt", 1_200, 300, Some(7_500)))
        .await
        .unwrap();
    let used = l.used(&o, now()).await.unwrap();
    let real = Amount {
        tokens: 1_500,
        usd_nanos: 7_500,
    };
    assert_eq!((used.day, used.month), (real, real));
    // The room the hold took is free again.
    granted(&*l, &o, tokens(8_500), &budget, now()).await;
    let rows = l.usage(Some(&o), "2026-12-01", "2026-12-01").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].day.as_str(), rows[0].model.as_str()),
        ("2026-12-01", "gpt")
    );
    assert_eq!(
        rows[0].totals,
        Totals {
            turns: 1,
            prompt_tokens: 1_200,
            completion_tokens: 300,
            cost_nanos: 7_500,
            unpriced: 0
        }
    );
    // A turn that failed before any model answered gives everything back and adds no row.
    let r = granted(&*l, &o, tokens(100), &Budget::default(), now()).await;
    l.settle(&r, &Spend::nothing("gpt")).await.unwrap();
    assert_eq!(l.used(&o, now()).await.unwrap().day.tokens, 1_500 + 8_500);
    assert_eq!(
        l.usage(Some(&o), "2026-12-01", "2026-12-01")
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn an_unsettled_reservation_expires<L: Ledger + ?Sized>(l: Arc<L>) {
    let o = owner();
    let budget = day_tokens(1_000);
    // A crashed instance holds the whole budget and never settles.
    granted(&*l, &o, tokens(1_000), &budget, now()).await;
    assert!(matches!(
        l.reserve(&o, tokens(10), &budget, now() + HOLD_TTL_MS - 1)
            .await
            .unwrap(),
        Reserved::Refused(_)
    ));
    // Once the hold expires the budget is free again.
    let later = now() + HOLD_TTL_MS;
    assert_eq!(l.used(&o, later).await.unwrap().day.tokens, 0);
    granted(&*l, &o, tokens(1_000), &budget, later).await;
    // Expiry is found by reserve too, without a read before it.
    let o = owner();
    granted(&*l, &o, tokens(1_000), &budget, now()).await;
    granted(&*l, &o, tokens(600), &budget, later + 1).await;
    assert_eq!(l.used(&o, later + 1).await.unwrap().day.tokens, 600);
}

pub async fn a_late_settlement_counts_the_real_usage<L: Ledger + ?Sized>(l: Arc<L>) {
    let o = owner();
    let r = granted(&*l, &o, tokens(900), &day_tokens(1_000), now()).await;
    let later = now() + HOLD_TTL_MS + 1;
    assert_eq!(l.used(&o, later).await.unwrap().day.tokens, 0, "expired");
    l.settle(&r, &spend("gpt", 200, 100, None)).await.unwrap();
    let used = l.used(&o, later).await.unwrap();
    assert_eq!(used.day.tokens, 300, "the real usage, not the hold, counts");
    let rows = l.usage(Some(&o), "2026-12-01", "2026-12-01").await.unwrap();
    assert_eq!(rows[0].totals.unpriced, 1);
    assert_eq!(rows[0].totals.cost_usd(), None);
}

pub async fn usage_is_by_owner_day_and_model<L: Ledger + ?Sized>(l: Arc<L>) {
    let (ann, bob) = (owner(), owner());
    let unlimited = Budget::default();
    let mut expected = Totals::default();
    for (who, at, model, p, c, cost) in [
        (&ann, now(), "gpt", 10, 5, 100),
        (&ann, now() + HOUR, "gpt", 20, 5, 200),
        (&ann, now() + HOUR, "claude", 30, 5, 300),
        (&ann, now() + 24 * HOUR, "gpt", 40, 5, 400),
        (&ann, now() + 40 * 24 * HOUR, "gpt", 50, 5, 500),
        (&bob, now(), "gpt", 60, 5, 600),
    ] {
        let r = granted(&*l, who, tokens(p + c), &unlimited, at).await;
        l.settle(&r, &spend(model, p, c, Some(cost))).await.unwrap();
        if who == &ann && at < now() + 40 * 24 * HOUR {
            expected.add(&spend(model, p, c, Some(cost)).totals());
        }
    }
    let mut rows = l
        .usage(Some(&ann), "2026-12-01", "2026-12-31")
        .await
        .unwrap();
    rows.sort_by(|a, b| (&a.day, &a.model).cmp(&(&b.day, &b.model)));
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.day.as_str(), r.model.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("2026-12-01", "claude"),
            ("2026-12-01", "gpt"),
            ("2026-12-02", "gpt")
        ]
    );
    assert!(rows.iter().all(|r| r.owner == ann));
    assert_eq!(
        rows[1].totals.prompt_tokens, 30,
        "one row per day and model"
    );
    let mut sum = Totals::default();
    for r in &rows {
        sum.add(&r.totals);
    }
    assert_eq!(sum, expected);
    // Both ends are included; the day after the range is not.
    let one = l
        .usage(Some(&ann), "2026-12-02", "2026-12-02")
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let later = l
        .usage(Some(&ann), "2027-01-01", "2027-01-31")
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].day, "2027-01-10");
    // Everyone's: both owners appear (other checks' owners may too).
    let all = l.usage(None, "2026-12-01", "2026-12-01").await.unwrap();
    assert!(all.iter().any(|r| r.owner == ann) && all.iter().any(|r| r.owner == bob));
    assert!(all.iter().all(|r| r.day == "2026-12-01"));
}

pub async fn a_new_day_resets_the_day_but_not_the_month<L: Ledger + ?Sized>(l: Arc<L>) {
    let o = owner();
    let budget = Budget {
        tokens_per_day: Some(100),
        tokens_per_month: Some(250),
        ..Budget::default()
    };
    let r = granted(&*l, &o, tokens(100), &budget, now()).await;
    l.settle(&r, &spend("gpt", 90, 10, Some(0))).await.unwrap();
    assert!(matches!(
        l.reserve(&o, tokens(1), &budget, now()).await.unwrap(),
        Reserved::Refused(_)
    ));
    let tomorrow = now() + 24 * HOUR;
    let r = granted(&*l, &o, tokens(100), &budget, tomorrow).await;
    assert_eq!(r.day, "2026-12-02");
    let used = l.used(&o, tomorrow).await.unwrap();
    assert_eq!((used.day.tokens, used.month.tokens), (100, 200));
    l.settle(&r, &spend("gpt", 90, 10, Some(0))).await.unwrap();
    let Reserved::Refused(refusal) = l
        .reserve(&o, tokens(60), &budget, tomorrow + 24 * HOUR)
        .await
        .unwrap()
    else {
        panic!("the month's limit was not enforced");
    };
    assert_eq!(refusal.limit, Limit::TokensPerMonth);
}

/// 24 turns of one user reserve at once, each its worst case (prompt plus the answer cap), and
/// each then spends all of it: together they never spend more than the budget plus one answer cap.
pub async fn concurrent_reservations_never_overspend<L: Ledger + ?Sized + 'static>(l: Arc<L>) {
    const CAP: u64 = 1_000;
    const PROMPT: u64 = 250;
    const LIMIT: u64 = 10_000;
    let o = owner();
    let budget = Budget {
        tokens_per_day: Some(LIMIT),
        usd_nanos_per_month: Some(LIMIT * 10),
        ..Budget::default()
    };
    let worst = Amount {
        tokens: PROMPT + CAP,
        usd_nanos: (PROMPT + CAP) * 10,
    };
    // An earlier turn of the day made the counters and the usage row before the race: the DynamoDB
    // emulator the suite runs on creates a missing item non-atomically (two first updates of it
    // both start from nothing), which DynamoDB itself does not.
    let first = granted(&*l, &o, worst, &budget, now()).await;
    l.settle(&first, &spend("gpt", PROMPT, CAP, Some(worst.usd_nanos)))
        .await
        .unwrap();
    let turns = (0..24).map(|_| {
        let (l, o) = (Arc::clone(&l), o.clone());
        tokio::spawn(async move {
            match l.reserve(&o, worst, &budget, now()).await.unwrap() {
                Reserved::Granted(r) => {
                    l.settle(&r, &spend("gpt", PROMPT, CAP, Some(worst.usd_nanos)))
                        .await
                        .unwrap();
                    true
                }
                Reserved::Refused(_) => false,
            }
        })
    });
    let mut granted_turns = 1;
    for t in futures::future::join_all(turns).await {
        if t.unwrap() {
            granted_turns += 1;
        }
    }
    let spent = l.used(&o, now()).await.unwrap().day.tokens;
    assert_eq!(spent, granted_turns * worst.tokens);
    assert!(
        spent <= LIMIT + CAP,
        "{granted_turns} turns spent {spent} of {LIMIT}"
    );
    assert!(
        spent <= LIMIT,
        "reserving the worst case keeps within the budget"
    );
    assert!(granted_turns >= 2, "someone in the race was served");
    let rows = l.usage(Some(&o), "2026-12-01", "2026-12-01").await.unwrap();
    assert_eq!(rows[0].totals.turns, granted_turns);
    // Once they all settled, what is left of the budget can be reserved.
    let left = LIMIT - spent;
    if left > 0 {
        granted(&*l, &o, tokens(left), &budget, now()).await;
    }
}

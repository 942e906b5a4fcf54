//! The ledger in the store's MongoDB database: collections `ledger_counters` (`_id` =
//! `{owner}|D|{day}` or `{owner}|M|{month}`; `tokens`, `usd` in nano-dollars), `ledger_holds`
//! (`_id` = the reservation's id) and `ledger_usage` (`_id` = `{owner}|{day}|{model}`).
//!
//! Without multi-document transactions (a single-node server has none), a reservation adds to the
//! day counter with a conditional `$inc` (the filter says the counter is within its ceiling, so
//! two concurrent additions cannot both pass it), then to the month counter the same way, undoing
//! the first when the second does not fit; then it stores the hold, undoing both when that fails.
//! An undo may make a concurrent reservation see a fuller counter for a moment: it is refused, never
//! granted past a limit. Settling deletes the hold first (only the one who deletes it moves the
//! counters back), then moves the counters and the usage.

use ::mongodb::bson::{doc, Bson, Document};
use ::mongodb::error::{ErrorKind, WriteFailure};
use ::mongodb::{Collection, Database, IndexModel};
use async_trait::async_trait;
use futures::TryStreamExt;

use super::{
    reserve_by_holding, Amount, Budget, Holds, Ledger, Period, Periods, Reservation, Reserved,
    Spend, Totals, UsageRow, Used,
};
use crate::store::mongodb::MongoStore;
use crate::store::StoreError;

fn unavailable(e: ::mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_duplicate(e: &::mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000
    )
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn number(d: &Document, k: &str) -> u64 {
    match d.get(k) {
        Some(Bson::Int32(v)) => u64::try_from(*v).unwrap_or(0),
        Some(Bson::Int64(v)) => u64::try_from(*v).unwrap_or(0),
        Some(Bson::Double(v)) if *v >= 0.0 => *v as u64,
        _ => 0,
    }
}

fn text(d: &Document, k: &str) -> Result<String, StoreError> {
    match d.get(k) {
        Some(Bson::String(v)) => Ok(v.clone()),
        other => Err(StoreError::Corrupt(format!("`{k}` is not text: {other:?}"))),
    }
}

fn counter_id(owner: &str, period: Period, name: &str) -> String {
    match period {
        Period::Day => format!("{owner}|D|{name}"),
        Period::Month => format!("{owner}|M|{name}"),
    }
}

struct Collections {
    counters: Collection<Document>,
    holds: Collection<Document>,
    usage: Collection<Document>,
}

fn collections(db: &Database) -> Collections {
    Collections {
        counters: db.collection("ledger_counters"),
        holds: db.collection("ledger_holds"),
        usage: db.collection("ledger_usage"),
    }
}

/// Creates the ledger's indexes (idempotent).
pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    let c = collections(db);
    let index = |keys: Document| IndexModel::builder().keys(keys).build();
    c.holds
        .create_index(index(doc! {"owner": 1, "expires_at": 1}))
        .await
        .map_err(unavailable)?;
    c.usage
        .create_index(index(doc! {"owner": 1, "day": 1}))
        .await
        .map_err(unavailable)?;
    c.usage
        .create_index(index(doc! {"day": 1}))
        .await
        .map_err(unavailable)?;
    Ok(())
}

impl MongoStore {
    fn ledger(&self) -> Collections {
        collections(self.database())
    }

    /// Adds `tokens` and `usd` to a counter (creating it), unconditionally.
    async fn add(&self, id: &str, tokens: i64, usd: i64) -> Result<(), StoreError> {
        for _ in 0..2 {
            match self
                .ledger()
                .counters
                .update_one(
                    doc! {"_id": id},
                    doc! {"$inc": {"tokens": tokens, "usd": usd}},
                )
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                // Two first additions raced to create it: it exists now, add again.
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable(
            "could not update a budget counter".into(),
        ))
    }

    /// Adds `amount` to a counter only if it holds at most `ceilings` before; whether it did.
    async fn add_within(
        &self,
        id: &str,
        amount: Amount,
        ceilings: (Option<u64>, Option<u64>),
    ) -> Result<bool, StoreError> {
        let c = self.ledger().counters;
        // The counter exists before the conditional step (its filter cannot create it).
        match c
            .update_one(
                doc! {"_id": id},
                doc! {"$setOnInsert": {"tokens": 0_i64, "usd": 0_i64}},
            )
            .upsert(true)
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let mut filter = doc! {"_id": id};
        if let Some(max) = ceilings.0 {
            filter.insert("tokens", doc! {"$lte": signed(max)});
        }
        if let Some(max) = ceilings.1 {
            filter.insert("usd", doc! {"$lte": signed(max)});
        }
        let r = c
            .update_one(
                filter,
                doc! {"$inc": {"tokens": signed(amount.tokens), "usd": signed(amount.usd_nanos)}},
            )
            .await
            .map_err(unavailable)?;
        Ok(r.matched_count > 0)
    }

    async fn counter(&self, id: &str) -> Result<Amount, StoreError> {
        Ok(self
            .ledger()
            .counters
            .find_one(doc! {"_id": id})
            .await
            .map_err(unavailable)?
            .map(|d| Amount {
                tokens: number(&d, "tokens"),
                usd_nanos: number(&d, "usd"),
            })
            .unwrap_or_default())
    }

    /// Moves both counters of a reservation by `tokens` and `usd`.
    async fn move_counters(
        &self,
        r: &Reservation,
        tokens: i64,
        usd: i64,
    ) -> Result<(), StoreError> {
        self.add(&counter_id(&r.owner, Period::Day, &r.day), tokens, usd)
            .await?;
        self.add(&counter_id(&r.owner, Period::Month, &r.month), tokens, usd)
            .await
    }
}

fn hold(owner: &str, d: &Document) -> Result<Reservation, StoreError> {
    let expires_at_ms = match d.get("expires_at") {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        other => {
            return Err(StoreError::Corrupt(format!(
                "`expires_at` is not a time: {other:?}"
            )))
        }
    };
    Ok(Reservation {
        id: text(d, "_id")?,
        owner: owner.to_owned(),
        day: text(d, "day")?,
        month: text(d, "month")?,
        amount: Amount {
            tokens: number(d, "tokens"),
            usd_nanos: number(d, "usd"),
        },
        expires_at_ms,
    })
}

#[async_trait]
impl Holds for MongoStore {
    /// Tries to hold `r` once: `false` when a counter is full.
    async fn try_hold(&self, r: &Reservation, budget: &Budget) -> Result<bool, StoreError> {
        let (Ok(day), Ok(month)) = (
            budget.ceilings(Period::Day, r.amount),
            budget.ceilings(Period::Month, r.amount),
        ) else {
            return Ok(false);
        };
        let (t, u) = (signed(r.amount.tokens), signed(r.amount.usd_nanos));
        let day_id = counter_id(&r.owner, Period::Day, &r.day);
        if !self.add_within(&day_id, r.amount, day).await? {
            return Ok(false);
        }
        let month_id = counter_id(&r.owner, Period::Month, &r.month);
        match self.add_within(&month_id, r.amount, month).await {
            Ok(true) => {}
            Ok(false) => {
                self.add(&day_id, -t, -u).await?;
                return Ok(false);
            }
            Err(e) => {
                let _ = self.add(&day_id, -t, -u).await;
                return Err(e);
            }
        }
        let stored = self
            .ledger()
            .holds
            .insert_one(doc! {
                "_id": &r.id, "owner": &r.owner, "day": &r.day, "month": &r.month,
                "tokens": t, "usd": u, "expires_at": r.expires_at_ms,
            })
            .await;
        if let Err(e) = stored {
            let _ = self.move_counters(r, -t, -u).await;
            return Err(unavailable(e));
        }
        Ok(true)
    }

    /// Gives back what the owner's holds that expired by `now_ms` hold; how many there were.
    async fn release_expired(&self, owner: &str, now_ms: i64) -> Result<usize, StoreError> {
        let c = self.ledger();
        let expired: Vec<Document> = c
            .holds
            .find(doc! {"owner": owner, "expires_at": {"$lte": now_ms}})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut released = 0;
        for d in expired {
            let r = hold(owner, &d)?;
            // Only the one who deletes it gives its amount back.
            let gone = c
                .holds
                .delete_one(doc! {"_id": &r.id})
                .await
                .map_err(unavailable)?;
            if gone.deleted_count == 1 {
                self.move_counters(&r, -signed(r.amount.tokens), -signed(r.amount.usd_nanos))
                    .await?;
                tracing::info!(owner, hold = %r.id, "an unsettled reservation expired");
                released += 1;
            }
        }
        Ok(released)
    }

    async fn counters(&self, owner: &str, p: &Periods) -> Result<Used, StoreError> {
        Ok(Used {
            day: self
                .counter(&counter_id(owner, Period::Day, &p.day))
                .await?,
            month: self
                .counter(&counter_id(owner, Period::Month, &p.month))
                .await?,
        })
    }
}

#[async_trait]
impl Ledger for MongoStore {
    async fn reserve(
        &self,
        owner: &str,
        amount: Amount,
        budget: &Budget,
        now_ms: i64,
    ) -> Result<Reserved, StoreError> {
        reserve_by_holding(self, owner, amount, budget, now_ms).await
    }

    async fn settle(&self, r: &Reservation, spend: &Spend) -> Result<(), StoreError> {
        let c = self.ledger();
        let held = c
            .holds
            .delete_one(doc! {"_id": &r.id})
            .await
            .map_err(unavailable)?
            .deleted_count
            == 1;
        let real = spend.amount();
        let (back_t, back_u) = if held {
            (signed(r.amount.tokens), signed(r.amount.usd_nanos))
        } else {
            (0, 0)
        };
        self.move_counters(
            r,
            signed(real.tokens) - back_t,
            signed(real.usd_nanos) - back_u,
        )
        .await?;
        if spend.is_empty() {
            return Ok(());
        }
        let t = spend.totals();
        let id = format!("{}|{}|{}", r.owner, r.day, spend.model);
        let update = doc! {
            "$inc": {
                "turns": signed(t.turns), "prompt_tokens": signed(t.prompt_tokens),
                "completion_tokens": signed(t.completion_tokens),
                "cost_nanos": signed(t.cost_nanos), "unpriced": signed(t.unpriced),
            },
            "$set": {"owner": &r.owner, "day": &r.day, "model": &spend.model},
        };
        for _ in 0..2 {
            match c
                .usage
                .update_one(doc! {"_id": &id}, update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                // Two first settlements of a day and model raced to create the row: again.
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable("could not record usage".into()))
    }

    async fn used(&self, owner: &str, now_ms: i64) -> Result<Used, StoreError> {
        self.release_expired(owner, now_ms).await?;
        self.counters(owner, &Periods::at(now_ms)).await
    }

    async fn usage(
        &self,
        owner: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let mut filter = doc! {"day": {"$gte": from, "$lte": to}};
        if let Some(owner) = owner {
            filter.insert("owner", owner);
        }
        let docs: Vec<Document> = self
            .ledger()
            .usage
            .find(filter)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        docs.iter()
            .map(|d| {
                Ok(UsageRow {
                    owner: text(d, "owner")?,
                    day: text(d, "day")?,
                    model: text(d, "model")?,
                    totals: Totals {
                        turns: number(d, "turns"),
                        prompt_tokens: number(d, "prompt_tokens"),
                        completion_tokens: number(d, "completion_tokens"),
                        cost_nanos: number(d, "cost_nanos"),
                        unpriced: number(d, "unpriced"),
                    },
                })
            })
            .collect()
    }
}

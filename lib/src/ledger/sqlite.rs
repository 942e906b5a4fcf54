//! The ledger in the embedded SQLite database, beside the conversations (one more schema version,
//! [`MIGRATION`]). Each step is one transaction on the store's one connection: expired holds are
//! given back, the counters read, the policy applied and the hold added together.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{
    check, Amount, Budget, Ledger, Periods, Reservation, Reserved, Spend, Totals, UsageRow, Used,
};
use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

/// Counters per owner and period (`D{day}`, `M{month}`: settled usage and holds in flight), holds,
/// and usage per owner, day and model.
pub const MIGRATION: &str = r#"
CREATE TABLE ledger_counters (
    owner TEXT NOT NULL,
    period TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0,
    usd_nanos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, period)
) WITHOUT ROWID;
CREATE TABLE ledger_holds (
    id TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    usd_nanos INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX ledger_holds_by_owner ON ledger_holds (owner, expires_at);
CREATE TABLE ledger_usage (
    owner TEXT NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_nanos INTEGER NOT NULL DEFAULT 0,
    unpriced INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, day, model)
) WITHOUT ROWID;
CREATE INDEX ledger_usage_by_day ON ledger_usage (day);
"#;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Adds `tokens` and `usd` (either may be negative) to a counter; a counter never goes below 0.
fn add(c: &Connection, owner: &str, period: &str, tokens: i64, usd: i64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO ledger_counters (owner, period, tokens, usd_nanos) VALUES (?1, ?2, MAX(?3, 0), MAX(?4, 0))
         ON CONFLICT (owner, period) DO UPDATE SET
           tokens = MAX(tokens + ?3, 0), usd_nanos = MAX(usd_nanos + ?4, 0)",
    )
    .and_then(|mut st| st.execute(params![owner, period, tokens, usd]))
    .map(|_| ())
    .map_err(unavailable)
}

fn counter(c: &Connection, owner: &str, period: &str) -> Result<Amount, StoreError> {
    Ok(c.prepare_cached(
        "SELECT tokens, usd_nanos FROM ledger_counters WHERE owner = ?1 AND period = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![owner, period], |r| {
            Ok(Amount {
                tokens: unsigned(r.get(0)?),
                usd_nanos: unsigned(r.get(1)?),
            })
        })
        .optional()
    })
    .map_err(unavailable)?
    .unwrap_or_default())
}

fn day_key(day: &str) -> String {
    format!("D{day}")
}

fn month_key(month: &str) -> String {
    format!("M{month}")
}

/// Gives back what the owner's holds that expired by `now_ms` hold, and forgets them.
fn release_expired(tx: &Transaction<'_>, owner: &str, now_ms: i64) -> Result<(), StoreError> {
    let expired: Vec<(String, String, String, i64, i64)> = tx
        .prepare_cached(
            "SELECT id, day, month, tokens, usd_nanos FROM ledger_holds WHERE owner = ?1 AND expires_at <= ?2",
        )
        .and_then(|mut st| {
            st.query_map(params![owner, now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(unavailable)?;
    for (id, day, month, tokens, usd) in expired {
        add(tx, owner, &day_key(&day), -tokens, -usd)?;
        add(tx, owner, &month_key(&month), -tokens, -usd)?;
        tx.execute("DELETE FROM ledger_holds WHERE id = ?1", params![id])
            .map_err(unavailable)?;
        tracing::info!(owner, hold = %id, "an unsettled reservation expired");
    }
    Ok(())
}

fn used(c: &Connection, owner: &str, p: &Periods) -> Result<Used, StoreError> {
    Ok(Used {
        day: counter(c, owner, &day_key(&p.day))?,
        month: counter(c, owner, &month_key(&p.month))?,
    })
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn reserve(
        &self,
        owner: &str,
        amount: Amount,
        budget: &Budget,
        now_ms: i64,
    ) -> Result<Reserved, StoreError> {
        let (owner, budget) = (owner.to_owned(), *budget);
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            release_expired(&tx, &owner, now_ms)?;
            let periods = Periods::at(now_ms);
            let now = used(&tx, &owner, &periods)?;
            if let Some(refusal) = check(&budget, &now, amount, &periods) {
                tx.commit().map_err(unavailable)?;
                return Ok(Reserved::Refused(refusal));
            }
            let r = Reservation::new(&owner, amount, now_ms);
            let (t, u) = (signed(amount.tokens), signed(amount.usd_nanos));
            add(&tx, &owner, &day_key(&r.day), t, u)?;
            add(&tx, &owner, &month_key(&r.month), t, u)?;
            tx.execute(
                "INSERT INTO ledger_holds (id, owner, day, month, tokens, usd_nanos, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.id, r.owner, r.day, r.month, t, u, r.expires_at_ms],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(Reserved::Granted(r))
        })
        .await
    }

    async fn settle(&self, r: &Reservation, spend: &Spend) -> Result<(), StoreError> {
        let (r, spend) = (r.clone(), spend.clone());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let held = tx
                .execute("DELETE FROM ledger_holds WHERE id = ?1", params![r.id])
                .map_err(unavailable)?
                > 0;
            // A hold that expired was given back already: the whole real amount is added.
            let (back_t, back_u) = if held {
                (signed(r.amount.tokens), signed(r.amount.usd_nanos))
            } else {
                (0, 0)
            };
            let real = spend.amount();
            let (t, u) = (
                signed(real.tokens) - back_t,
                signed(real.usd_nanos) - back_u,
            );
            add(&tx, &r.owner, &day_key(&r.day), t, u)?;
            add(&tx, &r.owner, &month_key(&r.month), t, u)?;
            if !spend.is_empty() {
                let t = spend.totals();
                tx.execute(
                    "INSERT INTO ledger_usage (owner, day, model, turns, prompt_tokens, completion_tokens, cost_nanos, unpriced)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (owner, day, model) DO UPDATE SET
                       turns = turns + ?4, prompt_tokens = prompt_tokens + ?5,
                       completion_tokens = completion_tokens + ?6, cost_nanos = cost_nanos + ?7,
                       unpriced = unpriced + ?8",
                    params![
                        r.owner,
                        r.day,
                        spend.model,
                        signed(t.turns),
                        signed(t.prompt_tokens),
                        signed(t.completion_tokens),
                        signed(t.cost_nanos),
                        signed(t.unpriced)
                    ],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn used(&self, owner: &str, now_ms: i64) -> Result<Used, StoreError> {
        let owner = owner.to_owned();
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            release_expired(&tx, &owner, now_ms)?;
            let now = used(&tx, &owner, &Periods::at(now_ms))?;
            tx.commit().map_err(unavailable)?;
            Ok(now)
        })
        .await
    }

    async fn usage(
        &self,
        owner: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let (owner, from, to) = (owner.map(str::to_owned), from.to_owned(), to.to_owned());
        self.with(move |c| {
            let sql = "SELECT owner, day, model, turns, prompt_tokens, completion_tokens, cost_nanos, unpriced
                       FROM ledger_usage WHERE day >= ?1 AND day <= ?2 AND (?3 IS NULL OR owner = ?3)";
            c.prepare_cached(sql)
                .and_then(|mut st| {
                    st.query_map(params![from, to, owner], |r| {
                        Ok(UsageRow {
                            owner: r.get(0)?,
                            day: r.get(1)?,
                            model: r.get(2)?,
                            totals: Totals {
                                turns: unsigned(r.get(3)?),
                                prompt_tokens: unsigned(r.get(4)?),
                                completion_tokens: unsigned(r.get(5)?),
                                cost_nanos: unsigned(r.get(6)?),
                                unpriced: unsigned(r.get(7)?),
                            },
                        })
                    })?
                    .collect()
                })
                .map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::contract::Subject;
    use crate::store::sqlite::SqliteStore;

    crate::ledger_contract_tests!(contract, async {
        Some(Subject::new(SqliteStore::in_memory().unwrap()))
    });
}

//! The ledger in the store's DynamoDB table.
//!
//! | item | `pk` | `sk` | notes |
//! |---|---|---|---|
//! | counter | `U#{owner}` | `LEDGER#D#{day}`, `LEDGER#M#{month}` | `tokens`, `usd` (nano-dollars); `ttl` after the period |
//! | hold | `U#{owner}` | `HOLD#{id}` | `day`, `month`, `tokens`, `usd`, `expires_at` (ms); `ttl` |
//! | usage | `U#{owner}` | `USE#{day}#{model}` | `gsi1pk=USAGE#{month}`, `gsi1sk={day}#{owner}#{model}`: everyone's usage |
//!
//! Every step is one conditional write of one item, which DynamoDB applies atomically. A
//! reservation `ADD`s to the day counter on the condition that it stays within every limit of the
//! day (`tokens <= limit - amount`), then to the month counter the same way (undoing the day's
//! when the month's does not fit), then writes the hold. Two concurrent reservations cannot both
//! pass a condition that only one fits; an undo may make another see a fuller counter for a moment
//! (it is refused, never granted past a limit). When a condition fails, the owner's expired holds
//! are given back and the reservation is tried again once; then the counters are read to say which
//! limit it breaks. Settling and expiring delete the hold on the condition that it is there — only
//! the one who deletes it moves the counters back — then move the counters and the usage.
//! (Single-item writes rather than one `TransactWriteItems`: the DynamoDB emulator the tests run
//! on restores a table's earlier state when a transaction fails, undoing concurrent writes.)

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::{
    reserve_by_holding, Amount, Budget, Holds, Ledger, Period, Periods, Reservation, Reserved,
    Spend, Totals, UsageRow, Used,
};
use crate::store::dynamodb::{
    get_n, get_s, is_conditional, key, n, s, unavailable, DynamoStore, Item, Pages, GSI,
};
use crate::store::StoreError;

/// How long counters are kept after their period ends, in seconds.
const KEEP_SECS: i64 = 2 * 86_400;

fn pk(owner: &str) -> String {
    format!("U#{owner}")
}

fn counter_key(owner: &str, period: Period, name: &str) -> Item {
    let p = match period {
        Period::Day => "D",
        Period::Month => "M",
    };
    key(pk(owner), format!("LEDGER#{p}#{name}"))
}

fn hold_key(owner: &str, id: &str) -> Item {
    key(pk(owner), format!("HOLD#{id}"))
}

fn usage_key(owner: &str, day: &str, model: &str) -> Item {
    key(pk(owner), format!("USE#{day}#{model}"))
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(item: &Item, k: &str) -> u64 {
    get_n(item, k)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

impl DynamoStore {
    /// Adds `tokens` and `usd` to the counter of `period` of a reservation (kept until after the
    /// period ends), on the condition that it holds at most `ceilings` before (either `None`: not
    /// limited); whether it did.
    async fn add(
        &self,
        r: &Reservation,
        period: Period,
        (tokens, usd): (i64, i64),
        ceilings: (Option<u64>, Option<u64>),
    ) -> Result<bool, StoreError> {
        let p = Periods::at(r.expires_at_ms - super::HOLD_TTL_MS);
        let (name, ends) = match period {
            Period::Day => (&r.day, p.day_ends_ms),
            Period::Month => (&r.month, p.month_ends_ms),
        };
        let mut update = self
            .table()
            .client()
            .update_item()
            .table_name(self.table().name())
            .set_key(Some(counter_key(&r.owner, period, name)))
            .update_expression("ADD #t :t, #u :u SET #ttl = :ttl")
            .expression_attribute_names("#t", "tokens")
            .expression_attribute_names("#u", "usd")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":t", n(tokens))
            .expression_attribute_values(":u", n(usd))
            .expression_attribute_values(":ttl", n(ends / 1000 + KEEP_SECS));
        let mut conditions = Vec::new();
        if let Some(max) = ceilings.0 {
            conditions.push("(attribute_not_exists(#t) OR #t <= :ct)");
            update = update.expression_attribute_values(":ct", n(max));
        }
        if let Some(max) = ceilings.1 {
            conditions.push("(attribute_not_exists(#u) OR #u <= :cu)");
            update = update.expression_attribute_values(":cu", n(max));
        }
        if !conditions.is_empty() {
            update = update.condition_expression(conditions.join(" AND "));
        }
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Moves both counters of a reservation by `tokens` and `usd`, unconditionally.
    async fn move_counters(&self, r: &Reservation, by: (i64, i64)) -> Result<(), StoreError> {
        self.add(r, Period::Day, by, (None, None)).await?;
        self.add(r, Period::Month, by, (None, None)).await?;
        Ok(())
    }

    /// Deletes a hold if it is still there; whether this call deleted it.
    async fn take_hold(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        match self
            .table()
            .client()
            .delete_item()
            .table_name(self.table().name())
            .set_key(Some(hold_key(owner, id)))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn hold(owner: &str, item: &Item) -> Result<Reservation, StoreError> {
    let sk = get_s(item, "sk")?;
    Ok(Reservation {
        id: sk.trim_start_matches("HOLD#").to_owned(),
        owner: owner.to_owned(),
        day: get_s(item, "day")?.to_owned(),
        month: get_s(item, "month")?.to_owned(),
        amount: Amount {
            tokens: unsigned(item, "tokens"),
            usd_nanos: unsigned(item, "usd"),
        },
        expires_at_ms: get_n(item, "expires_at")?,
    })
}

fn usage_row(item: &Item) -> Result<UsageRow, StoreError> {
    Ok(UsageRow {
        owner: get_s(item, "owner")?.to_owned(),
        day: get_s(item, "day")?.to_owned(),
        model: get_s(item, "model")?.to_owned(),
        totals: Totals {
            turns: unsigned(item, "turns"),
            prompt_tokens: unsigned(item, "prompt_tokens"),
            completion_tokens: unsigned(item, "completion_tokens"),
            cost_nanos: unsigned(item, "cost_nanos"),
            unpriced: unsigned(item, "unpriced"),
        },
    })
}

/// The months from `from`'s to `to`'s (`YYYY-MM-DD`), as `YYYY-MM`.
fn months(from: &str, to: &str) -> Vec<String> {
    let ym = |d: &str| -> Option<(i32, u32)> {
        Some((d.get(..4)?.parse().ok()?, d.get(5..7)?.parse().ok()?))
    };
    let (Some(mut at), Some(end)) = (ym(from), ym(to)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while at <= end && out.len() < 1_000 {
        out.push(format!("{:04}-{:02}", at.0, at.1));
        at = if at.1 == 12 {
            (at.0 + 1, 1)
        } else {
            (at.0, at.1 + 1)
        };
    }
    out
}

#[async_trait]
impl Holds for DynamoStore {
    /// Tries to hold `r` once: `false` when a counter is full.
    async fn try_hold(&self, r: &Reservation, budget: &Budget) -> Result<bool, StoreError> {
        let (Ok(day), Ok(month)) = (
            budget.ceilings(Period::Day, r.amount),
            budget.ceilings(Period::Month, r.amount),
        ) else {
            return Ok(false);
        };
        let by = (signed(r.amount.tokens), signed(r.amount.usd_nanos));
        let back = (-by.0, -by.1);
        if !self.add(r, Period::Day, by, day).await? {
            return Ok(false);
        }
        match self.add(r, Period::Month, by, month).await {
            Ok(true) => {}
            Ok(false) => {
                self.add(r, Period::Day, back, (None, None)).await?;
                return Ok(false);
            }
            Err(e) => {
                let _ = self.add(r, Period::Day, back, (None, None)).await;
                return Err(e);
            }
        }
        let mut item = hold_key(&r.owner, &r.id);
        item.extend([
            ("day".to_owned(), s(r.day.clone())),
            ("month".to_owned(), s(r.month.clone())),
            ("tokens".to_owned(), n(r.amount.tokens)),
            ("usd".to_owned(), n(r.amount.usd_nanos)),
            ("expires_at".to_owned(), n(r.expires_at_ms)),
            ("ttl".to_owned(), n(r.expires_at_ms / 1000 + KEEP_SECS)),
        ]);
        let put = self
            .table()
            .client()
            .put_item()
            .table_name(self.table().name())
            .set_item(Some(item))
            .send()
            .await;
        if let Err(e) = put {
            let _ = self.move_counters(r, back).await;
            return Err(unavailable(e));
        }
        Ok(true)
    }

    /// Gives back what the owner's holds that expired by `now_ms` hold; how many there were.
    async fn release_expired(&self, owner: &str, now_ms: i64) -> Result<usize, StoreError> {
        let holds = Pages::new(
            self.table()
                .query()
                .key_condition_expression("pk = :p AND begins_with(sk, :h)")
                .expression_attribute_values(":p", s(pk(owner)))
                .expression_attribute_values(":h", s("HOLD#"))
                .consistent_read(true),
        )
        .collect(usize::MAX)
        .await?;
        let mut released = 0;
        for item in holds {
            let r = hold(owner, &item)?;
            if r.expires_at_ms > now_ms {
                continue;
            }
            if self.take_hold(owner, &r.id).await? {
                self.move_counters(&r, (-signed(r.amount.tokens), -signed(r.amount.usd_nanos)))
                    .await?;
                tracing::info!(owner, hold = %r.id, "an unsettled reservation expired");
                released += 1;
            }
        }
        Ok(released)
    }

    async fn counters(&self, owner: &str, p: &Periods) -> Result<Used, StoreError> {
        let read = |item: Option<Item>| {
            item.map(|i| Amount {
                tokens: unsigned(&i, "tokens"),
                usd_nanos: unsigned(&i, "usd"),
            })
            .unwrap_or_default()
        };
        Ok(Used {
            day: read(
                self.table()
                    .get_item(counter_key(owner, Period::Day, &p.day))
                    .await?,
            ),
            month: read(
                self.table()
                    .get_item(counter_key(owner, Period::Month, &p.month))
                    .await?,
            ),
        })
    }
}

#[async_trait]
impl Ledger for DynamoStore {
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
        // Only a hold that is still there is given back (an expired one was, already).
        let held = self.take_hold(&r.owner, &r.id).await?;
        let real = spend.amount();
        let (back_t, back_u) = if held {
            (signed(r.amount.tokens), signed(r.amount.usd_nanos))
        } else {
            (0, 0)
        };
        self.move_counters(
            r,
            (
                signed(real.tokens) - back_t,
                signed(real.usd_nanos) - back_u,
            ),
        )
        .await?;
        if spend.is_empty() {
            return Ok(());
        }
        let t = spend.totals();
        self.table()
            .client()
            .update_item()
            .table_name(self.table().name())
            .set_key(Some(usage_key(&r.owner, &r.day, &spend.model)))
            .update_expression(
                "ADD turns :turns, prompt_tokens :p, completion_tokens :c, cost_nanos :cost, unpriced :un \
                 SET #o = :o, #d = :d, #m = :m, gsi1pk = :g, gsi1sk = :gs",
            )
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#d", "day")
            .expression_attribute_names("#m", "model")
            .expression_attribute_values(":turns", n(t.turns))
            .expression_attribute_values(":p", n(t.prompt_tokens))
            .expression_attribute_values(":c", n(t.completion_tokens))
            .expression_attribute_values(":cost", n(t.cost_nanos))
            .expression_attribute_values(":un", n(t.unpriced))
            .expression_attribute_values(":o", s(r.owner.clone()))
            .expression_attribute_values(":d", s(r.day.clone()))
            .expression_attribute_values(":m", s(spend.model.clone()))
            .expression_attribute_values(":g", s(format!("USAGE#{}", r.month)))
            .expression_attribute_values(":gs", s(format!("{}#{}#{}", r.day, r.owner, spend.model)))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
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
        let items = match owner {
            Some(owner) => {
                Pages::new(
                    self.table()
                        .query()
                        .key_condition_expression("pk = :p AND sk BETWEEN :a AND :b")
                        .expression_attribute_values(":p", s(pk(owner)))
                        .expression_attribute_values(":a", s(format!("USE#{from}")))
                        .expression_attribute_values(":b", s(format!("USE#{to}$")))
                        .consistent_read(true),
                )
                .collect(usize::MAX)
                .await?
            }
            None => {
                let mut items = Vec::new();
                for month in months(from, to) {
                    items.extend(
                        Pages::new(
                            self.table()
                                .query()
                                .index_name(GSI)
                                .key_condition_expression(
                                    "gsi1pk = :p AND gsi1sk BETWEEN :a AND :b",
                                )
                                .expression_attribute_values(":p", s(format!("USAGE#{month}")))
                                .expression_attribute_values(":a", s(from.to_owned()))
                                .expression_attribute_values(":b", s(format!("{to}$"))),
                        )
                        .collect(usize::MAX)
                        .await?,
                    );
                }
                items
            }
        };
        let rows = items.iter().map(usage_row).collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter(|r| r.day.as_str() >= from && r.day.as_str() <= to)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::months;

    #[test]
    fn the_months_of_a_range() {
        assert_eq!(
            months("2026-11-15", "2027-02-01"),
            ["2026-11", "2026-12", "2027-01", "2027-02"]
        );
        assert_eq!(months("2026-12-01", "2026-12-31"), ["2026-12"]);
        assert!(months("bad", "2026-12-01").is_empty());
    }
}

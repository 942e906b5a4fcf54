//! The turn log in the DynamoDB table of the store: items that expire through the table's TTL
//! attribute (`ttl`), read by polling. Nothing is provisioned and nothing runs while no turn is
//! generated or followed: a turn costs one write per batch of events (at most ten a second while
//! tokens flow), and a follower on another instance one query per poll.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | head | `U#{owner}#T#{turn}` | `H` | `conversation_id`, `ended`, `stop`, `at`, `ttl` |
//! | batch | `U#{owner}#T#{turn}` | `E#{last id, 20 digits}` | `events` (JSON), `at`, `ttl` |
//!
//! Batches sort before the head (`E` < `H`), so one query from `E#{after}` returns the batches a
//! reader is missing (with the one ending at `after`, whose time says how fresh the log is) and
//! the head after them. Reads are strongly consistent.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::wakeups::{Listener, Wakeups};
use super::{expires_at, LogRead, LoggedEvent, StopOutcome, TurnLog, MAX_POLL};
use crate::domain::{ConversationId, MessageId, Owner, Timestamp};
use crate::store::dynamodb::{
    build, get_n, get_s, id_ok, is_conditional, key, n, s, unavailable, Item, Pages, Table,
};
use crate::store::record;
use crate::store::StoreError;

/// The head's sort key.
const HEAD: &str = "H";

/// The turn log in a DynamoDB table (the store's).
#[derive(Clone)]
pub struct DynamoTurnLog {
    table: Table,
    poll: Duration,
    appended: Wakeups,
    stopped: Wakeups,
}

fn turn_pk(owner: &Owner, turn: &MessageId) -> String {
    format!("U#{}#T#{}", owner.as_str(), turn.as_str())
}

fn batch_sk(last_id: u64) -> String {
    format!("E#{last_id:020}")
}

fn flag(item: &Item, k: &str) -> bool {
    matches!(item.get(k), Some(AttributeValue::Bool(true)))
}

impl DynamoTurnLog {
    /// The log in `table` (the store's table, with its TTL attribute `ttl`), polled every 250 ms.
    pub fn new(table: Table) -> Self {
        Self {
            table,
            poll: MAX_POLL,
            appended: Wakeups::new(),
            stopped: Wakeups::new(),
        }
    }

    async fn head(&self, owner: &Owner, turn: &MessageId) -> Result<Option<Item>, StoreError> {
        if !id_ok(turn.as_str()) {
            return Ok(None);
        }
        self.table
            .get_item(key(turn_pk(owner, turn), HEAD.into()))
            .await
    }

    /// When the newest batch was written (`None`: no batch yet).
    async fn newest_batch_at(&self, pk: &str) -> Result<Option<i64>, StoreError> {
        let out = self
            .table
            .query()
            .key_condition_expression("pk = :p AND begins_with(sk, :e)")
            .expression_attribute_values(":p", s(pk))
            .expression_attribute_values(":e", s("E#"))
            .projection_expression("#a")
            .expression_attribute_names("#a", "at")
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.items
            .unwrap_or_default()
            .first()
            .map(|i| get_n(i, "at"))
            .transpose()
    }
}

#[async_trait]
impl TurnLog for DynamoTurnLog {
    async fn begin(
        &self,
        owner: &Owner,
        turn: &MessageId,
        conversation: &ConversationId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut item = key(turn_pk(owner, turn), HEAD.into());
        item.extend([
            ("conversation_id".to_owned(), s(conversation.as_str())),
            ("ended".to_owned(), AttributeValue::Bool(false)),
            ("stop".to_owned(), AttributeValue::Bool(false)),
            ("at".to_owned(), n(at.millis())),
            ("ttl".to_owned(), n(expires_at(at))),
        ]);
        let put = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Err(StoreError::Corrupt(
                format!("turn {turn} already has a log"),
            )),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn append(
        &self,
        owner: &Owner,
        turn: &MessageId,
        events: &[LoggedEvent],
        end: bool,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let pk = turn_pk(owner, turn);
        let batch = match events.last() {
            Some(last) => {
                let mut item = key(pk.clone(), batch_sk(last.id));
                item.extend([
                    ("events".to_owned(), s(record::log_events_json(events)?)),
                    ("at".to_owned(), n(at.millis())),
                    ("ttl".to_owned(), n(expires_at(at))),
                ]);
                Some(item)
            }
            None => None,
        };
        if !end {
            match batch {
                // Most batches: one write, no read.
                Some(item) => {
                    self.table
                        .client()
                        .put_item()
                        .table_name(self.table.name())
                        .set_item(Some(item))
                        .send()
                        .await
                        .map_err(unavailable)?;
                }
                // A heartbeat moves the head's time.
                None => {
                    self.table
                        .client()
                        .update_item()
                        .table_name(self.table.name())
                        .set_key(Some(key(pk, HEAD.into())))
                        .update_expression("SET #a = :at, #l = :ttl")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_names("#a", "at")
                        .expression_attribute_names("#l", "ttl")
                        .expression_attribute_values(":at", n(at.millis()))
                        .expression_attribute_values(":ttl", n(expires_at(at)))
                        .send()
                        .await
                        .map_err(unavailable)?;
                }
            }
            self.appended.wake(turn);
            return Ok(());
        }
        let ended = build(
            Update::builder()
                .table_name(self.table.name())
                .set_key(Some(key(pk, HEAD.into())))
                .update_expression("SET ended = :t, #a = :at, #l = :ttl")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#a", "at")
                .expression_attribute_names("#l", "ttl")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":at", n(at.millis()))
                .expression_attribute_values(":ttl", n(expires_at(at)))
                .build(),
        )?;
        let mut transaction = self
            .table
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(ended).build());
        if let Some(item) = batch {
            let put = build(
                Put::builder()
                    .table_name(self.table.name())
                    .set_item(Some(item))
                    .build(),
            )?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
        }
        transaction.send().await.map_err(unavailable)?;
        self.appended.wake(turn);
        Ok(())
    }

    async fn read(
        &self,
        owner: &Owner,
        turn: &MessageId,
        after: u64,
    ) -> Result<Option<LogRead>, StoreError> {
        if !id_ok(turn.as_str()) {
            return Ok(None);
        }
        let pk = turn_pk(owner, turn);
        let mut pages = Pages::new(
            self.table
                .query()
                .key_condition_expression("pk = :p AND sk >= :from")
                .expression_attribute_values(":p", s(pk.clone()))
                .expression_attribute_values(":from", s(batch_sk(after)))
                .consistent_read(true),
        );
        let mut head = None;
        let mut events = Vec::new();
        let mut newest: Option<i64> = None;
        while let Some(items) = pages.next().await? {
            for item in items {
                if get_s(&item, "sk")? == HEAD {
                    head = Some(item);
                    continue;
                }
                newest = newest.max(Some(get_n(&item, "at")?));
                events.extend(
                    record::log_events_from_json(get_s(&item, "events")?)?
                        .into_iter()
                        .filter(|e| e.id > after),
                );
            }
        }
        let Some(head) = head else {
            return Ok(None);
        };
        let ended = flag(&head, "ended");
        if newest.is_none() && !ended {
            newest = self.newest_batch_at(&pk).await?;
        }
        let last_write = newest.unwrap_or(0).max(get_n(&head, "at")?);
        Ok(Some(LogRead {
            conversation_id: ConversationId::from(get_s(&head, "conversation_id")?),
            events,
            ended,
            stop_requested: flag(&head, "stop"),
            last_write: Timestamp::from_millis(last_write),
        }))
    }

    fn listen(&self, turn: &MessageId) -> Listener {
        self.appended.listen(turn)
    }

    fn listen_stop(&self, turn: &MessageId) -> Listener {
        self.stopped.listen(turn)
    }

    async fn request_stop(
        &self,
        owner: &Owner,
        turn: &MessageId,
    ) -> Result<StopOutcome, StoreError> {
        if !id_ok(turn.as_str()) {
            return Ok(StopOutcome::Unknown);
        }
        let asked = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .set_key(Some(key(turn_pk(owner, turn), HEAD.into())))
            .update_expression("SET #s = :t")
            .condition_expression("attribute_exists(pk) AND ended = :f AND #s = :f")
            .expression_attribute_names("#s", "stop")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        match asked {
            Ok(_) => {
                self.stopped.wake(turn);
                Ok(StopOutcome::Stopping)
            }
            Err(e) if e.as_service_error().is_some_and(is_conditional) => {
                Ok(match self.head(owner, turn).await? {
                    Some(h) if flag(&h, "ended") => StopOutcome::Ended,
                    Some(h) if flag(&h, "stop") => StopOutcome::AlreadyAsked,
                    Some(_) => StopOutcome::Ended,
                    None => StopOutcome::Unknown,
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn stop_requested(&self, owner: &Owner, turn: &MessageId) -> Result<bool, StoreError> {
        Ok(self
            .head(owner, turn)
            .await?
            .is_some_and(|h| flag(&h, "stop")))
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }
}

//! The embedded turn log: two tables of the SQLite store's database (`turn_logs`, one row per turn
//! with its state; `turn_log_entries`, one row per batch of events, keyed by the batch's last id)
//! and the in-process broadcast. A reader in this process is woken by each append; a process that
//! shares the database file (a second server on the same data directory) polls.
//!
//! Logs expire [`RETENTION`](super::RETENTION) after their last write; expired ones are deleted
//! when a turn begins, a few at a time, and with their conversation.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::wakeups::{Listener, Wakeups};
use super::{expires_at, LogRead, LoggedEvent, StopOutcome, TurnLog};
use crate::domain::{ConversationId, MessageId, Owner, Timestamp};
use crate::store::record;
use crate::store::sqlite::{unavailable, SqliteStore};
use crate::store::StoreError;

/// Expired logs deleted per turn begun.
const SWEEP: i64 = 50;

/// The turn log in the SQLite store's database.
#[derive(Clone)]
pub struct SqliteTurnLog {
    store: SqliteStore,
    appended: Wakeups,
    stopped: Wakeups,
}

impl SqliteTurnLog {
    /// The log in `store`'s database (its connection is shared).
    pub fn new(store: SqliteStore) -> Self {
        Self {
            store,
            appended: Wakeups::new(),
            stopped: Wakeups::new(),
        }
    }
}

/// The state row of a turn: `(conversation_id, ended, stop, updated_at)`.
type Head = (String, bool, bool, i64);

fn head(c: &rusqlite::Connection, owner: &str, turn: &str) -> Result<Option<Head>, StoreError> {
    c.prepare_cached(
        "SELECT conversation_id, ended, stop, updated_at FROM turn_logs WHERE owner = ?1 AND turn = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![owner, turn], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
    })
    .map_err(unavailable)
}

#[async_trait]
impl TurnLog for SqliteTurnLog {
    async fn begin(
        &self,
        owner: &Owner,
        turn: &MessageId,
        conversation: &ConversationId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let (owner, turn, conv) = (owner.clone(), turn.clone(), conversation.clone());
        self.store
            .with(move |c| {
                let tx = c.transaction().map_err(unavailable)?;
                let now = at.millis() / 1000;
                tx.execute(
                    "DELETE FROM turn_log_entries WHERE (owner, turn) IN \
                     (SELECT owner, turn FROM turn_logs WHERE expires_at < ?1 LIMIT ?2)",
                    params![now, SWEEP],
                )
                .map_err(unavailable)?;
                tx.execute(
                    "DELETE FROM turn_logs WHERE (owner, turn) IN \
                     (SELECT owner, turn FROM turn_logs WHERE expires_at < ?1 LIMIT ?2)",
                    params![now, SWEEP],
                )
                .map_err(unavailable)?;
                let inserted = tx
                    .execute(
                        "INSERT INTO turn_logs (owner, turn, conversation_id, updated_at, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                        params![
                            owner.as_str(),
                            turn.as_str(),
                            conv.as_str(),
                            at.millis(),
                            expires_at(at)
                        ],
                    )
                    .map_err(unavailable)?;
                if inserted == 0 {
                    return Err(StoreError::Corrupt(format!("turn {turn} already has a log")));
                }
                tx.commit().map_err(unavailable)
            })
            .await
    }

    async fn append(
        &self,
        owner: &Owner,
        turn: &MessageId,
        events: &[LoggedEvent],
        end: bool,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let batch = match events.last() {
            Some(last) => Some((last.id, record::log_events_json(events)?)),
            None => None,
        };
        let (o, t) = (owner.clone(), turn.clone());
        self.store
            .with_later(move |c| {
                let tx = c.transaction().map_err(unavailable)?;
                let last_id = match &batch {
                    Some((last_id, json)) => {
                        tx.prepare_cached(
                            "INSERT INTO turn_log_entries (owner, turn, last_id, events) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .and_then(|mut st| st.execute(params![o.as_str(), t.as_str(), *last_id as i64, json]))
                        .map_err(unavailable)?;
                        *last_id as i64
                    }
                    None => 0,
                };
                let n = tx
                    .prepare_cached(
                        "UPDATE turn_logs SET last_id = MAX(last_id, ?3), ended = ended OR ?4, \
                         updated_at = ?5, expires_at = ?6 WHERE owner = ?1 AND turn = ?2",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            o.as_str(),
                            t.as_str(),
                            last_id,
                            end,
                            at.millis(),
                            expires_at(at)
                        ])
                    })
                    .map_err(unavailable)?;
                if n == 0 {
                    return Err(StoreError::Corrupt(format!("turn {t} has no log")));
                }
                tx.commit().map_err(unavailable)
            })
            .await?;
        self.appended.wake(turn);
        Ok(())
    }

    async fn read(
        &self,
        owner: &Owner,
        turn: &MessageId,
        after: u64,
    ) -> Result<Option<LogRead>, StoreError> {
        let (owner, turn) = (owner.clone(), turn.clone());
        self.store
            .with(move |c| {
                let Some((conversation_id, ended, stop, updated_at)) =
                    head(c, owner.as_str(), turn.as_str())?
                else {
                    return Ok(None);
                };
                let mut stmt = c
                    .prepare_cached(
                        "SELECT events FROM turn_log_entries WHERE owner = ?1 AND turn = ?2 AND last_id > ?3 ORDER BY last_id",
                    )
                    .map_err(unavailable)?;
                let batches = stmt
                    .query_map(params![owner.as_str(), turn.as_str(), i64::try_from(after).unwrap_or(i64::MAX)], |r| {
                        r.get::<_, String>(0)
                    })
                    .map_err(unavailable)?;
                let mut events = Vec::new();
                for batch in batches {
                    let json = batch.map_err(unavailable)?;
                    events.extend(
                        record::log_events_from_json(&json)?
                            .into_iter()
                            .filter(|e| e.id > after),
                    );
                }
                Ok(Some(LogRead {
                    conversation_id: conversation_id.into(),
                    events,
                    ended,
                    stop_requested: stop,
                    last_write: Timestamp::from_millis(updated_at),
                }))
            })
            .await
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
        let (o, t) = (owner.clone(), turn.clone());
        let outcome = self
            .store
            .with(move |c| {
                let n = c
                    .execute(
                        "UPDATE turn_logs SET stop = 1 WHERE owner = ?1 AND turn = ?2 AND ended = 0 AND stop = 0",
                        params![o.as_str(), t.as_str()],
                    )
                    .map_err(unavailable)?;
                if n > 0 {
                    return Ok(StopOutcome::Stopping);
                }
                Ok(match head(c, o.as_str(), t.as_str())? {
                    Some((_, true, _, _)) => StopOutcome::Ended,
                    Some((_, false, true, _)) => StopOutcome::AlreadyAsked,
                    Some(_) => StopOutcome::Ended,
                    None => StopOutcome::Unknown,
                })
            })
            .await?;
        if outcome == StopOutcome::Stopping {
            self.stopped.wake(turn);
        }
        Ok(outcome)
    }

    async fn stop_requested(&self, owner: &Owner, turn: &MessageId) -> Result<bool, StoreError> {
        let (o, t) = (owner.clone(), turn.clone());
        self.store
            .with(move |c| Ok(head(c, o.as_str(), t.as_str())?.is_some_and(|h| h.2)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::contract::Subject;
    use crate::turns::contract::Instances;

    crate::turn_log_contract_tests!(contract, async {
        let store = SqliteStore::in_memory().unwrap();
        Some(Subject::new(Instances {
            here: Arc::new(SqliteTurnLog::new(store.clone())),
            // Another process on the same database file: its own broadcast, the same rows.
            elsewhere: Arc::new(SqliteTurnLog::new(store)),
        }))
    });

    #[tokio::test]
    async fn expired_logs_are_swept_when_a_turn_begins() {
        let store = SqliteStore::in_memory().unwrap();
        let log = SqliteTurnLog::new(store.clone());
        let owner = Owner::local();
        let (old, new) = (MessageId::generate(), MessageId::generate());
        let conv = ConversationId::generate();
        let long_ago = Timestamp::from_millis(1_000_000);
        log.begin(&owner, &old, &conv, long_ago).await.unwrap();
        let event = LoggedEvent {
            id: 1,
            name: "meta".into(),
            data: "{}".into(),
        };
        log.append(&owner, &old, &[event], true, long_ago)
            .await
            .unwrap();
        log.begin(&owner, &new, &conv, Timestamp::now())
            .await
            .unwrap();
        assert_eq!(log.read(&owner, &old, 0).await.unwrap(), None);
        let rows: i64 = store
            .with(|c| {
                c.query_row("SELECT COUNT(*) FROM turn_log_entries", [], |r| r.get(0))
                    .map_err(unavailable)
            })
            .await
            .unwrap();
        assert_eq!(rows, 0, "its events went with it");
        assert!(log.read(&owner, &new, 0).await.unwrap().is_some());
    }
}

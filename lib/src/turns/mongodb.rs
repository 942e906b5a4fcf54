//! The turn log in MongoDB: collection `turn_logs`, one document per turn (`_id` the turn, with its
//! `owner`), its events pushed in batches onto an array of `{i, n, d}` (id, name, data), read by
//! polling. A TTL index on `expires` removes a log [`RETENTION`](super::RETENTION) after its last
//! write (a document is far below MongoDB's 16 MB limit: an answer's events are a few hundred KB).

use std::time::Duration;

use ::mongodb::bson::{doc, Bson, DateTime, Document};
use ::mongodb::options::IndexOptions;
use ::mongodb::{Collection, Database, IndexModel};
use async_trait::async_trait;

use super::wakeups::{Listener, Wakeups};
use super::{LogRead, LoggedEvent, StopOutcome, TurnLog, MAX_POLL, RETENTION};
use crate::domain::{ConversationId, MessageId, Owner, Timestamp};
use crate::store::StoreError;

/// The turn log in a MongoDB database (the store's).
#[derive(Clone)]
pub struct MongoTurnLog {
    logs: Collection<Document>,
    appended: Wakeups,
    stopped: Wakeups,
}

fn unavailable(e: ::mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("turn log: {what}"))
}

fn expires(at: Timestamp) -> DateTime {
    DateTime::from_millis(at.millis().saturating_add(RETENTION.as_millis() as i64))
}

fn whole(d: &Document, k: &str) -> Result<i64, StoreError> {
    match d.get(k) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::Double(v)) if v.fract() == 0.0 => Ok(*v as i64),
        _ => Err(corrupt(&format!("`{k}` is not a whole number"))),
    }
}

fn text(d: &Document, k: &str) -> Result<String, StoreError> {
    d.get_str(k)
        .map(str::to_owned)
        .map_err(|_| corrupt(&format!("`{k}` is not text")))
}

impl MongoTurnLog {
    /// The log in `db`, creating its TTL index when it is missing.
    pub async fn open(db: &Database) -> Result<Self, StoreError> {
        let log = Self::new(db);
        let ttl = IndexModel::builder()
            .keys(doc! {"expires": 1})
            .options(
                IndexOptions::builder()
                    .expire_after(Duration::from_secs(0))
                    .build(),
            )
            .build();
        log.logs.create_index(ttl).await.map_err(unavailable)?;
        Ok(log)
    }

    /// The log in `db`, as it is.
    pub fn new(db: &Database) -> Self {
        Self {
            logs: db.collection("turn_logs"),
            appended: Wakeups::new(),
            stopped: Wakeups::new(),
        }
    }

    fn by_id(owner: &Owner, turn: &MessageId) -> Document {
        doc! {"_id": turn.as_str(), "owner": owner.as_str()}
    }
}

#[async_trait]
impl TurnLog for MongoTurnLog {
    async fn begin(
        &self,
        owner: &Owner,
        turn: &MessageId,
        conversation: &ConversationId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let inserted = self
            .logs
            .insert_one(doc! {
                "_id": turn.as_str(),
                "owner": owner.as_str(),
                "conversation_id": conversation.as_str(),
                "ended": false,
                "stop": false,
                "at": at.millis(),
                "expires": expires(at),
                "events": [],
            })
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if matches!(*e.kind, ::mongodb::error::ErrorKind::Write(_)) => Err(
                StoreError::Corrupt(format!("turn {turn} already has a log")),
            ),
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
        let batch: Vec<Bson> = events
            .iter()
            .map(|e| {
                Bson::Document(doc! {
                    "i": i64::try_from(e.id).unwrap_or(i64::MAX),
                    "n": &e.name,
                    "d": &e.data,
                })
            })
            .collect();
        let mut set = doc! {"at": at.millis(), "expires": expires(at)};
        if end {
            set.insert("ended", true);
        }
        let update = if batch.is_empty() {
            // A heartbeat, or an end without events.
            doc! {"$set": set}
        } else {
            doc! {"$push": {"events": {"$each": batch}}, "$set": set}
        };
        let updated = self
            .logs
            .update_one(Self::by_id(owner, turn), update)
            .await
            .map_err(unavailable)?;
        if updated.matched_count == 0 {
            return Err(StoreError::Corrupt(format!("turn {turn} has no log")));
        }
        self.appended.wake(turn);
        Ok(())
    }

    async fn read(
        &self,
        owner: &Owner,
        turn: &MessageId,
        after: u64,
    ) -> Result<Option<LogRead>, StoreError> {
        let Some(d) = self
            .logs
            .find_one(Self::by_id(owner, turn))
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let mut events = Vec::new();
        for e in d
            .get_array("events")
            .map_err(|_| corrupt("`events` is not a list"))?
        {
            let Bson::Document(e) = e else {
                return Err(corrupt("an event is not a document"));
            };
            let id = u64::try_from(whole(e, "i")?).map_err(|_| corrupt("a negative id"))?;
            if id > after {
                events.push(LoggedEvent {
                    id,
                    name: text(e, "n")?,
                    data: text(e, "d")?,
                });
            }
        }
        Ok(Some(LogRead {
            conversation_id: ConversationId::from(text(&d, "conversation_id")?),
            events,
            ended: d.get_bool("ended").unwrap_or(false),
            stop_requested: d.get_bool("stop").unwrap_or(false),
            last_write: Timestamp::from_millis(whole(&d, "at")?),
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
        let mut running = Self::by_id(owner, turn);
        running.insert("ended", false);
        running.insert("stop", false);
        let asked = self
            .logs
            .update_one(running, doc! {"$set": {"stop": true}})
            .await
            .map_err(unavailable)?;
        if asked.matched_count > 0 {
            self.stopped.wake(turn);
            return Ok(StopOutcome::Stopping);
        }
        let found = self
            .logs
            .find_one(Self::by_id(owner, turn))
            .projection(doc! {"ended": 1, "stop": 1})
            .await
            .map_err(unavailable)?;
        Ok(match found {
            None => StopOutcome::Unknown,
            Some(d) if d.get_bool("ended").unwrap_or(false) => StopOutcome::Ended,
            Some(d) if d.get_bool("stop").unwrap_or(false) => StopOutcome::AlreadyAsked,
            Some(_) => StopOutcome::Ended,
        })
    }

    async fn stop_requested(&self, owner: &Owner, turn: &MessageId) -> Result<bool, StoreError> {
        Ok(self
            .logs
            .find_one(Self::by_id(owner, turn))
            .projection(doc! {"stop": 1})
            .await
            .map_err(unavailable)?
            .is_some_and(|d| d.get_bool("stop").unwrap_or(false)))
    }

    fn poll_interval(&self) -> Duration {
        MAX_POLL
    }
}

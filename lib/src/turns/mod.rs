//! The `TurnLog` port: the events of a chat turn, kept so that any instance can follow a turn
//! another one generates (a reload, a second tab, a resumed connection), and a stop flag that any
//! instance can raise and the generating one sees.
//!
//! A turn is named by its answer's id and owned by a user; its events are numbered from 1 (`meta`)
//! and rise by one. The answer task writes: [`TurnLog::begin`], then [`TurnLog::append`] batches of
//! consecutive events (tokens are gathered for up to 100 ms, so a log write is per batch, never per
//! token), the last batch with `end`. Readers anywhere [`TurnLog::read`] everything after the id
//! they have and wait for more ([`follow`](trait.TurnLog.html#method.follow)): woken at once by an
//! append in the same process (the in-process broadcast of [`wakeups`]), otherwise after the poll
//! interval ([`TurnLog::poll_interval`], at most 250 ms). Nothing runs while no turn is followed.
//!
//! Adapters: SQLite (embedded), DynamoDB (items with a TTL), MongoDB. One contract suite,
//! [`turn_log_contract_tests!`](crate::turn_log_contract_tests), runs on all three, with a second
//! adapter object on the same backing store standing for another instance.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{ConversationId, MessageId, Owner, Timestamp};
use crate::store::StoreError;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod wakeups;

/// How long a turn's log is kept after its last write: resuming and replaying an answer event by
/// event works for this long; later, a finished answer is replayed from the stored message.
pub const RETENTION: Duration = Duration::from_secs(3600);

/// The longest poll interval an adapter may have: a reader on another instance sees new events,
/// and the generating instance sees a stop, at most this late.
pub const MAX_POLL: Duration = Duration::from_millis(250);

/// One event of a turn as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Its number in the turn: 1 is `meta`, then one more per event.
    pub id: u64,
    /// The SSE event name (`meta`, `token`, `queued`, `title`, `done`, `error`).
    pub name: String,
    /// The event's data, a JSON document.
    pub data: String,
}

/// What a reader gets.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRead {
    /// The conversation of the turn.
    pub conversation_id: ConversationId,
    /// The events after the id asked for, in order.
    pub events: Vec<LoggedEvent>,
    /// Whether the turn has ended: its last event is in the log.
    pub ended: bool,
    /// Whether a stop was asked.
    pub stop_requested: bool,
    /// When the log was last written (a turn whose instance died stops being written).
    pub last_write: Timestamp,
}

/// What asking a turn to stop came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The turn is running; it has been asked to stop now.
    Stopping,
    /// The turn is running and had been asked to stop already.
    AlreadyAsked,
    /// The turn had already ended.
    Ended,
    /// No such turn for this owner.
    Unknown,
}

/// The events of chat turns and their stop flags, scoped by owner.
#[async_trait]
pub trait TurnLog: Send + Sync {
    /// Opens the log of turn `turn` (its answer's id) of `conversation`: running, no event yet,
    /// no stop asked. Opening a turn that exists is an error.
    async fn begin(
        &self,
        owner: &Owner,
        turn: &MessageId,
        conversation: &ConversationId,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Appends consecutive events (the first follows the last one appended); with `end`, they are
    /// the last of the turn. No events and no `end`: a heartbeat (the turn is alive: only the time
    /// of the last write moves). Readers waiting in this process are woken.
    async fn append(
        &self,
        owner: &Owner,
        turn: &MessageId,
        events: &[LoggedEvent],
        end: bool,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The events after `after` and the turn's state; `None` when the owner has no such turn.
    async fn read(
        &self,
        owner: &Owner,
        turn: &MessageId,
        after: u64,
    ) -> Result<Option<LogRead>, StoreError>;

    /// A listener for appends to `turn` in this process, taken before a read so that an append
    /// right after the read still wakes it.
    fn listen(&self, turn: &MessageId) -> wakeups::Listener;

    /// A listener for stops of `turn` asked in this process.
    fn listen_stop(&self, turn: &MessageId) -> wakeups::Listener;

    /// Asks a running turn to stop (the flag is kept with the log, so the instance that generates
    /// it sees it whichever instance asked). Wakes stop listeners in this process.
    async fn request_stop(
        &self,
        owner: &Owner,
        turn: &MessageId,
    ) -> Result<StopOutcome, StoreError>;

    /// Whether a stop was asked for `turn` (`false` for an unknown turn).
    async fn stop_requested(&self, owner: &Owner, turn: &MessageId) -> Result<bool, StoreError>;

    /// How often a reader looks again for events another instance writes (at most [`MAX_POLL`]).
    fn poll_interval(&self) -> Duration {
        MAX_POLL
    }
}

impl dyn TurnLog {
    /// Reads what follows `after`, waiting when there is nothing new yet: returns as soon as there
    /// are events after `after` or the turn has ended, or after `within` with whatever there is.
    /// `None` when the owner has no such turn.
    pub async fn follow(
        &self,
        owner: &Owner,
        turn: &MessageId,
        after: u64,
        within: Duration,
    ) -> Result<Option<LogRead>, StoreError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let listener = self.listen(turn);
            let Some(read) = self.read(owner, turn, after).await? else {
                return Ok(None);
            };
            let now = tokio::time::Instant::now();
            if !read.events.is_empty() || read.ended || now >= deadline {
                return Ok(Some(read));
            }
            listener
                .wait(self.poll_interval().min(deadline - now))
                .await;
        }
    }
}

/// The time after which a log expires (for the adapters' TTLs): `at` plus [`RETENTION`], in
/// seconds since the epoch.
pub fn expires_at(at: Timestamp) -> i64 {
    at.millis() / 1000 + RETENTION.as_secs() as i64
}

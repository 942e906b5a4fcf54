//! A turn's log, written while the answer streams: every event, numbered, goes to the
//! [`TurnLog`] in batches gathered for at most [`BATCH_WINDOW`] (one write per batch, never one
//! per token), so any instance can follow the turn. A writer task does the writing: the answer
//! never waits for the store between tokens. A silent turn (a model slow to start, an answer
//! waiting in line) still writes every [`HEARTBEAT`], so a follower can tell a slow turn from one
//! whose instance died.
//!
//! The stop watcher looks at the turn's stop flag every poll interval (and at once when the stop
//! is asked in this process) and tells the answer, which drops the model's stream: the request to
//! the provider is aborted.
//!
//! Events are kept in the service's own words ([`encode`], [`decode`]): the HTTP layer renders a
//! replayed event exactly as it renders a live one.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::{TurnEvent, TurnMeta, META_ID};
use crate::domain::{Citation, ConversationId, MessageId, Owner, Receipt, Timestamp};
use crate::service::Error;
use crate::turns::{LoggedEvent, TurnLog};

/// The longest a written event waits for the batch it joins.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// The longest a running turn goes without a log write.
pub const HEARTBEAT: Duration = Duration::from_secs(20);
/// A running turn whose log has not been written for this long has lost its instance.
pub const STALE_AFTER: Duration = Duration::from_secs(90);

/// An event of a turn as its log keeps it, or the turn's `meta`.
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    /// Event 1.
    Meta(TurnMeta),
    /// Every later one.
    Event(TurnEvent),
}

#[derive(Serialize, Deserialize)]
struct QueuedRecord {
    position: usize,
}

#[derive(Deserialize)]
struct TokenRecord {
    text: String,
}

#[derive(Deserialize)]
struct TitleRecord {
    conversation_id: ConversationId,
    title: String,
}

#[derive(Deserialize)]
struct DoneRecord {
    message_id: MessageId,
    finish_reason: String,
    usage: Receipt,
    /// Absent from logs written before citations.
    #[serde(default)]
    citations: Vec<Citation>,
}

// The records above as they are written, borrowing the event (nothing is copied to encode it).

#[derive(Serialize)]
struct TokenOut<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct TitleOut<'a> {
    conversation_id: &'a ConversationId,
    title: &'a str,
}

#[derive(Serialize)]
struct DoneOut<'a> {
    message_id: &'a MessageId,
    finish_reason: &'a str,
    usage: &'a Receipt,
    citations: &'a [Citation],
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The log's name and data of an event.
pub fn encode(event: &TurnEvent) -> (&'static str, String) {
    match event {
        TurnEvent::Queued { position } => (
            "queued",
            json(&QueuedRecord {
                position: *position,
            }),
        ),
        TurnEvent::Token(text) => ("token", json(&TokenOut { text })),
        TurnEvent::Title {
            conversation_id,
            title,
        } => (
            "title",
            json(&TitleOut {
                conversation_id,
                title,
            }),
        ),
        TurnEvent::Done {
            message_id,
            finish_reason,
            usage,
            citations,
        } => (
            "done",
            json(&DoneOut {
                message_id,
                finish_reason,
                usage,
                citations,
            }),
        ),
        TurnEvent::Error(e) => ("error", json(e)),
    }
}

/// The `meta` event as the log keeps it.
pub fn encode_meta(meta: &TurnMeta) -> LoggedEvent {
    LoggedEvent {
        id: META_ID,
        name: "meta".into(),
        data: json(meta),
    }
}

/// An event of the log, read back; `None` for one this version does not know.
pub fn decode(e: &LoggedEvent) -> Option<Logged> {
    let d = e.data.as_str();
    let event = match e.name.as_str() {
        "meta" => return serde_json::from_str(d).ok().map(Logged::Meta),
        "queued" => serde_json::from_str::<QueuedRecord>(d)
            .ok()
            .map(|r| TurnEvent::Queued {
                position: r.position,
            }),
        "token" => serde_json::from_str::<TokenRecord>(d)
            .ok()
            .map(|r| TurnEvent::Token(r.text)),
        "title" => serde_json::from_str::<TitleRecord>(d)
            .ok()
            .map(|r| TurnEvent::Title {
                conversation_id: r.conversation_id,
                title: r.title,
            }),
        "done" => serde_json::from_str::<DoneRecord>(d)
            .ok()
            .map(|r| TurnEvent::Done {
                message_id: r.message_id,
                finish_reason: r.finish_reason,
                usage: r.usage,
                citations: r.citations,
            }),
        "error" => serde_json::from_str::<Error>(d).ok().map(TurnEvent::Error),
        _ => None,
    };
    event.map(Logged::Event)
}

/// Writes one turn's log.
///
/// Recording an event encodes it and adds it to the batch being gathered, under a lock held for a
/// push: the writer task is woken once per batch (by its first event, and at the end), not per
/// event, so a token costs the answer task no task wake, channel or copy of the event.
pub struct Recorder {
    shared: Arc<Shared>,
    writer: JoinHandle<()>,
}

/// What the answer task and the writer share.
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: a batch has begun, or the log is closed.
    wake: Notify,
}

/// The batch being gathered.
#[derive(Default)]
struct Pending {
    events: Vec<LoggedEvent>,
    /// No more events come.
    closed: bool,
    /// The log could not be opened: events are not kept.
    discard: bool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves a plain batch behind: still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Recorder {
    /// Opens the log of the turn `meta` starts (its `meta` the first event) and starts its writer.
    pub fn start(log: Arc<dyn TurnLog>, owner: Owner, meta: &TurnMeta) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                events: vec![encode_meta(meta)],
                ..Pending::default()
            }),
            wake: Notify::new(),
        });
        let writer = Writer {
            log,
            owner,
            turn: meta.assistant_message_id.clone(),
            conversation: meta.conversation_id.clone(),
            shared: Arc::clone(&shared),
        };
        Self {
            shared,
            writer: tokio::spawn(writer.run()),
        }
    }

    /// Adds event `id` to the log (written with the next batch).
    pub fn record(&self, id: u64, event: &TurnEvent) {
        let (name, data) = encode(event);
        let logged = LoggedEvent {
            id,
            name: name.into(),
            data,
        };
        let mut pending = self.shared.pending();
        if pending.closed || pending.discard {
            return;
        }
        let first = pending.events.is_empty();
        pending.events.push(logged);
        drop(pending);
        if first {
            self.shared.wake.notify_one();
        }
    }

    /// No more events: the last batch is written, marked as the end.
    pub fn close(&mut self) {
        self.shared.pending().closed = true;
        self.shared.wake.notify_one();
    }

    /// Closes the log and waits until its last batch is written.
    pub async fn finish(mut self) {
        self.close();
        let _ = (&mut self.writer).await;
    }
}

struct Writer {
    log: Arc<dyn TurnLog>,
    owner: Owner,
    turn: MessageId,
    conversation: ConversationId,
    shared: Arc<Shared>,
}

impl Writer {
    async fn run(self) {
        let began = self
            .log
            .begin(
                &self.owner,
                &self.turn,
                &self.conversation,
                Timestamp::now(),
            )
            .await;
        if let Err(e) = began {
            // The answer goes on and is stored; only following it from elsewhere is lost.
            tracing::warn!(turn = %self.turn, error = %e, "the turn's log could not be opened");
            let mut pending = self.shared.pending();
            pending.discard = true;
            pending.events = Vec::new();
            return;
        }
        // `meta` is waiting: its batch's window starts now.
        let mut waiting = true;
        let mut batch = Vec::new();
        loop {
            if !waiting {
                // Wait for a batch to begin (or the end), writing a heartbeat while the turn is
                // silent.
                let woken = tokio::time::timeout(HEARTBEAT, self.shared.wake.notified()).await;
                waiting = woken.is_ok();
            }
            if waiting {
                // Gather what comes within the window of the batch's first event; the end cuts
                // it short.
                let window = tokio::time::sleep(BATCH_WINDOW);
                tokio::pin!(window);
                while !self.shared.pending().closed {
                    tokio::select! {
                        biased;
                        () = self.shared.wake.notified() => {}
                        () = &mut window => break,
                    }
                }
            }
            let ended = {
                let mut pending = self.shared.pending();
                std::mem::swap(&mut batch, &mut pending.events);
                pending.closed
            };
            if batch.is_empty() && waiting && !ended {
                // Woken for a batch already written with the one before.
                waiting = false;
                continue;
            }
            let written = self
                .log
                .append(&self.owner, &self.turn, &batch, ended, Timestamp::now())
                .await;
            if let Err(e) = written {
                tracing::warn!(turn = %self.turn, events = batch.len(), error = %e, "a batch of the turn's log could not be written");
            }
            if ended {
                return;
            }
            batch.clear();
            waiting = false;
        }
    }
}

/// Watches a turn's stop flag until the turn ends; the receiver fires when a stop is asked.
pub struct StopWatch {
    task: JoinHandle<()>,
}

impl StopWatch {
    /// Starts watching `turn`.
    pub fn start(
        log: Arc<dyn TurnLog>,
        owner: Owner,
        turn: MessageId,
    ) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                let listener = log.listen_stop(&turn);
                match log.stop_requested(&owner, &turn).await {
                    Ok(true) => {
                        let _ = tx.send(());
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(turn = %turn, error = %e, "could not read the stop flag")
                    }
                }
                listener.wait(log.poll_interval()).await;
            }
        });
        (Self { task }, rx)
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_as_it_was_written() {
        let receipt = Receipt {
            model: "m".into(),
            provider: "openai".into(),
            prompt_tokens: 3,
            completion_tokens: 4,
            cost_usd: Some(0.5),
            time_to_first_token_ms: Some(9),
            duration_ms: 12,
        };
        for event in [
            TurnEvent::Queued { position: 2 },
            TurnEvent::Token("Hé \"there\"\n".into()),
            TurnEvent::Title {
                conversation_id: "c".into(),
                title: "T".into(),
            },
            TurnEvent::Done {
                message_id: MessageId::from("a"),
                finish_reason: "stopped".into(),
                usage: receipt.clone(),
                citations: vec![],
            },
            TurnEvent::Done {
                message_id: MessageId::from("a"),
                finish_reason: "stop".into(),
                usage: receipt.clone(),
                citations: vec![crate::domain::Citation {
                    n: 3,
                    file_id: Some("f".into()),
                    filename: Some("r.pdf".into()),
                    page: Some(7),
                    sheet: None,
                    snippet: "The canary \"sings\".".into(),
                    memory: None,
                }],
            },
            TurnEvent::Done {
                message_id: MessageId::from("a"),
                finish_reason: "stop".into(),
                usage: receipt.clone(),
                citations: vec![crate::domain::Citation {
                    n: 4,
                    file_id: None,
                    filename: None,
                    page: None,
                    sheet: None,
                    snippet: "The gate code is 4417.".into(),
                    memory: Some(crate::domain::MemorySource {
                        conversation_id: "c-a".into(),
                        message_id: Some("m-a".into()),
                        title: "Moving house".into(),
                    }),
                }],
            },
            TurnEvent::Error(Error::Upstream("the provider failed".into())),
            TurnEvent::Error(Error::RateLimited {
                retry_after_secs: 3,
                message: "slow down".into(),
            }),
        ] {
            let (name, data) = encode(&event);
            let back = decode(&LoggedEvent {
                id: 2,
                name: name.into(),
                data,
            });
            assert_eq!(back, Some(Logged::Event(event)));
        }
        let meta = TurnMeta {
            conversation_id: "c".into(),
            user_message_id: "u".into(),
            assistant_message_id: "a".into(),
            created_conversation: false,
            files: vec![],
            model: "m".into(),
        };
        assert_eq!(decode(&encode_meta(&meta)), Some(Logged::Meta(meta)));
        let unknown = LoggedEvent {
            id: 3,
            name: "future".into(),
            data: "{}".into(),
        };
        assert_eq!(decode(&unknown), None);
    }

    #[test]
    fn a_done_logged_before_citations_reads_back_citing_nothing() {
        let old = LoggedEvent {
            id: 9,
            name: "done".into(),
            data: r#"{"message_id":"a","finish_reason":"stop","usage":{"model":"m","provider":"openai","prompt_tokens":3,"completion_tokens":4,"cost_usd":null,"time_to_first_token_ms":null,"duration_ms":12}}"#.into(),
        };
        let Some(Logged::Event(TurnEvent::Done {
            finish_reason,
            citations,
            ..
        })) = decode(&old)
        else {
            panic!("{:?}", decode(&old));
        };
        assert_eq!(finish_reason, "stop");
        assert!(citations.is_empty());
    }

    /// The SQLite turn log, counting the writes that carry events.
    #[cfg(feature = "sqlite")]
    struct Counted {
        log: crate::turns::sqlite::SqliteTurnLog,
        writes: std::sync::Mutex<Vec<(usize, bool)>>,
    }

    #[cfg(feature = "sqlite")]
    #[async_trait::async_trait]
    impl TurnLog for Counted {
        async fn begin(
            &self,
            owner: &Owner,
            turn: &MessageId,
            conversation: &ConversationId,
            at: Timestamp,
        ) -> Result<(), crate::store::StoreError> {
            self.log.begin(owner, turn, conversation, at).await
        }

        async fn append(
            &self,
            owner: &Owner,
            turn: &MessageId,
            events: &[LoggedEvent],
            end: bool,
            at: Timestamp,
        ) -> Result<(), crate::store::StoreError> {
            self.writes.lock().unwrap().push((events.len(), end));
            self.log.append(owner, turn, events, end, at).await
        }

        async fn read(
            &self,
            owner: &Owner,
            turn: &MessageId,
            after: u64,
        ) -> Result<Option<crate::turns::LogRead>, crate::store::StoreError> {
            self.log.read(owner, turn, after).await
        }

        fn listen(&self, turn: &MessageId) -> crate::turns::wakeups::Listener {
            self.log.listen(turn)
        }

        fn listen_stop(&self, turn: &MessageId) -> crate::turns::wakeups::Listener {
            self.log.listen_stop(turn)
        }

        async fn request_stop(
            &self,
            owner: &Owner,
            turn: &MessageId,
        ) -> Result<crate::turns::StopOutcome, crate::store::StoreError> {
            self.log.request_stop(owner, turn).await
        }

        async fn stop_requested(
            &self,
            owner: &Owner,
            turn: &MessageId,
        ) -> Result<bool, crate::store::StoreError> {
            self.log.stop_requested(owner, turn).await
        }
    }

    #[cfg(feature = "sqlite")]
    fn counted() -> Arc<Counted> {
        let store = crate::store::sqlite::SqliteStore::in_memory().unwrap();
        Arc::new(Counted {
            log: crate::turns::sqlite::SqliteTurnLog::new(store),
            writes: std::sync::Mutex::new(Vec::new()),
        })
    }

    #[cfg(feature = "sqlite")]
    fn meta(turn: &str) -> TurnMeta {
        TurnMeta {
            conversation_id: "c".into(),
            user_message_id: "u".into(),
            assistant_message_id: turn.into(),
            created_conversation: true,
            files: vec![],
            model: "m".into(),
        }
    }

    #[cfg(feature = "sqlite")]
    fn token(i: u64) -> TurnEvent {
        TurnEvent::Token(format!("t{i} \"q\"\n"))
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_burst_of_events_is_written_once_in_order_and_ended() {
        let log = counted();
        let owner = Owner::new("burst");
        let meta = meta("a-burst");
        let recorder = Recorder::start(log.clone(), owner.clone(), &meta);
        for i in 2..=201 {
            recorder.record(i, &token(i));
        }
        recorder.finish().await;
        assert_eq!(
            *log.writes.lock().unwrap(),
            [(201, true)],
            "one write: meta and 200 tokens, the end"
        );
        let read = log
            .read(&owner, &meta.assistant_message_id, 0)
            .await
            .unwrap()
            .unwrap();
        assert!(read.ended);
        assert_eq!(decode(&read.events[0]), Some(Logged::Meta(meta)));
        let back: Vec<_> = read.events[1..].iter().map(|e| (e.id, decode(e))).collect();
        let sent: Vec<_> = (2..=201)
            .map(|i| (i, Some(Logged::Event(token(i)))))
            .collect();
        assert_eq!(back, sent);
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn an_event_after_a_written_batch_is_written_before_the_end() {
        let log = counted();
        let owner = Owner::new("later");
        let meta = meta("a-later");
        let turn = meta.assistant_message_id.clone();
        let recorder = Recorder::start(log.clone(), owner.clone(), &meta);
        for i in 2..=3 {
            recorder.record(i, &token(i));
            // Written within a window, with the turn still running.
            let read = crate::testing::eventually(
                Duration::from_secs(10),
                "the event to be written",
                || async {
                    // No log yet (its writer has not begun it) reads as nothing written.
                    let read = log.read(&owner, &turn, i - 1).await.unwrap()?;
                    (!read.events.is_empty()).then_some(read)
                },
            )
            .await;
            assert!(!read.ended);
            assert_eq!(read.events.len(), 1);
            assert_eq!(read.events[0].id, i);
        }
        recorder.finish().await;
        let read = log.read(&owner, &turn, 0).await.unwrap().unwrap();
        assert!(read.ended);
        let ids: Vec<u64> = read.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(
            *log.writes.lock().unwrap(),
            [(2, false), (1, false), (0, true)],
            "a batch per event that came alone, then the end"
        );
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_log_that_cannot_be_opened_keeps_nothing_and_the_turn_ends() {
        let log = counted();
        let owner = Owner::new("taken");
        let meta = meta("a-taken");
        // The turn has a log already: opening it again fails.
        log.begin(
            &owner,
            &meta.assistant_message_id,
            &meta.conversation_id,
            Timestamp::now(),
        )
        .await
        .unwrap();
        let recorder = Recorder::start(log.clone(), owner.clone(), &meta);
        crate::testing::eventually(Duration::from_secs(10), "the writer to give up", || async {
            recorder.shared.pending().discard.then_some(())
        })
        .await;
        for i in 2..=1000 {
            recorder.record(i, &token(i));
        }
        assert!(
            recorder.shared.pending().events.is_empty(),
            "nothing piles up"
        );
        recorder.finish().await;
        assert!(log.writes.lock().unwrap().is_empty());
    }
}

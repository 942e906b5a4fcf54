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

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Numbered, TurnEvent, TurnMeta, META_ID};
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

#[derive(Serialize, Deserialize)]
struct TokenRecord {
    text: String,
}

#[derive(Serialize, Deserialize)]
struct TitleRecord {
    conversation_id: ConversationId,
    title: String,
}

#[derive(Serialize, Deserialize)]
struct DoneRecord {
    message_id: MessageId,
    finish_reason: String,
    usage: Receipt,
    /// Absent from logs written before citations.
    #[serde(default)]
    citations: Vec<Citation>,
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
        TurnEvent::Token(text) => ("token", json(&TokenRecord { text: text.clone() })),
        TurnEvent::Title {
            conversation_id,
            title,
        } => (
            "title",
            json(&TitleRecord {
                conversation_id: conversation_id.clone(),
                title: title.clone(),
            }),
        ),
        TurnEvent::Done {
            message_id,
            finish_reason,
            usage,
            citations,
        } => (
            "done",
            json(&DoneRecord {
                message_id: message_id.clone(),
                finish_reason: finish_reason.clone(),
                usage: usage.clone(),
                citations: citations.clone(),
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
pub struct Recorder {
    tx: Option<mpsc::UnboundedSender<Numbered>>,
    writer: JoinHandle<()>,
}

impl Recorder {
    /// Opens the log of the turn `meta` starts (its `meta` the first event) and starts its writer.
    pub fn start(log: Arc<dyn TurnLog>, owner: Owner, meta: &TurnMeta) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            log,
            owner,
            turn: meta.assistant_message_id.clone(),
            conversation: meta.conversation_id.clone(),
            meta: encode_meta(meta),
        };
        Self {
            tx: Some(tx),
            writer: tokio::spawn(writer.run(rx)),
        }
    }

    /// Adds an event to the log (written with the next batch).
    pub fn record(&self, event: &Numbered) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event.clone());
        }
    }

    /// No more events: the last batch is written, marked as the end.
    pub fn close(&mut self) {
        self.tx = None;
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
    meta: LoggedEvent,
}

impl Writer {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Numbered>) {
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
            while rx.recv().await.is_some() {}
            return;
        }
        let mut batch = vec![self.meta.clone()];
        let mut ended = false;
        while !ended {
            if batch.is_empty() {
                // Wait for the next event, writing a heartbeat while the turn is silent.
                match tokio::time::timeout(HEARTBEAT, rx.recv()).await {
                    Ok(Some(e)) => batch.push(logged(&e)),
                    Ok(None) => ended = true,
                    Err(_) => {}
                }
            }
            // Gather what comes within the window of the batch's first event.
            let window = tokio::time::sleep(BATCH_WINDOW);
            tokio::pin!(window);
            while !ended && !batch.is_empty() {
                tokio::select! {
                    biased;
                    e = rx.recv() => match e {
                        Some(e) => batch.push(logged(&e)),
                        None => ended = true,
                    },
                    () = &mut window => break,
                }
            }
            let written = self
                .log
                .append(&self.owner, &self.turn, &batch, ended, Timestamp::now())
                .await;
            if let Err(e) = written {
                tracing::warn!(turn = %self.turn, events = batch.len(), error = %e, "a batch of the turn's log could not be written");
            }
            batch.clear();
        }
    }
}

fn logged(n: &Numbered) -> LoggedEvent {
    let (name, data) = encode(&n.event);
    LoggedEvent {
        id: n.id,
        name: name.into(),
        data,
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
    use crate::domain::MessageId;

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
                    file_id: "f".into(),
                    filename: "r.pdf".into(),
                    page: Some(7),
                    sheet: None,
                    snippet: "The canary \"sings\".".into(),
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
}

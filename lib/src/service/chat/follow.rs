//! Following a turn from any instance, and stopping it.
//!
//! [`ChatService::follow`] gives the events of the turn whose answer is `message_id` after a given
//! id: read from the turn's log, then followed live until the turn ends (woken at once by an
//! append in this process, polling the store otherwise). Tokens read together are merged into one
//! `token` event carrying the id of the last of them, so a reader that resumes from any id gets
//! every token exactly once. A turn whose log has expired is replayed from the stored answer.
//!
//! A turn whose instance died (its log unwritten for [`STALE_AFTER`]) is ended by whoever finds
//! it: its answer is stored with the text the log holds, and its log ends with an `error`.
//!
//! [`ChatService::stop`] raises the turn's stop flag; the instance that generates it sees the flag
//! within its poll interval and aborts the model's request.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};

use super::recorder::{decode, encode, Logged, STALE_AFTER};
use super::{ChatService, TurnEvent, TurnMeta, META_ID};
use crate::domain::{Message, MessageId, MessageStatus, Owner, Role, Timestamp};
use crate::service::Error;
use crate::turns::{LogRead, LoggedEvent, StopOutcome};

/// How long a follower or a stop waits for the log of a turn that has just begun.
pub const START_GRACE: Duration = Duration::from_secs(5);
/// How long one wait for new events lasts before the follower looks again (the stream stays
/// open; the HTTP layer keeps it alive with pings).
const FOLLOW_WAIT: Duration = Duration::from_secs(10);
/// How long a second stop waits for the turn to end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// One event of a followed turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Followed {
    /// Its id (a merged `token` has the id of its last token).
    pub id: u64,
    /// `meta` or a later event.
    pub event: Logged,
}

/// Where a stop request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopStatus {
    /// The turn was asked to stop; it ends within a second.
    Stopping,
    /// The turn had ended (or has ended now).
    Finished,
}

/// Whether `m` is the placeholder of an answer being generated: empty, `incomplete`, no receipt.
fn placeholder(m: &Message) -> bool {
    m.role == Role::Assistant
        && m.status == MessageStatus::Incomplete
        && m.content.is_empty()
        && m.usage.is_none()
}

fn age(at: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(Timestamp::now().millis() - at.millis()).unwrap_or(0))
}

/// Whether a running turn's instance is gone.
fn stale(read: &LogRead) -> bool {
    !read.ended && age(read.last_write) > STALE_AFTER
}

/// The events of one read, consecutive tokens merged (carrying the last one's id).
fn merged(events: &[LoggedEvent]) -> Vec<Followed> {
    let mut out: Vec<Followed> = Vec::new();
    for e in events {
        let Some(event) = decode(e) else {
            continue;
        };
        if let (
            Some(Followed {
                id,
                event: Logged::Event(TurnEvent::Token(text)),
            }),
            Logged::Event(TurnEvent::Token(more)),
        ) = (out.last_mut(), &event)
        {
            text.push_str(more);
            *id = e.id;
            continue;
        }
        out.push(Followed { id: e.id, event });
    }
    out
}

/// The events of a stored answer whose log is gone: `meta`, its text as one token, and how it
/// ended (`done`, `finish_reason` `stop` or `incomplete`; `error` for an answer with none).
fn replayed(message: &Message, question: Option<&Message>, after: u64) -> Vec<Followed> {
    let meta = TurnMeta {
        conversation_id: message.conversation_id.clone(),
        user_message_id: message
            .parent_id
            .clone()
            .unwrap_or_else(|| message.id.clone()),
        assistant_message_id: message.id.clone(),
        created_conversation: false,
        files: question.map(|q| q.files.clone()).unwrap_or_default(),
        model: message
            .usage
            .as_ref()
            .map(|u| u.model.clone())
            .unwrap_or_default(),
    };
    let mut events = vec![Followed {
        id: META_ID,
        event: Logged::Meta(meta),
    }];
    if !message.content.is_empty() {
        events.push(Followed {
            id: META_ID + 1,
            event: Logged::Event(TurnEvent::Token(message.content.clone())),
        });
    }
    let last = match (&message.usage, message.status) {
        (Some(usage), MessageStatus::Complete | MessageStatus::Incomplete) => TurnEvent::Done {
            message_id: message.id.clone(),
            finish_reason: if message.status == MessageStatus::Complete {
                "stop"
            } else {
                "incomplete"
            }
            .into(),
            usage: usage.clone(),
            citations: message.citations.clone(),
        },
        _ => TurnEvent::Error(Error::Upstream("The answer was not finished.".into())),
    };
    events.push(Followed {
        id: META_ID + 2,
        event: Logged::Event(last),
    });
    events.retain(|e| e.id > after);
    events
}

/// A followed turn, step by step.
struct Follower {
    service: ChatService,
    owner: Owner,
    message: Message,
    after: u64,
    pending: VecDeque<Followed>,
    over: bool,
}

impl Follower {
    async fn next(mut self) -> Option<(Result<Followed, Error>, Self)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.after = self.after.max(e.id);
                return Some((Ok(e), self));
            }
            if self.over {
                return None;
            }
            let log = self.service.turns.clone();
            let read = match log
                .follow(&self.owner, &self.message.id, self.after, FOLLOW_WAIT)
                .await
            {
                Ok(Some(read)) => read,
                Ok(None) => {
                    // The log expired while it was followed: what is stored is what there is.
                    self.over = true;
                    continue;
                }
                Err(e) => {
                    self.over = true;
                    return Some((Err(Error::from(e)), self));
                }
            };
            self.pending.extend(merged(&read.events));
            if read.ended {
                self.over = true;
                if self.pending.is_empty() {
                    // Asked for events past the end: the turn ended; say how.
                    match self.service.last_event(&self.owner, &self.message.id).await {
                        Ok(Some(e)) => self.pending.push_back(e),
                        Ok(None) => {}
                        Err(e) => return Some((Err(e), self)),
                    }
                }
            } else if stale(&read) {
                self.over = true;
                // The recovered log holds these events too.
                self.pending.clear();
                match self.service.recover(&self.owner, &self.message).await {
                    Ok(events) => self
                        .pending
                        .extend(events.into_iter().filter(|e| e.id > self.after)),
                    Err(e) => return Some((Err(e), self)),
                }
            }
        }
    }
}

impl ChatService {
    /// The events of the turn whose answer is `message_id`, after `after`: what the log holds,
    /// then what comes until the turn ends. Not found for an unknown id, another user's, or a user
    /// message.
    pub async fn follow(
        &self,
        owner: &Owner,
        message_id: &MessageId,
        after: u64,
    ) -> Result<BoxStream<'static, Result<Followed, Error>>, Error> {
        let message = self.answer(owner, message_id).await?;
        let logged = self.wait_for_log(owner, &message).await?;
        if !logged {
            let message = self.answer(owner, message_id).await?;
            let question = match &message.parent_id {
                Some(id) => self.store.get_message(owner, id).await?,
                None => None,
            };
            let events = replayed(&message, question.as_ref(), after);
            return Ok(futures::stream::iter(events.into_iter().map(Ok)).boxed());
        }
        let follower = Follower {
            service: self.clone(),
            owner: owner.clone(),
            message,
            after,
            pending: VecDeque::new(),
            over: false,
        };
        Ok(futures::stream::unfold(follower, Follower::next).boxed())
    }

    /// Asks the turn whose answer is `message_id` to stop. A turn already asked waits (a few
    /// seconds at most) for its end, then is `Finished` too.
    pub async fn stop(&self, owner: &Owner, message_id: &MessageId) -> Result<StopStatus, Error> {
        let message = self.answer(owner, message_id).await?;
        if !self.wait_for_log(owner, &message).await? {
            return Ok(StopStatus::Finished);
        }
        let Some(read) = self.turns.read(owner, message_id, u64::MAX).await? else {
            return Ok(StopStatus::Finished);
        };
        if read.ended {
            return Ok(StopStatus::Finished);
        }
        if stale(&read) {
            self.recover(owner, &message).await?;
            return Ok(StopStatus::Finished);
        }
        match self.turns.request_stop(owner, message_id).await? {
            StopOutcome::Stopping => Ok(StopStatus::Stopping),
            StopOutcome::AlreadyAsked => {
                // Asked twice: answered once the turn has ended.
                self.turns
                    .follow(owner, message_id, u64::MAX, STOP_WAIT)
                    .await?;
                Ok(StopStatus::Finished)
            }
            StopOutcome::Ended | StopOutcome::Unknown => Ok(StopStatus::Finished),
        }
    }

    /// The answer `id` of `owner`, or not found (a user message is not an answer).
    async fn answer(&self, owner: &Owner, id: &MessageId) -> Result<Message, Error> {
        self.store
            .get_message(owner, id)
            .await?
            .filter(|m| m.role == Role::Assistant)
            .ok_or_else(|| Error::NotFound(format!("No answer with id {id}.")))
    }

    /// Whether the answer has a log: waits up to [`START_GRACE`] for the log of a turn that has
    /// just begun (the answer task opens it as the model starts); a placeholder that never got one
    /// and is old is a turn whose instance died: it is ended as failed.
    async fn wait_for_log(&self, owner: &Owner, message: &Message) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + START_GRACE;
        loop {
            if self
                .turns
                .read(owner, &message.id, u64::MAX)
                .await?
                .is_some()
            {
                return Ok(true);
            }
            if !placeholder(message) {
                return Ok(false);
            }
            if age(message.created_at) > STALE_AFTER {
                self.recover(owner, message).await?;
                return Ok(false);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            self.turns
                .listen(&message.id)
                .wait(self.turns.poll_interval())
                .await;
        }
    }

    /// The last event of a turn's log.
    async fn last_event(&self, owner: &Owner, id: &MessageId) -> Result<Option<Followed>, Error> {
        let all = self.turns.read(owner, id, 0).await?;
        Ok(all
            .and_then(|r| r.events.last().cloned())
            .and_then(|e| decode(&e).map(|event| Followed { id: e.id, event })))
    }

    /// Ends a turn whose instance died: its answer is stored with the text its log holds
    /// (`incomplete`, or `error` when there is none), and the log ends with an `error` event,
    /// returned with the events before it. Its citations stay empty: the passages its `[n]` point
    /// at were only in the memory of the instance that died.
    async fn recover(&self, owner: &Owner, message: &Message) -> Result<Vec<Followed>, Error> {
        tracing::warn!(turn = %message.id, "a turn's instance stopped writing its log; it is ended as failed");
        let read = self.turns.read(owner, &message.id, 0).await?;
        let events = read.as_ref().map(|r| r.events.clone()).unwrap_or_default();
        let text: String = events
            .iter()
            .filter_map(decode)
            .filter_map(|e| match e {
                Logged::Event(TurnEvent::Token(t)) => Some(t),
                _ => None,
            })
            .collect();
        let stored = self.store.get_message(owner, &message.id).await?;
        if stored.as_ref().is_some_and(placeholder) {
            let answer = Message {
                token_count: crate::tokens::estimate(&text),
                status: if text.is_empty() {
                    MessageStatus::Error
                } else {
                    MessageStatus::Incomplete
                },
                content: text,
                ..message.clone()
            };
            self.store.finish_turn(owner, &answer).await?;
        }
        let error = TurnEvent::Error(Error::Unavailable(
            "The answer was interrupted: the server that wrote it stopped.".into(),
        ));
        let last = events.last().map_or(META_ID, |e| e.id);
        let (name, data) = encode(&error);
        let ending = LoggedEvent {
            id: last + 1,
            name: name.into(),
            data,
        };
        if read.is_some_and(|r| !r.ended) {
            self.turns
                .append(
                    owner,
                    &message.id,
                    std::slice::from_ref(&ending),
                    true,
                    Timestamp::now(),
                )
                .await?;
        }
        let mut out = merged(&events);
        out.push(Followed {
            id: ending.id,
            event: Logged::Event(error),
        });
        Ok(out)
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::service::chat::fixture::{drain, tokens, Fixture};

    fn text(events: &[Followed]) -> String {
        events
            .iter()
            .filter_map(|e| match &e.event {
                Logged::Event(TurnEvent::Token(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_follower_catches_up_then_follows_live_to_the_end() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "alpha beta gamma delta [[gated]]").await;
        let id = turn.meta.assistant_message_id.clone();
        // Two tokens are out before anyone follows.
        let mut live = Vec::new();
        while tokens(&live).split_whitespace().count() < 2 {
            live.push(turn.events.recv().await.unwrap().event);
        }
        let mut followed = f.chat.follow(&owner, &id, 0).await.unwrap();
        let mut seen = Vec::new();
        while text(&seen).split_whitespace().count() < 2 {
            seen.push(followed.next().await.unwrap().unwrap());
        }
        assert_eq!(seen[0].event, Logged::Meta(turn.meta.clone()));
        // The rest comes live.
        f.model.token_gate.add_permits(100);
        while let Some(e) = followed.next().await {
            seen.push(e.unwrap());
        }
        live.extend(drain(&mut turn).await);
        assert_eq!(text(&seen), tokens(&live));
        let Some(Followed {
            event: Logged::Event(TurnEvent::Done { .. }),
            ..
        }) = seen.last()
        else {
            panic!("{seen:?}");
        };
        let ids: Vec<u64> = seen.iter().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[tokio::test]
    async fn an_answer_without_a_log_is_replayed_from_the_store() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "remember this").await;
        drain(&mut turn).await;
        let id = turn.meta.assistant_message_id.clone();
        // A turn from before turn logs (or whose log expired): only the stored answer is left.
        let stored = f.message(&owner, &id).await;
        let replay = replayed(&stored, None, 0);
        assert_eq!(text(&replay), "Echo: remember this");
        let ids: Vec<u64> = replay.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(matches!(
            &replay[2].event,
            Logged::Event(TurnEvent::Done { finish_reason, .. }) if finish_reason == "stop"
        ));
        assert_eq!(replayed(&stored, None, 2).len(), 1);
        // An answer's citations are replayed with its `done`.
        let cited = Message {
            citations: vec![crate::domain::Citation {
                n: 2,
                file_id: Some("f".into()),
                filename: Some("r.pdf".into()),
                page: Some(7),
                sheet: None,
                snippet: "It sings.".into(),
                memory: None,
            }],
            ..stored.clone()
        };
        let replay = replayed(&cited, None, 0);
        let Logged::Event(TurnEvent::Done { citations, .. }) = &replay[2].event else {
            panic!("{replay:?}");
        };
        assert_eq!(citations, &cited.citations);
    }

    #[tokio::test]
    async fn a_user_message_or_an_unknown_id_cannot_be_followed_or_stopped() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "hello").await;
        drain(&mut turn).await;
        for id in [turn.meta.user_message_id.clone(), MessageId::from("nope")] {
            assert!(matches!(
                f.chat.follow(&owner, &id, 0).await,
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                f.chat.stop(&owner, &id).await,
                Err(Error::NotFound(_))
            ));
        }
        let other = Owner::new("someone-else");
        let id = &turn.meta.assistant_message_id;
        assert!(matches!(
            f.chat.follow(&other, id, 0).await,
            Err(Error::NotFound(_))
        ));
    }
}

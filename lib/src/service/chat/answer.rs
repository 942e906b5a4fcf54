//! Step 5 of a turn, run the answer: a task streams the model into the turn's events — numbered,
//! sent to the client and written to the turn's log — and stores the answer whatever happens to
//! the client: `complete` after `done`, `incomplete` with the text so far when it was stopped (a
//! `done` saying `stopped`) or failed midway (an `error`), `error` when nothing came. It then waits
//! for the automatic title of a new conversation, inside the request, so a serverless sandbox
//! does not freeze it half done.
//!
//! However it ends, the passages its text cites (`[n]`, [`super::cite`]) go with the stored answer
//! and with `done`.
//!
//! The end of an answer, in order: store the answer ([`Answer::store`]), tell the title if it is
//! ready, send `done` (or `error`), close the log, wait for a late title. A step that must see the
//! stored answer before `done` (settling a budget) goes right after the store.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::cite::{self, Passage};
use super::context::Prompt;
use super::persist::Persisted;
use super::recorder::{Recorder, StopWatch};
use super::{ChatService, Numbered, Turn, TurnEvent, TurnMeta, META_ID, TITLE_WAIT};
use crate::auth::Principal;
use crate::domain::{Message, MessageStatus, Owner, Receipt};
use crate::ledger::{nanos_to_usd, Spend};
use crate::llm::prices::cost_nanos;
use crate::llm::{ChatEvent, ChatRequest, ChatStream, LlmError, ModelEntry, Usage};
use crate::service::usage::{spend_of, Hold};
use crate::service::Error;
use crate::traces::{TurnEnd, TurnIds, TurnTrace};

/// The `finish_reason` of an answer someone stopped.
pub const STOPPED: &str = "stopped";

/// How the model's answer ended.
enum Outcome {
    Finished {
        finish_reason: String,
        usage: Option<Usage>,
    },
    /// Someone asked it to stop: the model's stream was dropped (its request aborted).
    Stopped,
    Failed(LlmError),
}

/// What the models did for one answer: who answered (when one did) and how long it took.
struct Timing {
    answered: Option<Arc<ModelEntry>>,
    started: Instant,
    first_token: Option<Duration>,
}

/// One answer being generated and stored.
struct Answer {
    service: ChatService,
    owner: Owner,
    /// The answer's placeholder, as stored when the turn began.
    placeholder: Message,
    model: Arc<ModelEntry>,
    prompt_estimate: u64,
    /// The numbered passages of file text the prompt carries.
    passages: Vec<Passage>,
    /// The budget reservation, settled once when the answer ends.
    hold: Option<Hold>,
    /// The turn's span, the parent of its model calls.
    trace: TurnTrace,
}

/// Numbers a turn's events and sends each to the client and to the turn's log.
struct Emitter {
    client: mpsc::UnboundedSender<Box<Numbered>>,
    recorder: Recorder,
    last: u64,
}

impl Emitter {
    fn emit(&mut self, event: TurnEvent) {
        self.last += 1;
        self.recorder.record(self.last, &event);
        // A client that left is no reason to stop: the answer is still stored and logged.
        let _ = self.client.send(Box::new(Numbered {
            id: self.last,
            event,
        }));
    }

    /// Closes the log, waits for it to be written (`wait` first runs meanwhile), then lets the
    /// client's stream end.
    async fn finish(mut self, wait: impl Future<Output = ()>) {
        self.recorder.close();
        wait.await;
        self.recorder.finish().await;
    }
}

/// The receipt of an answer by `model`: its counts, its price applied, its times.
fn receipt(model: &ModelEntry, usage: Usage, timing: &Timing) -> Receipt {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Receipt {
        model: model.id.clone(),
        provider: model.provider.as_str().to_owned(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        // Whole nano-dollars, as the ledger adds them up.
        cost_usd: model
            .price
            .map(|p| nanos_to_usd(cost_nanos(p, usage.prompt_tokens, usage.completion_tokens))),
        time_to_first_token_ms: timing.first_token.map(millis),
        duration_ms: millis(timing.started.elapsed()),
    }
}

/// Resolves when a stop is asked (never when the watch ends without one).
async fn stop_asked(rx: oneshot::Receiver<()>) {
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl ChatService {
    /// Sends the turn's spans before its response ends, where the process may be frozen right
    /// after it (Lambda); bounded, and silent about a collector that fails.
    async fn flush_turn(&self) {
        if self.traces.flush_each_turn() && !self.traces.flush(crate::traces::TURN_FLUSH).await {
            tracing::debug!("the turn's spans could not be sent");
        }
    }

    /// Starts the answer of a persisted turn (and the automatic title of a new conversation) and
    /// returns the turn at once: its `meta`, then its events as they come. `hold` is settled to
    /// the answer's receipt when it ends, however it ends. The turn's span (when traces are on)
    /// starts at `began`.
    pub fn run_answer(
        &self,
        who: &Principal,
        turn: Persisted,
        prompt: Prompt,
        hold: Hold,
        began: SystemTime,
    ) -> Turn {
        let Prompt { request, passages } = prompt;
        let owner = &who.owner;
        let files = turn.user_message.files;
        let meta = TurnMeta {
            conversation_id: turn.conversation.id.clone(),
            user_message_id: turn.user_message.id.clone(),
            assistant_message_id: turn.answer.id.clone(),
            created_conversation: turn.created,
            files,
            model: turn.model.id.clone(),
        };
        let trace = self.traces.turn(
            &TurnIds {
                user: owner.as_str(),
                conversation_id: meta.conversation_id.as_str(),
                user_message_id: meta.user_message_id.as_str(),
                message_id: meta.assistant_message_id.as_str(),
                model: &meta.model,
            },
            began,
        );
        let title_job = turn.created.then(|| {
            let titler = self.titler.clone();
            let (who, id) = (who.clone(), turn.conversation.id.clone());
            let text = turn.user_message.content.clone();
            let names: Vec<String> = meta.files.iter().map(|f| f.filename.clone()).collect();
            let trace = trace.clone();
            tokio::spawn(async move { titler.generate(&who, &id, &text, &names, &trace).await })
        });
        let answer = Answer {
            service: self.clone(),
            owner: owner.clone(),
            placeholder: turn.answer,
            model: turn.model,
            prompt_estimate: request
                .messages
                .iter()
                .map(|m| crate::tokens::count(&request.model, &m.joined_text()))
                .sum(),
            passages,
            hold: Some(hold),
            trace,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let emitter = Emitter {
            client: tx,
            recorder: Recorder::start(self.turns.clone(), owner.clone(), &meta),
            last: META_ID,
        };
        let (watch, stop) = StopWatch::start(
            self.turns.clone(),
            owner.clone(),
            meta.assistant_message_id.clone(),
        );
        tokio::spawn(answer.run(request, emitter, (watch, stop), title_job));
        Turn { meta, events: rx }
    }
}

impl Answer {
    /// Streams the model into the turn's events and stores the answer, whatever happens to the
    /// client.
    async fn run(
        mut self,
        request: ChatRequest,
        mut out: Emitter,
        (watch, stop): (StopWatch, oneshot::Receiver<()>),
        title_job: Option<JoinHandle<Option<String>>>,
    ) {
        let mut text = String::new();
        let mut timing = Timing {
            answered: None,
            started: Instant::now(),
            first_token: None,
        };
        let stop = stop_asked(stop);
        let trace = self.trace.clone();
        tokio::pin!(stop);
        let outcome = tokio::select! {
            outcome = self.stream(request, &trace, &mut out, &mut text, &mut timing) => outcome,
            // Dropping the stream above aborts the model's request.
            () = &mut stop => Outcome::Stopped,
        };
        drop(watch);
        let estimated = Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: crate::tokens::estimate(&text),
        };
        // What the text cites, however it ended.
        let citations = cite::citations(&text, &self.passages);
        let answered = || {
            timing
                .answered
                .clone()
                .unwrap_or_else(|| self.model.clone())
        };
        let mut error_type = None;
        let (status, last, usage) = match outcome {
            Outcome::Finished {
                finish_reason,
                usage,
            } => {
                let usage = receipt(&answered(), usage.unwrap_or(estimated), &timing);
                (
                    MessageStatus::Complete,
                    TurnEvent::Done {
                        message_id: self.placeholder.id.clone(),
                        finish_reason,
                        usage: usage.clone(),
                        citations: citations.clone(),
                    },
                    Some(usage),
                )
            }
            Outcome::Stopped => {
                // What was generated until the stop is what the provider bills.
                let usage = receipt(&answered(), estimated, &timing);
                tracing::info!(turn = %self.placeholder.id, completion_tokens = usage.completion_tokens, "the answer was stopped");
                (
                    MessageStatus::Incomplete,
                    TurnEvent::Done {
                        message_id: self.placeholder.id.clone(),
                        finish_reason: STOPPED.into(),
                        usage: usage.clone(),
                        citations: citations.clone(),
                    },
                    Some(usage),
                )
            }
            Outcome::Failed(e) => {
                error_type = Some(crate::traces::error_type(&e));
                tracing::warn!(conversation = %self.placeholder.conversation_id, model = %self.model.id, error = %e, "the model failed during a turn");
                let status = if text.is_empty() {
                    MessageStatus::Error
                } else {
                    MessageStatus::Incomplete
                };
                // A model that started answering is named, with what it said so far.
                let usage = timing
                    .answered
                    .as_ref()
                    .map(|m| receipt(m, estimated, &timing));
                (status, TurnEvent::Error(Error::from(e)), usage)
            }
        };
        // The budget moves to what was really spent: the receipt, or nothing when no model answered.
        let spent = match &usage {
            Some(receipt) => spend_of(receipt, 1),
            None => Spend::nothing(&self.model.id),
        };
        if let Some(hold) = self.hold.take() {
            hold.settle(spent).await;
        }
        // One line per turn: ids, the receipt and the outcome; never the text.
        tracing::info!(
            user = self.owner.as_str(),
            conversation = %self.placeholder.conversation_id,
            message = %self.placeholder.id,
            model = usage.as_ref().map_or(self.model.id.as_str(), |u| u.model.as_str()),
            provider = usage.as_ref().map(|u| u.provider.as_str()),
            prompt_tokens = usage.as_ref().map(|u| u.prompt_tokens),
            completion_tokens = usage.as_ref().map(|u| u.completion_tokens),
            cost_usd = usage.as_ref().and_then(|u| u.cost_usd),
            time_to_first_token_ms = usage.as_ref().and_then(|u| u.time_to_first_token_ms),
            duration_ms = usage.as_ref().map(|u| u.duration_ms),
            outcome = status.as_str(),
            "turn"
        );
        let figures = crate::metrics::TurnFigures {
            model: usage
                .as_ref()
                .map_or(self.model.id.as_str(), |u| u.model.as_str()),
            provider: usage.as_ref().map(|u| u.provider.as_str()),
            user: self.owner.as_str(),
            conversation_id: self.placeholder.conversation_id.as_str(),
            message_id: self.placeholder.id.as_str(),
            outcome: status.as_str(),
            time_to_first_token_ms: usage.as_ref().and_then(|u| u.time_to_first_token_ms),
            duration_ms: usage.as_ref().map(|u| u.duration_ms),
            prompt_tokens: usage.as_ref().map(|u| u.prompt_tokens),
            completion_tokens: usage.as_ref().map(|u| u.completion_tokens),
            cost_usd: usage.as_ref().and_then(|u| u.cost_usd),
        };
        crate::metrics::record_turn(&figures);
        if self.service.settings.metrics_emf {
            crate::metrics::emit(&crate::metrics::turn(
                &self.service.settings.metrics_namespace,
                &figures,
                self.service.budgets.now_ms(),
            ));
        }
        let token_count = match &usage {
            Some(u) if status == MessageStatus::Complete => u.completion_tokens,
            _ => crate::tokens::estimate(&text),
        };
        let message = Message {
            content: text,
            token_count,
            status,
            usage,
            citations,
            ..self.placeholder.clone()
        };
        let outcome = message.status.as_str();
        let answered_by = message.usage.as_ref().map(|u| u.model.clone());
        let end = |error_type: Option<String>| {
            let trace = self.trace.clone();
            let answered_by = answered_by.clone();
            move || {
                trace.end(&TurnEnd {
                    outcome,
                    answered_by: answered_by.as_deref(),
                    error_type: error_type.as_deref(),
                });
            }
        };
        if let Err(e) = self.store(&message).await {
            end(Some("store".into()))();
            out.emit(TurnEvent::Error(e));
            out.finish(self.service.flush_turn()).await;
            return;
        }
        let end = end(error_type);

        // The title goes out before `done` when it is ready by then; otherwise it lands later
        // without an event. Either way the job is awaited here, inside the request, so it is not
        // lost when a serverless sandbox freezes after the response.
        let mut pending = None;
        if let Some(job) = title_job {
            if job.is_finished() {
                if let Ok(Some(title)) = job.await {
                    out.emit(TurnEvent::Title {
                        conversation_id: self.placeholder.conversation_id.clone(),
                        title,
                    });
                }
            } else {
                pending = Some(job);
            }
        }
        out.emit(last);
        // The turn's span ends with its title call, then its spans go (on Lambda) before the
        // response ends.
        let service = self.service.clone();
        out.finish(async move {
            if let Some(job) = pending {
                let _ = tokio::time::timeout(TITLE_WAIT, job).await;
            }
            end();
            service.flush_turn().await;
        })
        .await;
    }

    /// Stores the answer in place of its placeholder.
    async fn store(&self, message: &Message) -> Result<(), Error> {
        self.service
            .store
            .finish_turn(&self.owner, message)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not store the answer");
                Error::from(e).with_message("The answer could not be saved.")
            })?;
        if let Some(search) = self.service.files.search() {
            search.index_message_later(&self.owner, message);
        }
        Ok(())
    }

    /// The model's answer (or a fallback's, before the first token) into `out` and `text`, each
    /// wait bounded by the model timeout (not while the answer waits in line); `timing` learns who
    /// answered and when it started.
    async fn stream(
        &self,
        request: ChatRequest,
        trace: &TurnTrace,
        out: &mut Emitter,
        text: &mut String,
        timing: &mut Timing,
    ) -> Outcome {
        let timeout = self.service.settings.model_timeout;
        let models = &self.service.models;
        let mut stream: ChatStream =
            match tokio::time::timeout(timeout, models.stream_in(&self.model.id, request, trace))
                .await
            {
                Err(_) => {
                    return Outcome::Failed(LlmError::Unreachable(
                        "the model did not answer in time".into(),
                    ))
                }
                Ok(Err(e)) => return Outcome::Failed(e),
                Ok(Ok(answering)) => {
                    timing.answered = Some(answering.model);
                    answering.stream
                }
            };
        let mut queued = false;
        loop {
            let next = if queued {
                Ok(stream.next().await)
            } else {
                tokio::time::timeout(timeout, stream.next()).await
            };
            match next {
                Err(_) => {
                    return Outcome::Failed(LlmError::Unreachable(
                        "the model stopped answering".into(),
                    ))
                }
                Ok(None) => {
                    return Outcome::Failed(LlmError::Unreachable(
                        "the answer stopped before it was finished".into(),
                    ))
                }
                Ok(Some(Err(e))) => return Outcome::Failed(e),
                Ok(Some(Ok(ChatEvent::Queued(position)))) => {
                    queued = true;
                    out.emit(TurnEvent::Queued { position });
                }
                Ok(Some(Ok(ChatEvent::Delta(t)))) => {
                    queued = false;
                    if timing.first_token.is_none() {
                        timing.first_token = Some(timing.started.elapsed());
                    }
                    text.push_str(&t);
                    out.emit(TurnEvent::Token(t));
                }
                Ok(Some(Ok(ChatEvent::Done {
                    finish_reason,
                    usage,
                }))) => {
                    return Outcome::Finished {
                        finish_reason,
                        usage,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::DEFAULT_TITLE;
    use crate::service::chat::fixture::{drain, tokens, Fixture, TestModel};

    #[tokio::test]
    async fn a_stopped_answer_keeps_the_citations_of_what_it_said() {
        let f = Fixture::new();
        let owner = Owner::local();
        let file = crate::service::chat::fixture::ready_file(
            &f,
            &owner,
            "notes.txt",
            "Saffron is the secret.",
        )
        .await;
        let mut turn = f
            .chat
            .start(
                &crate::service::chat::fixture::who(&owner),
                crate::service::chat::ChatInput {
                    message: "what is it [[gated]]".into(),
                    file_ids: vec![file.id.clone()],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let id = turn.meta.assistant_message_id.clone();
        // The test model echoes the prompt, whose passage header `[1]` comes a few words in.
        f.model.token_gate.add_permits(3);
        let mut said = String::new();
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            while !said.contains("[1]") {
                if let TurnEvent::Token(t) = turn.events.recv().await.unwrap().event {
                    said.push_str(&t);
                }
            }
        })
        .await;
        assert!(reached.is_ok(), "no [1] in {said:?}");
        f.chat.stop(&owner, &id).await.unwrap();
        let rest = drain(&mut turn).await;
        let Some(TurnEvent::Done {
            finish_reason,
            citations,
            ..
        }) = rest.last()
        else {
            panic!("{rest:?}");
        };
        assert_eq!(finish_reason, STOPPED);
        assert_eq!(citations.len(), 1, "{citations:?}");
        assert_eq!(citations[0].n, 1);
        assert_eq!(citations[0].file_id.as_ref(), Some(&file.id));
        assert_eq!(citations[0].filename.as_deref(), Some("notes.txt"));
        assert_eq!(
            (citations[0].page, citations[0].sheet.as_deref()),
            (None, None)
        );
        assert_eq!(citations[0].snippet, "Saffron is the secret.");
        let stored = f.message(&owner, &id).await;
        assert_eq!(stored.status, MessageStatus::Incomplete);
        assert_eq!(&stored.citations, citations);
    }

    #[tokio::test]
    async fn an_answer_without_markers_cites_nothing() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "no files here").await;
        let events = drain(&mut turn).await;
        let Some(TurnEvent::Done { citations, .. }) = events.last() else {
            panic!("{events:?}");
        };
        assert!(citations.is_empty());
        let stored = f.message(&owner, &turn.meta.assistant_message_id).await;
        assert!(stored.citations.is_empty());
    }

    #[tokio::test]
    async fn the_answer_streams_then_is_stored_complete_and_the_title_lands() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "hello there").await;
        let events = drain(&mut turn).await;
        assert_eq!(tokens(&events), "Echo: hello there");
        let Some(TurnEvent::Done {
            message_id, usage, ..
        }) = events.last()
        else {
            panic!("{events:?}");
        };
        assert_eq!(message_id, &turn.meta.assistant_message_id);
        assert_eq!(usage.prompt_tokens, 7, "the provider's usage is passed on");
        assert_eq!(turn.meta.model, "chat-model", "the default was asked for");
        assert_eq!(
            (usage.model.as_str(), usage.provider.as_str()),
            ("chat-model", "openai")
        );
        assert_eq!(usage.cost_usd, None, "the test model has no price");
        let stored = f.message(&owner, message_id).await;
        assert_eq!(stored.status, MessageStatus::Complete);
        assert_eq!(stored.content, "Echo: hello there");
        assert_eq!(
            stored.usage.as_ref(),
            Some(usage),
            "the stored answer keeps the receipt"
        );
        // The title is in the store once the turn's events end, whether or not it was an event.
        let c = f.conversation(&owner, &turn.meta.conversation_id).await;
        assert_eq!(c.title, "Title For hello there");
        for e in &events {
            if let TurnEvent::Title { title, .. } = e {
                assert_eq!(title, &c.title);
            }
        }
        // A continued conversation gets no title job.
        let mut next = f
            .chat
            .start(
                &crate::service::chat::fixture::who(&owner),
                crate::service::chat::ChatInput {
                    message: "more".into(),
                    conversation_id: Some(c.id.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let events = drain(&mut next).await;
        assert!(!events.iter().any(|e| matches!(e, TurnEvent::Title { .. })));
    }

    #[tokio::test]
    async fn a_title_not_ready_by_done_lands_later_without_an_event() {
        let f = Fixture::with_model(TestModel::gated_titles());
        let owner = Owner::local();
        let mut turn = f.send(&owner, "plan a trip").await;
        let mut events = Vec::new();
        while let Some(e) = turn.events.recv().await {
            let e = e.event;
            let done = matches!(e, TurnEvent::Done { .. });
            events.push(e);
            if done {
                break;
            }
        }
        let id = turn.meta.conversation_id.clone();
        let before = f.conversation(&owner, &id).await;
        assert_eq!(
            before.title, DEFAULT_TITLE,
            "the title model has not answered"
        );
        f.model.title_gate.add_permits(1);
        events.extend(drain(&mut turn).await);
        assert!(!events.iter().any(|e| matches!(e, TurnEvent::Title { .. })));
        let after = f.conversation(&owner, &id).await;
        assert_eq!(after.title, "Title For plan a");
        assert_eq!(
            after.updated_at, before.updated_at,
            "the automatic title does not move updated_at"
        );
    }

    #[tokio::test]
    async fn a_rename_before_the_title_lands_is_not_overridden() {
        let f = Fixture::with_model(TestModel::gated_titles());
        let owner = Owner::local();
        let mut turn = f.send(&owner, "plan a trip").await;
        let id = turn.meta.conversation_id.clone();
        f.conversations
            .rename(&owner, &id, "Lisbon in May")
            .await
            .unwrap();
        f.model.title_gate.add_permits(1);
        let events = drain(&mut turn).await;
        assert!(matches!(events.last(), Some(TurnEvent::Done { .. })));
        assert!(!events.iter().any(|e| matches!(e, TurnEvent::Title { .. })));
        let c = f.conversation(&owner, &id).await;
        assert_eq!(c.title, "Lisbon in May");
        assert_eq!(
            f.model.title_requests(),
            1,
            "the title model was asked, and its answer dropped"
        );
    }

    #[tokio::test]
    async fn a_failure_midway_keeps_what_was_said_as_incomplete() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "tell a story [[midway]]").await;
        let events = drain(&mut turn).await;
        let said = tokens(&events);
        assert_eq!(said, "Echo: tell ");
        let Some(TurnEvent::Error(Error::Upstream(m))) = events.last() else {
            panic!("{events:?}");
        };
        assert!(m.contains("cut the answer"), "{m}");
        assert!(!events.iter().any(|e| matches!(e, TurnEvent::Done { .. })));
        let stored = f.message(&owner, &turn.meta.assistant_message_id).await;
        assert_eq!(stored.status, MessageStatus::Incomplete);
        assert_eq!(stored.content, said);
        let receipt = stored
            .usage
            .expect("the model that started answering is named");
        assert_eq!(receipt.model, "chat-model");
        assert!(receipt.time_to_first_token_ms.is_some());
    }

    #[tokio::test]
    async fn a_failure_before_the_first_token_stores_an_empty_error_answer() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "boom [[fail]]").await;
        let events = drain(&mut turn).await;
        assert!(matches!(
            events.last(),
            Some(TurnEvent::Error(Error::Upstream(_)))
        ));
        let stored = f.message(&owner, &turn.meta.assistant_message_id).await;
        assert_eq!(stored.status, MessageStatus::Error);
        assert_eq!(stored.content, "");
        assert_eq!(stored.usage, None, "no model answered");
        // The user message stays.
        let user = f
            .store
            .get_message(&owner, &turn.meta.user_message_id)
            .await
            .unwrap();
        assert!(user.is_some());
        // Waited for whole, the same turn is the error it ended with.
        let turn = f.send(&owner, "again [[fail]]").await;
        assert!(matches!(
            f.chat.finish(&owner, turn).await,
            Err(Error::Upstream(_))
        ));
    }

    /// The owner's usage rows of the fixture's day, by model.
    async fn rows(
        f: &Fixture,
        owner: &Owner,
    ) -> std::collections::HashMap<String, crate::ledger::Totals> {
        f.ledger
            .usage(Some(owner.as_str()), "2027-01-15", "2027-01-15")
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.model, r.totals))
            .collect()
    }

    fn in_tier(owner: &Owner, tier: &str) -> crate::auth::Principal {
        let mut who = crate::service::chat::fixture::who(owner);
        who.tier = tier.into();
        who
    }

    #[tokio::test]
    async fn a_turn_over_budget_is_refused_before_anything_is_stored() {
        let f = Fixture::with_tiers(crate::service::chat::fixture::TIERS, |_| {});
        let owner = Owner::new("budget-ann");
        // 4,000 of the free tier's 5,000 tokens today are spent already.
        let budget = crate::ledger::Budget::default();
        let now = crate::limits::Clock::now_millis(&*f.clock);
        let crate::ledger::Reserved::Granted(r) = f
            .ledger
            .reserve(
                owner.as_str(),
                crate::ledger::Amount {
                    tokens: 4_000,
                    usd_nanos: 0,
                },
                &budget,
                now,
            )
            .await
            .unwrap()
        else {
            panic!("an unlimited reservation was refused");
        };
        f.ledger
            .settle(
                &r,
                &crate::ledger::Spend {
                    model: "chat-model".into(),
                    turns: 1,
                    prompt_tokens: 3_000,
                    completion_tokens: 1_000,
                    cost_nanos: None,
                },
            )
            .await
            .unwrap();
        let refused = f
            .chat
            .start(
                &in_tier(&owner, "free"),
                crate::service::chat::ChatInput {
                    message: "one more question".into(),
                    ..Default::default()
                },
            )
            .await;
        let Err(Error::Quota {
            retry_after_secs,
            message,
        }) = refused
        else {
            panic!("{:?}", refused.map(|t| t.meta));
        };
        // The fixture's clock stands at 08:00:20 UTC: the day's budget resets at midnight.
        assert_eq!(retry_after_secs, 16 * 3600 - 20);
        assert_eq!(
            message,
            "You have used 4,000 of your 5,000 tokens today; the budget resets in 16 h."
        );
        let listed = f
            .conversations
            .list(
                &owner,
                crate::store::PageRequest {
                    limit: 10,
                    cursor: None,
                },
                None,
            )
            .await
            .unwrap();
        assert!(listed.items.is_empty(), "nothing was stored");
        // The default tier has no budget: the same person is served there.
        let mut turn = f.send(&owner, "one more question").await;
        assert!(matches!(
            drain(&mut turn).await.last(),
            Some(TurnEvent::Done { .. })
        ));
    }

    #[tokio::test]
    async fn the_answer_settles_to_its_receipt_and_the_title_counts_too() {
        let f = Fixture::with_tiers(crate::service::chat::fixture::TIERS, |_| {});
        let owner = Owner::new("budget-bob");
        let who = in_tier(&owner, "free");
        let mut turn = f
            .chat
            .start(
                &who,
                crate::service::chat::ChatInput {
                    message: "hello budget".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let events = drain(&mut turn).await;
        let Some(TurnEvent::Done { usage, .. }) = events.last() else {
            panic!("{events:?}");
        };
        let rows = rows(&f, &owner).await;
        let answer = &rows["chat-model"];
        assert_eq!(
            (answer.turns, answer.prompt_tokens, answer.completion_tokens),
            (1, usage.prompt_tokens, usage.completion_tokens),
            "the ledger holds the receipt"
        );
        let title = &rows[crate::service::chat::fixture::TITLE_MODEL];
        assert_eq!(title.turns, 0, "a title is no turn");
        assert!(title.prompt_tokens > 0 && title.completion_tokens > 0);
        // The counters hold what was spent, not the worst cases reserved.
        let now = crate::limits::Clock::now_millis(&*f.clock);
        let used = f.ledger.used(owner.as_str(), now).await.unwrap();
        assert_eq!(
            used.day.tokens,
            answer.prompt_tokens
                + answer.completion_tokens
                + title.prompt_tokens
                + title.completion_tokens
        );
    }

    #[tokio::test]
    async fn an_answer_no_model_gave_spends_nothing() {
        let f = Fixture::with_tiers(crate::service::chat::fixture::TIERS, |_| {});
        let owner = Owner::new("budget-cy");
        let mut turn = f
            .chat
            .start(
                &in_tier(&owner, "free"),
                crate::service::chat::ChatInput {
                    message: "boom [[fail]]".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        drain(&mut turn).await;
        let rows = rows(&f, &owner).await;
        assert!(!rows.contains_key("chat-model"), "{rows:?}");
        let title = &rows[crate::service::chat::fixture::TITLE_MODEL];
        let now = crate::limits::Clock::now_millis(&*f.clock);
        let used = f.ledger.used(owner.as_str(), now).await.unwrap();
        assert_eq!(
            used.day.tokens,
            title.prompt_tokens + title.completion_tokens
        );
    }

    #[tokio::test]
    async fn the_answer_is_stored_when_the_client_leaves() {
        let f = Fixture::new();
        let owner = Owner::local();
        let turn = f.send(&owner, "anyone there").await;
        let id = turn.meta.assistant_message_id.clone();
        drop(turn.events);
        let stored = crate::testing::eventually(
            Duration::from_secs(10),
            "the answer to be stored",
            || async {
                let m = f.store.get_message(&owner, &id).await.unwrap().unwrap();
                (m.status != MessageStatus::Incomplete).then_some(m)
            },
        )
        .await;
        assert_eq!(stored.status, MessageStatus::Complete);
        assert_eq!(stored.content, "Echo: anyone there");
    }

    #[tokio::test]
    async fn events_are_numbered_and_the_whole_turn_is_logged() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "count with me").await;
        let events = crate::service::chat::fixture::drain_numbered(&mut turn).await;
        let ids: Vec<u64> = events.iter().map(|n| n.id).collect();
        assert_eq!(ids, (2..2 + events.len() as u64).collect::<Vec<_>>());
        // Once the events end, the log holds all of them, `meta` first, and says the turn ended.
        let log = f
            .turns
            .read(&owner, &turn.meta.assistant_message_id, 0)
            .await
            .unwrap()
            .unwrap();
        assert!(log.ended);
        assert_eq!(log.events.len(), events.len() + 1);
        assert_eq!(log.events[0].name, "meta");
        for (logged, sent) in log.events[1..].iter().zip(&events) {
            assert_eq!(logged.id, sent.id);
            assert_eq!(
                crate::service::chat::recorder::decode(logged),
                Some(crate::service::chat::recorder::Logged::Event(
                    sent.event.clone()
                ))
            );
        }
    }

    #[tokio::test]
    async fn an_answer_waiting_in_line_says_its_place_before_its_first_token() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "after you [[queued]]").await;
        let events = drain(&mut turn).await;
        assert_eq!(
            events[..3],
            [
                TurnEvent::Queued { position: 2 },
                TurnEvent::Queued { position: 1 },
                TurnEvent::Token("Echo: ".into())
            ]
        );
        let stored = f.message(&owner, &turn.meta.assistant_message_id).await;
        assert_eq!(stored.status, MessageStatus::Complete);
    }

    #[tokio::test]
    async fn a_stop_drops_the_models_stream_and_keeps_what_was_said() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut turn = f.send(&owner, "one two three four [[gated]]").await;
        let id = turn.meta.assistant_message_id.clone();
        let mut said = Vec::new();
        while said.len() < 2 {
            if let TurnEvent::Token(t) = turn.events.recv().await.unwrap().event {
                said.push(t);
            }
        }
        use crate::service::chat::follow::StopStatus;
        assert_eq!(
            f.chat.stop(&owner, &id).await.unwrap(),
            StopStatus::Stopping
        );
        let rest = drain(&mut turn).await;
        let Some(TurnEvent::Done {
            finish_reason,
            usage,
            ..
        }) = rest.last()
        else {
            panic!("{rest:?}");
        };
        assert_eq!(finish_reason, STOPPED);
        assert!(rest.iter().all(|e| !matches!(e, TurnEvent::Token(_))));
        assert_eq!(f.model.aborted.load(std::sync::atomic::Ordering::SeqCst), 1);
        let stored = f.message(&owner, &id).await;
        assert_eq!(stored.status, MessageStatus::Incomplete);
        assert_eq!(stored.content, said.concat());
        assert_eq!(stored.usage.as_ref(), Some(usage));
        assert!(usage.completion_tokens > 0);
        assert_eq!(
            f.chat.stop(&owner, &id).await.unwrap(),
            StopStatus::Finished
        );
        let c = f.conversation(&owner, &turn.meta.conversation_id).await;
        assert_eq!(c.generating_message_id, None);
        assert_eq!(c.current_message_id.as_ref(), Some(&id));
    }
}

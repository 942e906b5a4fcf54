//! A model that serves a limited number of answers at once (the offline model; any model with
//! `max_concurrent` in the models file) queues the others, first come first served. A queued
//! answer's stream starts with [`ChatEvent::Queued`] giving its place (1 = next) and again whenever
//! the place changes; then the answer streams as usual, holding its slot until the stream ends or
//! is dropped. A stream dropped while queued leaves the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::{ChatEvent, ChatModel, ChatRequest, ChatStream, LlmError};

/// The waiting line of one model.
pub struct Queue {
    slots: Arc<Semaphore>,
    waiting: Mutex<VecDeque<u64>>,
    tickets: AtomicU64,
    moved: watch::Sender<u64>,
}

impl Queue {
    /// A line in front of `slots` answers at once.
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            waiting: Mutex::new(VecDeque::new()),
            tickets: AtomicU64::new(0),
            moved: watch::channel(0).0,
        })
    }

    /// Answers waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    fn place(&self, ticket: u64) -> usize {
        self.waiting
            .lock()
            .map(|w| w.iter().position(|t| *t == ticket).map_or(1, |i| i + 1))
            .unwrap_or(1)
    }

    fn join(&self) -> u64 {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut w) = self.waiting.lock() {
            w.push_back(ticket);
        }
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
        ticket
    }

    fn leave(&self, ticket: u64) {
        if let Ok(mut w) = self.waiting.lock() {
            w.retain(|t| *t != ticket);
        }
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A ticket in the line; leaving it (served or dropped) moves the others up.
struct Ticket {
    queue: Arc<Queue>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.leave(self.id);
    }
}

/// A model behind a [`Queue`].
pub struct QueuedModel {
    inner: Arc<dyn ChatModel>,
    queue: Arc<Queue>,
}

impl QueuedModel {
    /// `inner`, serving at most `slots` answers at once.
    pub fn new(inner: Arc<dyn ChatModel>, slots: usize) -> Self {
        Self {
            inner,
            queue: Queue::new(slots),
        }
    }

    /// Its line.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }
}

/// Where a queued stream stands.
enum State {
    /// Waiting for a slot: the place last said, the wait, and news of the line moving.
    Waiting {
        ticket: Ticket,
        said: usize,
        slot: BoxFuture<'static, Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>,
        moved: watch::Receiver<u64>,
        request: ChatRequest,
    },
    /// Served: the answer, and the slot it holds.
    Answering {
        stream: ChatStream,
        _slot: OwnedSemaphorePermit,
    },
    Over,
}

/// What the waiting stream does next.
enum Next {
    Say(usize),
    Start(OwnedSemaphorePermit),
    Closed,
}

#[async_trait]
impl ChatModel for QueuedModel {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        // A free slot: no line, no event.
        if let Ok(slot) = self.queue.slots.clone().try_acquire_owned() {
            let stream = self.inner.stream(request).await?;
            return Ok(hold(stream, slot));
        }
        let ticket = Ticket {
            id: self.queue.join(),
            queue: self.queue.clone(),
        };
        let slot = self.queue.slots.clone().acquire_owned().boxed();
        let mut moved = self.queue.moved.subscribe();
        moved.mark_changed();
        let inner = self.inner.clone();
        let state = State::Waiting {
            ticket,
            said: 0,
            slot,
            moved,
            request,
        };
        Ok(futures::stream::unfold((state, inner), step).boxed())
    }
}

/// `stream`, holding `slot` until it ends or is dropped.
fn hold(stream: ChatStream, slot: OwnedSemaphorePermit) -> ChatStream {
    futures::stream::unfold(
        State::Answering {
            stream,
            _slot: slot,
        },
        |state| async move {
            match state {
                State::Answering { mut stream, _slot } => {
                    let item = stream.next().await?;
                    Some((item, State::Answering { stream, _slot }))
                }
                _ => None,
            }
        },
    )
    .boxed()
}

type Item = Result<ChatEvent, LlmError>;

async fn step(
    (state, inner): (State, Arc<dyn ChatModel>),
) -> Option<(Item, (State, Arc<dyn ChatModel>))> {
    match state {
        State::Over => None,
        State::Answering { mut stream, _slot } => {
            let item = stream.next().await?;
            Some((item, (State::Answering { stream, _slot }, inner)))
        }
        State::Waiting {
            ticket,
            said,
            mut slot,
            mut moved,
            request,
        } => {
            let next = loop {
                let place = ticket.queue.place(ticket.id);
                if place != said {
                    break Next::Say(place);
                }
                tokio::select! {
                    got = &mut slot => break match got {
                        Ok(permit) => Next::Start(permit),
                        Err(_) => Next::Closed,
                    },
                    changed = moved.changed() => if changed.is_err() { break Next::Closed },
                }
            };
            match next {
                Next::Say(place) => Some((
                    Ok(ChatEvent::Queued(place)),
                    (
                        State::Waiting {
                            ticket,
                            said: place,
                            slot,
                            moved,
                            request,
                        },
                        inner,
                    ),
                )),
                Next::Closed => Some((
                    Err(LlmError::Unreachable("the model is shutting down".into())),
                    (State::Over, inner),
                )),
                Next::Start(permit) => {
                    drop(ticket);
                    match inner.stream(request).await {
                        Err(e) => Some((Err(e), (State::Over, inner))),
                        Ok(mut stream) => {
                            let item = stream.next().await?;
                            Some((
                                item,
                                (
                                    State::Answering {
                                        stream,
                                        _slot: permit,
                                    },
                                    inner,
                                ),
                            ))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tokio::sync::Semaphore as Gate;

    /// Answers `n` tokens, each after a permit of its gate.
    struct Gated {
        gate: Arc<Gate>,
    }

    #[async_trait]
    impl ChatModel for Gated {
        fn describe(&self) -> String {
            "gated".into()
        }

        async fn stream(&self, _request: ChatRequest) -> Result<ChatStream, LlmError> {
            let gate = self.gate.clone();
            Ok(futures::stream::unfold(0, move |i| {
                let gate = gate.clone();
                async move {
                    if i == 2 {
                        return None;
                    }
                    gate.acquire().await.ok()?.forget();
                    let item = if i == 0 {
                        ChatEvent::Delta("hi".into())
                    } else {
                        ChatEvent::Done {
                            finish_reason: "stop".into(),
                            usage: None,
                        }
                    };
                    Some((Ok(item), i + 1))
                }
            })
            .boxed())
        }
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![],
            max_tokens: None,
            temperature: None,
        }
    }

    async fn next(s: &mut ChatStream) -> ChatEvent {
        tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn answers_past_the_slots_wait_in_line_and_are_told_their_place() {
        let gate = Arc::new(Gate::new(0));
        let model = QueuedModel::new(Arc::new(Gated { gate: gate.clone() }), 1);
        let mut first = model.stream(request()).await.unwrap();
        let mut second = model.stream(request()).await.unwrap();
        let mut third = model.stream(request()).await.unwrap();
        assert_eq!(next(&mut second).await, ChatEvent::Queued(1));
        assert_eq!(next(&mut third).await, ChatEvent::Queued(2));
        assert_eq!(model.queue().waiting(), 2);
        // The first answers and ends: the second is served, the third moves up.
        gate.add_permits(2);
        assert_eq!(next(&mut first).await, ChatEvent::Delta("hi".into()));
        assert!(matches!(next(&mut first).await, ChatEvent::Done { .. }));
        assert!(first.next().await.is_none());
        drop(first);
        gate.add_permits(1);
        assert_eq!(next(&mut second).await, ChatEvent::Delta("hi".into()));
        assert_eq!(next(&mut third).await, ChatEvent::Queued(1));
        assert_eq!(model.queue().waiting(), 1);
        // The second goes: the third is served.
        drop(second);
        gate.add_permits(1);
        assert_eq!(next(&mut third).await, ChatEvent::Delta("hi".into()));
        assert_eq!(model.queue().waiting(), 0);
    }

    #[tokio::test]
    async fn a_stream_dropped_in_line_leaves_it() {
        let gate = Arc::new(Gate::new(0));
        let model = QueuedModel::new(Arc::new(Gated { gate: gate.clone() }), 1);
        let _first = model.stream(request()).await.unwrap();
        let mut second = model.stream(request()).await.unwrap();
        let mut third = model.stream(request()).await.unwrap();
        assert_eq!(next(&mut second).await, ChatEvent::Queued(1));
        assert_eq!(next(&mut third).await, ChatEvent::Queued(2));
        drop(second);
        assert_eq!(next(&mut third).await, ChatEvent::Queued(1));
        assert_eq!(model.queue().waiting(), 1);
    }
}

//! What the chat steps' tests share: a chat service on the embedded SQLite store and local blobs
//! in a temporary directory, and a small in-process model that answers by magic words.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is its job

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::{
    ChatInput, ChatPorts, ChatService, ChatSettings, ContextSettings, Numbered, Turn, TurnEvent,
};
use crate::auth::Principal;
use crate::blobs::BlobStore;
use crate::domain::{
    Conversation, ConversationId, FileMeta, FileStatus, FileType, Message, MessageId, Owner,
};
use crate::extract::Limits;
use crate::ledger::{Ledger, Tiers};
use crate::limits::ManualClock;
use crate::llm::{
    ChatEvent, ChatModel, ChatRequest, ChatStream, LlmError, ModelEntry, Provider, Registry, Usage,
};
use crate::service::conversations::ConversationService;
use crate::service::files::{FileService, FileSettings};
use crate::service::usage::Budgets;
use crate::store::Store;
use crate::turns::TurnLog;

/// The title model's name in these tests.
pub(crate) const TITLE_MODEL: &str = "title-model";

/// Tiers of these tests: `free` has 2 turns a minute and 5,000 tokens a day.
pub(crate) const TIERS: &str = r#"{"free": {"turns_per_minute": 2, "tokens_per_day": 5000}}"#;

/// The principal of `owner`, in the default tier.
pub(crate) fn who(owner: &Owner) -> Principal {
    Principal {
        owner: owner.clone(),
        ..Principal::local("default")
    }
}

/// A model in the test's process. Chat requests are answered `Echo: <last user text>` word by
/// word, unless the text holds `[[fail]]` (an error before any token) or `[[midway]]` (two tokens,
/// then an error); with `[[queued]]` the answer first waits in line (places 2, then 1); with
/// `[[gated]]` the words after the first two each wait for a permit of `token_gate`, and a stream
/// dropped before its end counts in `aborted`. Title requests get `Title For <first two words>`,
/// each once a permit of `title_gate` is available.
pub(crate) struct TestModel {
    requests: Mutex<Vec<ChatRequest>>,
    /// Titles wait for a permit here; the test adds permits to let them through.
    pub title_gate: Arc<Semaphore>,
    /// Words of `[[gated]]` answers wait for a permit here.
    pub token_gate: Arc<Semaphore>,
    /// `[[gated]]` answers whose stream was dropped before it ended (their request aborted).
    pub aborted: Arc<AtomicUsize>,
}

/// Counts a stream dropped before its end.
struct AbortGuard {
    aborted: Arc<AtomicUsize>,
    ended: bool,
}

impl AbortGuard {
    /// The stream reached its end.
    fn end(&mut self) {
        self.ended = true;
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.aborted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl TestModel {
    /// Titles answer at once.
    pub(crate) fn new() -> Self {
        Self {
            requests: Mutex::new(Vec::new()),
            title_gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            token_gate: Arc::new(Semaphore::new(0)),
            aborted: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Titles wait until the test adds a permit to `title_gate`.
    pub(crate) fn gated_titles() -> Self {
        Self {
            title_gate: Arc::new(Semaphore::new(0)),
            ..Self::new()
        }
    }

    /// The chat requests received so far (not titles).
    pub(crate) fn chat_requests(&self) -> Vec<ChatRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.model != TITLE_MODEL)
            .cloned()
            .collect()
    }

    /// How many title requests were received so far.
    pub(crate) fn title_requests(&self) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.model == TITLE_MODEL)
            .count()
    }
}

fn last_user_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == crate::llm::ChatRole::User)
        .map(|m| m.joined_text())
        .unwrap_or_default()
}

fn words(text: &str) -> Vec<Result<ChatEvent, LlmError>> {
    text.split_inclusive(' ')
        .map(|w| Ok(ChatEvent::Delta(w.to_owned())))
        .collect()
}

#[async_trait]
impl ChatModel for TestModel {
    fn describe(&self) -> String {
        "test model".into()
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        self.requests.lock().unwrap().push(request.clone());
        let user = last_user_text(&request);
        if request.model == TITLE_MODEL {
            let permit = self.title_gate.acquire().await;
            drop(permit);
            let first: Vec<&str> = user
                .trim_start_matches("Message: ")
                .split_whitespace()
                .take(2)
                .collect();
            let title = format!("Title For {}", first.join(" "));
            return Ok(futures::stream::iter(words(&title)).boxed());
        }
        if user.contains("[[fail]]") {
            return Err(LlmError::Upstream {
                status: Some(500),
                message: "the test provider failed".into(),
            });
        }
        let mut events = words(&format!("Echo: {user}"));
        if user.contains("[[queued]]") {
            events.splice(0..0, [Ok(ChatEvent::Queued(2)), Ok(ChatEvent::Queued(1))]);
        }
        if user.contains("[[gated]]") {
            let n = events.len() as u64;
            events.push(Ok(ChatEvent::Done {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    prompt_tokens: 7,
                    completion_tokens: n,
                }),
            }));
            let gate = self.token_gate.clone();
            let guard = AbortGuard {
                aborted: self.aborted.clone(),
                ended: false,
            };
            return Ok(futures::stream::unfold(
                (events.into_iter().enumerate(), gate, guard),
                |(mut items, gate, mut guard)| async move {
                    let Some((i, item)) = items.next() else {
                        guard.end();
                        return None;
                    };
                    if i >= 2 {
                        gate.acquire().await.ok()?.forget();
                    }
                    Some((item, (items, gate, guard)))
                },
            )
            .boxed());
        }
        if user.contains("[[midway]]") {
            events.truncate(2);
            events.push(Err(LlmError::Upstream {
                status: None,
                message: "the test provider cut the answer".into(),
            }));
        } else {
            let n = events.len() as u64;
            events.push(Ok(ChatEvent::Done {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    prompt_tokens: 7,
                    completion_tokens: n,
                }),
            }));
        }
        Ok(futures::stream::iter(events).boxed())
    }
}

/// A chat service and the parts around it.
pub(crate) struct Fixture {
    pub chat: ChatService,
    pub ledger: Arc<dyn Ledger>,
    pub clock: Arc<ManualClock>,
    pub conversations: ConversationService,
    pub store: Arc<dyn Store>,
    pub turns: Arc<dyn TurnLog>,
    pub blobs: Arc<dyn BlobStore>,
    pub model: Arc<TestModel>,
    _dir: tempfile::TempDir,
}

/// The settings of these tests: no rate limit.
pub(crate) fn settings() -> ChatSettings {
    ChatSettings {
        history_messages: 20,
        rate_limit_per_minute: 0,
        model_timeout: Duration::from_secs(10),
        metrics_emf: false,
        metrics_namespace: crate::metrics::NAMESPACE.to_owned(),
        context: ContextSettings {
            system_prompt: "You are a test assistant.".into(),
            context_tokens: Some(8_192),
            file_share: 0.5,
            file_tokens: None,
            max_answer_tokens: None,
            memory: false,
        },
    }
}

impl Fixture {
    /// Default settings, titles at once.
    pub(crate) fn new() -> Self {
        Self::build(TestModel::new(), |_| {})
    }

    /// Settings changed by `change`.
    pub(crate) fn with(change: impl FnOnce(&mut ChatSettings)) -> Self {
        Self::build(TestModel::new(), change)
    }

    /// With this model.
    pub(crate) fn with_model(model: TestModel) -> Self {
        Self::build(model, |_| {})
    }

    /// With the tiers of `tiers` (JSON) and settings changed by `change`.
    pub(crate) fn with_tiers(tiers: &str, change: impl FnOnce(&mut ChatSettings)) -> Self {
        Self::build_with(TestModel::new(), Tiers::parse(Some(tiers)).unwrap(), change)
    }

    fn build(model: TestModel, change: impl FnOnce(&mut ChatSettings)) -> Self {
        Self::build_with(model, Tiers::default(), change)
    }

    fn build_with(model: TestModel, tiers: Tiers, change: impl FnOnce(&mut ChatSettings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = crate::store::sqlite::SqliteStore::in_memory().unwrap();
        let turns: Arc<dyn TurnLog> =
            Arc::new(crate::turns::sqlite::SqliteTurnLog::new(sqlite.clone()));
        let ledger: Arc<dyn Ledger> = Arc::new(sqlite.clone());
        let store: Arc<dyn Store> = Arc::new(sqlite);
        // A clock that stands still, 20 s into a minute: rate-limit checks do not depend on when
        // the test runs.
        let clock = Arc::new(ManualClock::at(1_800_000_020_000));
        let blobs: Arc<dyn BlobStore> =
            Arc::new(crate::blobs::local::LocalBlobs::new(dir.path().join("blobs")).unwrap());
        let jobs = Arc::new(crate::jobs::local::LocalJobs::new(dir.path().join("jobs")));
        let files = Arc::new(FileService::new(
            store.clone(),
            blobs.clone(),
            jobs,
            FileSettings {
                max_upload_bytes: 1024 * 1024,
                inline_max_bytes: 1024 * 1024,
                inline_max_pages: 50,
                download_redirect_bytes: 0,
                limits: Limits::default(),
                count_model: "chat-model".into(),
            },
        ));
        let model = Arc::new(model);
        let mut s = settings();
        // Two models on the test model, both reading images, with an 8k window: `chat-model`
        // answers, `title-model` writes titles.
        let entry = |id: &str| {
            let mut e = ModelEntry::new(id, Provider::OpenAi, id, model.clone());
            e.vision = true;
            e.context_tokens = 8_192;
            e
        };
        let models = Arc::new(
            Registry::from_entries(
                vec![entry("chat-model"), entry(TITLE_MODEL)],
                Some("chat-model"),
                Some(TITLE_MODEL),
                Duration::from_secs(10),
            )
            .unwrap(),
        );
        change(&mut s);
        let chat = ChatService::new(
            ChatPorts {
                store: store.clone(),
                blobs: blobs.clone(),
                limiter: crate::limits::RateLimit::new(
                    Arc::new(crate::limits::memory::MemoryLimiter::new()),
                    clock.clone(),
                ),
                models,
                budgets: Budgets::new(ledger.clone(), tiers, "default", clock.clone()),
                turns: turns.clone(),
                traces: crate::traces::Traces::off(),
            },
            files,
            s,
        );
        Self {
            chat,
            ledger,
            clock,
            conversations: ConversationService::new(store.clone(), blobs.clone()),
            store,
            turns,
            blobs,
            model,
            _dir: dir,
        }
    }

    /// A stored message.
    pub(crate) async fn message(&self, owner: &Owner, id: &MessageId) -> Message {
        self.store.get_message(owner, id).await.unwrap().unwrap()
    }

    /// A stored conversation.
    pub(crate) async fn conversation(&self, owner: &Owner, id: &ConversationId) -> Conversation {
        self.store
            .get_conversation(owner, id)
            .await
            .unwrap()
            .unwrap()
    }

    /// Starts a turn with this text.
    pub(crate) async fn send(&self, owner: &Owner, text: &str) -> Turn {
        self.chat
            .start(
                &who(owner),
                ChatInput {
                    message: text.into(),
                    ..ChatInput::default()
                },
            )
            .await
            .unwrap()
    }

    /// Starts a turn continuing `conversation`.
    pub(crate) async fn reply(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        text: &str,
    ) -> Turn {
        self.chat
            .start(
                &who(owner),
                ChatInput {
                    message: text.into(),
                    conversation_id: Some(conversation.clone()),
                    ..ChatInput::default()
                },
            )
            .await
            .unwrap()
    }
}

/// Every event of a turn with its number, until its channel closes (the answer and the title
/// stored, the log written).
pub(crate) async fn drain_numbered(turn: &mut Turn) -> Vec<Numbered> {
    let mut out = Vec::new();
    while let Some(e) = turn.events.recv().await {
        out.push(*e);
    }
    out
}

/// Every event of a turn, until its channel closes.
pub(crate) async fn drain(turn: &mut Turn) -> Vec<TurnEvent> {
    drain_numbered(turn)
        .await
        .into_iter()
        .map(|n| n.event)
        .collect()
}

/// The streamed text of some events.
pub(crate) fn tokens(events: &[TurnEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::Token(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// A file record still being processed (not stored).
pub(crate) fn processing_file(name: &str) -> FileMeta {
    let mut meta = FileMeta::new(
        name.into(),
        "application/pdf".into(),
        100,
        FileType::Pdf,
        FileStatus::Processing,
    );
    meta.progress = Some(0);
    meta
}

/// A ready text file uploaded earlier, stored with its text.
pub(crate) async fn ready_file(f: &Fixture, owner: &Owner, name: &str, text: &str) -> FileMeta {
    let meta = crate::service::files::tests::text_file(f.blobs.as_ref(), owner, name, text).await;
    f.store.put_file(owner, &meta).await.unwrap();
    meta
}

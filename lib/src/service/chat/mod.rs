//! A chat turn, step by step, as `DESIGN.md` §3 draws it:
//!
//! ```text
//! admit (rate limit) → resolve (conversation, branch, history, files) → persist (conversation,
//! user message, the answer's placeholder) → build the context → run the answer (stream, log,
//! store, title)
//! ```
//!
//! Each step is one function in its own module with its own tests: [`admit`], [`resolve`],
//! [`persist`], [`context`], [`answer`]. [`ChatService::start`] runs the last four; the HTTP layer
//! calls [`ChatService::admit`] first, before it reads the request, so refused requests count.
//! Every refusal happens before anything is streamed; after that, failures travel as
//! [`TurnEvent::Error`].
//!
//! Messages form a tree: a turn continues a branch (by default the current one), and
//! [`regenerate`] answers a user message again, beside its earlier answers. Every event of a turn
//! has a number (1 is `meta`) and goes to the turn log ([`recorder`]), so any instance can follow
//! the turn or replay it ([`follow`]) and ask it to stop.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::files::{FileService, Upload};
use super::title::Titler;
use super::usage::{worst_case, Budgets};
use super::Error;
use crate::auth::Principal;
use crate::blobs::BlobStore;
use crate::domain::{
    Citation, ConversationId, FileId, FileMeta, Message, MessageId, MessageStatus, Owner, Receipt,
    Role, Timestamp, DEFAULT_TITLE,
};
use crate::limits::RateLimit;
use crate::llm::Registry;
use crate::store::Store;
use crate::traces::Traces;
use crate::turns::TurnLog;

pub mod admit;
pub mod answer;
pub mod cite;
pub mod context;
pub mod follow;
pub mod persist;
pub mod recorder;
pub mod regenerate;
pub mod resolve;

pub use context::{ContextBuilder, ContextSettings};

/// Most files in one chat request (uploads and earlier uploads together).
pub const MAX_FILES: usize = 10;
/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;
/// Longest model name, in characters.
pub const MAX_MODEL_CHARS: usize = 200;
/// How long a turn waits for a file that is still being processed.
pub const PROCESSING_WAIT: Duration = Duration::from_secs(30);
/// How long a turn's answer task waits for the automatic title after `done`.
pub const TITLE_WAIT: Duration = Duration::from_secs(30);

/// The settings a chat turn uses, from the configuration.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Previous messages read as history (`CONVERSA_HISTORY_MESSAGES`).
    pub history_messages: u32,
    /// Chat requests per client per minute; 0 disables (`CONVERSA_RATE_LIMIT_PER_MINUTE`).
    pub rate_limit_per_minute: u32,
    /// The longest wait for the model's next piece of answer (`CONVERSA_MODEL_TIMEOUT_SECS`).
    pub model_timeout: Duration,
    /// Each turn's figures (and each refusal) as a CloudWatch EMF line (`CONVERSA_METRICS_EMF`).
    pub metrics_emf: bool,
    /// The CloudWatch namespace of those lines (`CONVERSA_METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// What the model sees: system prompt, file share, answer cap (the window is each model's).
    pub context: ContextSettings,
}

/// The ports a chat turn talks to.
#[derive(Clone)]
pub struct ChatPorts {
    /// Conversations, messages, file records.
    pub store: Arc<dyn Store>,
    /// File text and prepared images, for the context.
    pub blobs: Arc<dyn BlobStore>,
    /// Chat requests per client, under the per-minute policy.
    pub limiter: RateLimit,
    /// The models on offer: the one asked for (or the default) answers, with its fallbacks; the
    /// title model writes titles.
    pub models: Arc<Registry>,
    /// The tiers' budgets and turns per minute, over the ledger.
    pub budgets: Budgets,
    /// Each turn's events and stop flag, for whichever instance follows or stops it.
    pub turns: Arc<dyn TurnLog>,
    /// Where each turn's spans go (or nowhere).
    pub traces: Traces,
}

/// The chat use case: one turn from the request to the stored answer. Cheap to clone.
#[derive(Clone)]
pub struct ChatService {
    store: Arc<dyn Store>,
    limiter: RateLimit,
    models: Arc<Registry>,
    budgets: Budgets,
    turns: Arc<dyn TurnLog>,
    traces: Traces,
    files: Arc<FileService>,
    context: ContextBuilder,
    titler: Titler,
    settings: Arc<ChatSettings>,
}

/// What the client sent.
#[derive(Debug, Default)]
pub struct ChatInput {
    /// The text (may be empty when files are attached).
    pub message: String,
    /// Continue this conversation; `None` starts one.
    pub conversation_id: Option<ConversationId>,
    /// Files uploaded earlier.
    pub file_ids: Vec<FileId>,
    /// Files in this request.
    pub uploads: Vec<Upload>,
    /// The id of a model of the registry; `None`: the default.
    pub model: Option<String>,
    /// The message the new one follows: `None` (absent) the conversation's current leaf;
    /// `Some(None)` none (a new first message: how the first message is edited);
    /// `Some(Some(id))` that message (how a message is edited: its parent).
    pub parent_id: Option<Option<MessageId>>,
}

/// The first event of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TurnMeta {
    /// The conversation (new or continued).
    pub conversation_id: ConversationId,
    /// The stored user message.
    pub user_message_id: MessageId,
    /// The answer's id (stored when the stream ends).
    pub assistant_message_id: MessageId,
    /// Whether this turn started the conversation.
    pub created_conversation: bool,
    /// The files of the user message.
    pub files: Vec<FileMeta>,
    /// The id of the model asked for (the default when the request named none); the receipt
    /// names the one that answered.
    pub model: String,
}

/// Events after `meta`, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// The model serves a limited number of answers at once and this one waits: its place in line
    /// (1 = next), before the first token and whenever it changes.
    Queued {
        /// The place in line.
        position: usize,
    },
    /// A piece of the answer.
    Token(String),
    /// The automatic title of a new conversation.
    Title {
        /// The conversation.
        conversation_id: ConversationId,
        /// Its new title.
        title: String,
    },
    /// The answer is stored: complete, or `incomplete` when it was stopped.
    Done {
        /// The stored answer's id.
        message_id: MessageId,
        /// Why the model stopped (`stopped` when someone asked it to).
        finish_reason: String,
        /// The receipt: the model that answered, tokens, cost, times.
        usage: Receipt,
        /// The passages the answer cites (of files, and of memory), in order of first citation.
        citations: Vec<Citation>,
    },
    /// The model failed (what was received is stored as `incomplete`, or `error` when nothing
    /// was), or the answer could not be stored. The stream ends after it.
    Error(Error),
}

/// An event with its number in the turn (`meta` is 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Numbered {
    /// Its number: one more than the event before it.
    pub id: u64,
    /// The event.
    pub event: TurnEvent,
}

/// The number of a turn's `meta` event.
pub const META_ID: u64 = 1;

/// A started turn: its `meta` and the stream of what follows.
pub struct Turn {
    /// Ids and files.
    pub meta: TurnMeta,
    /// Tokens, then title/done or error, numbered from 2. Ends when the answer (and the title)
    /// are stored and the turn's log is written. Each event is boxed: the channel's blocks hold
    /// 32 slots each, allocated whole, and a slot then takes a pointer rather than the largest
    /// event (`done`, ~180 bytes), so a thousand streams hold ~0.3 KB each in their channels
    /// instead of ~6–12 KB.
    pub events: mpsc::UnboundedReceiver<Box<Numbered>>,
}

/// A turn waited for to its end.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Ids and files of the turn.
    pub meta: TurnMeta,
    /// The stored answer.
    pub message: Message,
    /// The automatic title, when this turn produced one.
    pub title: Option<String>,
}

impl ChatService {
    /// A chat service over `ports`, with `files` for the uploads of a turn. Starts nothing.
    pub fn new(ports: ChatPorts, files: Arc<FileService>, settings: ChatSettings) -> Self {
        Self {
            titler: Titler::new(
                ports.models.clone(),
                ports.store.clone(),
                ports.budgets.clone(),
            ),
            context: ContextBuilder::new(ports.blobs, settings.context.clone())
                .with_vectors(files.vectors().cloned())
                .with_search(files.search().cloned()),
            store: ports.store,
            limiter: ports.limiter,
            models: ports.models,
            budgets: ports.budgets,
            turns: ports.turns,
            traces: ports.traces,
            files,
            settings: Arc::new(settings),
        }
    }

    /// The settings this service runs with.
    pub fn settings(&self) -> &ChatSettings {
        &self.settings
    }

    /// The models on offer.
    pub fn models(&self) -> &Arc<Registry> {
        &self.models
    }

    /// Counts a refused turn in the metrics (when they are on).
    pub(crate) fn refused(&self, reason: &str, who: &Principal) {
        crate::metrics::record_refused(reason);
        if self.settings.metrics_emf {
            crate::metrics::emit(&crate::metrics::refused(
                &self.settings.metrics_namespace,
                reason,
                who.owner.as_str(),
                self.budgets.now_ms(),
            ));
        }
    }

    /// The budgets a turn is held against.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// The turn log.
    pub fn turns(&self) -> &Arc<dyn TurnLog> {
        &self.turns
    }

    /// Resolves the turn, reserves its worst case against the caller's budgets, persists and
    /// builds it, then starts the answer. Every refusal happens here, before anything is streamed
    /// (a turn over budget stores nothing); the user message is stored before the model is
    /// called.
    pub async fn start(&self, who: &Principal, input: ChatInput) -> Result<Turn, Error> {
        let owner = &who.owner;
        let began = std::time::SystemTime::now();
        let resolved = self.resolve(owner, input).await?;
        let model = Arc::clone(&resolved.model);
        let (hold, cap) = self
            .hold_turn(
                who,
                &model,
                &resolved.history,
                &resolved.text,
                resolved
                    .earlier
                    .iter()
                    .chain(resolved.uploads.iter().map(|u| &u.meta)),
            )
            .await?;
        let prepared = async {
            let persisted = self.persist(owner, resolved).await?;
            if let Some(search) = self.files.search() {
                search.index_message_later(owner, &persisted.user_message);
            }
            let mut prompt = self.build_request(owner, &persisted).await?;
            if let Some(cap) = cap {
                prompt.request.max_tokens.get_or_insert(cap);
            }
            Ok::<_, Error>((persisted, prompt))
        }
        .await;
        match prepared {
            Ok((persisted, prompt)) => Ok(self.run_answer(who, persisted, prompt, hold, began)),
            Err(e) => {
                hold.settle(crate::ledger::Spend::nothing(&model.id)).await;
                Err(e)
            }
        }
    }

    /// Reserves the worst case of a turn to `model` — the prompt it can send (the history, the
    /// message and its files, at most the window less the answer's room) and the answer cap,
    /// priced — against the caller's budgets; refused with [`Error::Quota`]. Under a budget, the
    /// answer cap the reservation priced is returned, for the request to carry.
    pub(crate) async fn hold_turn<'a>(
        &self,
        who: &Principal,
        model: &Arc<crate::llm::ModelEntry>,
        history: &'a [Message],
        text: &str,
        files: impl Iterator<Item = &'a FileMeta>,
    ) -> Result<(super::usage::Hold, Option<u32>), Error> {
        let context = self.context.for_model(model);
        let answer_cap = self
            .settings
            .context
            .max_answer_tokens
            .or(model.max_tokens)
            .map_or_else(|| context.answer_room(&model.model), u64::from);
        let prompt = context.prompt_bound(&model.model, history, text, files);
        match self
            .budgets
            .reserve(who, worst_case(model, prompt, answer_cap))
            .await
        {
            Ok(hold) => {
                let limited = !self.budgets.limits(&who.tier).budget().is_unlimited();
                let cap = limited.then(|| u32::try_from(answer_cap).unwrap_or(u32::MAX));
                Ok((hold, cap))
            }
            Err(e) => {
                if matches!(e, Error::Quota { .. }) {
                    self.refused("quota_exceeded", who);
                }
                Err(e)
            }
        }
    }

    /// Waits for a started turn to end (the answer and the title stored): the stored answer and
    /// the automatic title, or the error that ended it.
    pub async fn finish(&self, owner: &Owner, mut turn: Turn) -> Result<Finished, Error> {
        let meta = turn.meta;
        let mut title = None;
        let mut failure = None;
        // The channel closes once the answer (and the title job) are stored.
        while let Some(numbered) = turn.events.recv().await {
            match numbered.event {
                TurnEvent::Title { title: t, .. } => title = Some(t),
                TurnEvent::Error(e) => failure = Some(e),
                TurnEvent::Queued { .. } | TurnEvent::Token(_) | TurnEvent::Done { .. } => {}
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if title.is_none() && meta.created_conversation {
            title = self
                .store
                .get_conversation(owner, &meta.conversation_id)
                .await?
                .map(|c| c.title)
                .filter(|t| t != DEFAULT_TITLE);
        }
        let message = self
            .store
            .get_message(owner, &meta.assistant_message_id)
            .await?
            .unwrap_or(Message {
                id: meta.assistant_message_id.clone(),
                conversation_id: meta.conversation_id.clone(),
                parent_id: Some(meta.user_message_id.clone()),
                role: Role::Assistant,
                content: String::new(),
                files: vec![],
                token_count: 0,
                status: MessageStatus::Error,
                created_at: Timestamp::now(),
                usage: None,
                citations: vec![],
            });
        Ok(Finished {
            meta,
            message,
            title,
        })
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
pub(crate) mod fixture;

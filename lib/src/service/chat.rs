//! A chat turn: validate, load or create the conversation, ingest files, store the user message,
//! then stream the model's answer while a task stores it — to the end, even when the client leaves.

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use super::files::{self, Upload};
use crate::api::ApiError;
use crate::domain::{
    Conversation, ConversationId, FileId, FileMeta, FileStatus, Message, MessageId, MessageStatus,
    Owner, Role, Timestamp, DEFAULT_TITLE,
};
use crate::llm::{ChatEvent, ChatRequest, LlmError, Usage};
use crate::AppState;

/// Most files in one chat request (uploads and earlier uploads together).
pub const MAX_FILES: usize = 10;
/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;
/// How long a turn waits for a file that is still being processed.
pub const PROCESSING_WAIT: Duration = Duration::from_secs(30);

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
    /// A model other than the configured one.
    pub model: Option<String>,
}

/// The first event of a turn.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
}

/// Events after `meta`, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// A piece of the answer.
    Token(String),
    /// The automatic title of a new conversation.
    Title {
        /// The conversation.
        conversation_id: ConversationId,
        /// Its new title.
        title: String,
    },
    /// The answer is complete and stored.
    Done {
        /// The stored answer's id.
        message_id: MessageId,
        /// Why the model stopped.
        finish_reason: String,
        /// Token counts.
        usage: Usage,
    },
    /// The model failed; what was received is stored as `incomplete` (or `error` when nothing was).
    Error {
        /// `upstream_error`, …
        code: String,
        /// For people.
        message: String,
    },
}

/// A started turn: its `meta` and the stream of what follows.
pub struct Turn {
    /// Ids and files.
    pub meta: TurnMeta,
    /// Tokens, then title/done or error. Ends when the answer is stored.
    pub events: mpsc::UnboundedReceiver<TurnEvent>,
}

/// Counts one chat request against the client's rate limit.
pub async fn check_rate(state: &AppState, client_key: &str) -> Result<(), ApiError> {
    let limit = state.config.rate_limit_per_minute;
    if limit == 0 {
        return Ok(());
    }
    match state.limiter.check(client_key, limit).await? {
        crate::limits::Decision::Allowed => Ok(()),
        crate::limits::Decision::Limited { retry_after_secs } => Err(ApiError::RateLimited {
            retry_after_secs,
            message: format!(
                "Too many messages: the limit is {limit} per minute. Try again in {retry_after_secs} s."
            ),
        }),
    }
}

async fn resolve_file(state: &AppState, owner: &Owner, id: &FileId) -> Result<FileMeta, ApiError> {
    let deadline = tokio::time::Instant::now() + PROCESSING_WAIT;
    loop {
        let meta = state
            .store
            .get_file(owner, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("No file with id {id}.")))?;
        match meta.status {
            FileStatus::Ready => return Ok(meta),
            FileStatus::Failed => {
                return Err(ApiError::Unprocessable(format!(
                    "{} could not be read: {}",
                    meta.filename,
                    meta.error.as_deref().unwrap_or("extraction failed")
                )))
            }
            FileStatus::Processing if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::Unprocessable(format!(
                    "{} is still being processed; try again in a moment.",
                    meta.filename
                )))
            }
            FileStatus::Processing => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Validates and stores everything of a turn up to the user message, then starts the answer.
/// Every refusal happens here, before anything is streamed or stored.
pub async fn start(state: &AppState, owner: &Owner, input: ChatInput) -> Result<Turn, ApiError> {
    let text = input.message.trim().to_owned();
    if text.is_empty() && input.uploads.is_empty() && input.file_ids.is_empty() {
        return Err(ApiError::BadRequest(
            "Write a message or attach a file.".into(),
        ));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "The message is too long; the limit is {MAX_MESSAGE_CHARS} characters."
        )));
    }
    if input.uploads.len() + input.file_ids.len() > MAX_FILES {
        return Err(ApiError::BadRequest(format!(
            "Attach at most {MAX_FILES} files to one message."
        )));
    }
    if let Some(model) = &input.model {
        if model.is_empty() || model.len() > 200 || model.chars().any(char::is_control) {
            return Err(ApiError::BadRequest("The model name is not valid.".into()));
        }
    }
    let existing = match &input.conversation_id {
        Some(id) => Some(super::conversations::get(state, owner, id).await?),
        None => None,
    };
    let mut earlier = Vec::new();
    for id in &input.file_ids {
        earlier.push(resolve_file(state, owner, id).await?);
    }
    let mut prepared = Vec::new();
    for upload in input.uploads {
        prepared.push(files::prepare(state, upload).await?);
    }

    // Everything is valid: store.
    let now = Timestamp::now();
    // A new conversation is stored together with its first message, below.
    let (conversation, created) = match existing {
        Some(c) => (c, false),
        None => {
            let c = Conversation {
                id: ConversationId::generate(),
                title: DEFAULT_TITLE.into(),
                message_count: 0,
                created_at: now,
                updated_at: now,
            };
            (c, true)
        }
    };
    let mut file_metas = Vec::new();
    for mut meta in earlier {
        if meta.conversation_id.is_none() {
            meta.conversation_id = Some(conversation.id.clone());
            state.store.put_file(owner, &meta).await?;
        }
        file_metas.push(meta);
    }
    let uploaded_from = file_metas.len();
    for p in prepared {
        file_metas.push(files::persist(state, owner, p, Some(&conversation.id)).await?);
    }
    // A new conversation has no history: no need to ask the store.
    let history = if created {
        Vec::new()
    } else {
        state
            .store
            .recent_messages(owner, &conversation.id, state.config.history_messages)
            .await?
    };
    let user_message = Message {
        id: MessageId::generate(),
        conversation_id: conversation.id.clone(),
        role: Role::User,
        content: text.clone(),
        files: file_metas.clone(),
        token_count: crate::tokens::estimate(&text),
        status: MessageStatus::Complete,
        created_at: now,
    };
    let stored = if created {
        state
            .store
            .start_conversation(owner, &conversation, &user_message)
            .await
    } else {
        state.store.add_message(owner, &user_message).await
    };
    if let Err(e) = stored {
        if created {
            // Files uploaded with this turn would belong to a conversation that does not exist.
            for f in &file_metas[uploaded_from..] {
                files::discard(state, owner, &f.id).await;
            }
        }
        return Err(e.into());
    }

    let model = input
        .model
        .unwrap_or_else(|| state.config.chat_model.clone());
    let messages =
        super::context::build(state, owner, &model, &history, &text, &file_metas).await?;
    let request = ChatRequest {
        model,
        messages,
        max_tokens: state.config.max_answer_tokens,
        temperature: None,
    };
    let meta = TurnMeta {
        conversation_id: conversation.id.clone(),
        user_message_id: user_message.id.clone(),
        assistant_message_id: MessageId::generate(),
        created_conversation: created,
        files: file_metas.clone(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let file_names: Vec<String> = file_metas.iter().map(|f| f.filename.clone()).collect();
    let title_job = created.then(|| {
        let (state, owner, id) = (state.clone(), owner.clone(), conversation.id.clone());
        let text = text.clone();
        tokio::spawn(async move {
            super::title::generate(&state, &owner, &id, &text, &file_names).await
        })
    });
    let answer = Answer {
        state: state.clone(),
        owner: owner.clone(),
        conversation_id: conversation.id,
        message_id: meta.assistant_message_id.clone(),
        prompt_estimate: request
            .messages
            .iter()
            .map(|m| crate::tokens::count(&request.model, &m.joined_text()))
            .sum(),
    };
    tokio::spawn(answer.run(request, tx, title_job));
    Ok(Turn { meta, events: rx })
}

struct Answer {
    state: AppState,
    owner: Owner,
    conversation_id: ConversationId,
    message_id: MessageId,
    prompt_estimate: u64,
}

enum Outcome {
    Finished {
        finish_reason: String,
        usage: Option<Usage>,
    },
    Failed(LlmError),
}

impl Answer {
    /// Streams the model into `tx` and stores the answer, whatever happens to the receiver.
    async fn run(
        self,
        request: ChatRequest,
        tx: mpsc::UnboundedSender<TurnEvent>,
        title_job: Option<tokio::task::JoinHandle<Option<String>>>,
    ) {
        let timeout = self.state.config.model_timeout;
        let mut text = String::new();
        let outcome = match tokio::time::timeout(timeout, self.state.model.stream(request)).await {
            Err(_) => Outcome::Failed(LlmError::Unreachable(
                "the model did not answer in time".into(),
            )),
            Ok(Err(e)) => Outcome::Failed(e),
            Ok(Ok(mut stream)) => loop {
                match tokio::time::timeout(timeout, stream.next()).await {
                    Err(_) => {
                        break Outcome::Failed(LlmError::Unreachable(
                            "the model stopped answering".into(),
                        ))
                    }
                    Ok(None) => {
                        break Outcome::Failed(LlmError::Unreachable(
                            "the answer stopped before it was finished".into(),
                        ))
                    }
                    Ok(Some(Err(e))) => break Outcome::Failed(e),
                    Ok(Some(Ok(ChatEvent::Delta(t)))) => {
                        text.push_str(&t);
                        // A client that left is no reason to stop: the answer is still stored.
                        let _ = tx.send(TurnEvent::Token(t));
                    }
                    Ok(Some(Ok(ChatEvent::Done {
                        finish_reason,
                        usage,
                    }))) => {
                        break Outcome::Finished {
                            finish_reason,
                            usage,
                        }
                    }
                }
            },
        };

        let (status, last) = match outcome {
            Outcome::Finished {
                finish_reason,
                usage,
            } => {
                let usage = usage.unwrap_or(Usage {
                    prompt_tokens: self.prompt_estimate,
                    completion_tokens: crate::tokens::estimate(&text),
                });
                (
                    MessageStatus::Complete,
                    TurnEvent::Done {
                        message_id: self.message_id.clone(),
                        finish_reason,
                        usage,
                    },
                )
            }
            Outcome::Failed(e) => {
                tracing::warn!(conversation = %self.conversation_id, error = %e, "the model failed during a turn");
                let status = if text.is_empty() {
                    MessageStatus::Error
                } else {
                    MessageStatus::Incomplete
                };
                let api = ApiError::from(e);
                (
                    status,
                    TurnEvent::Error {
                        code: api.code().into(),
                        message: api.public_message(),
                    },
                )
            }
        };
        let token_count = match &last {
            TurnEvent::Done { usage, .. } => usage.completion_tokens,
            _ => crate::tokens::estimate(&text),
        };
        let message = Message {
            id: self.message_id.clone(),
            conversation_id: self.conversation_id.clone(),
            role: Role::Assistant,
            content: text,
            files: vec![],
            token_count,
            status,
            created_at: Timestamp::now(),
        };
        if let Err(e) = self.state.store.add_message(&self.owner, &message).await {
            tracing::error!(error = %e, "could not store the answer");
            let api = ApiError::from(e);
            let _ = tx.send(TurnEvent::Error {
                code: api.code().into(),
                message: "The answer could not be saved.".into(),
            });
            return;
        }

        // The title goes out before `done` when it is ready by then; otherwise it lands later without an
        // event. Either way the job is awaited here, inside the request, so it is not lost when a
        // serverless sandbox freezes after the response.
        let mut pending = None;
        if let Some(job) = title_job {
            if job.is_finished() {
                if let Ok(Some(title)) = job.await {
                    let _ = tx.send(TurnEvent::Title {
                        conversation_id: self.conversation_id.clone(),
                        title,
                    });
                }
            } else {
                pending = Some(job);
            }
        }
        let _ = tx.send(last);
        if let Some(job) = pending {
            let _ = tokio::time::timeout(Duration::from_secs(30), job).await;
        }
    }
}

//! The `ChatModel` port: a streaming chat completion, provider-neutral.
//!
//! Adapters: `openai` (any OpenAI-compatible endpoint, through async-openai) and, behind features,
//! an in-process local model.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
#[cfg(feature = "local-model")]
pub mod local;
pub mod openai;

/// What can go wrong when calling a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with an error (status and its message when known).
    #[error("the model provider failed: {message}")]
    Upstream {
        /// HTTP status from the provider, when there was one.
        status: Option<u16>,
        /// The provider's own words, safe to show.
        message: String,
    },
    /// The provider could not be reached (connection refused, dropped, timed out).
    #[error("the model provider could not be reached: {0}")]
    Unreachable(String),
    /// The request cannot be served by this model (e.g. it is too long for the context window).
    #[error("{0}")]
    Invalid(String),
}

/// Who speaks in a model conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    /// Instructions.
    System,
    /// The person (and the file context).
    User,
    /// The model's earlier answers.
    Assistant,
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text.
    Text(String),
    /// An image for vision models.
    Image {
        /// Media type of `data` (`image/png`, `image/jpeg`, `image/webp`, `image/gif`).
        mime: String,
        /// Encoded image bytes.
        data: Bytes,
        /// The file name, so models without vision can say which image they cannot see.
        name: String,
    },
}

/// One message sent to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: ChatRole,
    /// What is said.
    pub parts: Vec<Part>,
}

impl ChatMessage {
    /// A text-only message.
    pub fn text(role: ChatRole, text: impl Into<String>) -> Self {
        Self {
            role,
            parts: vec![Part::Text(text.into())],
        }
    }
    /// The text parts joined (images left out).
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            if let Part::Text(t) = p {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                out.push_str(t);
            }
        }
        out
    }
}

/// A request for one completion.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Model name as the provider knows it.
    pub model: String,
    /// The conversation, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Cap on the answer's tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature (provider default when `None`).
    pub temperature: Option<f32>,
}

/// Token counts reported for a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens of the request.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
}

/// One item of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// A piece of the answer, in order.
    Delta(String),
    /// The end: why it stopped and, when the provider says, the usage.
    Done {
        /// `stop`, `length`, …
        finish_reason: String,
        /// The provider's counts, when given.
        usage: Option<Usage>,
    },
}

/// A stream of completion events; it ends after `Done` or an error.
pub type ChatStream = BoxStream<'static, Result<ChatEvent, LlmError>>;

/// A chat model.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// A short description for `/health` (provider and default model, never secrets).
    fn describe(&self) -> String;

    /// Starts a streamed completion. Failures before the first event may surface either here or as
    /// the stream's first item.
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError>;

    /// A whole completion as one string (titles).
    async fn complete(&self, request: ChatRequest) -> Result<String, LlmError> {
        let mut stream = self.stream(request).await?;
        let mut out = String::new();
        while let Some(event) = stream.next().await {
            match event? {
                ChatEvent::Delta(t) => out.push_str(&t),
                ChatEvent::Done { .. } => break,
            }
        }
        Ok(out)
    }
}

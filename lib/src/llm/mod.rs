//! The `ChatModel` port: a streaming chat completion, provider-neutral.
//!
//! Adapters: `openai` (any OpenAI-compatible endpoint, through async-openai), `anthropic` (the
//! Messages API) and, behind features, `bedrock` (Amazon Bedrock ConverseStream) and an in-process
//! local model. The [`Registry`] holds the configured models by id and answers with fallbacks.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

pub mod anthropic;
#[cfg(feature = "bedrock")]
pub mod bedrock;
#[cfg(any(test, feature = "test-support"))]
pub mod contract;
pub mod key;
#[cfg(feature = "local-model")]
pub mod local;
pub mod openai;
pub mod prices;
pub mod queue;
pub mod registry;

pub use key::ApiKey;
pub use prices::PriceTable;
pub use registry::{ModelEntry, Price, Provider, Registry, RegistryError};

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

impl LlmError {
    /// Whether another model may answer instead, when this happened before the first token: the
    /// provider could not be reached or timed out, was rate limited (429), or failed on its side
    /// (5xx, Anthropic's 529 "overloaded", Bedrock's 424 model error). A refused request (any other
    /// 4xx) or one this model cannot serve would fail the same way elsewhere, or should be fixed.
    pub fn may_fall_back(&self) -> bool {
        match self {
            LlmError::Unreachable(_) => true,
            LlmError::Upstream {
                status: Some(s), ..
            } => matches!(*s, 408 | 424 | 429) || *s >= 500,
            LlmError::Upstream { status: None, .. } | LlmError::Invalid(_) => false,
        }
    }
}

/// A provider's error text made safe to show: addresses (`http://…`, `https://…`) and resource
/// names (`arn:…`, which carry account ids) are replaced, any of `secrets` (the key) is blanked,
/// whitespace is collapsed and the result is cut at 300 characters.
pub fn safe_message(raw: &str, secrets: &[&str]) -> String {
    let mut text = raw.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let lower = word.to_ascii_lowercase();
        let sensitive = ["http://", "https://", "arn:"]
            .iter()
            .find_map(|p| lower.find(p));
        match sensitive {
            Some(at) => {
                out.push_str(&word[..at]);
                out.push_str(if lower[at..].starts_with("arn:") {
                    "[resource]"
                } else {
                    "[address]"
                });
                // Keep closing punctuation that followed the address.
                let tail: String = word[at..]
                    .chars()
                    .rev()
                    .take_while(|c| matches!(c, '.' | ',' | ')' | '"' | '\'' | ';'))
                    .collect();
                out.extend(tail.chars().rev());
            }
            None => out.push_str(word),
        }
    }
    if out.chars().count() > 300 {
        out = out.chars().take(299).collect();
        out.push('…');
    }
    out
}

/// The sentence that replaces an image for a model without vision.
pub fn image_note(name: &str) -> String {
    format!("[The image {name} is attached, but this model cannot see images.]")
}

/// The conversation with every image replaced by [`image_note`] (for a model without vision).
pub fn without_images(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role,
            parts: m
                .parts
                .iter()
                .map(|p| match p {
                    Part::Image { name, .. } => Part::Text(image_note(name)),
                    text => text.clone(),
                })
                .collect(),
        })
        .collect()
}

/// A conversation in the shape the Anthropic and Bedrock APIs require: the system messages' text
/// taken out (joined by blank lines), empty text parts and messages left empty dropped (an answer
/// that failed with no text), consecutive messages of one role merged, and a user message first.
pub fn normalise_turns(messages: &[ChatMessage]) -> (String, Vec<ChatMessage>) {
    let mut system = Vec::new();
    let mut turns: Vec<ChatMessage> = Vec::new();
    for m in messages {
        if m.role == ChatRole::System {
            let text = m.joined_text();
            if !text.trim().is_empty() {
                system.push(text);
            }
            continue;
        }
        let parts: Vec<Part> = m
            .parts
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.trim().is_empty()))
            .cloned()
            .collect();
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == m.role => last.parts.extend(parts),
            _ => turns.push(ChatMessage {
                role: m.role,
                parts,
            }),
        }
    }
    // An answer with no question before it (the history window began with it) goes.
    while turns.first().is_some_and(|m| m.role != ChatRole::User) {
        turns.remove(0);
    }
    (system.join("\n\n"), turns)
}

/// The finish reason of Anthropic's `stop_reason` and Bedrock's `stopReason`, in OpenAI's words.
pub(crate) fn finish_reason_of(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "refusal" | "content_filtered" | "guardrail_intervened" => "content_filter",
        "tool_use" => "tool_calls",
        "malformed_model_output" | "malformed_tool_use" => {
            tracing::warn!(stop_reason, "the model ended with a malformed answer");
            "stop"
        }
        "" => "stop",
        other => return other.to_owned(),
    }
    .to_owned()
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    /// Tokens of the request.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
}

/// One item of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// The model serves a limited number of answers at once and this one waits its turn: its
    /// place in line (1 = next). Comes before the first delta, again whenever the place changes.
    Queued(usize),
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

/// A provider's stream of events, read into ours one at a time (the adapters that speak a
/// provider's own protocol).
pub(crate) trait Fold: Send + 'static {
    /// Reads the provider's events until the next event of ours: a delta, `Done`, or an error.
    fn step(&mut self) -> impl std::future::Future<Output = Result<ChatEvent, LlmError>> + Send;
}

/// The stream of `fold`'s events, ending after `Done` or an error.
pub(crate) fn folded(fold: impl Fold) -> ChatStream {
    futures::stream::unfold(Some(fold), |fold| async move {
        let mut fold = fold?;
        let item = fold.step().await;
        let more = matches!(item, Ok(ChatEvent::Delta(_)));
        Some((item, more.then_some(fold)))
    })
    .boxed()
}

/// The most idle connections a provider client keeps to one host. An HTTP/1.1 stream holds a
/// connection of its own, and each connection keeps ~25 KB (hyper's read and write buffers, its
/// request channel, its task) for as long as it is pooled: after a burst of a thousand answers
/// and their titles, an unbounded pool would keep a thousand idle connections for a minute. A
/// connection beyond this is closed when its response ends; a later burst opens new ones.
pub(crate) const MAX_IDLE_CONNECTIONS: usize = 32;

/// The HTTP client of the adapters that call a provider over HTTP: connections made within 10 s,
/// no Nagle delay on the stream, at most [`MAX_IDLE_CONNECTIONS`] idle connections per host, each
/// kept for a minute.
pub(crate) fn http_client() -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
        .build()
        .map_err(|e| LlmError::Invalid(format!("cannot build the HTTP client: {e}")))
}

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
                ChatEvent::Queued(_) => {}
                ChatEvent::Done { .. } => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_providers_own_failures_may_fall_back() {
        let upstream = |s: Option<u16>| LlmError::Upstream {
            status: s,
            message: String::new(),
        };
        for s in [408, 424, 429, 500, 502, 503, 504, 529] {
            assert!(upstream(Some(s)).may_fall_back(), "{s}");
        }
        for s in [400, 401, 402, 403, 404, 413, 422] {
            assert!(!upstream(Some(s)).may_fall_back(), "{s}");
        }
        assert!(!upstream(None).may_fall_back());
        assert!(LlmError::Unreachable("connection refused".into()).may_fall_back());
        assert!(!LlmError::Invalid("too long".into()).may_fall_back());
    }

    #[test]
    fn safe_messages_hide_addresses_resources_and_keys() {
        let said = safe_message(
            "Key sk-live-abcdef is invalid (see https://gw.internal/v1/keys). Model arn:aws:bedrock:us-east-1:123456789012:foundation-model/x denied.",
            &["sk-live-abcdef"],
        );
        assert_eq!(
            said,
            "Key [redacted] is invalid (see [address]). Model [resource] denied."
        );
        assert_eq!(safe_message("  a \n b  ", &[]), "a b");
        let long = safe_message(&"word ".repeat(200), &[]);
        assert_eq!(long.chars().count(), 300);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn turns_are_normalised_for_providers_that_want_alternation() {
        let (system, turns) = normalise_turns(&[
            ChatMessage::text(ChatRole::System, "One."),
            ChatMessage::text(ChatRole::Assistant, "An answer whose question is gone."),
            ChatMessage::text(ChatRole::User, "Q1"),
            ChatMessage::text(ChatRole::Assistant, ""),
            ChatMessage::text(ChatRole::User, "Q1 again"),
            ChatMessage::text(ChatRole::System, "Two."),
            ChatMessage::text(ChatRole::Assistant, "A"),
            ChatMessage::text(ChatRole::User, "Q2"),
        ]);
        assert_eq!(system, "One.\n\nTwo.");
        let shape: Vec<(ChatRole, String)> =
            turns.iter().map(|m| (m.role, m.joined_text())).collect();
        assert_eq!(
            shape,
            [
                (ChatRole::User, "Q1\n\nQ1 again".to_owned()),
                (ChatRole::Assistant, "A".to_owned()),
                (ChatRole::User, "Q2".to_owned()),
            ]
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("refusal", "content_filter"),
            ("guardrail_intervened", "content_filter"),
            ("tool_use", "tool_calls"),
            ("", "stop"),
            ("something_new", "something_new"),
        ] {
            assert_eq!(finish_reason_of(stop), finish);
        }
    }

    #[test]
    fn images_become_a_sentence_naming_them_for_models_without_vision() {
        let m = ChatMessage {
            role: ChatRole::User,
            parts: vec![
                Part::Text("look".into()),
                Part::Image {
                    mime: "image/png".into(),
                    data: Bytes::from_static(b"png"),
                    name: "cat.png".into(),
                },
            ],
        };
        let out = without_images(&[m]);
        assert_eq!(
            out[0].joined_text(),
            "look\n\n[The image cat.png is attached, but this model cannot see images.]"
        );
    }

    /// A burst of simultaneous requests opens a connection each; once they are answered the
    /// client keeps [`MAX_IDLE_CONNECTIONS`] of them for the next requests and closes the rest.
    #[tokio::test]
    async fn after_a_burst_the_client_keeps_a_bounded_number_of_idle_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        const BURST: usize = MAX_IDLE_CONNECTIONS + 8;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        // Every connection waits to answer until the whole burst is connected, so that no request
        // can reuse another's connection.
        let all_in = Arc::new(tokio::sync::Notify::new());
        {
            let (accepted, open, all_in) = (accepted.clone(), open.clone(), all_in.clone());
            tokio::spawn(async move {
                loop {
                    let (mut tcp, _) = listener.accept().await.unwrap();
                    open.fetch_add(1, Ordering::SeqCst);
                    if accepted.fetch_add(1, Ordering::SeqCst) + 1 == BURST {
                        all_in.notify_waiters();
                    }
                    let (accepted, open, all_in) = (accepted.clone(), open.clone(), all_in.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        loop {
                            // One request (no body) per round; zero bytes: the client closed it.
                            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                match tcp.read(&mut chunk).await {
                                    Ok(0) | Err(_) => {
                                        open.fetch_sub(1, Ordering::SeqCst);
                                        return;
                                    }
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                            }
                            buf.clear();
                            let wait = all_in.notified();
                            if accepted.load(Ordering::SeqCst) < BURST {
                                wait.await;
                            }
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if tcp.write_all(reply).await.is_err() {
                                open.fetch_sub(1, Ordering::SeqCst);
                                return;
                            }
                        }
                    });
                }
            });
        }
        let http = http_client().unwrap();
        let get = |http: reqwest::Client, url: String| async move {
            http.get(url).send().await.unwrap().text().await.unwrap()
        };
        let burst: Vec<_> = (0..BURST)
            .map(|_| tokio::spawn(get(http.clone(), url.clone())))
            .collect();
        for answer in burst {
            assert_eq!(answer.await.unwrap(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), BURST);
        // The connections beyond the pool's bound close as their responses end.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while open.load(Ordering::SeqCst) > MAX_IDLE_CONNECTIONS
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(open.load(Ordering::SeqCst), MAX_IDLE_CONNECTIONS);
        // The kept ones serve the next request: no new connection.
        assert_eq!(get(http.clone(), url.clone()).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), BURST);
        assert_eq!(open.load(Ordering::SeqCst), MAX_IDLE_CONNECTIONS);
    }
}

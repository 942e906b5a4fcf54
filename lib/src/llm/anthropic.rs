//! `ChatModel` on the Anthropic Messages API (`POST /v1/messages`, streamed): a small client on the
//! HTTP stack already in the tree (reqwest) and `eventsource-stream` for the server-sent events.
//!
//! The request carries the system prompt at the top level, a required `max_tokens` (the request's,
//! else the model's default), images as base64 blocks, and a temperature clamped to Anthropic's
//! 0–1. The answer streams as `message_start` (prompt tokens), `content_block_delta` (text),
//! `message_delta` (stop reason, answer tokens), `message_stop`; an `error` event can come at any
//! point and ends the stream with the status its type stands for (`overloaded_error` → 529,
//! `rate_limit_error` → 429, …), so a failure before the first token may fall back to another
//! model and one after it ends the answer incomplete.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    finish_reason_of, normalise_turns, safe_message, ApiKey, ChatEvent, ChatMessage, ChatModel,
    ChatRequest, ChatRole, ChatStream, LlmError, Part, Usage,
};

/// Anthropic's endpoint, without the `/v1` (as its own SDKs take it).
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";
/// The answer cap when neither the request nor the model's entry sets one (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A model served by the Anthropic Messages API.
pub struct AnthropicModel {
    http: reqwest::Client,
    endpoint: String,
    key: ApiKey,
    model: String,
    default_max_tokens: u32,
}

impl AnthropicModel {
    /// A client for `model` at `base_url` (default Anthropic's; with or without a trailing `/v1`)
    /// with `api_key`; `default_max_tokens` caps answers whose request sets no cap.
    pub fn new(
        api_key: &str,
        base_url: Option<&str>,
        model: &str,
        default_max_tokens: Option<u32>,
    ) -> Result<Self, LlmError> {
        Self::keyed(ApiKey::value(api_key), base_url, model, default_max_tokens)
    }

    /// As [`AnthropicModel::new`], with a key given or read on first use.
    pub fn keyed(
        key: ApiKey,
        base_url: Option<&str>,
        model: &str,
        default_max_tokens: Option<u32>,
    ) -> Result<Self, LlmError> {
        let base = base_url
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_owned();
        let http = super::http_client()?;
        Ok(Self {
            http,
            endpoint: format!("{base}/v1/messages"),
            key,
            model: model.to_owned(),
            default_max_tokens: default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        })
    }

    /// The request body of a streamed completion.
    fn body(&self, request: &ChatRequest) -> Value {
        let (system, turns) = normalise_turns(&request.messages);
        let model = if request.model.is_empty() {
            &self.model
        } else {
            &request.model
        };
        let mut body = json!({
            "model": model,
            "max_tokens": request.max_tokens.unwrap_or(self.default_max_tokens),
            "messages": turns.iter().map(to_wire).collect::<Vec<_>>(),
            "stream": true,
        });
        if !system.is_empty() {
            body["system"] = Value::String(system);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t.clamp(0.0, 1.0));
        }
        body
    }

    /// An HTTP error answer as our error: the status, the provider's words made safe, and when to
    /// try again if it said.
    async fn http_error(&self, response: reqwest::Response, api_key: &str) -> LlmError {
        let status = response.status().as_u16();
        let retry = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let said = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or(text);
        let message = match status {
            401 => "the model provider rejected the key".to_owned(),
            _ => safe_message(&said, &[api_key]),
        };
        let hint = match retry {
            Some(d) => format!(" (try again in {} s)", d.as_secs().max(1)),
            None => String::new(),
        };
        LlmError::Upstream {
            status: Some(status),
            message: format!("{status} {message}{hint}"),
        }
    }
}

/// One message in the API's shape (after [`normalise_turns`]: user or assistant only).
fn to_wire(m: &ChatMessage) -> Value {
    let role = match m.role {
        ChatRole::Assistant => "assistant",
        ChatRole::User | ChatRole::System => "user",
    };
    let content: Vec<Value> = m
        .parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => json!({ "type": "text", "text": t }),
            Part::Image { mime, data, .. } => json!({
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": mime,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                }
            }),
        })
        .collect();
    json!({ "role": role, "content": content })
}

/// `retry-after-ms` or `retry-after` (seconds), as the provider's SDKs read them.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    read("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| read("retry-after").map(Duration::from_secs_f64))
}

/// The HTTP status an error type of the API stands for (used for `error` events in the stream).
fn status_of(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// The events of the stream this adapter reads; every other type (`ping`, `content_block_start`,
/// `content_block_stop`, types added later) is skipped.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    MessageStart {
        message: WireMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireStop,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Every token of the request: the uncached ones and those written to or read from the cache.
    fn prompt(&self) -> Option<u64> {
        self.input_tokens.map(|n| {
            n + self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0)
        })
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct WireStop {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: WireError,
}

/// Folds the provider's events into ours.
struct Fold<S> {
    events: S,
    api_key: String,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    stop_reason: Option<String>,
}

impl<S, E> super::Fold for Fold<S>
where
    S: Stream<Item = Result<eventsource_stream::Event, EventStreamError<E>>>
        + Unpin
        + Send
        + 'static,
    E: Send + 'static,
{
    async fn step(&mut self) -> Result<ChatEvent, LlmError> {
        loop {
            let event = match self.events.next().await {
                Some(Ok(event)) => event,
                Some(Err(EventStreamError::Transport(_))) => {
                    return Err(LlmError::Unreachable("the stream broke off".into()))
                }
                Some(Err(_)) => {
                    return Err(LlmError::Upstream {
                        status: None,
                        message: "the provider sent a stream that could not be read".into(),
                    })
                }
                None => {
                    return Err(LlmError::Unreachable(
                        "the answer stopped before it was finished".into(),
                    ))
                }
            };
            let wire: Wire = serde_json::from_str(&event.data).map_err(|_| LlmError::Upstream {
                status: None,
                message: "the provider sent an event that could not be read".into(),
            })?;
            match wire {
                Wire::MessageStart { message } => {
                    self.prompt_tokens = message.usage.prompt();
                    self.completion_tokens = message.usage.output_tokens;
                }
                Wire::ContentBlockDelta {
                    delta: WireDelta::TextDelta { text },
                } if !text.is_empty() => return Ok(ChatEvent::Delta(text)),
                Wire::ContentBlockDelta { .. } => {}
                Wire::MessageDelta { delta, usage } => {
                    if let Some(reason) = delta.stop_reason {
                        self.stop_reason = Some(reason);
                    }
                    if let Some(prompt) = usage.prompt() {
                        self.prompt_tokens = Some(prompt);
                    }
                    if let Some(n) = usage.output_tokens {
                        self.completion_tokens = Some(n);
                    }
                }
                Wire::MessageStop => {
                    let usage = match (self.prompt_tokens, self.completion_tokens) {
                        (None, None) => None,
                        (prompt, completion) => Some(Usage {
                            prompt_tokens: prompt.unwrap_or(0),
                            completion_tokens: completion.unwrap_or(0),
                        }),
                    };
                    return Ok(ChatEvent::Done {
                        finish_reason: finish_reason_of(
                            self.stop_reason.as_deref().unwrap_or_default(),
                        ),
                        usage,
                    });
                }
                Wire::Error { error } => {
                    let status = status_of(&error.kind);
                    let said = safe_message(&error.message, &[&self.api_key]);
                    return Err(LlmError::Upstream {
                        status,
                        message: match status {
                            Some(s) => format!("{s} {said}"),
                            None => said,
                        },
                    });
                }
                Wire::Other => {}
            }
        }
    }
}

#[async_trait]
impl ChatModel for AnthropicModel {
    fn describe(&self) -> String {
        // The model only: an endpoint's address can carry internal host names.
        format!("anthropic {}", self.model)
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let api_key = self.key.get().await?.unwrap_or_default();
        let response = self
            .http
            .post(&self.endpoint)
            .header("x-api-key", api_key)
            .header("anthropic-version", API_VERSION)
            .json(&self.body(&request))
            .send()
            .await
            .map_err(|e| {
                LlmError::Unreachable(if e.is_timeout() {
                    "the request timed out".into()
                } else if e.is_connect() {
                    "connection refused".into()
                } else {
                    "the connection failed".into()
                })
            })?;
        if let Some(id) = response.headers().get("request-id") {
            tracing::debug!(request_id = ?id, "anthropic answered");
        }
        if !response.status().is_success() {
            return Err(self.http_error(response, api_key).await);
        }
        let fold = Fold {
            events: response.bytes_stream().eventsource(),
            api_key: api_key.to_owned(),
            prompt_tokens: None,
            completion_tokens: None,
            stop_reason: None,
        };
        Ok(super::folded(fold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> AnthropicModel {
        AnthropicModel::new("sk-ant-secret", None, "claude-test", Some(512)).unwrap()
    }

    #[test]
    fn the_system_prompt_goes_to_the_top_and_the_cap_is_always_set() {
        let body = model().body(&ChatRequest {
            model: String::new(),
            messages: vec![
                ChatMessage::text(ChatRole::System, "Be brief."),
                ChatMessage::text(ChatRole::User, "hi"),
            ],
            max_tokens: None,
            temperature: Some(1.7),
        });
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["model"], "claude-test");
        assert_eq!(body["max_tokens"], 512);
        assert_eq!(body["temperature"], 1.0);
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
        assert_eq!(body["messages"][0]["role"], "user");
    }

    #[test]
    fn base_urls_work_with_or_without_v1() {
        for base in [
            "http://gw.internal",
            "http://gw.internal/",
            "http://gw.internal/v1",
        ] {
            let m = AnthropicModel::new("k", Some(base), "m", None).unwrap();
            assert_eq!(m.endpoint, "http://gw.internal/v1/messages");
        }
        assert!(!model().describe().contains("://"));
    }

    #[test]
    fn error_types_stand_for_their_statuses() {
        assert_eq!(status_of("overloaded_error"), Some(529));
        assert_eq!(status_of("rate_limit_error"), Some(429));
        assert_eq!(status_of("api_error"), Some(500));
        assert_eq!(status_of("something_new"), None);
    }

    #[test]
    fn retry_hints_are_read_in_seconds_or_milliseconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}

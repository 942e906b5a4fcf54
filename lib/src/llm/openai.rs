//! `ChatModel` on any OpenAI-compatible endpoint (OpenAI, Azure-compatible proxies, Ollama, vLLM, …)
//! through async-openai: streamed chat completions with usage, images as `data:` URLs.
//!
//! The request goes through async-openai's own transport (its headers, its retries of rate limits,
//! server errors and refused connections); its server-sent events are read in the answer's own
//! task, not through a task and channel per answer as async-openai's stream would: one task wake
//! less per token.

use async_openai::config::{Config, OpenAIConfig};
use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError, StreamError, WrappedError};
use async_openai::middleware::retry::{OpenAIRetry, OpenAIRetryLayer};
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestMessageContentPartImage,
    ChatCompletionRequestMessageContentPartText, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionRequestUserMessageContentPart,
    ChatCompletionResponseStream, ChatCompletionStreamOptions, CreateChatCompletionRequest,
    CreateChatCompletionStreamResponse, FinishReason, ImageUrl,
};
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use tower::ServiceExt;

use super::{
    ApiKey, ChatEvent, ChatMessage, ChatModel, ChatRequest, ChatRole, ChatStream, LlmError, Part,
    Usage,
};

/// The OpenAI default endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// An OpenAI-compatible provider.
pub struct OpenAiModel {
    config: OpenAIConfig,
    /// A key read from a parameter on first use (else the key is in `config`).
    deferred: Option<ApiKey>,
    http: reqwest::Client,
    /// async-openai's transport: the request, retried as its client retries it.
    transport: OpenAIRetry<ReqwestService>,
    default_model: String,
}

impl OpenAiModel {
    /// A client for `base_url` (default OpenAI) with an optional key.
    pub fn new(
        api_key: Option<&str>,
        base_url: Option<&str>,
        default_model: &str,
    ) -> Result<Self, LlmError> {
        let key = api_key.map_or_else(ApiKey::none, ApiKey::value);
        Self::keyed(key, base_url, default_model)
    }

    /// A client for `base_url` (default OpenAI) with a key given or read on first use.
    pub fn keyed(
        key: ApiKey,
        base_url: Option<&str>,
        default_model: &str,
    ) -> Result<Self, LlmError> {
        let base_url = base_url
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_owned();
        let mut config = OpenAIConfig::new().with_api_base(&base_url);
        let deferred = if key.is_deferred() {
            Some(key)
        } else {
            // A given key (or none) is known now: no need to wait for it.
            config = config.with_api_key(key.given().unwrap_or(""));
            None
        };
        let http = super::http_client()?;
        Ok(Self {
            config,
            deferred,
            transport: tower::ServiceBuilder::new()
                .layer(OpenAIRetryLayer::default())
                .service(ReqwestService::new(http.clone())),
            http,
            default_model: default_model.to_owned(),
        })
    }

    /// A streamed chat completion, as async-openai's `create_stream` sends it, its events read
    /// where the stream is polled.
    async fn create_stream(
        &self,
        request: &CreateChatCompletionRequest,
        deferred_key: Option<&str>,
    ) -> Result<ChatCompletionResponseStream, OpenAIError> {
        let body = Bytes::from(serde_json::to_vec(request).map_err(|e| {
            OpenAIError::InvalidArgument(format!("failed to serialize request: {e}"))
        })?);
        let (http, url, mut headers) = (
            self.http.clone(),
            self.config.url("/chat/completions"),
            self.config.headers(),
        );
        if let Some(key) = deferred_key {
            let bearer =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    OpenAIError::InvalidArgument("the key is not a valid header".into())
                })?;
            headers.insert(reqwest::header::AUTHORIZATION, bearer);
        }
        let query: Vec<(String, String)> = self
            .config
            .query()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let factory = HttpRequestFactory::new(move || {
            let request = http
                .post(url.as_str())
                .query(&query)
                .headers(headers.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .build();
            async move { Ok(request?) }
        });
        let response = self.transport.clone().oneshot(factory).await?;
        if !response.status().is_success() {
            return Err(error_response(response).await);
        }
        let events = response.bytes_stream().eventsource();
        Ok(futures::stream::unfold(events, |mut events| async move {
            loop {
                let event = match events.next().await? {
                    Ok(e) => e,
                    Err(e) => {
                        let e = StreamError::EventStream(e.to_string());
                        return Some((Err(OpenAIError::StreamError(Box::new(e))), events));
                    }
                };
                if event.data == "[DONE]" {
                    return None;
                }
                if event.event == "keepalive" {
                    continue;
                }
                let chunk = serde_json::from_str::<CreateChatCompletionStreamResponse>(&event.data)
                    .map_err(|e| OpenAIError::JSONDeserialize(e, event.data));
                return Some((chunk, events));
            }
        })
        .boxed())
    }
}

/// An unsuccessful response as async-openai reads it: a server error's body as its message, else
/// the provider's error object.
async fn error_response(response: reqwest::Response) -> OpenAIError {
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return OpenAIError::Reqwest(e),
    };
    if status.is_server_error() {
        return OpenAIError::ApiError(ApiErrorResponse {
            status_code: status,
            api_error: ApiError {
                message: String::from_utf8_lossy(&bytes).into_owned(),
                ..ApiError::default()
            },
        });
    }
    match serde_json::from_slice::<WrappedError>(&bytes) {
        Ok(wrapped) => OpenAIError::ApiError(ApiErrorResponse {
            status_code: status,
            api_error: wrapped.error,
        }),
        Err(e) => OpenAIError::JSONDeserialize(e, String::from_utf8_lossy(&bytes).into_owned()),
    }
}

fn to_openai(m: &ChatMessage) -> ChatCompletionRequestMessage {
    match m.role {
        ChatRole::System => {
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(m.joined_text()),
                name: None,
            })
        }
        ChatRole::Assistant => {
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: Some(ChatCompletionRequestAssistantMessageContent::Text(
                    m.joined_text(),
                )),
                ..Default::default()
            })
        }
        ChatRole::User => {
            let has_images = m.parts.iter().any(|p| matches!(p, Part::Image { .. }));
            let content = if has_images {
                ChatCompletionRequestUserMessageContent::Array(
                    m.parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => ChatCompletionRequestUserMessageContentPart::Text(
                                ChatCompletionRequestMessageContentPartText {
                                    text: t.clone(),
                                    ..Default::default()
                                },
                            ),
                            Part::Image { mime, data, .. } => {
                                ChatCompletionRequestUserMessageContentPart::ImageUrl(
                                    ChatCompletionRequestMessageContentPartImage {
                                        image_url: ImageUrl {
                                            url: format!(
                                                "data:{mime};base64,{}",
                                                base64::engine::general_purpose::STANDARD
                                                    .encode(data)
                                            ),
                                            detail: None,
                                        },
                                        ..Default::default()
                                    },
                                )
                            }
                        })
                        .collect(),
                )
            } else {
                ChatCompletionRequestUserMessageContent::Text(m.joined_text())
            };
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                content,
                name: None,
            })
        }
    }
}

/// Turns an async-openai error into ours, keeping the provider's own words.
fn map_error(e: OpenAIError) -> LlmError {
    match e {
        OpenAIError::ApiError(resp) => LlmError::Upstream {
            status: Some(resp.status_code.as_u16()),
            message: format!(
                "{} {}",
                resp.status_code.as_u16(),
                provider_message(&resp.api_error.message)
            ),
        },
        OpenAIError::Reqwest(e) => LlmError::Unreachable(if e.is_timeout() {
            "the request timed out".into()
        } else if e.is_connect() {
            "connection refused".into()
        } else {
            "the connection failed".into()
        }),
        // A provider that reports an error inside the stream sends a JSON error object where a chunk
        // was expected: surface its message.
        OpenAIError::JSONDeserialize(_, content) => {
            let message = serde_json::from_str::<serde_json::Value>(&content)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "the provider sent a response that could not be read".into());
            LlmError::Upstream {
                status: None,
                message,
            }
        }
        OpenAIError::StreamError(e) => LlmError::Unreachable(format!("the stream broke off ({e})")),
        OpenAIError::InvalidArgument(m) => LlmError::Invalid(m),
        other => LlmError::Upstream {
            status: None,
            message: other.to_string(),
        },
    }
}

/// The provider's own words: servers that answer an error with a raw JSON body get their
/// `error.message` (or `message`) taken out of it.
fn provider_message(raw: &str) -> String {
    let raw = raw.trim();
    if raw.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) {
            let found = v
                .pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error").filter(|e| e.is_string()))
                .and_then(|m| m.as_str());
            if let Some(m) = found {
                return m.trim().to_owned();
            }
        }
    }
    raw.chars().take(300).collect()
}

fn finish_name(r: &FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::FunctionCall => "function_call",
    }
}

#[async_trait]
impl ChatModel for OpenAiModel {
    fn describe(&self) -> String {
        // The model only: an endpoint's address can carry credentials or internal host names.
        self.default_model.clone()
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let req = CreateChatCompletionRequest {
            model: request.model,
            messages: request.messages.iter().map(to_openai).collect(),
            stream: Some(true),
            stream_options: Some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            }),
            max_completion_tokens: request.max_tokens,
            temperature: request.temperature,
            ..Default::default()
        };
        let key = match &self.deferred {
            Some(key) => key.get().await?,
            None => None,
        };
        let upstream = self.create_stream(&req, key).await.map_err(map_error)?;

        // Fold provider chunks into our events: deltas as they come, one `Done` at the end carrying the
        // finish reason (from a choice) and the usage (from the final usage chunk).
        struct Fold {
            upstream: async_openai::types::chat::ChatCompletionResponseStream,
            finish: Option<String>,
            usage: Option<Usage>,
            ended: bool,
        }
        let state = Fold {
            upstream,
            finish: None,
            usage: None,
            ended: false,
        };
        let stream = futures::stream::unfold(state, |mut s| async move {
            if s.ended {
                return None;
            }
            loop {
                match s.upstream.next().await {
                    Some(Ok(chunk)) => {
                        if let Some(u) = chunk.usage {
                            s.usage = Some(Usage {
                                prompt_tokens: u64::from(u.prompt_tokens),
                                completion_tokens: u64::from(u.completion_tokens),
                            });
                        }
                        let mut text = String::new();
                        for choice in chunk.choices {
                            if let Some(t) = choice.delta.content {
                                text.push_str(&t);
                            }
                            if let Some(r) = choice.finish_reason {
                                s.finish = Some(finish_name(&r).to_owned());
                            }
                        }
                        if !text.is_empty() {
                            return Some((Ok(ChatEvent::Delta(text)), s));
                        }
                    }
                    Some(Err(e)) => {
                        s.ended = true;
                        return Some((Err(map_error(e)), s));
                    }
                    None => {
                        s.ended = true;
                        return match s.finish.take() {
                            Some(finish_reason) => Some((
                                Ok(ChatEvent::Done {
                                    finish_reason,
                                    usage: s.usage,
                                }),
                                s,
                            )),
                            // The stream ended without a finish reason: the connection was cut.
                            None => Some((
                                Err(LlmError::Unreachable(
                                    "the answer stopped before it was finished".into(),
                                )),
                                s,
                            )),
                        };
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn provider_messages_are_taken_out_of_json_bodies() {
        assert_eq!(
            super::provider_message(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
            "overloaded"
        );
        assert_eq!(
            super::provider_message(r#"{"message":"bad gateway"}"#),
            "bad gateway"
        );
        assert_eq!(
            super::provider_message("upstream connect error"),
            "upstream connect error"
        );
        assert_eq!(super::provider_message(&"x".repeat(1000)).len(), 300);
    }
}

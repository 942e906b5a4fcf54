//! `ChatModel` on Amazon Bedrock's ConverseStream API (`aws-sdk-bedrockruntime`): IAM credentials
//! (no key), a region per model, the system prompt as system blocks, images as bytes, the usage
//! from the stream's `metadata` event.
//!
//! The SDK's own retries are off (one attempt): a throttled or failing model is the registry's to
//! replace with a fallback before the first token, not the SDK's to retry behind its back. Errors
//! keep the HTTP status Bedrock documents for them (throttling 429, model error 424, service
//! unavailable 503, …), the ones that come inside the stream included, so the one fallback rule
//! ([`LlmError::may_fall_back`]) applies.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_bedrockruntime as br;
use br::config::retry::RetryConfig;
use br::config::timeout::TimeoutConfig;
use br::config::Region;
use br::error::{ProvideErrorMetadata, SdkError};
use br::operation::converse_stream::ConverseStreamError;
use br::primitives::Blob;
use br::types::error::ConverseStreamOutputError;
use br::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput, ImageBlock,
    ImageFormat, ImageSource, InferenceConfiguration, Message, SystemContentBlock,
};

use super::{
    finish_reason_of, normalise_turns, safe_message, ChatEvent, ChatMessage, ChatModel,
    ChatRequest, ChatRole, ChatStream, LlmError, Part, Usage,
};

/// A Bedrock client for one region and endpoint, shared by the models that use them.
pub fn client(sdk: &SdkConfig, region: Option<&str>, endpoint: Option<&str>) -> br::Client {
    let mut builder = br::config::Builder::from(sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .build(),
        );
    if let Some(region) = region {
        builder = builder.region(Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    br::Client::from_conf(builder.build())
}

/// A model served by Bedrock (a foundation-model id, an inference-profile id or an ARN).
pub struct BedrockModel {
    client: br::Client,
    model_id: String,
}

impl BedrockModel {
    /// `model_id` through `client` (see [`client`]).
    pub fn new(client: br::Client, model_id: &str) -> Self {
        Self {
            client,
            model_id: model_id.to_owned(),
        }
    }
}

fn image_format(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::Webp),
        _ => None,
    }
}

fn to_block(part: &Part) -> Result<ContentBlock, LlmError> {
    Ok(match part {
        Part::Text(t) => ContentBlock::Text(t.clone()),
        Part::Image { mime, data, name } => ContentBlock::Image(
            ImageBlock::builder()
                .format(image_format(mime).ok_or_else(|| {
                    LlmError::Invalid(format!("{name}: this model cannot read {mime} images"))
                })?)
                // The bytes are shared, not copied.
                .source(ImageSource::Bytes(Blob::from_maybe_shared(data.clone())))
                .build()
                .map_err(|e| LlmError::Invalid(format!("{name}: {e}")))?,
        ),
    })
}

fn to_message(m: &ChatMessage) -> Result<Message, LlmError> {
    let role = match m.role {
        ChatRole::Assistant => ConversationRole::Assistant,
        ChatRole::User | ChatRole::System => ConversationRole::User,
    };
    Message::builder()
        .role(role)
        .set_content(Some(
            m.parts
                .iter()
                .map(to_block)
                .collect::<Result<Vec<_>, _>>()?,
        ))
        .build()
        .map_err(|e| LlmError::Invalid(e.to_string()))
}

/// The provider's code and message, made safe to show (Bedrock's messages can name ARNs).
fn said<E: ProvideErrorMetadata>(e: &E) -> String {
    let text = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "the provider failed".to_owned(),
    };
    safe_message(&text, &[])
}

/// An error of the request, before the stream.
fn map_send_error(e: SdkError<ConverseStreamError>) -> LlmError {
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            LlmError::Upstream {
                status: Some(status),
                message: format!("{status} {}", said(se.err())),
            }
        }
        SdkError::DispatchFailure(d) => LlmError::Unreachable(if d.is_timeout() {
            "the request timed out".into()
        } else {
            "connection refused".into()
        }),
        SdkError::TimeoutError(_) => LlmError::Unreachable("the request timed out".into()),
        SdkError::ResponseError(r) => LlmError::Upstream {
            status: Some(r.raw().status().as_u16()),
            message: "the provider sent a response that could not be read".into(),
        },
        // Construction failures: no credentials or region, or a request the SDK would not build.
        _ => {
            tracing::warn!(error = %br::error::DisplayErrorContext(&e), "the Bedrock request could not be made");
            LlmError::Upstream {
                status: None,
                message:
                    "the request to the model provider could not be made (credentials or region)"
                        .into(),
            }
        }
    }
}

/// An error inside the stream: the status Bedrock documents for its exception.
fn map_stream_error<R: std::fmt::Debug>(e: SdkError<ConverseStreamOutputError, R>) -> LlmError {
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let status = match err {
                ConverseStreamOutputError::ThrottlingException(_) => 429,
                ConverseStreamOutputError::ServiceUnavailableException(_) => 503,
                ConverseStreamOutputError::ModelStreamErrorException(_) => 424,
                ConverseStreamOutputError::ValidationException(_) => 400,
                _ => 500,
            };
            LlmError::Upstream {
                status: Some(status),
                message: format!("{status} {}", said(err)),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            LlmError::Unreachable("the stream broke off".into())
        }
        _ => LlmError::Upstream {
            status: None,
            message: "the provider sent a stream that could not be read".into(),
        },
    }
}

/// Folds Bedrock's events into ours.
struct Fold {
    events: br::primitives::event_stream::EventReceiver<
        ConverseStreamOutput,
        ConverseStreamOutputError,
    >,
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

impl super::Fold for Fold {
    async fn step(&mut self) -> Result<ChatEvent, LlmError> {
        loop {
            match self.events.recv().await.map_err(map_stream_error)? {
                Some(ConverseStreamOutput::ContentBlockDelta(d)) => {
                    if let Some(ContentBlockDelta::Text(text)) = d.delta {
                        if !text.is_empty() {
                            return Ok(ChatEvent::Delta(text));
                        }
                    }
                }
                Some(ConverseStreamOutput::MessageStop(stop)) => {
                    self.stop_reason = Some(stop.stop_reason.as_str().to_owned());
                }
                // The usage comes after `messageStop`, in the last event.
                Some(ConverseStreamOutput::Metadata(meta)) => {
                    if let Some(u) = meta.usage {
                        let count = |n: i32| u64::try_from(n).unwrap_or(0);
                        self.usage = Some(Usage {
                            prompt_tokens: count(u.input_tokens)
                                + u.cache_read_input_tokens.map_or(0, count)
                                + u.cache_write_input_tokens.map_or(0, count),
                            completion_tokens: count(u.output_tokens),
                        });
                    }
                }
                Some(_) => {}
                None => {
                    return match self.stop_reason.take() {
                        Some(reason) => Ok(ChatEvent::Done {
                            finish_reason: finish_reason_of(&reason),
                            usage: self.usage,
                        }),
                        None => Err(LlmError::Unreachable(
                            "the answer stopped before it was finished".into(),
                        )),
                    }
                }
            }
        }
    }
}

#[async_trait]
impl ChatModel for BedrockModel {
    fn describe(&self) -> String {
        format!("bedrock {}", self.model_id)
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let (system, turns) = normalise_turns(&request.messages);
        let messages = turns
            .iter()
            .map(to_message)
            .collect::<Result<Vec<_>, _>>()?;
        let mut inference = InferenceConfiguration::builder();
        if let Some(m) = request.max_tokens {
            inference = inference.max_tokens(i32::try_from(m).unwrap_or(i32::MAX));
        }
        if let Some(t) = request.temperature {
            inference = inference.temperature(t.clamp(0.0, 1.0));
        }
        let model_id = if request.model.is_empty() {
            &self.model_id
        } else {
            &request.model
        };
        let mut call = self
            .client
            .converse_stream()
            .model_id(model_id)
            .set_messages(Some(messages))
            .inference_config(inference.build());
        if !system.is_empty() {
            call = call.system(SystemContentBlock::Text(system));
        }
        let output = call.send().await.map_err(map_send_error)?;
        let fold = Fold {
            events: output.stream,
            stop_reason: None,
            usage: None,
        };
        Ok(super::folded(fold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_keep_their_format_and_unknown_ones_are_refused() {
        let png = Part::Image {
            mime: "image/png".into(),
            data: bytes::Bytes::from_static(b"\x89PNG"),
            name: "a.png".into(),
        };
        assert!(
            matches!(to_block(&png).unwrap(), ContentBlock::Image(i) if i.format == ImageFormat::Png)
        );
        let bmp = Part::Image {
            mime: "image/bmp".into(),
            data: bytes::Bytes::from_static(b"BM"),
            name: "b.bmp".into(),
        };
        let e = to_block(&bmp).unwrap_err();
        assert!(e.to_string().contains("b.bmp"), "{e}");
    }
}

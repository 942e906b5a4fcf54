//! A fake Amazon Bedrock runtime: `POST /model/{modelId}/converse-stream`, answered in the AWS
//! event-stream binary framing (`application/vnd.amazon.eventstream`, frames encoded with
//! `aws-smithy-eventstream`: `messageStart`, `contentBlockDelta`…, `contentBlockStop`,
//! `messageStop`, `metadata` with the usage) or with the documented restJson1 error answers, so
//! the real SDK client reaches it through an endpoint override and signs its requests with SigV4.
//!
//! It behaves by magic words in the last user message or in the model id:
//!
//! | word | behaviour |
//! |---|---|
//! | (none) | echoes `Echo: <last user text>` word by word; usage 42 prompt tokens, one per word |
//! | `[[status:N]]` | HTTP N with the exception Bedrock documents for it (`x-amzn-errortype`) |
//! | `[[throttle-first]]` | `messageStart`, then a `throttlingException` frame, before any text |
//! | `[[exception]]` | two words, then a `modelStreamErrorException` frame |
//! | `[[drop]]` | three words, then half a frame and the end of the body |
//! | `[[split]]` | every frame split across two chunks of the body |
//! | `[[max-tokens]]` | stops with `max_tokens` |
//! | `[[stall]]` | headers, then nothing for 30 s |

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is its job

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::{async_stream, words};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct BedrockRequest {
    /// The model id from the path, decoded.
    pub model_id: String,
    /// The SigV4 `authorization` header (its credential scope names the region and `bedrock`).
    pub authorization: String,
    /// The JSON body.
    pub body: Value,
}

/// A running fake Bedrock runtime.
pub struct FakeBedrock {
    /// `http://127.0.0.1:PORT`: the endpoint to give the SDK.
    pub endpoint: String,
    requests: Arc<Mutex<Vec<BedrockRequest>>>,
}

impl FakeBedrock {
    /// Starts one on a free port, for the rest of the test's runtime.
    pub async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/model/{model_id}/converse-stream", post(converse_stream))
            .with_state(Arc::clone(&requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            endpoint: format!("http://{addr}"),
            requests,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<BedrockRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// An SDK configuration for the fake: fixed test credentials, `region`, no retries of its own.
pub fn sdk_config(region: &str) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_bedrockruntime::config::{Credentials, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTESTFAKE",
            "fake-secret",
            None,
            None,
            "conversa-test",
        )))
        .build()
}

/// The text of the last user message of a ConverseStream body (text blocks joined).
pub fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_array())
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
        })
        .unwrap_or_default()
}

/// One binary event-stream frame with string headers and a JSON payload.
pub fn frame(headers: &[(&'static str, &str)], payload: &Value) -> Vec<u8> {
    let mut message = Message::new(payload.to_string().into_bytes());
    for (name, value) in headers {
        message = message.add_header(Header::new(
            *name,
            HeaderValue::String((*value).to_owned().into()),
        ));
    }
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

/// An event frame (`:message-type` `event`).
pub fn event(kind: &str, payload: Value) -> Vec<u8> {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        &payload,
    )
}

/// An exception frame (`:message-type` `exception`).
pub fn exception(kind: &str, message: &str) -> Vec<u8> {
    frame(
        &[
            (":message-type", "exception"),
            (":exception-type", kind),
            (":content-type", "application/json"),
        ],
        &json!({ "message": message }),
    )
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

async fn converse_stream(
    State(requests): State<Arc<Mutex<Vec<BedrockRequest>>>>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push(BedrockRequest {
        model_id: model_id.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.clone(),
    });
    let user = last_user_text(&body);
    let magic = format!("{user} {model_id}");
    let has = |word: &str| magic.contains(word);

    if let Some(rest) = magic.split("[[status:").nth(1) {
        let code: u16 = rest
            .split("]]")
            .next()
            .unwrap_or("500")
            .parse()
            .unwrap_or(500);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            axum::Json(json!({ "message": format!("fake Bedrock says {code} for arn:aws:bedrock:us-east-1:123456789012:inference-profile/x") })),
        )
            .into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", error_type(code).parse().unwrap());
        return response;
    }

    let parts = words(&format!("Echo: {user}"));
    let (throttle_first, exception_midway, drop_midway, split, stall) = (
        has("[[throttle-first]]"),
        has("[[exception]]"),
        has("[[drop]]"),
        has("[[split]]"),
        has("[[stall]]"),
    );
    let stop_reason = if has("[[max-tokens]]") {
        "max_tokens"
    } else {
        "end_turn"
    };

    let stream = async_stream(move |tx| async move {
        let send = |bytes: Vec<u8>| {
            if split {
                let (a, b) = bytes.split_at(bytes.len() / 2);
                tx.send(Ok(Bytes::copy_from_slice(a)))
                    .and_then(|()| tx.send(Ok(Bytes::copy_from_slice(b))))
            } else {
                tx.send(Ok(Bytes::from(bytes)))
            }
        };
        if stall {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let _ = send(event("messageStart", json!({ "role": "assistant" })));
        if throttle_first {
            let _ = send(exception(
                "throttlingException",
                "Too many tokens, please wait before trying again.",
            ));
            return;
        }
        for (i, p) in parts.iter().enumerate() {
            if exception_midway && i == 2 {
                let _ = send(exception(
                    "modelStreamErrorException",
                    "The model stopped while streaming.",
                ));
                return;
            }
            let delta = event(
                "contentBlockDelta",
                json!({ "contentBlockIndex": 0, "delta": { "text": p } }),
            );
            if drop_midway && i == 3 {
                let _ = tx.send(Ok(Bytes::copy_from_slice(&delta[..delta.len() / 2])));
                return;
            }
            if send(delta).is_err() {
                return;
            }
        }
        let _ = send(event("contentBlockStop", json!({ "contentBlockIndex": 0 })));
        let _ = send(event("messageStop", json!({ "stopReason": stop_reason })));
        let n = parts.len();
        let _ = send(event(
            "metadata",
            json!({ "usage": { "inputTokens": 42, "outputTokens": n, "totalTokens": 42 + n },
                    "metrics": { "latencyMs": 1 } }),
        ));
    });
    Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "fake-request")
        .body(Body::from_stream(stream))
        .unwrap()
}

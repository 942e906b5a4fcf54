//! A fake Anthropic Messages API: `POST /v1/messages`, answered with the documented server-sent
//! events (`message_start`, `content_block_start`, `ping`, `content_block_delta`…,
//! `content_block_stop`, `message_delta` with the stop reason and usage, `message_stop`) or with
//! the documented error bodies, so the real adapter runs against it.
//!
//! It behaves by magic words found in the last user message or in the model's name (so two
//! models on one fake can behave differently):
//!
//! | word | behaviour |
//! |---|---|
//! | (none) | echoes `Echo: <last user text>` word by word; usage 42 prompt tokens, one per word |
//! | `[[status:N]]` | HTTP N with the error type of N (`429` adds `retry-after: 7`) |
//! | `[[leaky]]` | with `[[status:N]]`: the error message repeats the key and names an internal address |
//! | `[[error-first]]` | `message_start`, then an `overloaded_error` event, before any text |
//! | `[[error-midway]]` | two words, then an `overloaded_error` event |
//! | `[[drop]]` | three words, then the connection is cut |
//! | `[[max-tokens]]` | stops with `max_tokens` |
//! | `[[cache]]` | usage with 10 prompt tokens written to and 20 read from the cache |
//! | `[[stall]]` | headers, then nothing for 30 s |
//!
//! A model named `title-model` answers `Fake Title For <first three words>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is its job

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::{async_stream, words};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct AnthropicRequest {
    /// The JSON body.
    pub body: Value,
    /// `x-api-key`.
    pub api_key: Option<String>,
    /// `anthropic-version`.
    pub version: Option<String>,
}

/// A running fake Anthropic API.
pub struct FakeAnthropic {
    /// `http://127.0.0.1:PORT` (no `/v1`, as Anthropic's SDKs take it).
    pub base_url: String,
    requests: Arc<Mutex<Vec<AnthropicRequest>>>,
}

impl FakeAnthropic {
    /// Starts one on a free port, for the rest of the test's runtime.
    pub async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(Arc::clone(&requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{addr}"),
            requests,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<AnthropicRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// The text of the last user message of a request (text blocks joined).
pub fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .cloned()
        .unwrap_or(Value::Null);
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => String::new(),
    }
}

fn sse(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

async fn messages(
    State(requests): State<Arc<Mutex<Vec<AnthropicRequest>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let api_key = header("x-api-key");
    requests.lock().unwrap().push(AnthropicRequest {
        body: body.clone(),
        api_key: api_key.clone(),
        version: header("anthropic-version"),
    });
    let user = last_user_text(&body);
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let magic = format!("{user} {model}");
    let has = |word: &str| magic.contains(word);

    if let Some(rest) = magic.split("[[status:").nth(1) {
        let code: u16 = rest
            .split("]]")
            .next()
            .unwrap_or("500")
            .parse()
            .unwrap_or(500);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if has("[[leaky]]") {
            format!(
                "invalid x-api-key {} (see https://gateway.internal.example/v1/keys)",
                api_key.unwrap_or_default()
            )
        } else {
            format!("fake provider says {code}")
        };
        let err = json!({
            "type": "error",
            "error": { "type": error_type(code), "message": message },
            "request_id": "req_fake",
        });
        let mut response = (status, axum::Json(err)).into_response();
        if code == 429 {
            response
                .headers_mut()
                .insert("retry-after", "7".parse().unwrap());
        }
        return response;
    }

    let answer = if model == "title-model" {
        let first: Vec<&str> = user
            .trim_start_matches("Message: ")
            .split_whitespace()
            .take(3)
            .collect();
        format!("Fake Title For {}", first.join(" "))
    } else {
        format!("Echo: {user}")
    };
    let parts = words(&answer);
    let (error_first, error_midway, drop_midway, stall) = (
        has("[[error-first]]"),
        has("[[error-midway]]"),
        has("[[drop]]"),
        has("[[stall]]"),
    );
    let stop_reason = if has("[[max-tokens]]") {
        "max_tokens"
    } else {
        "end_turn"
    };
    let (cache_write, cache_read) = if has("[[cache]]") { (10, 20) } else { (0, 0) };
    let overloaded = json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } });

    let stream = async_stream(move |tx| async move {
        let send = |s: String| tx.send(Ok::<_, std::io::Error>(Bytes::from(s)));
        if stall {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let _ = send(sse(
            "message_start",
            &json!({ "type": "message_start", "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                "model": model, "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": 42, "output_tokens": 1,
                           "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read } } }),
        ));
        if error_first {
            let _ = send(sse("error", &overloaded));
            return;
        }
        let _ = send(sse(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ));
        let _ = send(sse("ping", &json!({ "type": "ping" })));
        for (i, p) in parts.iter().enumerate() {
            if error_midway && i == 2 {
                let _ = send(sse("error", &overloaded));
                return;
            }
            if drop_midway && i == 3 {
                // Let what was sent reach the client before the connection is cut.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = tx.send(Err(std::io::Error::other("connection cut")));
                return;
            }
            let delta = json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": p } });
            if send(sse("content_block_delta", &delta)).is_err() {
                return;
            }
        }
        let _ = send(sse(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": 0 }),
        ));
        let _ = send(sse(
            "message_delta",
            &json!({ "type": "message_delta", "delta": { "stop_reason": stop_reason, "stop_sequence": null },
                     "usage": { "output_tokens": parts.len() } }),
        ));
        let _ = send(sse("message_stop", &json!({ "type": "message_stop" })));
    });
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("request-id", "req_fake")
        .body(Body::from_stream(stream))
        .unwrap()
}

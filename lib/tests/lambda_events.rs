//! The Lambda functions' handlers fed the real function-URL events of `events/`, exactly as the
//! runtime feeds them: the chat function through lambda_http's streaming adapter (the answer
//! comes back as a stream of body chunks), the others through the buffered path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly
#![cfg(feature = "lambda")]

use std::sync::Arc;

use conversa::limits::memory::MemoryLimiter;
use conversa::limits::{Decision, ManualClock, RateLimit};
use conversa::testing::{parse_sse, streamed_text, test_app, FakeOpenAi};
use futures::StreamExt;
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service, StreamAdapter};
use serde_json::Value;

fn event_text(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn event(name: &str) -> LambdaEvent<LambdaRequest> {
    let payload: LambdaRequest = serde_json::from_str(&event_text(name)).unwrap();
    LambdaEvent::new(payload, Context::default())
}

/// Streams one event through the chat function's handler; returns the status and the body chunks.
async fn stream_chat(router: axum::Router, name: &str) -> (u16, Vec<String>) {
    let mut handler = StreamAdapter::from(conversa::lambda::with_client_ip(router));
    let response = handler.call(event(name)).await.unwrap();
    let status = response.metadata_prelude.status_code.as_u16();
    let mut chunks = Vec::new();
    let mut body = response.stream;
    while let Some(chunk) = body.next().await {
        chunks.push(String::from_utf8(chunk.unwrap().to_vec()).unwrap());
    }
    (status, chunks)
}

async fn buffered(router: axum::Router, name: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event_text(name)).unwrap();
    let response = conversa::lambda::handle(router, request).await;
    let status = response.status().as_u16();
    let text = conversa::testing::body_text(response).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_chat_function_streams_an_answer_to_a_function_url_event() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = test_app(&fake, dir.path(), &[]).await;
    let (status, chunks) = stream_chat(
        conversa::api::chat::router(state.state.clone()),
        "chat-send.json",
    )
    .await;
    assert_eq!(status, 200);
    assert!(chunks.len() > 3, "the answer streams in pieces: {chunks:?}");
    let events = parse_sse(&chunks.concat());
    assert_eq!(events[0].event, "meta");
    assert_eq!(streamed_text(&events), "Echo: What is in the report?");
    assert_eq!(events.last().unwrap().event, "done");

    let (status, chunks) = stream_chat(
        conversa::api::chat::router(state.state.clone()),
        "chat-send-multipart.json",
    )
    .await;
    assert_eq!(status, 200, "{chunks:?}");
    let events = parse_sse(&chunks.concat());
    assert_eq!(
        events[0].data["files"].as_array().unwrap().len(),
        1,
        "{:?}",
        events[0]
    );
    assert_eq!(events.last().unwrap().event, "done");

    let (status, v) = buffered(
        conversa::api::chat::router(state.state),
        "chat-send-simple.json",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"]["status"], "complete");
}

#[tokio::test]
async fn the_rate_limit_counts_the_function_url_source_ip() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(
        &fake,
        dir.path(),
        &[("CONVERSA_RATE_LIMIT_PER_MINUTE", "1")],
    )
    .await;
    // A clock that stands still: both requests fall in one window whenever the test runs.
    let app = app.with_rate_limit(RateLimit::new(
        Arc::new(MemoryLimiter::new()),
        Arc::new(ManualClock::at(1_800_000_000_000)),
    ));
    let (status, _) = stream_chat(
        conversa::api::chat::router(app.state.clone()),
        "chat-send.json",
    )
    .await;
    assert_eq!(status, 200);
    let (status, chunks) = stream_chat(
        conversa::api::chat::router(app.state.clone()),
        "chat-send.json",
    )
    .await;
    assert_eq!(status, 429, "{chunks:?}");
    assert!(matches!(
        app.limiter.check("ip:203.0.113.10", 1).await,
        Ok(Decision::Limited { .. })
    ));
}

#[tokio::test]
async fn the_chat_function_lists_the_models_on_offer() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = test_app(&fake, dir.path(), &[]).await;
    let (status, chunks) = stream_chat(
        conversa::api::chat::router(state.state.clone()),
        "models.json",
    )
    .await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&chunks.concat()).unwrap();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat-model", "title-model"]);
    assert_eq!(listed["items"][0]["default"], true);
}

#[tokio::test]
async fn the_conversations_and_files_functions_answer_their_events() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = test_app(&fake, dir.path(), &[]).await;
    let conversations = || conversa::api::conversations::router(state.state.clone());
    let files = || conversa::api::files::router(state.state.clone());

    let (s, v) = buffered(conversations(), "health.json").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = buffered(conversations(), "api-root.json").await;
    assert_eq!((s, v["name"].as_str()), (200, Some("conversa")));
    let (s, v) = buffered(conversations(), "openapi.json").await;
    assert_eq!(s, 200);
    assert!(v["paths"].is_object());
    let (s, v) = buffered(conversations(), "conversations-list.json").await;
    assert_eq!(s, 200, "{v}");
    assert!(v["items"].is_array());
    for name in [
        "conversations-get.json",
        "conversations-messages.json",
        "conversations-rename.json",
        "conversations-delete.json",
    ] {
        let (s, v) = buffered(conversations(), name).await;
        assert_eq!(s, 404, "{name}: the placeholder id does not exist: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (s, v) = buffered(files(), "files-upload.json").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["file_type"], "csv");
    for name in ["files-get.json", "files-download.json", "files-text.json"] {
        let (s, v) = buffered(files(), name).await;
        assert_eq!(s, 404, "{name}: {v}");
    }
}

#[tokio::test]
async fn behind_the_cdn_the_origin_secret_is_required_and_vouches_for_the_client_ip() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-origin-value";
    let state = test_app(
        &fake,
        dir.path(),
        &[
            ("CONVERSA_ORIGIN_SECRET", secret),
            ("CONVERSA_RATE_LIMIT_PER_MINUTE", "1"),
        ],
    )
    .await;
    // Straight to the function URL, without the secret: refused.
    let (s, v) = buffered(
        conversa::api::conversations::router(state.state.clone()),
        "health.json",
    )
    .await;
    assert_eq!(s, 401, "{v}");

    let with_headers = |ip: &str| {
        let mut event: Value = serde_json::from_str(&event_text("chat-send-simple.json")).unwrap();
        event["headers"]["x-conversa-origin-verify"] = secret.into();
        event["headers"]["x-conversa-client-ip"] = ip.into();
        lambda_http::request::from_str(&event.to_string()).unwrap()
    };
    let r = conversa::lambda::handle(
        conversa::api::chat::router(state.state.clone()),
        with_headers("198.51.100.7"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = conversa::lambda::handle(
        conversa::api::chat::router(state.state.clone()),
        with_headers("198.51.100.7"),
    )
    .await;
    assert_eq!(
        r.status(),
        429,
        "the viewer's address is the rate-limit key"
    );
    let r = conversa::lambda::handle(
        conversa::api::chat::router(state.state.clone()),
        with_headers("198.51.100.8"),
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "another viewer behind the same edge is not limited"
    );
}

//! The chat function as Lambda runs it: the real `chat` binary polling cargo-lambda's emulated
//! Runtime API, a chat streamed through the emulated function URL chunk by chunk.
//!
//! Needs `cargo lambda` on PATH (`bash scripts/tools.sh install`). Without it the test says so and
//! passes, unless `CONVERSA_REQUIRE_SERVICES=1` (CI), where a missing tool fails it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::{Duration, Instant};

use conversa::testing::{
    cargo_lambda_available, parse_sse, streamed_text, FakeOpenAi, LambdaEmulator,
};
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn a_chat_streams_through_the_emulated_function_url() {
    if !cargo_lambda_available() {
        if std::env::var("CONVERSA_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("cargo lambda is required (bash scripts/tools.sh install)");
        }
        eprintln!("SKIPPED: chat under the Lambda emulator: `cargo lambda` is not on PATH (bash scripts/tools.sh install)");
        return;
    }
    let fake = FakeOpenAi::start().await;
    let data = tempfile::tempdir().unwrap();
    let emulator = LambdaEmulator::start().await;
    let port = emulator.port;
    let _function = emulator.instance(
        env!("CARGO_BIN_EXE_chat"),
        [
            ("CONVERSA_DATA_DIR", data.path().as_os_str()),
            ("OPENAI_API_KEY", "test-key".as_ref()),
            ("OPENAI_BASE_URL", fake.base_url.as_ref()),
            ("CONVERSA_TITLE_MODEL", "title-model".as_ref()),
        ],
    );

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/lambda-url/_/api/chat/send");
    let started = Instant::now();
    let response = client
        .post(&url)
        .json(&json!({ "message": "stream slowly [[slow]]" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = response.bytes_stream();
    let mut raw = String::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = body.next().await {
        raw.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        arrivals.push(started.elapsed());
    }
    let events = parse_sse(&raw);
    assert_eq!(events[0].event, "meta");
    assert_eq!(events.last().unwrap().event, "done", "{raw}");
    assert!(streamed_text(&events).starts_with("w0 w1 w2"));
    // 40 tokens 50 ms apart: a buffered response would arrive in one piece at the end.
    assert!(arrivals.len() > 10, "streamed in {} pieces", arrivals.len());
    assert!(arrivals[arrivals.len() - 1] - arrivals[1] > Duration::from_millis(1000));

    // Refusals come back as ordinary JSON errors through the same URL.
    let bad = client
        .post(&url)
        .json(&json!({ "message": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let v: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
}

/// Reads SSE events from a streamed response as they arrive, each with when it arrived.
async fn events_of(
    response: reqwest::Response,
    started: Instant,
    tx: tokio::sync::mpsc::UnboundedSender<(Duration, conversa::testing::SseEvent)>,
) {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            for e in parse_sse(&block) {
                let _ = tx.send((started.elapsed(), e));
            }
        }
    }
}

#[tokio::test]
async fn a_resume_streams_from_another_instance_while_the_first_generates() {
    if !cargo_lambda_available() {
        if std::env::var("CONVERSA_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("cargo lambda is required (bash scripts/tools.sh install)");
        }
        eprintln!("SKIPPED: resume under the Lambda emulator: `cargo lambda` is not on PATH (bash scripts/tools.sh install)");
        return;
    }
    let fake = FakeOpenAi::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = vec![
        (
            "CONVERSA_DATA_DIR".into(),
            data.path().display().to_string(),
        ),
        ("OPENAI_API_KEY".into(), "test-key".into()),
        ("OPENAI_BASE_URL".into(), fake.base_url.clone()),
        ("CONVERSA_TITLE_MODEL".into(), "title-model".into()),
    ];
    // The instances share the store as Lambda instances do: the DynamoDB table when one is
    // configured (moto), else one SQLite file (each process has its own memory either way).
    let mut table = None;
    if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.trim().is_empty()) {
        let name = format!("conversa-test-lambda-{}", uuid_like());
        let client = aws_sdk_dynamodb::Client::new(conversa::aws::sdk_config().await);
        conversa::store::dynamodb::ensure_table(&client, &name)
            .await
            .unwrap();
        env.push(("CONVERSA_STORE".into(), "dynamodb".into()));
        env.push(("CONVERSA_DYNAMODB_TABLE".into(), name.clone()));
        table = Some((client, name));
    } else if std::env::var("CONVERSA_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("DynamoDB (AWS_ENDPOINT_URL) is required under CONVERSA_REQUIRE_SERVICES=1");
    }
    let emulator = LambdaEmulator::start().await;
    let port = emulator.port;
    // Two instances of the function.
    let _first = emulator.instance(env!("CARGO_BIN_EXE_chat"), env.clone());
    let _second = emulator.instance(env!("CARGO_BIN_EXE_chat"), env.clone());

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/lambda-url/_");
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/chat/send"))
        .json(&json!({ "message": "a long answer [[slower]]" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (tx, mut live) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(events_of(response, started, tx));
    let mut before = Vec::new();
    while before
        .iter()
        .filter(|(_, e): &&(Duration, conversa::testing::SseEvent)| e.event == "token")
        .count()
        < 3
    {
        before.push(live.recv().await.unwrap());
    }
    let answer = before[0].1.data["assistant_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let last = before.last().unwrap().1.id.unwrap();

    // The first instance is busy generating: the resume lands on the second, which follows the
    // turn through the store, streamed through the function URL.
    let resumed = client
        .get(format!("{base}/api/chat/stream/{answer}"))
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    assert!(resumed.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (tx, mut followed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(events_of(resumed, started, tx));
    let mut after = Vec::new();
    while let Some(e) = followed.recv().await {
        after.push(e);
    }
    let mut rest = Vec::new();
    while let Some(e) = live.recv().await {
        rest.push(e);
    }
    let (live_done_at, live_done) = rest.last().unwrap().clone();
    assert_eq!(live_done.event, "done");
    let (_, followed_done) = after.last().unwrap().clone();
    assert_eq!(followed_done.event, "done", "{after:?}");
    assert_eq!(followed_done.id, live_done.id, "the same numbering");
    assert!(after.iter().all(|(_, e)| e.id.unwrap() > last));
    let first_token_at = after
        .iter()
        .find(|(_, e)| e.event == "token")
        .map(|(at, _)| *at)
        .unwrap();
    assert!(
        first_token_at < live_done_at,
        "the resumed stream was live while the first instance generated"
    );
    let events =
        |v: &[(Duration, conversa::testing::SseEvent)]| -> Vec<conversa::testing::SseEvent> {
            v.iter().map(|(_, e)| e.clone()).collect()
        };
    let resumed_text = streamed_text(&events(&after));
    assert_eq!(resumed_text, streamed_text(&events(&rest)));
    let whole = format!("{}{}", streamed_text(&events(&before)), resumed_text);
    assert_eq!(whole.split_whitespace().count(), 40, "{whole}");
    if let Some((client, name)) = table {
        let _ = client.delete_table().table_name(name).send().await;
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

//! The chat function as Lambda runs it: the real `chat` binary polling cargo-lambda's emulated
//! Runtime API, a chat streamed through the emulated function URL chunk by chunk.
//!
//! Needs `cargo lambda` on PATH (`bash scripts/tools.sh install`). Without it the test says so and
//! passes, unless `CONVERSA_REQUIRE_SERVICES=1` (CI), where a missing tool fails it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conversa::testing::{parse_sse, streamed_text, FakeOpenAi};
use futures::StreamExt;
use serde_json::json;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo_lambda_available() -> bool {
    Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let port = free_port();
    let _emulator = Kill(
        Command::new("cargo")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let patience =
        conversa::testing::Patience::new(Duration::from_secs(60), "the emulator to start");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        patience.wait().await;
    }
    let _function = Kill(
        Command::new(env!("CARGO_BIN_EXE_chat"))
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("CONVERSA_DATA_DIR", data.path())
            .env("OPENAI_API_KEY", "test-key")
            .env("OPENAI_BASE_URL", &fake.base_url)
            .env("CONVERSA_TITLE_MODEL", "title-model")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
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

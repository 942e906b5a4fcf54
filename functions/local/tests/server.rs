//! `conversa-local` as a user runs it: a real process on a real socket, streaming a chat with a
//! PDF, a client that leaves midway, a restart that keeps everything, and the frontend at `/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Server;

use conversa::testing::{multipart, parse_sse, pdf_with_pages, streamed_text, FakeOpenAi};
use futures::StreamExt;
use serde_json::{json, Value};

fn start(fake: &FakeOpenAi, data: &Path, frontend: &Path) -> Server {
    Server::start(fake, data, frontend, &[])
}

async fn messages(client: &reqwest::Client, base: &str, conv: &str) -> Vec<Value> {
    let v: Value = client
        .get(format!("{base}/api/conversations/{conv}/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn streams_over_a_socket_survives_disconnects_and_restarts() {
    let fake = FakeOpenAi::start().await;
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("index.html"),
        "<!doctype html><title>Conversa</title>",
    )
    .unwrap();
    let server = start(&fake, data.path(), site.path());
    let client = reqwest::Client::new();

    // A PDF attached to a question comes back quoted in a streamed answer, chunk by chunk.
    let pdf = pdf_with_pages(&["The warranty lasts 36 months.", "Returns within 30 days."]);
    let (ct, body) = multipart(&[
        ("message", None, None, b"How long is the warranty?"),
        ("files", Some("terms.pdf"), None, &pdf),
    ]);
    let resp = client
        .post(format!("{}/api/chat/send", server.base))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut raw = String::new();
    let mut chunks = 0;
    while let Some(c) = stream.next().await {
        raw.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
        chunks += 1;
    }
    assert!(
        chunks > 3,
        "the answer arrived in pieces, not at once ({chunks} chunks)"
    );
    let events = parse_sse(&raw);
    assert!(streamed_text(&events).contains("The warranty lasts 36 months."));
    assert_eq!(events.last().unwrap().event, "done");
    let conv = events[0].data["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A client that leaves after the first token: the answer is still generated and stored in full.
    let resp = client
        .post(format!("{}/api/chat/send", server.base))
        .json(&json!({ "message": "a long answer please [[slow]]", "conversation_id": conv }))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: token") {
        seen.push_str(std::str::from_utf8(&stream.next().await.unwrap().unwrap()).unwrap());
    }
    drop(stream);
    // The answer is stored (empty, `incomplete`) as soon as its turn begins, and finished when
    // the model is done, whether or not anyone still listens.
    let stored = conversa::testing::eventually(
        Duration::from_secs(10),
        "the answer to be finished and stored after the client left",
        || async {
            let stored = messages(&client, &server.base, &conv).await;
            (stored.len() == 4 && stored[3]["status"] != "incomplete").then_some(stored)
        },
    )
    .await;
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[3]["status"], "complete");
    assert!(stored[3]["content"]
        .as_str()
        .unwrap()
        .trim_end()
        .ends_with("w39"));

    // The frontend is served at /, unknown pages fall back to it, API paths keep JSON errors.
    let index = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    assert!(index
        .text()
        .await
        .unwrap()
        .contains("<title>Conversa</title>"));
    let deep = client
        .get(format!("{}/c/some-conversation", server.base))
        .send()
        .await
        .unwrap();
    assert!(deep
        .text()
        .await
        .unwrap()
        .contains("<title>Conversa</title>"));
    let api404 = client
        .get(format!("{}/api/nothing", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api404.status(), 404);
    let v: Value = api404.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let health: Value = client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    // Everything survives a restart.
    drop(server);
    let server = start(&fake, data.path(), site.path());
    let conversation: Value = client
        .get(format!("{}/api/conversations/{conv}", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conversation["message_count"], 4);
    assert_ne!(conversation["title"], "New conversation");
    let after = messages(&client, &server.base, &conv).await;
    assert_eq!(after, stored);
    let file_id = after[0]["files"][0]["id"].as_str().unwrap();
    let bytes = client
        .get(format!("{}/api/files/{file_id}/download", server.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), pdf.as_slice());
}

#[tokio::test]
async fn an_invalid_setting_stops_the_process_with_a_message_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_conversa-local"))
        .env("CONVERSA_MAX_UPLOAD_BYTES", "ten megabytes")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CONVERSA_MAX_UPLOAD_BYTES"), "{err}");
}

//! The HTTP contract of API.md, route by route, through the real routers (no socket), the real
//! SQLite store and local blobs, and the real OpenAI adapter talking to a fake model server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use conversa::testing::{
    body_text, eventually, multipart, parse_sse, pdf_with_pages, png, streamed_text, test_app,
    test_config, FakeAnthropic, FakeOpenAi, SseEvent,
};
use conversa::App;
use futures::StreamExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Harness {
    fake: FakeOpenAi,
    app: App,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn new(extra: &[(&str, &str)]) -> Self {
        let fake = FakeOpenAi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let app = test_app(&fake, dir.path(), extra).await;
        Self { fake, app, dir }
    }

    /// The models of `list` (a models list; key variables read from `env`) on the fake providers.
    async fn with_models(fake: FakeOpenAi, list: Value, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let list = list.to_string();
        let config = test_config(
            &fake.base_url,
            dir.path(),
            &[
                ("CONVERSA_MODELS", &list),
                ("CONVERSA_CHAT_MODEL", ""),
                ("CONVERSA_TITLE_MODEL", "titles"),
            ],
        );
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let models = conversa::llm::Registry::builder(&config)
            .env(move |k| env.get(k).cloned())
            .build()
            .await
            .unwrap();
        let app = App::new(
            config,
            conversa::store::sqlite::SqliteStore::open(&dir.path().join("conversa.db"))
                .unwrap()
                .with_turn_log(),
            std::sync::Arc::new(
                conversa::blobs::local::LocalBlobs::new(dir.path().join("blobs")).unwrap(),
            ),
            std::sync::Arc::new(conversa::limits::memory::MemoryLimiter::new()),
            std::sync::Arc::new(models),
        )
        .unwrap();
        Self { fake, app, dir }
    }

    fn app(&self) -> Router {
        conversa::api::router(self.app.state.clone())
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = self
            .app()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, body_text(response).await)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (s, _, b) = self.call(Method::GET, uri, None, vec![], &[]).await;
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = self
            .call(
                method,
                uri,
                Some("application/json"),
                body.to_string().into_bytes(),
                &[],
            )
            .await;
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }

    /// A chat turn over SSE, read to the end.
    async fn chat(&self, body: Value) -> Vec<SseEvent> {
        let (s, h, b) = self
            .call(
                Method::POST,
                "/api/chat/send",
                Some("application/json"),
                body.to_string().into_bytes(),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        parse_sse(&b)
    }
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn only(events: &[SseEvent], name: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event == name)
        .map(|e| e.data.clone())
        .collect()
}

#[tokio::test]
async fn a_new_conversation_streams_meta_tokens_title_and_done_and_is_stored() {
    let h = Harness::new(&[]).await;
    let events = h
        .chat(json!({ "message": "What is in the quarterly report?" }))
        .await;
    assert_eq!(events[0].event, "meta");
    let meta = &events[0].data;
    assert_eq!(meta["created_conversation"], true);
    let conv = meta["conversation_id"].as_str().unwrap().to_owned();
    assert!(events.len() > 3);
    assert_eq!(events.last().unwrap().event, "done");
    let tokens = only(&events, "token");
    assert!(tokens.len() > 3, "one event per model delta");
    assert_eq!(
        streamed_text(&events),
        "Echo: What is in the quarterly report?"
    );
    let done = &events.last().unwrap().data;
    assert_eq!(done["message_id"], meta["assistant_message_id"]);
    assert_eq!(done["finish_reason"], "stop");
    assert_eq!(
        done["usage"]["prompt_tokens"], 42,
        "the provider's usage is passed on"
    );
    assert_eq!(meta["model"], "chat-model", "the default model was asked");
    assert_eq!(done["usage"]["model"], "chat-model");
    assert_eq!(done["usage"]["provider"], "openai");
    assert_eq!(
        done["usage"]["cost_usd"],
        Value::Null,
        "no price configured"
    );
    assert!(done["usage"]["duration_ms"].is_u64());
    assert!(done["usage"]["time_to_first_token_ms"].is_u64());

    // The title arrives as an event before done, or lands later: either way the conversation gets it.
    let titles = only(&events, "title");
    assert!(titles.len() <= 1);
    let (_, c) = h.get(&format!("/api/conversations/{conv}")).await;
    assert_eq!(c["title"], "Fake Title For What is in");
    if let Some(t) = titles.first() {
        assert_eq!(t["title"], c["title"]);
        assert_eq!(t["conversation_id"], conv.as_str());
    }
    assert_eq!(c["message_count"], 2);

    let (s, msgs) = h.get(&format!("/api/conversations/{conv}/messages")).await;
    assert_eq!(s, StatusCode::OK);
    let items = msgs["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["role"], "user");
    assert_eq!(items[0]["id"], meta["user_message_id"]);
    assert_eq!(items[1]["role"], "assistant");
    assert_eq!(items[1]["status"], "complete");
    assert_eq!(
        items[1]["content"],
        "Echo: What is in the quarterly report?"
    );
    assert_eq!(items[1]["id"], meta["assistant_message_id"]);
    assert_eq!(
        items[1]["usage"], done["usage"],
        "the stored answer keeps its receipt"
    );
    assert_eq!(items[0]["usage"], Value::Null, "user messages have none");
    assert!(
        items[0]["created_at"].as_str().unwrap().contains('.'),
        "timestamps carry milliseconds"
    );
}

/// Two providers behind one models list: the default (Anthropic) is overloaded, so its fallback
/// (OpenAI-compatible) answers; another model is picked by id; titles come from the title model.
#[tokio::test]
async fn models_are_picked_by_id_and_one_failing_before_its_first_token_hands_over() {
    let anthropic = FakeAnthropic::start().await;
    let fake = FakeOpenAi::start().await;
    let list = json!([
        {"id": "claude", "provider": "anthropic", "model": "busy[[status:529]]", "name": "Claude",
         "base_url": anthropic.base_url, "api_key_env": "TEST_ANTHROPIC_KEY", "fallbacks": ["gpt"],
         "default": true, "vision": true},
        {"id": "gpt", "provider": "openai", "model": "chat-model", "base_url": fake.base_url,
         "api_key_env": "TEST_OPENAI_KEY", "price": {"input": 1.0, "output": 2.0}, "context_tokens": 32000},
        {"id": "sonnet", "provider": "anthropic", "model": "claude-ok", "base_url": anthropic.base_url,
         "api_key_env": "TEST_ANTHROPIC_KEY"},
        {"id": "titles", "provider": "anthropic", "model": "title-model", "base_url": anthropic.base_url,
         "api_key_env": "TEST_ANTHROPIC_KEY"},
    ]);
    let h = Harness::with_models(
        fake,
        list,
        &[
            ("TEST_ANTHROPIC_KEY", "sk-ant-secret-0123456789"),
            ("TEST_OPENAI_KEY", "sk-openai-secret-0123456789"),
        ],
    )
    .await;

    // The list: each model's id, provider, vision, window and price; never an address or a key.
    let (s, _, raw) = h.call(Method::GET, "/api/models", None, vec![], &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!raw.contains("://") && !raw.contains("secret"), "{raw}");
    let listed: Value = serde_json::from_str(&raw).unwrap();
    let items = listed["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["claude", "gpt", "sonnet", "titles"]);
    assert_eq!(
        items[0],
        json!({"id": "claude", "name": "Claude", "provider": "anthropic", "vision": true,
               "context_tokens": 8192, "default": true, "price": null})
    );
    assert_eq!(items[1]["price"], json!({"input": 1.0, "output": 2.0}));
    assert_eq!(items[1]["context_tokens"], 32000);
    assert_eq!(items[1]["default"], false);

    // No model named: the default is asked, fails before its first token, and its fallback answers.
    let events = h.chat(json!({ "message": "hello there" })).await;
    let meta = &events[0].data;
    assert_eq!(meta["model"], "claude", "meta names the model asked for");
    assert_eq!(streamed_text(&events), "Echo: hello there");
    let done = &events.last().unwrap().data;
    assert_eq!(
        done["usage"]["model"], "gpt",
        "the receipt names the model that answered"
    );
    assert_eq!(done["usage"]["provider"], "openai");
    let completion = done["usage"]["completion_tokens"].as_f64().unwrap();
    let cost = done["usage"]["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (42.0 * 1.0 + completion * 2.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    let asked: Vec<Value> = anthropic
        .requests()
        .iter()
        .map(|r| r.body["model"].clone())
        .collect();
    assert!(asked.contains(&json!("busy[[status:529]]")));
    assert_eq!(h.fake.chat_requests().len(), 1);
    let conv = meta["conversation_id"].as_str().unwrap().to_owned();
    let (_, msgs) = h.get(&format!("/api/conversations/{conv}/messages")).await;
    assert_eq!(
        msgs["items"][1]["usage"]["model"], "gpt",
        "so does the stored answer"
    );

    // The title came from the title model, on its provider.
    let (_, c) = h.get(&format!("/api/conversations/{conv}")).await;
    assert_eq!(c["title"], "Fake Title For hello there");
    assert!(anthropic
        .requests()
        .iter()
        .any(|r| r.body["model"] == "title-model"));

    // A model picked by id answers, and is named in meta and in the receipt.
    let events = h
        .chat(json!({ "message": "and you?", "model": "sonnet", "conversation_id": conv }))
        .await;
    assert_eq!(events[0].data["model"], "sonnet");
    assert_eq!(streamed_text(&events), "Echo: and you?");
    assert_eq!(events.last().unwrap().data["usage"]["model"], "sonnet");
    let last = anthropic.requests().pop().unwrap();
    assert_eq!(last.body["model"], "claude-ok");
    assert_eq!(last.api_key.as_deref(), Some("sk-ant-secret-0123456789"));

    // A model that is not offered is refused before anything is stored, naming those that are.
    let (s, v) = h
        .json(
            Method::POST,
            "/api/chat/send",
            json!({ "message": "hi", "model": "gpt-99" }),
        )
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    let said = v["error"]["message"].as_str().unwrap();
    assert!(
        said.contains("gpt-99") && said.contains("claude, gpt, sonnet, titles"),
        "{said}"
    );
    let (ct, body) = multipart(&[
        ("message", None, None, b"hi"),
        ("model", None, None, b"gpt-99"),
    ]);
    let (s, _, b) = h
        .call(Method::POST, "/api/chat/send-simple", Some(&ct), body, &[])
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (_, list) = h.get("/api/conversations").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "nothing was stored"
    );

    // /health names the default model by provider and name only.
    let (_, health) = h.get("/health").await;
    assert_eq!(health["model"], "anthropic busy[[status:529]]");
}

#[tokio::test]
async fn a_pdf_attached_to_a_question_reaches_the_model_and_is_quoted_back() {
    let h = Harness::new(&[]).await;
    let pdf = pdf_with_pages(&["Revenue grew 42 percent in Q4.", "Costs were flat."]);
    let (ct, body) = multipart(&[
        ("message", None, None, b"Summarise the report"),
        ("files", Some("report.pdf"), Some("application/pdf"), &pdf),
    ]);
    let (s, _, b) = h
        .call(Method::POST, "/api/chat/send", Some(&ct), body, &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events = parse_sse(&b);
    let meta = &events[0].data;
    let files = meta["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["filename"], "report.pdf");
    assert_eq!(files[0]["file_type"], "pdf");
    assert_eq!(files[0]["status"], "ready");
    assert_eq!(files[0]["pages"], 2);
    assert_eq!(files[0]["conversation_id"], meta["conversation_id"]);
    let answer = streamed_text(&events);
    assert!(
        answer.contains("Revenue grew 42 percent in Q4."),
        "{answer}"
    );
    assert!(
        answer.contains("report.pdf"),
        "the file is labelled with its name: {answer}"
    );
    assert!(answer.contains("Summarise the report"));

    let file_id = files[0]["id"].as_str().unwrap();
    let (s, text) = h.get(&format!("/api/files/{file_id}/text")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text["text"].as_str().unwrap().contains("Costs were flat."));
    let (s, hd, bytes) = h
        .call(
            Method::GET,
            &format!("/api/files/{file_id}/download"),
            None,
            vec![],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(hd[header::CONTENT_TYPE], "application/pdf");
    assert!(hd[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(bytes.len(), pdf.len());

    let conv = meta["conversation_id"].as_str().unwrap();
    let (_, msgs) = h.get(&format!("/api/conversations/{conv}/messages")).await;
    assert_eq!(
        msgs["items"][0]["files"][0]["id"], file_id,
        "attachments are shown on past messages"
    );
}

#[tokio::test]
async fn images_go_to_the_model_as_data_urls() {
    let h = Harness::new(&[]).await;
    let (ct, body) = multipart(&[
        ("message", None, None, b"What is this?"),
        ("files", Some("pic.png"), Some("image/png"), &png(64, 32)),
    ]);
    let (s, _, b) = h
        .call(Method::POST, "/api/chat/send", Some(&ct), body, &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let req = h.fake.chat_requests().pop().unwrap();
    let user = req["messages"].as_array().unwrap().last().unwrap().clone();
    let parts = user["content"].as_array().expect("an array of parts");
    let image = parts
        .iter()
        .find(|p| p["type"] == "image_url")
        .expect("an image part");
    assert!(image["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/"));
}

#[tokio::test]
async fn files_uploaded_first_can_be_named_by_id_and_history_is_windowed() {
    let h = Harness::new(&[("CONVERSA_HISTORY_MESSAGES", "2")]).await;
    let (ct, body) = multipart(&[(
        "file",
        Some("notes.txt"),
        Some("text/plain"),
        b"The launch code is PLUTO-7.",
    )]);
    let (s, _, b) = h
        .call(Method::POST, "/api/files", Some(&ct), body, &[])
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let file: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(file["status"], "ready");
    assert_eq!(file["file_type"], "text");
    assert!(file["conversation_id"].is_null());
    let (s, got) = h
        .get(&format!("/api/files/{}", file["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, file);

    let events = h
        .chat(json!({ "message": "first", "file_ids": [file["id"]] }))
        .await;
    assert!(streamed_text(&events).contains("PLUTO-7"));
    let conv = events[0].data["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for m in ["second", "third"] {
        h.chat(json!({ "message": m, "conversation_id": conv }))
            .await;
    }
    let last = h.fake.chat_requests().pop().unwrap();
    let msgs = last["messages"].as_array().unwrap();
    // system + 2 history messages + the current one
    assert_eq!(msgs.len(), 4, "{last}");
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[1]["content"], "second");
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(conversa::testing::last_user_text(&last), "third");
}

#[tokio::test]
async fn send_simple_answers_with_one_document() {
    let h = Harness::new(&[]).await;
    let (s, v) = h
        .json(
            Method::POST,
            "/api/chat/send-simple",
            json!({ "message": "hello there" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["created_conversation"], true);
    assert_eq!(v["message"]["role"], "assistant");
    assert_eq!(v["message"]["content"], "Echo: hello there");
    assert_eq!(v["message"]["status"], "complete");
    assert_eq!(v["title"], "Fake Title For hello there");

    let (s, v2) = h
        .json(
            Method::POST,
            "/api/chat/send-simple",
            json!({ "message": "again", "conversation_id": v["conversation_id"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v2["created_conversation"], false);
    assert!(v2["title"].is_null());
}

#[tokio::test]
async fn model_failure_before_the_first_token_keeps_the_user_message() {
    let h = Harness::new(&[]).await;
    for code in ["500", "401", "429"] {
        let events = h
            .chat(json!({ "message": format!("boom [[status:{code}]]") }))
            .await;
        let last = events.last().unwrap();
        assert_eq!(last.event, "error", "{events:?}");
        assert_eq!(last.data["code"], "upstream_error");
        assert!(
            last.data["message"].as_str().unwrap().contains(code),
            "{}",
            last.data
        );
        let conv = events[0].data["conversation_id"].as_str().unwrap();
        let (_, msgs) = h.get(&format!("/api/conversations/{conv}/messages")).await;
        let items = msgs["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["status"], "complete");
        assert_eq!(items[1]["status"], "error");
        assert_eq!(items[1]["content"], "");
    }
    let (s, v) = h
        .json(
            Method::POST,
            "/api/chat/send-simple",
            json!({ "message": "x [[status:500]]" }),
        )
        .await;
    assert_error(s, &v, StatusCode::BAD_GATEWAY, "upstream_error");
}

#[tokio::test]
async fn model_failure_midway_stores_the_partial_answer_as_incomplete() {
    let h = Harness::new(&[]).await;
    for word in ["[[drop]]", "[[stream-error]]"] {
        let events = h
            .chat(json!({ "message": format!("tell me a story {word}") }))
            .await;
        let last = events.last().unwrap();
        assert_eq!(last.event, "error", "{events:?}");
        assert_eq!(last.data["code"], "upstream_error");
        assert!(only(&events, "done").is_empty());
        let partial = streamed_text(&events);
        assert!(!partial.is_empty());
        let conv = events[0].data["conversation_id"].as_str().unwrap();
        let (_, msgs) = h.get(&format!("/api/conversations/{conv}/messages")).await;
        assert_eq!(msgs["items"][1]["status"], "incomplete");
        assert_eq!(msgs["items"][1]["content"], partial.as_str());
    }
    // The provider's own message comes through.
    let events = h.chat(json!({ "message": "x [[stream-error]]" })).await;
    assert!(events.last().unwrap().data["message"]
        .as_str()
        .unwrap()
        .contains("overloaded mid-stream"));

    // Incomplete answers go into the next turn's history as they are.
    let conv = events[0].data["conversation_id"].as_str().unwrap();
    h.chat(json!({ "message": "go on", "conversation_id": conv }))
        .await;
    let req = h.fake.chat_requests().pop().unwrap();
    let roles: Vec<&str> = req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
}

#[tokio::test]
async fn failed_answers_with_no_text_are_left_out_of_history() {
    let h = Harness::new(&[]).await;
    let events = h.chat(json!({ "message": "x [[status:500]]" })).await;
    let conv = events[0].data["conversation_id"].as_str().unwrap();
    h.chat(json!({ "message": "retry", "conversation_id": conv }))
        .await;
    let req = h.fake.chat_requests().pop().unwrap();
    let roles: Vec<&str> = req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "user"]);
}

#[tokio::test]
async fn the_answer_is_finished_and_stored_when_the_client_disconnects() {
    let h = Harness::new(&[]).await;
    let req = Request::post("/api/chat/send")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "message": "long one [[slow]]" }).to_string(),
        ))
        .unwrap();
    let response = h.app().oneshot(req).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    let meta = parse_sse(std::str::from_utf8(&first).unwrap());
    let conv = meta[0].data["conversation_id"].as_str().unwrap().to_owned();
    drop(body); // the client goes away after the first event

    // The answer is stored as it begins, and finished when it ends.
    let stored = eventually(
        Duration::from_secs(10),
        "the answer to be stored",
        || async {
            let (_, c) = h.get(&format!("/api/conversations/{conv}")).await;
            if !c["generating_message_id"].is_null() {
                return None;
            }
            let (_, msgs) = h.get(&format!("/api/conversations/{conv}/messages")).await;
            msgs["items"]
                .as_array()
                .filter(|i| i.len() == 2)
                .map(|i| i[1].clone())
        },
    )
    .await;
    assert_eq!(stored["status"], "complete", "{stored}");
    assert!(stored["content"].as_str().unwrap().starts_with("w0 w1 w2"));
    assert!(stored["content"]
        .as_str()
        .unwrap()
        .trim_end()
        .ends_with("w39"));
}

#[tokio::test]
async fn usage_falls_back_to_the_servers_own_count() {
    let h = Harness::new(&[]).await;
    let events = h.chat(json!({ "message": "count me [[no-usage]]" })).await;
    let done = &events.last().unwrap().data;
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(done["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bad_chat_requests_are_refused_before_the_stream() {
    let h = Harness::new(&[]).await;
    let (s, v) = h
        .json(Method::POST, "/api/chat/send", json!({ "message": "   " }))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad_request");
    let (s, _, b) = h
        .call(
            Method::POST,
            "/api/chat/send",
            Some("application/json"),
            b"{not json".to_vec(),
            &[],
        )
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (s, v) = h
        .json(
            Method::POST,
            "/api/chat/send",
            json!({ "message": "hi", "conversation_id": "no-such-id" }),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, v) = h
        .json(
            Method::POST,
            "/api/chat/send",
            json!({ "message": "hi", "file_ids": ["nope"] }),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, _, b) = h
        .call(
            Method::POST,
            "/api/chat/send",
            Some("multipart/form-data; boundary=x"),
            b"garbage".to_vec(),
            &[],
        )
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (s, _, b) = h
        .call(
            Method::POST,
            "/api/chat/send",
            Some("text/plain"),
            b"hi".to_vec(),
            &[],
        )
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    // Oversized, mislabelled, corrupt and unsupported files.
    let big = vec![b'a'; 2048];
    let h2 = Harness::new(&[("CONVERSA_MAX_UPLOAD_BYTES", "1024")]).await;
    let (ct, body) = multipart(&[
        ("message", None, None, b"hi"),
        ("files", Some("big.txt"), Some("text/plain"), &big),
    ]);
    let (s, _, b) = h2
        .call(Method::POST, "/api/chat/send", Some(&ct), body, &[])
        .await;
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(v["error"]["message"], "big.txt is 2 KB; the limit is 1 KB");

    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "photo.png",
            pdf_with_pages(&["x"]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("report.pdf", png(4, 4), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "notes.txt",
            vec![0, 159, 146, 150, 0, 1, 2],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "program.exe",
            b"MZ\x90\x00".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "broken.pdf",
            b"%PDF-1.4\n1 0 obj garbage".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "data.json",
            b"{\"a\": ".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (name, bytes, want) in cases {
        let (ct, body) = multipart(&[
            ("message", None, None, b"hi"),
            ("files", Some(name), None, &bytes),
        ]);
        let (s, _, b) = h
            .call(Method::POST, "/api/chat/send", Some(&ct), body, &[])
            .await;
        let v: Value = serde_json::from_str(&b).unwrap_or(Value::Null);
        assert_eq!(s, want, "{name}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(name),
            "the message names the file: {v}"
        );
    }
    // Nothing was stored by any refused request.
    let (_, list) = h.get("/api/conversations").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn a_zip_bomb_is_refused_quickly() {
    use std::io::Write;
    let h = Harness::new(&[]).await;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("[Content_Types].xml", opts).unwrap();
        zip.write_all(br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#).unwrap();
        zip.start_file("word/document.xml", opts).unwrap();
        let zeros = vec![b' '; 1024 * 1024];
        for _ in 0..260 {
            zip.write_all(&zeros).unwrap();
        }
        zip.finish().unwrap();
    }
    let bomb = buf.into_inner();
    assert!(bomb.len() < 2 * 1024 * 1024);
    let started = std::time::Instant::now();
    let (ct, body) = multipart(&[("file", Some("bomb.docx"), None, &bomb)]);
    let (s, _, b) = h
        .call(Method::POST, "/api/files", Some(&ct), body, &[])
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn rate_limits_count_every_chat_request_and_say_when_to_retry() {
    let h = Harness::new(&[("CONVERSA_RATE_LIMIT_PER_MINUTE", "2")]).await;
    let (s, _) = h
        .json(
            Method::POST,
            "/api/chat/send-simple",
            json!({ "message": "one" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h
        .json(Method::POST, "/api/chat/send", json!({ "message": "" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "refused requests count too");
    let (s, hd, b) = h
        .call(
            Method::POST,
            "/api/chat/send",
            Some("application/json"),
            json!({"message": "three"}).to_string().into_bytes(),
            &[],
        )
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    let retry: u64 = hd[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
}

#[tokio::test]
async fn conversations_list_paginate_search_rename_and_delete() {
    let h = Harness::new(&[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, v) = h
            .json(
                Method::POST,
                "/api/chat/send-simple",
                json!({ "message": format!("topic number {i}") }),
            )
            .await;
        ids.push(v["conversation_id"].as_str().unwrap().to_owned());
    }
    let (s, page) = h.get("/api/conversations?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["items"][0]["id"],
        ids[4].as_str(),
        "most recently updated first"
    );
    let mut seen: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = page["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let (_, p) = h
            .get(&format!("/api/conversations?limit=2&cursor={cursor}"))
            .await;
        seen.extend(
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match p["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(seen, want);
    let (_, all) = h.get("/api/conversations").await;
    assert!(all["next_cursor"].is_null());

    for bad in ["limit=0", "limit=201", "limit=x", "cursor=%21%21"] {
        let (s, v) = h.get(&format!("/api/conversations?{bad}")).await;
        assert_error(s, &v, StatusCode::BAD_REQUEST, "bad_request");
    }

    let (_, found) = h.get("/api/conversations?q=NUMBER%203").await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["id"], ids[3].as_str());

    // Renaming moves updated_at and the conversation to the top; bad titles are refused.
    let before = h.get(&format!("/api/conversations/{}", ids[0])).await.1;
    let (s, renamed) = h
        .json(
            Method::PATCH,
            &format!("/api/conversations/{}", ids[0]),
            json!({ "title": "  Budget 2027  " }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["title"], "Budget 2027");
    assert!(renamed["updated_at"].as_str().unwrap() > before["updated_at"].as_str().unwrap());
    let (_, top) = h.get("/api/conversations?limit=1").await;
    assert_eq!(top["items"][0]["id"], ids[0].as_str());
    for (body, status, code) in [
        (
            json!({ "title": "   " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            json!({ "title": "x".repeat(201) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            json!({ "name": "x" }),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let (s, v) = h
            .json(
                Method::PATCH,
                &format!("/api/conversations/{}", ids[0]),
                body,
            )
            .await;
        assert_error(s, &v, status, code);
    }
    let (s, v) = h
        .json(
            Method::PATCH,
            &format!("/api/conversations/{}", ids[0]),
            json!({ "title": "y".repeat(200) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Delete removes messages and file bytes.
    let (ct, body) = multipart(&[
        ("message", None, None, b"with a file"),
        ("conversation_id", None, None, ids[1].as_bytes()),
        ("files", Some("a.csv"), None, b"a,b\n1,2\n"),
    ]);
    let (s, _, b) = h
        .call(Method::POST, "/api/chat/send", Some(&ct), body, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let file_id = parse_sse(&b)[0].data["files"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _, _) = h
        .call(
            Method::DELETE,
            &format!("/api/conversations/{}", ids[1]),
            None,
            vec![],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for uri in [
        format!("/api/conversations/{}", ids[1]),
        format!("/api/conversations/{}/messages", ids[1]),
        format!("/api/files/{file_id}"),
        format!("/api/files/{file_id}/download"),
    ] {
        let (s, v) = h.get(&uri).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    }
    let (s, _, _) = h
        .call(
            Method::DELETE,
            &format!("/api/conversations/{}", ids[1]),
            None,
            vec![],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_automatic_title_does_not_move_updated_at_nor_override_a_rename() {
    let h = Harness::new(&[]).await;
    let (_, v) = h
        .json(
            Method::POST,
            "/api/chat/send-simple",
            json!({ "message": "plan a trip" }),
        )
        .await;
    let id = v["conversation_id"].as_str().unwrap();
    let (_, c) = h.get(&format!("/api/conversations/{id}")).await;
    let (_, msgs) = h.get(&format!("/api/conversations/{id}/messages")).await;
    assert_eq!(
        c["updated_at"], msgs["items"][1]["created_at"],
        "updated_at is the last message's time"
    );
}

#[tokio::test]
async fn unknown_ids_of_any_shape_are_not_found() {
    let h = Harness::new(&[]).await;
    for id in [
        "nope",
        "0190c5e2-0000-7000-8000-000000000001",
        "%20",
        "a%2Fb",
        "%E2%9C%93",
    ] {
        for uri in [
            format!("/api/conversations/{id}"),
            format!("/api/conversations/{id}/messages"),
            format!("/api/conversations/{id}/export"),
            format!("/api/files/{id}"),
            format!("/api/files/{id}/download"),
            format!("/api/files/{id}/text"),
        ] {
            let (s, v) = h.get(&uri).await;
            assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        }
    }
    let (s, v) = h.get("/api/nothing-here").await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, _, b) = h
        .call(Method::PUT, "/api/conversations", None, vec![], &[])
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "method_not_allowed"
    );
}

#[tokio::test]
async fn with_auth_on_tokens_are_required_and_users_see_only_their_own() {
    let tokens = "alice:alice-token-0123456789,bob:bob-token-0123456789ab";
    let h = Harness::new(&[("CONVERSA_AUTH_TOKENS", tokens)]).await;
    let (s, _, b) = h
        .call(Method::GET, "/api/conversations", None, vec![], &[])
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let (s, _, b) = h
        .call(
            Method::GET,
            "/api/conversations",
            None,
            vec![],
            &[("authorization", "Bearer wrong-token-000000")],
        )
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    let alice = [("authorization", "Bearer alice-token-0123456789")];
    let bob = [("authorization", "Bearer bob-token-0123456789ab")];
    let (s, _, b) = h
        .call(
            Method::POST,
            "/api/chat/send-simple",
            Some("application/json"),
            json!({"message": "secret plans"}).to_string().into_bytes(),
            &alice,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = serde_json::from_str::<Value>(&b).unwrap()["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _, _) = h
        .call(
            Method::GET,
            &format!("/api/conversations/{id}"),
            None,
            vec![],
            &alice,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for (method, uri) in [
        (Method::GET, format!("/api/conversations/{id}")),
        (Method::GET, format!("/api/conversations/{id}/messages")),
        (Method::DELETE, format!("/api/conversations/{id}")),
    ] {
        let (s, _, b) = h.call(method, &uri, None, vec![], &bob).await;
        assert_error(
            s,
            &serde_json::from_str(&b).unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    let (s, _, b) = h
        .call(
            Method::POST,
            "/api/chat/send",
            Some("application/json"),
            json!({"message": "hi", "conversation_id": id})
                .to_string()
                .into_bytes(),
            &bob,
        )
        .await;
    assert_error(
        s,
        &serde_json::from_str(&b).unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, _, b) = h
        .call(Method::GET, "/api/conversations", None, vec![], &bob)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn health_index_and_openapi_describe_the_service() {
    let h = Harness::new(&[]).await;
    let (s, v) = h.get("/health").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    for dep in ["store", "blobs", "limiter"] {
        assert_eq!(v["checks"][dep], "ok");
    }
    assert_eq!(
        v["model"], "openai chat-model",
        "provider and model, never an address"
    );
    let (_, v) = h.get("/api").await;
    assert_eq!(
        v,
        json!({ "name": "conversa", "version": conversa::VERSION, "docs": "/api/openapi.json" })
    );
    let (s, doc) = h.get("/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/chat/send",
        "/api/chat/send-simple",
        "/api/conversations",
        "/api/conversations/{id}",
        "/api/conversations/{id}/messages",
        "/api/files",
        "/api/files/{id}",
        "/api/files/{id}/download",
        "/api/files/{id}/text",
        "/health",
        "/api",
        "/api/openapi.json",
        "/api/models",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    for schema in ["ModelList", "ModelItem", "Receipt", "Provider"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(doc["components"]["schemas"]["Message"]["properties"]["usage"].is_object());
    assert!(doc["components"]["schemas"]["TurnMeta"]["properties"]["model"].is_object());
    assert!(doc["paths"]["/api/conversations/{id}"]["patch"].is_object());
    assert!(doc["paths"]["/api/conversations/{id}"]["delete"].is_object());
    assert!(doc["components"]["schemas"]["FileMeta"]["properties"]["file_type"].is_object());
    let download = &doc["paths"]["/api/files/{id}/download"]["get"]["responses"];
    assert!(
        download["302"]["headers"]["Location"].is_object(),
        "the redirect to storage is documented: {download}"
    );
    assert!(download["200"].is_object() && download["404"].is_object());
}

#[tokio::test]
async fn health_is_degraded_when_a_dependency_is_down() {
    let h = Harness::new(&[]).await;
    // Remove the blob directory from under the running server.
    let blobs = h.dir.path().join("blobs");
    std::fs::remove_dir_all(&blobs).unwrap();
    let (s, v) = h.get("/health").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["status"], "degraded");
    assert_ne!(v["checks"]["blobs"], "ok");
    assert_eq!(v["checks"]["store"], "ok");
}

#[tokio::test]
async fn conversations_export_as_markdown_and_json() {
    let h = Harness::new(&[]).await;
    let (_, v) = h
        .json(
            Method::POST,
            "/api/chat/send-simple",
            json!({ "message": "export me" }),
        )
        .await;
    let id = v["conversation_id"].as_str().unwrap();
    let (s, hd, md) = h
        .call(
            Method::GET,
            &format!("/api/conversations/{id}/export"),
            None,
            vec![],
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(hd[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    assert!(md.contains("export me") && md.contains("Echo: export me"));
    let (s, j) = h
        .get(&format!("/api/conversations/{id}/export?format=json"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["messages"].as_array().unwrap().len(), 2);
    let (s, v) = h
        .get(&format!("/api/conversations/{id}/export?format=pdf"))
        .await;
    assert_error(s, &v, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn a_long_conversation_stays_within_the_models_window() {
    let h = Harness::new(&[
        ("CONVERSA_CONTEXT_TOKENS", "1500"),
        ("CONVERSA_MAX_ANSWER_TOKENS", "300"),
        ("CONVERSA_HISTORY_MESSAGES", "50"),
    ])
    .await;
    let long = "word ".repeat(150);
    let events = h.chat(json!({ "message": format!("turn-0 {long}") })).await;
    let conv = events[0].data["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..12 {
        let events = h
            .chat(json!({ "message": format!("turn-{i} {long}"), "conversation_id": conv }))
            .await;
        assert_eq!(events.last().unwrap().event, "done");
    }
    let last = h.fake.chat_requests().pop().unwrap();
    let texts = conversa::testing::message_texts(&last);
    let prompt: u64 = texts.iter().map(|t| conversa::tokens::estimate(t)).sum();
    assert!(
        prompt + 300 <= 1500,
        "the prompt ({prompt} tokens) and the answer cap fit the window"
    );
    let all = texts.join("\n");
    assert!(all.contains("turn-10 "), "recent history is sent");
    assert!(!all.contains("turn-0 "), "the oldest history is left out");
    assert!(conversa::testing::last_user_text(&last).starts_with("turn-11 "));
}

//! The in-process local model with the real SmolLM2-135M-Instruct GGUF: a real answer, stop and length
//! handling, cancellation, the tokenizer on real text, and the HTTP API streaming from it end to end.
//!
//! Needs the model file (`scripts/fetch-model.sh`, or `CONVERSA_LOCAL_MODEL`). Without it every test says
//! SKIPPED on stderr and passes, except under CI (`CI` set) or `CONVERSA_REQUIRE_SERVICES=1`, where a
//! missing model is a failure.
#![cfg(feature = "local-model")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use conversa::llm::local::{LocalModel, DEFAULT_MODEL_PATH};
use conversa::llm::{ChatEvent, ChatMessage, ChatModel, ChatRequest, ChatRole, Usage};
use futures::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::OnceCell;
use tower::ServiceExt;

fn model_path() -> PathBuf {
    std::env::var_os("CONVERSA_LOCAL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(DEFAULT_MODEL_PATH)
        })
}

/// The model, loaded once for all tests; `None` (with a loud note) when the file is absent.
async fn model() -> Option<Arc<LocalModel>> {
    static MODEL: OnceCell<Option<Arc<LocalModel>>> = OnceCell::const_new();
    MODEL
        .get_or_init(|| async {
            let path = model_path();
            if !path.is_file() {
                if std::env::var_os("CI").is_some()
                    || std::env::var("CONVERSA_REQUIRE_SERVICES").as_deref() == Ok("1")
                {
                    panic!(
                        "{} is missing: CI must run scripts/fetch-model.sh",
                        path.display()
                    );
                }
                eprintln!(
                    "SKIPPED: {} is missing; run scripts/fetch-model.sh to test the local model",
                    path.display()
                );
                return None;
            }
            Some(Arc::new(LocalModel::load_async(path).await.unwrap()))
        })
        .await
        .clone()
}

fn request(messages: Vec<ChatMessage>, max_tokens: u32, temperature: f32) -> ChatRequest {
    ChatRequest {
        model: "ignored-by-the-local-model".into(),
        messages,
        max_tokens: Some(max_tokens),
        temperature: Some(temperature),
    }
}

fn ask(question: &str, max_tokens: u32) -> ChatRequest {
    request(
        vec![
            ChatMessage::text(ChatRole::System, conversa::config::DEFAULT_SYSTEM_PROMPT),
            ChatMessage::text(ChatRole::User, question),
        ],
        max_tokens,
        0.0,
    )
}

/// The whole answer: its deltas, finish reason and usage.
async fn collect(model: &LocalModel, req: ChatRequest) -> (Vec<String>, String, Usage) {
    let mut stream = model.stream(req).await.unwrap();
    let mut deltas = Vec::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatEvent::Delta(t) => deltas.push(t),
            ChatEvent::Queued(place) => {
                panic!("the local model is not shared here: queued {place}")
            }
            ChatEvent::Done {
                finish_reason,
                usage,
            } => {
                assert!(stream.next().await.is_none(), "nothing after Done");
                return (deltas, finish_reason, usage.expect("usage"));
            }
        }
    }
    panic!("the stream ended without Done");
}

// The runtime must be multi-threaded: the generation runs on a blocking thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_capital_of_france() {
    let Some(model) = model().await else { return };
    let (deltas, finish, usage) = collect(
        &model,
        ask("What is the capital of France? Answer in one sentence.", 64),
    )
    .await;
    let answer = deltas.concat();
    eprintln!("answer: {answer:?} ({finish}, {usage:?})");
    assert!(answer.contains("Paris"), "{answer:?}");
    assert_eq!(finish, "stop", "a one-sentence answer ends at end of turn");
    // Streamed token by token: one delta per answer token (SmolLM2 text is ASCII here).
    assert!(deltas.len() > 3);
    assert_eq!(usage.completion_tokens, deltas.len() as u64);
    let prompt = model
        .render_prompt(&ask("What is the capital of France? Answer in one sentence.", 64).messages);
    assert!(prompt.starts_with("<|im_start|>system\nYou are Conversa"));
    assert!(prompt.ends_with("<|im_end|>\n<|im_start|>assistant\n"));
    assert!(
        usage.prompt_tokens > 20 && usage.prompt_tokens < 200,
        "{usage:?}"
    );
    assert!(!answer.contains("<|im_end|>") && !answer.contains("<|im_start|>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_answers_are_repeatable() {
    let Some(model) = model().await else { return };
    let q = "Name three colours.";
    let (a, _, _) = collect(&model, ask(q, 24)).await;
    let (b, _, _) = collect(&model, ask(q, 24)).await;
    assert_eq!(a.concat(), b.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_cap_ends_with_length() {
    let Some(model) = model().await else { return };
    let (deltas, finish, usage) = collect(
        &model,
        ask("Write a long story about a dragon and a knight.", 5),
    )
    .await;
    assert_eq!(finish, "length");
    assert_eq!(usage.completion_tokens, 5);
    assert!(!deltas.concat().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_with_temperature_still_answers() {
    let Some(model) = model().await else { return };
    let mut req = ask("Say hello to the reader.", 16);
    req.temperature = Some(0.8);
    let (deltas, finish, _) = collect(&model, req).await;
    assert!(!deltas.concat().trim().is_empty());
    assert!(finish == "stop" || finish == "length");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_the_generation() {
    if model().await.is_none() {
        return;
    }
    // An instance of its own: other tests generate in parallel on the shared one.
    let model = LocalModel::load_async(model_path()).await.unwrap();
    let mut stream = model
        .stream(ask("Write a very long story about the sea.", 2000))
        .await
        .unwrap();
    // First token, then the client goes away.
    assert!(matches!(stream.next().await, Some(Ok(ChatEvent::Delta(_)))));
    drop(stream);
    // The generation thread releases its slot promptly (2000 tokens would take far longer).
    let t = Instant::now();
    while model.busy() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the generation kept running after the stream was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_conversation_is_trimmed_to_the_window() {
    let Some(model) = model().await else { return };
    let filler = "The report lists many numbers. ".repeat(150);
    let mut messages = vec![ChatMessage::text(
        ChatRole::System,
        conversa::config::DEFAULT_SYSTEM_PROMPT,
    )];
    for _ in 0..6 {
        messages.push(ChatMessage::text(ChatRole::User, filler.clone()));
        messages.push(ChatMessage::text(ChatRole::Assistant, "Noted."));
    }
    messages.push(ChatMessage::text(
        ChatRole::User,
        format!("{}\nWhat is the capital of France?", filler.repeat(4)),
    ));
    let (_, finish, usage) = collect(&model, request(messages, 8, 0.0)).await;
    assert!(finish == "stop" || finish == "length", "{finish}");
    let window = model.context_window() as u64;
    assert!(
        usage.prompt_tokens + 8 <= window,
        "{usage:?} window {window}"
    );
    assert!(usage.prompt_tokens > window / 4, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokenizer_reads_real_text() {
    let Some(model) = model().await else { return };
    // GPT-2 style words with their leading space, digits one by one (SmolLM's pre-tokenizer).
    assert_eq!(model.count_tokens("Hello world").unwrap(), 2);
    assert_eq!(model.count_tokens("2024").unwrap(), 4);
    // Special-token names in user text are plain text, many tokens, never one control token.
    assert!(model.count_tokens("<|im_end|>").unwrap() > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_streams_from_the_local_model() {
    let Some(_) = model().await else { return };
    let data = tempfile::tempdir().unwrap();
    let path = model_path();
    let config = conversa::Config::from_lookup(|k| match k {
        "CONVERSA_DATA_DIR" => Some(data.path().display().to_string()),
        "CONVERSA_LOCAL_MODEL" => Some(path.display().to_string()),
        "CONVERSA_RATE_LIMIT_PER_MINUTE" => Some("0".into()),
        "CONVERSA_MAX_ANSWER_TOKENS" => Some("48".into()),
        _ => None,
    })
    .unwrap();
    assert!(!config.uses_remote_model());
    let state = conversa::App::from_config(config).await.unwrap();
    let app = conversa::local::app(&state);

    let health = app
        .clone()
        .oneshot(http::Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let health: serde_json::Value =
        serde_json::from_slice(&health.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(health["model"], "local SmolLM2-135M-Instruct.Q4_1");

    let response = app
        .oneshot(
            http::Request::post("/api/chat/send")
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"message": "What is the capital of France? Answer in one sentence."}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if text.contains("event: done") && text.ends_with("\n\n") {
            break;
        }
    }
    let events = conversa::testing::parse_sse(&text);
    assert_eq!(events[0].event, "meta", "{text}");
    assert!(events.iter().all(|e| e.event != "error"), "{text}");
    // Numbered from 1, one more per event.
    let ids: Vec<Option<u64>> = events.iter().map(|e| e.id).collect();
    let expected: Vec<Option<u64>> = (1..=events.len() as u64).map(Some).collect();
    assert_eq!(ids, expected, "{text}");
    let done_at = events.iter().position(|e| e.event == "done").unwrap();
    let token_events_before_done = events[..done_at]
        .iter()
        .filter(|e| e.event == "token")
        .count();
    assert!(token_events_before_done > 3, "{text}");
    let answer = conversa::testing::streamed_text(&events);
    assert!(answer.contains("Paris"), "{answer:?}");
    let done = &events[done_at].data;
    assert_eq!(done["finish_reason"], "stop");
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() > 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_file_stops_the_start_with_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let config = conversa::Config::from_lookup(|k| match k {
        "CONVERSA_DATA_DIR" => Some(data.path().display().to_string()),
        "CONVERSA_LOCAL_MODEL" => Some("/nonexistent/model.gguf".into()),
        _ => None,
    })
    .unwrap();
    let Err(e) = conversa::App::from_config(config).await else {
        panic!("a missing model must stop the start");
    };
    let msg = e.to_string();
    assert!(msg.contains("CONVERSA_LOCAL_MODEL"), "{msg}");
    assert!(msg.contains("scripts/fetch-model.sh"), "{msg}");
    assert!(msg.contains("OPENAI_API_KEY"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_remote_provider_takes_precedence() {
    let data = tempfile::tempdir().unwrap();
    let config = conversa::Config::from_lookup(|k| match k {
        "CONVERSA_DATA_DIR" => Some(data.path().display().to_string()),
        "OPENAI_BASE_URL" => Some("http://127.0.0.1:9/v1".into()),
        // Even a broken local model path does not matter then.
        "CONVERSA_LOCAL_MODEL" => Some("/nonexistent/model.gguf".into()),
        _ => None,
    })
    .unwrap();
    let state = conversa::App::from_config(config).await.unwrap();
    // The remote default model answers, not the local one (whose file is not there, so it is not
    // listed either).
    assert_eq!(state.models.describe(), "openai gpt-4o");
    assert_eq!(state.models.ids(), ["gpt-4o", "gpt-4o-mini"]);
}

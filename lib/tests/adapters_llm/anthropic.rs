//! The Anthropic adapter against the fake Messages API: the contract, then what is Anthropic's own
//! (the request's shape, usage, stop reasons, error mapping).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use conversa::contract::Subject;
use conversa::llm::anthropic::AnthropicModel;
use conversa::llm::contract::ModelUnderTest;
use conversa::llm::{ChatEvent, ChatMessage, ChatModel, ChatRequest, ChatRole, LlmError, Part};
use conversa::testing::FakeAnthropic;
use futures::StreamExt;

use super::ask;

const KEY: &str = "sk-ant-test-0123456789abcdef";

fn model(fake: &FakeAnthropic) -> AnthropicModel {
    AnthropicModel::new(KEY, Some(&fake.base_url), "claude-test", None).unwrap()
}

async fn anthropic() -> Option<Subject<ModelUnderTest>> {
    let fake = FakeAnthropic::start().await;
    Some(Subject::new(ModelUnderTest {
        model: Arc::new(model(&fake)),
        answered: ask("the quick brown fox", 64),
        // The API always reports usage.
        without_usage: None,
        failing_early: Some(ask("fail [[status:529]]", 64)),
        failing_midway: Some(ask("one two three four [[error-midway]]", 64)),
    }))
}

conversa::chat_model_contract_tests!(contract, anthropic());
conversa::chat_model_failure_contract_tests!(failures, anthropic());

/// Every item of a stream (an error from `stream()` itself is the only item).
async fn items(model: &dyn ChatModel, request: ChatRequest) -> Vec<Result<ChatEvent, LlmError>> {
    match model.stream(request).await {
        Ok(s) => s.collect().await,
        Err(e) => vec![Err(e)],
    }
}

fn error_of(items: &[Result<ChatEvent, LlmError>]) -> (Option<u16>, String, bool) {
    match items.last() {
        Some(Err(e @ LlmError::Upstream { status, message })) => {
            (*status, message.clone(), e.may_fall_back())
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_system_prompt_goes_on_top_images_as_base64_blocks_and_a_cap_is_always_sent() {
    let fake = FakeAnthropic::start().await;
    let png = Bytes::from(conversa::testing::png(4, 4));
    let request = ChatRequest {
        model: "claude-test".into(),
        messages: vec![
            ChatMessage::text(ChatRole::System, "Answer briefly."),
            ChatMessage::text(ChatRole::System, "Cite the files."),
            ChatMessage {
                role: ChatRole::User,
                parts: vec![
                    Part::Text("What is this?".into()),
                    Part::Image {
                        mime: "image/png".into(),
                        data: png.clone(),
                        name: "chart.png".into(),
                    },
                ],
            },
            // An earlier answer that failed with no text, then the question asked again.
            ChatMessage::text(ChatRole::Assistant, ""),
            ChatMessage::text(ChatRole::User, "And now?"),
        ],
        max_tokens: None,
        temperature: Some(1.5),
    };
    let answer = model(&fake).complete(request).await.unwrap();
    assert!(answer.starts_with("Echo: "), "{answer}");

    let got = fake.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].api_key.as_deref(), Some(KEY));
    assert_eq!(got[0].version.as_deref(), Some("2023-06-01"));
    let body = &got[0].body;
    assert_eq!(body["system"], "Answer briefly.\n\nCite the files.");
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 4096, "the default cap");
    assert_eq!(body["temperature"], 1.0, "clamped to Anthropic's range");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "one user turn: {messages:?}");
    assert_eq!(messages[0]["role"], "user");
    let content = messages[0]["content"].as_array().unwrap();
    assert_eq!(
        content[0],
        serde_json::json!({"type": "text", "text": "What is this?"})
    );
    assert_eq!(content[1]["type"], "image");
    assert_eq!(content[1]["source"]["type"], "base64");
    assert_eq!(content[1]["source"]["media_type"], "image/png");
    assert_eq!(
        content[1]["source"]["data"],
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    assert_eq!(
        content[2],
        serde_json::json!({"type": "text", "text": "And now?"})
    );
}

#[tokio::test]
async fn the_request_cap_and_the_models_default_cap_are_sent() {
    let fake = FakeAnthropic::start().await;
    model(&fake).complete(ask("hi", 77)).await.unwrap();
    let own = AnthropicModel::new(KEY, Some(&fake.base_url), "claude-test", Some(900)).unwrap();
    let mut request = ask("hi", 1);
    request.max_tokens = None;
    own.complete(request).await.unwrap();
    let got = fake.requests();
    assert_eq!(got[0].body["max_tokens"], 77);
    assert_eq!(got[1].body["max_tokens"], 900);
}

#[tokio::test]
async fn usage_counts_the_prompt_with_its_cache_and_the_answer_from_message_delta() {
    let fake = FakeAnthropic::start().await;
    let m = model(&fake);
    for (text, prompt) in [("one two three", 42), ("one two three [[cache]]", 72)] {
        let got = items(&m, ask(text, 64)).await;
        let deltas = got
            .iter()
            .filter(|i| matches!(i, Ok(ChatEvent::Delta(_))))
            .count();
        match got.last() {
            Some(Ok(ChatEvent::Done { usage: Some(u), .. })) => {
                assert_eq!(u.prompt_tokens, prompt, "{text}");
                assert_eq!(u.completion_tokens, deltas as u64, "{text}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn stop_reasons_become_finish_reasons() {
    let fake = FakeAnthropic::start().await;
    let m = model(&fake);
    for (text, finish) in [("done", "stop"), ("cut [[max-tokens]]", "length")] {
        match items(&m, ask(text, 64)).await.last() {
            Some(Ok(ChatEvent::Done { finish_reason, .. })) => assert_eq!(finish_reason, finish),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_rate_limit_says_when_to_try_again_and_may_fall_back() {
    let fake = FakeAnthropic::start().await;
    let (status, message, falls_back) =
        error_of(&items(&model(&fake), ask("x [[status:429]]", 8)).await);
    assert_eq!(status, Some(429));
    assert!(message.contains("try again in 7 s"), "{message}");
    assert!(falls_back);
}

#[tokio::test]
async fn an_overload_may_fall_back_and_a_refused_request_may_not() {
    let fake = FakeAnthropic::start().await;
    let m = model(&fake);
    let (status, _, falls_back) = error_of(&items(&m, ask("x [[status:529]]", 8)).await);
    assert_eq!((status, falls_back), (Some(529), true));
    let (status, _, falls_back) = error_of(&items(&m, ask("x [[status:400]]", 8)).await);
    assert_eq!((status, falls_back), (Some(400), false));
    let (status, message, falls_back) = error_of(&items(&m, ask("x [[status:401]]", 8)).await);
    assert_eq!((status, falls_back), (Some(401), false));
    assert!(message.contains("rejected the key"), "{message}");
}

#[tokio::test]
async fn error_text_never_shows_the_key_or_an_address() {
    let fake = FakeAnthropic::start().await;
    let (status, message, _) =
        error_of(&items(&model(&fake), ask("x [[status:403]] [[leaky]]", 8)).await);
    assert_eq!(status, Some(403));
    assert!(!message.contains(KEY), "{message}");
    assert!(!message.contains("://"), "{message}");
    assert!(!message.contains("gateway.internal"), "{message}");
    assert!(
        message.contains("invalid x-api-key"),
        "the provider's words stay: {message}"
    );
}

#[tokio::test]
async fn an_error_event_before_the_first_token_is_an_overload_that_may_fall_back() {
    let fake = FakeAnthropic::start().await;
    let got = items(&model(&fake), ask("x [[error-first]]", 8)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (status, message, falls_back) = error_of(&got);
    assert_eq!(status, Some(529));
    assert!(message.contains("Overloaded"), "{message}");
    assert!(falls_back);
}

#[tokio::test]
async fn an_error_event_midway_ends_the_answer_after_its_text() {
    let fake = FakeAnthropic::start().await;
    let got = items(&model(&fake), ask("one two three four [[error-midway]]", 8)).await;
    let text: String = got
        .iter()
        .filter_map(|i| match i {
            Ok(ChatEvent::Delta(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Echo: one ");
    assert_eq!(error_of(&got).0, Some(529));
}

#[tokio::test]
async fn a_cut_connection_ends_the_answer_unreachable() {
    let fake = FakeAnthropic::start().await;
    let got = items(&model(&fake), ask("one two three four five [[drop]]", 8)).await;
    assert!(got.len() > 1, "{got:?}");
    assert!(
        matches!(got.last(), Some(Err(LlmError::Unreachable(_)))),
        "{got:?}"
    );
}

#[tokio::test]
async fn an_unreachable_provider_may_fall_back() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let m =
        AnthropicModel::new(KEY, Some(&format!("http://{closed}")), "claude-test", None).unwrap();
    let got = items(&m, ask("hi", 8)).await;
    match &got[..] {
        [Err(e @ LlmError::Unreachable(_))] => assert!(e.may_fall_back()),
        other => panic!("{other:?}"),
    }
}

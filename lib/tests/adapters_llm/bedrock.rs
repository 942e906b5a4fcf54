//! The Bedrock adapter: the real SDK client, signing with SigV4, against the fake runtime that
//! answers in AWS's binary event-stream framing. The contract, then what is Bedrock's own (the
//! path and signing region, the request's shape, usage from `metadata`, exceptions in and before
//! the stream).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use conversa::contract::Subject;
use conversa::llm::bedrock::{client, BedrockModel};
use conversa::llm::contract::ModelUnderTest;
use conversa::llm::{ChatEvent, ChatMessage, ChatModel, ChatRequest, ChatRole, LlmError, Part};
use conversa::testing::bedrock::sdk_config;
use conversa::testing::FakeBedrock;
use futures::StreamExt;

use super::ask;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn model(fake: &FakeBedrock, region: &str) -> BedrockModel {
    // The process's region is another: the model's own is the one used.
    let sdk = sdk_config("eu-central-1");
    BedrockModel::new(client(&sdk, Some(region), Some(&fake.endpoint)), MODEL)
}

async fn bedrock() -> Option<Subject<ModelUnderTest>> {
    let fake = FakeBedrock::start().await;
    Some(Subject::new(ModelUnderTest {
        model: Arc::new(model(&fake, "us-west-2")),
        answered: ask("the quick brown fox", 64),
        // Bedrock always sends the metadata event with the usage.
        without_usage: None,
        failing_early: Some(ask("fail [[throttle-first]]", 64)),
        failing_midway: Some(ask("one two three four [[exception]]", 64)),
    }))
}

conversa::chat_model_contract_tests!(contract, bedrock());
conversa::chat_model_failure_contract_tests!(failures, bedrock());

async fn items(model: &dyn ChatModel, request: ChatRequest) -> Vec<Result<ChatEvent, LlmError>> {
    match model.stream(request).await {
        Ok(s) => s.collect().await,
        Err(e) => vec![Err(e)],
    }
}

fn text_of(items: &[Result<ChatEvent, LlmError>]) -> String {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(ChatEvent::Delta(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
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
async fn requests_name_the_model_in_the_path_and_are_signed_for_its_region() {
    let fake = FakeBedrock::start().await;
    // A request without a model name goes to the adapter's model; one with a name (what the
    // registry sends) to that one. The `:` travels percent-encoded in the path.
    let mut own = ask("hi", 8);
    own.model = String::new();
    model(&fake, "us-west-2").complete(own).await.unwrap();
    let mut named = ask("hi", 8);
    named.model = "us.amazon.nova-pro-v1:0".into();
    model(&fake, "ap-southeast-2")
        .complete(named)
        .await
        .unwrap();
    let got = fake.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].model_id, MODEL);
    assert_eq!(got[1].model_id, "us.amazon.nova-pro-v1:0");
    for (request, region) in got.iter().zip(["us-west-2", "ap-southeast-2"]) {
        let auth = &request.authorization;
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTESTFAKE/"),
            "{auth}"
        );
        assert!(
            auth.contains(&format!("/{region}/bedrock/aws4_request")),
            "{auth}"
        );
    }
}

#[tokio::test]
async fn the_system_prompt_images_and_cap_go_where_converse_wants_them() {
    let fake = FakeBedrock::start().await;
    let png = Bytes::from(conversa::testing::png(4, 4));
    let request = ChatRequest {
        model: String::new(),
        messages: vec![
            ChatMessage::text(ChatRole::System, "Answer briefly."),
            ChatMessage::text(
                ChatRole::Assistant,
                "An answer whose question left the window.",
            ),
            ChatMessage {
                role: ChatRole::User,
                parts: vec![
                    Part::Text("What is this?".into()),
                    Part::Text("   ".into()),
                    Part::Image {
                        mime: "image/png".into(),
                        data: png.clone(),
                        name: "chart.png".into(),
                    },
                ],
            },
        ],
        max_tokens: Some(100),
        temperature: Some(0.5),
    };
    let answer = model(&fake, "us-east-1").complete(request).await.unwrap();
    assert_eq!(answer, "Echo: What is this?");
    let body = &fake.requests()[0].body;
    assert_eq!(
        body["system"],
        serde_json::json!([{"text": "Answer briefly."}])
    );
    assert_eq!(body["inferenceConfig"]["maxTokens"], 100);
    assert_eq!(body["inferenceConfig"]["temperature"], 0.5);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        1,
        "a user turn first, blank text dropped: {messages:?}"
    );
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(
        messages[0]["content"],
        serde_json::json!([
            {"text": "What is this?"},
            {"image": {"format": "png", "source": {"bytes": base64::engine::general_purpose::STANDARD.encode(&png)}}}
        ])
    );
}

#[tokio::test]
async fn usage_and_the_finish_reason_come_from_the_last_events() {
    let fake = FakeBedrock::start().await;
    let m = model(&fake, "us-east-1");
    let got = items(&m, ask("one two three", 64)).await;
    let deltas = got
        .iter()
        .filter(|i| matches!(i, Ok(ChatEvent::Delta(_))))
        .count() as u64;
    match got.last() {
        Some(Ok(ChatEvent::Done {
            finish_reason,
            usage: Some(u),
        })) => {
            assert_eq!(finish_reason, "stop");
            assert_eq!((u.prompt_tokens, u.completion_tokens), (42, deltas));
        }
        other => panic!("{other:?}"),
    }
    match items(&m, ask("cut [[max-tokens]]", 64)).await.last() {
        Some(Ok(ChatEvent::Done { finish_reason, .. })) => assert_eq!(finish_reason, "length"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn frames_split_across_chunks_are_read_whole() {
    let fake = FakeBedrock::start().await;
    let got = items(
        &model(&fake, "us-east-1"),
        ask("split me please [[split]]", 64),
    )
    .await;
    assert_eq!(text_of(&got), "Echo: split me please [[split]]");
    assert!(
        matches!(got.last(), Some(Ok(ChatEvent::Done { .. }))),
        "{got:?}"
    );
}

#[tokio::test]
async fn http_errors_keep_bedrocks_status_and_only_the_providers_fault_falls_back() {
    let fake = FakeBedrock::start().await;
    let m = model(&fake, "us-east-1");
    for (code, falls_back) in [
        (429, true),
        (503, true),
        (500, true),
        (424, true),
        (403, false),
        (400, false),
    ] {
        let (status, message, may) =
            error_of(&items(&m, ask(&format!("x [[status:{code}]]"), 8)).await);
        assert_eq!(status, Some(code));
        assert_eq!(may, falls_back, "{code}: {message}");
        assert!(
            message.contains("Exception"),
            "the error's code is named: {message}"
        );
        assert!(
            !message.contains("arn:") && !message.contains("123456789012"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_throttling_exception_before_the_first_token_is_a_429() {
    let fake = FakeBedrock::start().await;
    let got = items(&model(&fake, "us-east-1"), ask("x [[throttle-first]]", 8)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (status, message, falls_back) = error_of(&got);
    assert_eq!(status, Some(429));
    assert!(message.contains("Too many tokens"), "{message}");
    assert!(falls_back);
}

#[tokio::test]
async fn a_model_stream_error_midway_ends_the_answer_after_its_text() {
    let fake = FakeBedrock::start().await;
    let got = items(
        &model(&fake, "us-east-1"),
        ask("one two three four [[exception]]", 8),
    )
    .await;
    assert_eq!(text_of(&got), "Echo: one ");
    assert_eq!(error_of(&got).0, Some(424));
}

#[tokio::test]
async fn a_body_cut_mid_frame_is_an_error_after_the_text() {
    let fake = FakeBedrock::start().await;
    let got = items(
        &model(&fake, "us-east-1"),
        ask("one two three four five [[drop]]", 8),
    )
    .await;
    assert_eq!(text_of(&got), "Echo: one two ");
    assert!(got.last().is_some_and(Result::is_err), "{got:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_may_fall_back() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let sdk = sdk_config("us-east-1");
    let m = BedrockModel::new(client(&sdk, None, Some(&format!("http://{closed}"))), MODEL);
    match &items(&m, ask("hi", 8)).await[..] {
        [Err(e @ LlmError::Unreachable(_))] => assert!(e.may_fall_back()),
        other => panic!("{other:?}"),
    }
}

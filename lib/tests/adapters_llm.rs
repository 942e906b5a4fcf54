//! The `ChatModel` contract and each adapter's own behaviour: the OpenAI-compatible, Anthropic and
//! Amazon Bedrock adapters against the fake providers of `conversa::testing` (each speaks its
//! provider's wire format — OpenAI's and Anthropic's server-sent events, Bedrock's binary event
//! stream — so the real client code runs), the in-process local model when its file is there, and
//! the registry's fallbacks through the real adapters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job

mod common;

use std::sync::Arc;

use conversa::contract::Subject;
use conversa::llm::contract::ModelUnderTest;
use conversa::llm::openai::OpenAiModel;
use conversa::llm::{ChatMessage, ChatRequest, ChatRole};
use conversa::testing::FakeOpenAi;

fn ask(text: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        model: "chat-model".into(),
        messages: vec![
            ChatMessage::text(ChatRole::System, "Answer briefly."),
            ChatMessage::text(ChatRole::User, text),
        ],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
    }
}

/// The OpenAI adapter on a fake provider of its own, with the magic words that make it fail.
async fn openai() -> Option<Subject<ModelUnderTest>> {
    let fake = FakeOpenAi::start().await;
    let model = OpenAiModel::new(Some("test-key"), Some(&fake.base_url), "chat-model").unwrap();
    Some(Subject::new(ModelUnderTest {
        model: Arc::new(model),
        answered: ask("the quick brown fox", 64),
        without_usage: Some(ask("no usage please [[no-usage]]", 64)),
        failing_early: Some(ask("fail [[status:500]]", 64)),
        failing_midway: Some(ask("one two three four [[stream-error]]", 64)),
    }))
}

conversa::chat_model_contract_tests!(openai_compatible, openai());
conversa::chat_model_failure_contract_tests!(openai_compatible_failures, openai());
conversa::chat_model_missing_usage_contract_tests!(openai_compatible_usage, openai());

#[path = "adapters_llm/anthropic.rs"]
mod anthropic;
#[cfg(feature = "bedrock")]
#[path = "adapters_llm/bedrock.rs"]
mod bedrock;
#[path = "adapters_llm/fallbacks.rs"]
mod fallbacks;
#[cfg(feature = "ssm")]
#[path = "adapters_llm/keys.rs"]
mod keys;

#[cfg(feature = "local-model")]
mod local {
    use std::sync::Arc;

    use conversa::contract::Subject;
    use conversa::llm::contract::ModelUnderTest;
    use conversa::llm::local::LocalModel;
    use tokio::sync::OnceCell;

    use super::{ask, common};

    /// The local model, loaded once for the binary (each test has its own runtime, and the model
    /// runs on blocking threads of whichever asks).
    async fn model() -> Option<Subject<ModelUnderTest>> {
        static MODEL: OnceCell<Arc<LocalModel>> = OnceCell::const_new();
        let path = common::local_model_file()?;
        let model = MODEL
            .get_or_init(|| async { Arc::new(LocalModel::load_async(path).await.unwrap()) })
            .await;
        Some(Subject::new(ModelUnderTest::new(
            model.clone(),
            ask("Name a colour.", 8),
        )))
    }

    conversa::chat_model_contract_tests!(contract, model());
}

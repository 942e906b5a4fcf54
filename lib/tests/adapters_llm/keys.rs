//! A model's key kept in an SSM SecureString (`<VAR>_PARAMETER`, as on Lambda), against moto: its
//! read starts when the registry is built, the first call waits for it and the provider gets it; a
//! parameter that cannot be read fails the calls that need it (generically, and another model may
//! answer instead) and is read again by the next call, never stopping the start.

use conversa::llm::{LlmError, Registry};
use conversa::testing::{FakeAnthropic, FakeOpenAi};

use super::{ask, common};

/// An SSM client on moto, or `None` when moto is not running (and not required).
async fn ssm() -> Option<aws_sdk_ssm::Client> {
    common::service("CONVERSA_TEST_SSM", "SSM (moto)")?;
    Some(aws_sdk_ssm::Client::new(conversa::aws::sdk_config().await))
}

async fn put(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_key_in_an_ssm_parameter_reaches_the_provider() {
    let Some(ssm) = ssm().await else { return };
    let name = format!("/{}", common::unique("claude-key"));
    put(&ssm, &name, "sk-ant-from-ssm").await;

    let fake = FakeAnthropic::start().await;
    let list = serde_json::json!([
        {"id": "claude", "provider": "anthropic", "base_url": fake.base_url, "api_key_env": "CLAUDE_KEY"}
    ])
    .to_string();
    let config = common::config(&[("CONVERSA_MODELS", &list)]);
    let parameter = name.clone();
    let registry = Registry::builder(&config)
        .env(move |k| (k == "CLAUDE_KEY_PARAMETER").then(|| parameter.clone()))
        .build()
        .await
        .unwrap();
    registry.complete("claude", ask("hi", 8)).await.unwrap();
    registry.complete("claude", ask("again", 8)).await.unwrap();
    let keys: Vec<_> = fake.requests().into_iter().map(|r| r.api_key).collect();
    assert_eq!(
        keys,
        vec![
            Some("sk-ant-from-ssm".to_owned()),
            Some("sk-ant-from-ssm".to_owned())
        ]
    );
    ssm.delete_parameter().name(&name).send().await.unwrap();
}

#[tokio::test]
async fn openais_key_parameter_makes_the_remote_model_the_default() {
    let Some(ssm) = ssm().await else { return };
    let name = format!("/{}", common::unique("openai-key"));
    put(&ssm, &name, "sk-from-ssm").await;

    // No OPENAI_API_KEY: the parameter alone names the remote provider (not the offline model).
    let fake = FakeOpenAi::start().await;
    let config = common::config(&[
        ("OPENAI_BASE_URL", &fake.base_url),
        ("OPENAI_API_KEY_PARAMETER", &name),
        ("CONVERSA_CHAT_MODEL", "gpt-test"),
    ]);
    let registry = Registry::from_config(&config).await.unwrap();
    assert_eq!(registry.default().id, "gpt-test");
    registry.complete("gpt-test", ask("hi", 8)).await.unwrap();
    assert_eq!(fake.keys(), vec![Some("sk-from-ssm".to_owned())]);
    ssm.delete_parameter().name(&name).send().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_parameter_fails_its_calls_and_is_read_again() {
    let Some(ssm) = ssm().await else { return };
    // Not there yet: the start goes on; the call that needs the key fails without naming it.
    let name = format!("/{}", common::unique("late-key"));
    let fake = FakeAnthropic::start().await;
    let list = serde_json::json!([
        {"id": "claude", "provider": "anthropic", "base_url": fake.base_url, "api_key_env": "CLAUDE_KEY"}
    ])
    .to_string();
    let config = common::config(&[("CONVERSA_MODELS", &list)]);
    let parameter = name.clone();
    let registry = Registry::builder(&config)
        .env(move |k| (k == "CLAUDE_KEY_PARAMETER").then(|| parameter.clone()))
        .build()
        .await
        .unwrap();
    let e = registry.complete("claude", ask("hi", 8)).await.unwrap_err();
    assert!(matches!(e, LlmError::Unreachable(_)), "{e:?}");
    assert!(!e.to_string().contains(&name), "{e}");
    assert!(
        fake.requests().is_empty(),
        "nothing is sent without the key"
    );

    // Once the parameter is there, the next call reads it and is answered with it.
    put(&ssm, &name, "sk-ant-late").await;
    registry.complete("claude", ask("hi", 8)).await.unwrap();
    assert_eq!(
        fake.requests()
            .into_iter()
            .map(|r| r.api_key)
            .collect::<Vec<_>>(),
        vec![Some("sk-ant-late".to_owned())]
    );
    ssm.delete_parameter().name(&name).send().await.unwrap();
}

#[tokio::test]
async fn a_model_whose_key_cannot_be_read_falls_back() {
    if ssm().await.is_none() {
        return;
    }
    let claude = FakeAnthropic::start().await;
    let gpt = FakeOpenAi::start().await;
    let list = serde_json::json!([
        {"id": "claude", "provider": "anthropic", "base_url": claude.base_url,
         "api_key_env": "CLAUDE_KEY", "fallbacks": ["gpt"], "default": true},
        {"id": "gpt", "provider": "openai", "base_url": gpt.base_url, "api_key_env": "GPT_KEY"}
    ])
    .to_string();
    let config = common::config(&[("CONVERSA_MODELS", &list)]);
    let missing = format!("/{}", common::unique("missing-key"));
    let registry = Registry::builder(&config)
        .env(move |k| match k {
            "CLAUDE_KEY_PARAMETER" => Some(missing.clone()),
            "GPT_KEY" => Some("sk-gpt".to_owned()),
            _ => None,
        })
        .build()
        .await
        .unwrap();
    let (model, _, _) = registry.complete("claude", ask("hi", 8)).await.unwrap();
    assert_eq!(model.id, "gpt");
    assert!(claude.requests().is_empty());
    assert_eq!(gpt.keys(), vec![Some("sk-gpt".to_owned())]);
}

//! A model's key kept in an SSM SecureString (`<VAR>_PARAMETER`, as on Lambda) is read once when
//! the registry is built, against moto, and reaches the provider.

use conversa::llm::Registry;
use conversa::testing::FakeAnthropic;

use super::{ask, common};

#[tokio::test]
async fn a_key_in_an_ssm_parameter_is_read_at_start_and_used() {
    if common::service("CONVERSA_TEST_SSM", "SSM (moto)").is_none() {
        return;
    }
    let sdk = conversa::aws::sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let name = format!("/{}", common::unique("claude-key"));
    ssm.put_parameter()
        .name(&name)
        .value("sk-ant-from-ssm")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();

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
    assert_eq!(
        fake.requests()[0].api_key.as_deref(),
        Some("sk-ant-from-ssm")
    );

    // A parameter that does not exist stops the start, naming the entry and the variable.
    let config = common::config(&[("CONVERSA_MODELS", &list)]);
    let e = Registry::builder(&config)
        .env(|k| (k == "CLAUDE_KEY_PARAMETER").then(|| "/conversa-test/missing-key".to_owned()))
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.var, "CONVERSA_MODELS");
    assert_eq!(e.entry.as_deref(), Some("claude"));
    assert!(
        e.message.starts_with("CLAUDE_KEY_PARAMETER: cannot read"),
        "{e}"
    );
    ssm.delete_parameter().name(&name).send().await.unwrap();
}

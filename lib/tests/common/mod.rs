//! Helpers shared by the adapter tests: the one rule for a missing service, unique names,
//! configurations.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use conversa::app::BuildError;
use conversa::{App, Config};

/// Whether a missing service fails the test (`CONVERSA_REQUIRE_SERVICES=1`, as in CI).
pub fn services_required() -> bool {
    std::env::var("CONVERSA_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// The one rule for a service a test needs and cannot find: under `CONVERSA_REQUIRE_SERVICES=1` the
/// test fails; otherwise it says `skipped: <service> not configured` with the reason, and the caller
/// returns without checking anything.
pub fn missing(service: &str, why: &str) {
    if services_required() {
        panic!("{service} not configured ({why}), and CONVERSA_REQUIRE_SERVICES=1 requires it");
    }
    eprintln!("skipped: {service} not configured ({why})");
}

/// The value of `var` naming a running service, or `None` after [`missing`].
pub fn service(var: &str, service: &str) -> Option<String> {
    let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    if value.is_none() {
        missing(
            service,
            &format!(
                "{var} is not set: run `bash scripts/services.sh start` and source \
                 /tmp/conversa-services/env.sh"
            ),
        );
    }
    value
}

/// The local model's file (`CONVERSA_LOCAL_MODEL`, else the default path), or `None` after
/// [`missing`].
#[cfg(feature = "local-model")]
pub fn local_model_file() -> Option<PathBuf> {
    let path = std::env::var_os("CONVERSA_LOCAL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(conversa::llm::local::DEFAULT_MODEL_PATH)
        });
    if path.is_file() {
        return Some(path);
    }
    missing(
        "the local model",
        &format!(
            "{} does not exist: run `bash scripts/fetch-model.sh`",
            path.display()
        ),
    );
    None
}

/// Polls `check` until it gives `Some`, failing the test when `within` has passed: the one way these
/// tests wait for something another task or process does.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A name no other run uses (tables, buckets, databases): lowercase letters, digits and `-`.
pub fn unique(tag: &str) -> String {
    format!("conversa-test-{tag}-{}", uuid::Uuid::now_v7().simple())
}

/// Runs `scenario` with the settings of a store on a table of its own in moto's DynamoDB, then
/// deletes the table; does nothing (after [`missing`]) when no DynamoDB endpoint is configured.
#[cfg(feature = "dynamodb")]
pub async fn on_dynamodb<Fut: Future<Output = ()>>(
    tag: &str,
    scenario: impl FnOnce(Vec<(&'static str, String)>) -> Fut,
) {
    if service("AWS_ENDPOINT_URL", "DynamoDB").is_none() {
        return;
    }
    let client = aws_sdk_dynamodb::Client::new(conversa::aws::sdk_config().await);
    let table = unique(tag);
    conversa::store::dynamodb::ensure_table(&client, &table)
        .await
        .unwrap();
    scenario(vec![
        ("CONVERSA_STORE", "dynamodb".into()),
        ("CONVERSA_DYNAMODB_TABLE", table.clone()),
    ])
    .await;
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}

/// Runs `scenario` with the settings of a store on a database of its own on the MongoDB-wire
/// server, then drops the database; does nothing (after [`missing`]) when no MongoDB is configured.
#[cfg(feature = "mongodb")]
pub async fn on_mongodb<Fut: Future<Output = ()>>(
    tag: &str,
    scenario: impl FnOnce(Vec<(&'static str, String)>) -> Fut,
) {
    let Some(uri) = service("MONGODB_URI", "MongoDB") else {
        return;
    };
    let db = unique(tag).replace('-', "_");
    scenario(vec![
        ("CONVERSA_STORE", "mongodb".into()),
        ("MONGODB_URI", uri.clone()),
        ("CONVERSA_MONGODB_DB", db.clone()),
    ])
    .await;
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    client.database(&db).drop().await.unwrap();
}

/// Pairs of owned settings as the borrowed pairs harnesses take.
pub fn pairs<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A configuration from pairs, as the environment would give it. These suites test adapters, not
/// models: a provider endpoint is named (never called) so no local model is needed.
pub fn config(pairs: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("OPENAI_BASE_URL".into())
        .or_insert_with(|| "http://127.0.0.1:9/v1".into());
    Config::from_lookup(|k| map.get(k).cloned()).unwrap()
}

/// Builds the state a configuration names, or the startup error's message.
pub async fn build(pairs: &[(&str, &str)]) -> Result<App, String> {
    App::from_config(config(pairs))
        .await
        .map_err(|e: BuildError| e.to_string())
}

/// The embedding model's directory (`CONVERSA_EMBED_MODEL`, else the default one), or `None` with
/// a loud note when it is absent; under CI (`CI` set) or `CONVERSA_REQUIRE_SERVICES=1` an absent
/// model fails the test.
#[cfg(feature = "embedder")]
pub fn embed_model_dir() -> Option<PathBuf> {
    use conversa::embed::{DEFAULT_MODEL_DIR, FETCH_SCRIPT};
    let dir = std::env::var_os("CONVERSA_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(DEFAULT_MODEL_DIR)
        });
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() || services_required() {
        panic!("{} is missing: CI must run {FETCH_SCRIPT}", dir.display());
    }
    eprintln!(
        "SKIPPED: {} is missing; run {FETCH_SCRIPT} to test the embedding model",
        dir.display()
    );
    None
}

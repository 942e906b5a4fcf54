//! Helpers shared by the adapter tests: finding the real services, unique names, configurations.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use conversa::app::BuildError;
use conversa::{App, Config};

/// The value of `var` naming a running service; `None` (after saying loudly what is skipped) when it
/// is not set, unless `CONVERSA_REQUIRE_SERVICES=1`, where a missing service fails the test.
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => Some(v),
        None if std::env::var("CONVERSA_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{what}: {var} is not set, and CONVERSA_REQUIRE_SERVICES=1 requires the service")
        }
        None => {
            eprintln!(
                "SKIPPED: {what}: {var} not set (run scripts/services.sh start and source its env)"
            );
            None
        }
    }
}

/// A name no other run uses (tables, buckets, databases): lowercase letters, digits and `-`.
pub fn unique(tag: &str) -> String {
    format!("conversa-test-{tag}-{}", uuid::Uuid::now_v7().simple())
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

//! The contract every `ChatModel` adapter passes, one test per check:
//! [`chat_model_contract_tests!`](crate::chat_model_contract_tests) for what every model does (a
//! stream of deltas closed by exactly one `Done`, usage, `complete()` joining the deltas), and
//! [`chat_model_failure_contract_tests!`](crate::chat_model_failure_contract_tests) for adapters
//! whose provider can be made to fail on request (errors before the first token and midway), and
//! [`chat_model_missing_usage_contract_tests!`](crate::chat_model_missing_usage_contract_tests) for
//! adapters whose providers may leave the usage out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;

use futures::StreamExt;

use super::{ChatEvent, ChatModel, ChatRequest, LlmError, Usage};

/// One `#[tokio::test]` per check every `ChatModel` passes, in `mod $name`, against the
/// [`ModelUnderTest`] the setup (an `async` block giving `Option<Subject<_>>`) builds.
#[macro_export]
macro_rules! chat_model_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(llm; $name, $setup;
            streams_deltas_then_exactly_one_done,
            usage_is_reported_when_provided,
            complete_joins_the_deltas,
            describes_itself,
        );
    };
}

/// One `#[tokio::test]` per failure check, for adapters whose [`ModelUnderTest`] has the failing
/// requests.
#[macro_export]
macro_rules! chat_model_failure_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(llm; $name, $setup;
            an_error_before_the_first_token_comes_before_any_delta,
            an_error_midway_ends_the_stream_after_its_deltas,
            complete_fails_when_the_stream_fails,
            an_early_failure_of_the_provider_allows_a_fallback,
        );
    };
}

/// The check for adapters whose providers may answer without usage (OpenAI-compatible servers
/// that ignore `stream_options`); the [`ModelUnderTest`] has `without_usage`.
#[macro_export]
macro_rules! chat_model_missing_usage_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(llm; $name, $setup;
            a_missing_usage_is_none,
        );
    };
}

/// A model and the requests that make it behave each way the checks look at.
pub struct ModelUnderTest {
    /// The adapter.
    pub model: Arc<dyn ChatModel>,
    /// A request answered normally, the same way each time (e.g. temperature 0), with usage.
    pub answered: ChatRequest,
    /// A request answered normally but without usage.
    pub without_usage: Option<ChatRequest>,
    /// A request that fails before the first token, the provider's fault (a 5xx, an overload):
    /// another model may answer it instead.
    pub failing_early: Option<ChatRequest>,
    /// A request that fails after some tokens.
    pub failing_midway: Option<ChatRequest>,
}

impl ModelUnderTest {
    /// A model checked with one normally answered request (no failure checks).
    pub fn new(model: Arc<dyn ChatModel>, answered: ChatRequest) -> Self {
        Self {
            model,
            answered,
            without_usage: None,
            failing_early: None,
            failing_midway: None,
        }
    }
}

fn needed(request: &Option<ChatRequest>, what: &str) -> ChatRequest {
    request
        .clone()
        .unwrap_or_else(|| panic!("the failure checks need a request that {what}"))
}

/// Every item of a stream, up to and including its end; an error from `stream()` itself is the
/// only item.
async fn items(model: &dyn ChatModel, request: ChatRequest) -> Vec<Result<ChatEvent, LlmError>> {
    match model.stream(request).await {
        Ok(stream) => stream.collect().await,
        Err(e) => vec![Err(e)],
    }
}

fn deltas(items: &[Result<ChatEvent, LlmError>]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(ChatEvent::Delta(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// The `Done` of a stream that must have ended well.
fn done(items: &[Result<ChatEvent, LlmError>]) -> (String, Option<Usage>) {
    match items.last() {
        Some(Ok(ChatEvent::Done {
            finish_reason,
            usage,
        })) => (finish_reason.clone(), *usage),
        other => panic!("the stream did not end with Done: {other:?}"),
    }
}

/// Deltas come first, then exactly one `Done`, and the stream ends there.
pub async fn streams_deltas_then_exactly_one_done(m: Arc<ModelUnderTest>) {
    let items = items(&*m.model, m.answered.clone()).await;
    let (finish_reason, _) = done(&items);
    assert!(!finish_reason.is_empty());
    let (last, before) = items.split_last().unwrap();
    assert!(matches!(last, Ok(ChatEvent::Done { .. })));
    assert!(!before.is_empty(), "an answer has at least one delta");
    for item in before {
        match item {
            Ok(ChatEvent::Delta(t)) => assert!(!t.is_empty(), "empty delta"),
            other => panic!("before Done only deltas come: {other:?}"),
        }
    }
}

/// An answer's `Done` carries the usage: prompt tokens, and at least one token per delta's worth.
pub async fn usage_is_reported_when_provided(m: Arc<ModelUnderTest>) {
    let items = items(&*m.model, m.answered.clone()).await;
    let (_, usage) = done(&items);
    let usage = usage.expect("usage on Done");
    assert!(usage.prompt_tokens > 0, "{usage:?}");
    assert!(usage.completion_tokens > 0, "{usage:?}");
}

/// `complete()` is the stream's deltas joined.
pub async fn complete_joins_the_deltas(m: Arc<ModelUnderTest>) {
    let streamed = deltas(&items(&*m.model, m.answered.clone()).await).concat();
    let completed = m.model.complete(m.answered.clone()).await.unwrap();
    assert!(!completed.is_empty());
    assert_eq!(completed, streamed);
}

/// The model describes itself for `/health` (never with an address or a key).
pub async fn describes_itself(m: Arc<ModelUnderTest>) {
    let d = m.model.describe();
    assert!(!d.trim().is_empty());
    assert!(!d.contains("://"), "{d}");
}

/// A failure before the first token surfaces from `stream()` or as the first item: no delta
/// comes, and nothing after it.
pub async fn an_error_before_the_first_token_comes_before_any_delta(m: Arc<ModelUnderTest>) {
    let request = needed(&m.failing_early, "fails before the first token");
    let items = items(&*m.model, request).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(items[0].is_err(), "{items:?}");
}

/// A failure before the first token that is the provider's (its `failing_early` request) lets the
/// registry try a fallback: the one rule, [`LlmError::may_fall_back`], recognises it.
pub async fn an_early_failure_of_the_provider_allows_a_fallback(m: Arc<ModelUnderTest>) {
    let request = needed(&m.failing_early, "fails before the first token");
    let items = items(&*m.model, request).await;
    match items.first() {
        Some(Err(e)) => assert!(e.may_fall_back(), "{e:?}"),
        other => panic!("expected an early error, got {other:?}"),
    }
}

/// A failure midway comes after the deltas already sent, ends the stream, and no `Done` follows.
pub async fn an_error_midway_ends_the_stream_after_its_deltas(m: Arc<ModelUnderTest>) {
    let request = needed(&m.failing_midway, "fails after some tokens");
    let items = items(&*m.model, request).await;
    let (last, before) = items.split_last().expect("some items");
    assert!(last.is_err(), "the stream ends with the error: {items:?}");
    assert!(!before.is_empty(), "deltas came before the error");
    assert!(
        before.iter().all(|i| matches!(i, Ok(ChatEvent::Delta(_)))),
        "{items:?}"
    );
}

/// `complete()` fails when its stream fails, early or midway: a cut answer is not an answer.
pub async fn complete_fails_when_the_stream_fails(m: Arc<ModelUnderTest>) {
    for request in [
        needed(&m.failing_early, "fails before the first token"),
        needed(&m.failing_midway, "fails after some tokens"),
    ] {
        let got = m.model.complete(request).await;
        assert!(got.is_err(), "{got:?}");
    }
}

/// A provider that gives no usage gives `Done` with `usage: None`.
pub async fn a_missing_usage_is_none(m: Arc<ModelUnderTest>) {
    let items = items(&*m.model, needed(&m.without_usage, "omits usage")).await;
    assert!(!deltas(&items).is_empty());
    assert_eq!(done(&items).1, None);
}

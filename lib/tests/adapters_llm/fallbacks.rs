//! The registry's fallbacks through the real adapters and fake providers: a model that fails
//! before its first token (connection, 5xx, 429, overload, timeout) hands over to the next in its
//! `fallbacks`, never after its first token, and the answer names the model that gave it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conversa::llm::anthropic::AnthropicModel;
use conversa::llm::openai::OpenAiModel;
use conversa::llm::registry::{Answering, ModelEntry, Provider, Registry};
use conversa::llm::{ChatEvent, ChatMessage, ChatModel, ChatRole, LlmError, Part};
use conversa::testing::FakeAnthropic;
use futures::StreamExt;

use super::ask;

fn anthropic(fake: &FakeAnthropic) -> Arc<dyn ChatModel> {
    Arc::new(AnthropicModel::new("test-key", Some(&fake.base_url), "unused", None).unwrap())
}

/// An entry for `model` (the name the fake sees: magic words in it make it fail) with fallbacks.
fn entry(id: &str, model: &str, chat: &Arc<dyn ChatModel>, fallbacks: &[&str]) -> ModelEntry {
    let mut e = ModelEntry::new(id, Provider::Anthropic, model, Arc::clone(chat));
    e.fallbacks = fallbacks.iter().map(|f| (*f).to_owned()).collect();
    e
}

fn registry(entries: Vec<ModelEntry>, first_token: Duration) -> Registry {
    Registry::from_entries(entries, None, None, first_token).unwrap()
}

async fn answer(answering: Answering) -> (String, Vec<Result<ChatEvent, LlmError>>) {
    let items: Vec<_> = answering.stream.collect().await;
    (answering.model.id.clone(), items)
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

/// The primary model (failing as `failing_model` makes the fake fail) falls back to `backup`.
async fn falls_back(failing_model: &str) {
    let fake = FakeAnthropic::start().await;
    let chat = anthropic(&fake);
    let r = registry(
        vec![
            entry("primary", failing_model, &chat, &["backup"]),
            entry("backup", "claude-ok", &chat, &[]),
        ],
        Duration::from_secs(5),
    );
    let (model, items) = answer(r.stream("primary", ask("hello there", 32)).await.unwrap()).await;
    assert_eq!(model, "backup");
    assert_eq!(text_of(&items), "Echo: hello there");
    assert!(matches!(items.last(), Some(Ok(ChatEvent::Done { .. }))));
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(asked, [failing_model, "claude-ok"]);
}

#[tokio::test]
async fn a_server_error_falls_back() {
    falls_back("down[[status:500]]").await;
}

#[tokio::test]
async fn a_rate_limit_falls_back() {
    falls_back("busy[[status:429]]").await;
}

#[tokio::test]
async fn an_overload_falls_back() {
    falls_back("busy[[status:529]]").await;
}

#[tokio::test]
async fn an_error_event_before_the_first_token_falls_back() {
    falls_back("busy[[error-first]]").await;
}

#[tokio::test]
async fn a_model_that_does_not_start_in_time_falls_back() {
    let fake = FakeAnthropic::start().await;
    let chat = anthropic(&fake);
    let r = registry(
        vec![
            entry("slow", "slow[[stall]]", &chat, &["backup"]),
            entry("backup", "claude-ok", &chat, &[]),
        ],
        Duration::from_millis(300),
    );
    let (model, items) = answer(r.stream("slow", ask("hello", 32)).await.unwrap()).await;
    assert_eq!(model, "backup");
    assert_eq!(text_of(&items), "Echo: hello");
}

#[tokio::test]
async fn an_unreachable_provider_falls_back_to_another_provider() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let fake = FakeAnthropic::start().await;
    let unreachable: Arc<dyn ChatModel> = Arc::new(
        OpenAiModel::new(Some("k"), Some(&format!("http://{closed}/v1")), "gpt-4o").unwrap(),
    );
    let mut primary = ModelEntry::new("gpt", Provider::OpenAi, "gpt-4o", unreachable);
    primary.fallbacks = vec!["claude".into()];
    let r = registry(
        vec![
            primary,
            entry("claude", "claude-ok", &anthropic(&fake), &[]),
        ],
        Duration::from_secs(5),
    );
    let (model, items) = answer(r.stream("gpt", ask("hello", 32)).await.unwrap()).await;
    assert_eq!(model, "claude");
    assert_eq!(text_of(&items), "Echo: hello");
}

#[tokio::test]
async fn a_refused_request_does_not_fall_back() {
    let fake = FakeAnthropic::start().await;
    let chat = anthropic(&fake);
    let r = registry(
        vec![
            entry("primary", "bad[[status:400]]", &chat, &["backup"]),
            entry("backup", "claude-ok", &chat, &[]),
        ],
        Duration::from_secs(5),
    );
    match r.stream("primary", ask("hello", 32)).await {
        Err(LlmError::Upstream { status, .. }) => assert_eq!(status, Some(400)),
        Err(other) => panic!("{other:?}"),
        Ok(a) => panic!("answered by {}", a.model.id),
    }
    assert_eq!(fake.requests().len(), 1, "the backup was not asked");
}

#[tokio::test]
async fn nothing_falls_back_after_the_first_token() {
    let fake = FakeAnthropic::start().await;
    let chat = anthropic(&fake);
    let r = registry(
        vec![
            entry("primary", "flaky[[error-midway]]", &chat, &["backup"]),
            entry("backup", "claude-ok", &chat, &[]),
        ],
        Duration::from_secs(5),
    );
    let (model, items) = answer(
        r.stream("primary", ask("one two three four", 32))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(model, "primary");
    assert_eq!(text_of(&items), "Echo: one ");
    assert!(matches!(items.last(), Some(Err(_))), "{items:?}");
    assert_eq!(fake.requests().len(), 1, "the backup was not asked");
}

#[tokio::test]
async fn a_fallbacks_own_fallbacks_come_after_it_and_the_last_error_is_returned() {
    let fake = FakeAnthropic::start().await;
    let chat = anthropic(&fake);
    let r = registry(
        vec![
            entry("a", "a[[status:503]]", &chat, &["b"]),
            entry("b", "b[[status:529]]", &chat, &["c"]),
            entry("c", "c[[status:429]]", &chat, &[]),
        ],
        Duration::from_secs(5),
    );
    assert_eq!(
        r.chain("a")
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    match r.stream("a", ask("hello", 32)).await {
        Err(LlmError::Upstream { status, .. }) => assert_eq!(status, Some(429)),
        Err(other) => panic!("{other:?}"),
        Ok(a) => panic!("answered by {}", a.model.id),
    }
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        asked,
        ["a[[status:503]]", "b[[status:529]]", "c[[status:429]]"]
    );
}

/// Log lines written while a test runs on its thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_log_line_says_which_model_fell_back_to_which_and_why() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // The tests beside this one run the same fallback code on other threads, with no subscriber. If
    // one of them is registering the log line's callsite while this subscriber is being set, the
    // callsite can keep the interest "never" it computed without it, and asking the callsites again
    // does not help while that registration is still under way. So the fallback runs once to have
    // the callsite registered (by whichever thread), every callsite is asked again now that this
    // subscriber is there, and the line is looked for after a second fallback.
    falls_back("busy[[status:529]]").await;
    tracing::callsite::rebuild_interest_cache();
    logs.0.lock().unwrap().clear();
    falls_back("busy[[status:529]]").await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("failed before its first token"))
        .unwrap_or_else(|| panic!("no fallback line in {text}"));
    assert!(line.contains("model=primary"), "{line}");
    assert!(line.contains("fell_back_to=backup"), "{line}");
    assert!(line.contains("529"), "{line}");
}

#[tokio::test]
async fn images_reach_only_models_that_read_them() {
    let fake = FakeAnthropic::start().await;
    let chat = anthropic(&fake);
    let mut seeing = entry("seeing", "claude-ok", &chat, &[]);
    seeing.vision = true;
    let blind = entry("blind", "claude-ok", &chat, &[]);
    let r = registry(vec![seeing, blind], Duration::from_secs(5));
    let mut request = ask("what is it?", 32);
    request.messages.push(ChatMessage {
        role: ChatRole::User,
        parts: vec![Part::Image {
            mime: "image/png".into(),
            data: conversa::testing::png(2, 2).into(),
            name: "cat.png".into(),
        }],
    });
    for id in ["seeing", "blind"] {
        let _ = answer(r.stream(id, request.clone()).await.unwrap()).await;
    }
    let got = fake.requests();
    let blocks = |i: usize| got[i].body["messages"][0]["content"].clone();
    assert_eq!(blocks(0)[1]["type"], "image");
    assert_eq!(blocks(1)[1]["type"], "text");
    assert_eq!(
        blocks(1)[1]["text"],
        "[The image cat.png is attached, but this model cannot see images.]"
    );
}

#[tokio::test]
async fn an_unknown_id_is_refused_naming_the_ones_there_are() {
    let fake = FakeAnthropic::start().await;
    let r = registry(
        vec![
            entry("one", "m", &anthropic(&fake), &[]),
            entry("two", "m", &anthropic(&fake), &[]),
        ],
        Duration::from_secs(5),
    );
    let e = r.resolve(Some("three")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown model \"three\"; available: one, two"
    );
    assert_eq!(r.resolve(None).unwrap().id, "one");
    assert!(matches!(
        r.stream("three", ask("x", 8)).await,
        Err(LlmError::Invalid(_))
    ));
    assert!(fake.requests().is_empty());
}

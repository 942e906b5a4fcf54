//! `GET /api/search` through the real routers, the real SQLite store (and, for one scenario, the
//! DynamoDB and MongoDB stores) and local blobs: messages and
//! file passages found by their words and (with the real all-MiniLM-L6-v2) by meaning, each user
//! seeing only their own, deleted conversations and files gone from the results and from the log,
//! and bad queries refused.
//!
//! Memory (`CONVERSA_MEMORY=on`), on every store: a fact said only in one conversation reaches the
//! prompt of a turn in another, labelled as memory and numbered; the fake model (the real OpenAI
//! adapter talks to it) cites its number, and the answer's citation points at that conversation
//! and message. Memory off, another user's fact, and the turn's own conversation never join.
//!
//! The tests that need the embedding model (`scripts/fetch-embedder.sh`, or
//! `CONVERSA_EMBED_MODEL`) say SKIPPED on stderr and pass without it, except under CI (`CI` set) or
//! `CONVERSA_REQUIRE_SERVICES=1`, where a missing model is a failure.
#![cfg(all(feature = "test-support", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use conversa::domain::Owner;
use conversa::testing::{body_text, eventually, multipart, test_app, FakeOpenAi};
use conversa::App;
use serde_json::{json, Value};
use tower::ServiceExt;

const ALICE: (&str, &str) = ("authorization", "Bearer alice-token-0123456789");
const BOB: (&str, &str) = ("authorization", "Bearer bob-token-0123456789ab");
const TOKENS: &str = "alice:alice-token-0123456789,bob:bob-token-0123456789ab";

struct Harness {
    fake: FakeOpenAi,
    app: App,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new(extra: &[(&str, &str)]) -> Self {
        let fake = FakeOpenAi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![("CONVERSA_AUTH_TOKENS", TOKENS)];
        env.extend_from_slice(extra);
        let app = test_app(&fake, dir.path(), &env).await;
        Self {
            fake,
            app,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        who: (&str, &str),
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(who.0, who.1);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let r = conversa::api::router(self.app.state.clone())
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let text = body_text(r).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A turn of `who` (with earlier uploads); the reply of `send-simple`.
    async fn say(&self, who: (&str, &str), message: &str, files: &[&str]) -> Value {
        let body = json!({ "message": message, "file_ids": files }).to_string();
        let (s, v) = self
            .call(
                Method::POST,
                "/api/chat/send-simple",
                who,
                Some("application/json"),
                body.into_bytes(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    async fn upload(&self, who: (&str, &str), name: &str, mime: &str, bytes: &[u8]) -> String {
        let (ct, body) = multipart(&[("file", Some(name), Some(mime), bytes)]);
        let (s, v) = self
            .call(Method::POST, "/api/files", who, Some(&ct), body)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn search(&self, who: (&str, &str), q: &str) -> Vec<Value> {
        let uri = format!("/api/search?q={}", urlencode(q));
        let (s, v) = self.call(Method::GET, &uri, who, None, vec![]).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["items"].as_array().unwrap().clone()
    }

    /// The hits of `q` once one satisfies `found` (entries are written in the background).
    async fn search_until(
        &self,
        who: (&str, &str),
        q: &str,
        found: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        eventually(Duration::from_secs(60), q, || async {
            let items = self.search(who, q).await;
            items.iter().any(&found).then_some(items)
        })
        .await
    }

    /// Every text in `owner`'s search log.
    async fn logged(&self, owner: &str) -> Vec<String> {
        let log = self.app.search.clone().unwrap();
        log.read(&Owner::new(owner), None)
            .await
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.text)
            .collect()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_word_finds_the_message_that_holds_it_with_its_conversation_and_a_snippet() {
    let h = Harness::new(&[]).await;
    let turn = h
        .say(
            ALICE,
            "Please book the Zephyrine meeting room for Tuesday.",
            &[],
        )
        .await;
    h.say(ALICE, "Something else entirely about lunch.", &[])
        .await;
    let conversation = turn["conversation_id"].as_str().unwrap();
    let items = h
        .search_until(ALICE, "zephyrine", |i| i["message_id"].is_string())
        .await;
    let hit = &items[0];
    assert_eq!(hit["kind"], "message", "{items:?}");
    assert_eq!(hit["conversation_id"], conversation);
    assert!(hit["file_id"].is_null());
    assert!(
        hit["snippet"].as_str().unwrap().contains("Zephyrine"),
        "{hit}"
    );
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    let (_, c) = h
        .call(
            Method::GET,
            &format!("/api/conversations/{conversation}"),
            ALICE,
            None,
            vec![],
        )
        .await;
    assert_eq!(hit["title"], c["title"]);
    assert!(
        items.iter().all(|i| i["conversation_id"] == conversation),
        "only the conversation that says it: {items:?}"
    );
}

#[tokio::test]
async fn a_word_finds_a_file_passage_attached_or_not() {
    let h = Harness::new(&[]).await;
    let text = b"Warranty terms.\nThe warranty covers quixotic gearboxes for five years.\n";
    let file = h.upload(ALICE, "warranty.txt", "text/plain", text).await;
    let items = h
        .search_until(ALICE, "quixotic gearboxes", |i| {
            i["file_id"] == file.as_str()
        })
        .await;
    let hit = items
        .iter()
        .find(|i| i["file_id"] == file.as_str())
        .unwrap();
    assert_eq!(hit["kind"], "file");
    assert!(hit["conversation_id"].is_null(), "not attached yet: {hit}");
    assert!(hit["message_id"].is_null());
    assert_eq!(hit["title"], "warranty.txt");
    assert_eq!(
        hit["snippet"],
        "The warranty covers quixotic gearboxes for five years."
    );
    // Attached to a conversation, the passage links to it.
    let turn = h.say(ALICE, "What does this say?", &[&file]).await;
    let items = h.search(ALICE, "quixotic").await;
    let hit = items
        .iter()
        .find(|i| i["file_id"] == file.as_str())
        .unwrap();
    assert_eq!(hit["conversation_id"], turn["conversation_id"]);
}

#[tokio::test]
async fn another_users_messages_and_files_never_appear() {
    let h = Harness::new(&[]).await;
    h.say(ALICE, "Alice's marmalade recipe uses bitter oranges.", &[])
        .await;
    let file = h
        .upload(
            ALICE,
            "notes.txt",
            "text/plain",
            b"Marmalade notes from Alice.",
        )
        .await;
    let bob = h.say(BOB, "Bob prefers marmalade on toast.", &[]).await;
    h.search_until(ALICE, "marmalade", |i| i["file_id"] == file.as_str())
        .await;
    let bobs = h
        .search_until(BOB, "marmalade", |i| i["message_id"].is_string())
        .await;
    for i in &bobs {
        assert_eq!(i["conversation_id"], bob["conversation_id"], "{bobs:?}");
        assert!(!i["snippet"].as_str().unwrap().contains("Alice"), "{i}");
    }
    let alices = h.search(ALICE, "marmalade").await;
    assert!(alices
        .iter()
        .all(|i| !i["snippet"].as_str().unwrap().contains("Bob")));
    // Without credentials: nothing, and no hint of why.
    let (s, _) = h
        .call(
            Method::GET,
            "/api/search?q=marmalade",
            ("x-none", "1"),
            None,
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deleting_a_conversation_removes_its_messages_and_files_from_search_and_the_log() {
    finds_then_forgets(&Harness::new(&[]).await).await;
}

/// Search on DynamoDB (its own table in moto): the same scenario as on SQLite.
#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn search_finds_then_forgets_on_dynamodb() {
    common::on_dynamodb("search", |env| async move {
        finds_then_forgets(&Harness::new(&common::pairs(&env)).await).await;
    })
    .await;
}

/// Search on MongoDB (its own database on the MongoDB-wire server): the same scenario as on
/// SQLite.
#[cfg(feature = "mongodb")]
#[tokio::test]
async fn search_finds_then_forgets_on_mongodb() {
    common::on_mongodb("search", |env| async move {
        finds_then_forgets(&Harness::new(&common::pairs(&env)).await).await;
    })
    .await;
}

/// A file passage, a question and its answer are found by their words; once the conversation is
/// deleted, neither search nor the search log holds its text, and another conversation still
/// answers.
async fn finds_then_forgets(h: &Harness) {
    let file = h
        .upload(
            ALICE,
            "plan.txt",
            "text/plain",
            b"The Obsidian Lantern project launches in spring.",
        )
        .await;
    let turn = h
        .say(ALICE, "Summarise the obsidian lantern plan.", &[&file])
        .await;
    let kept = h.say(ALICE, "A separate obsidian question.", &[]).await;
    let conversation = turn["conversation_id"].as_str().unwrap();
    h.search_until(ALICE, "obsidian lantern", |i| i["file_id"] == file.as_str())
        .await;
    h.search_until(ALICE, "obsidian lantern", |i| {
        i["kind"] == "message" && i["conversation_id"] == conversation
    })
    .await;
    // The answer is indexed too (the model echoes the question).
    h.search_until(ALICE, "obsidian lantern", |i| {
        i["message_id"] == turn["message"]["id"]
    })
    .await;
    assert!(h
        .logged("alice")
        .await
        .iter()
        .any(|t| t.contains("Lantern")));

    let (s, _) = h
        .call(
            Method::DELETE,
            &format!("/api/conversations/{conversation}"),
            ALICE,
            None,
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let items = h.search(ALICE, "obsidian lantern").await;
    assert!(
        items
            .iter()
            .all(|i| i["conversation_id"] == kept["conversation_id"]),
        "{items:?}"
    );
    assert!(!items.is_empty(), "the other conversation is still found");
    let logged = h.logged("alice").await;
    assert!(
        logged.iter().all(|t| !t.to_lowercase().contains("lantern")),
        "deleted text left in the search log: {logged:?}"
    );
}

#[tokio::test]
async fn a_missing_empty_or_overlong_query_and_a_bad_limit_are_refused() {
    let h = Harness::new(&[]).await;
    let long = "a".repeat(1001);
    for uri in [
        "/api/search".to_owned(),
        "/api/search?q=".to_owned(),
        "/api/search?q=%20%20".to_owned(),
        format!("/api/search?q={long}"),
        "/api/search?q=x&limit=0".to_owned(),
        "/api/search?q=x&limit=51".to_owned(),
        "/api/search?q=x&limit=many".to_owned(),
    ] {
        let (s, v) = h.call(Method::GET, &uri, ALICE, None, vec![]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{uri}: {v}");
    }
    let longest = "a".repeat(1000);
    for uri in [
        format!("/api/search?q={longest}"),
        "/api/search?q=x&limit=50".to_owned(),
        "/api/search?q=x&limit=1".to_owned(),
    ] {
        let (s, v) = h.call(Method::GET, &uri, ALICE, None, vec![]).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
        assert_eq!(v["items"], json!([]));
    }
}

#[tokio::test]
async fn limit_caps_the_hits() {
    let h = Harness::new(&[]).await;
    for i in 0..4 {
        h.say(ALICE, &format!("Tangerine count number {i}."), &[])
            .await;
    }
    // Four questions and four echoed answers.
    eventually(
        Duration::from_secs(60),
        "eight tangerine entries",
        || async { (h.search(ALICE, "tangerine").await.len() == 8).then_some(()) },
    )
    .await;
    let (s, v) = h
        .call(
            Method::GET,
            "/api/search?q=tangerine&limit=3",
            ALICE,
            None,
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
}

// ---- By meaning, with the real model ----

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CONVERSA_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(conversa::embed::DEFAULT_MODEL_DIR)
        });
    if dir.join("model.safetensors").is_file() && cfg!(feature = "embedder") {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some()
        || std::env::var("CONVERSA_REQUIRE_SERVICES").as_deref() == Ok("1")
    {
        panic!(
            "{} is missing (or the embedder feature is off): CI must run {}",
            dir.display(),
            conversa::embed::FETCH_SCRIPT
        );
    }
    eprintln!(
        "SKIPPED: {} is missing; run {} to test search by meaning",
        dir.display(),
        conversa::embed::FETCH_SCRIPT
    );
    None
}

/// Office-manual sentences; the one about dogs shares no word with [`PARAPHRASE`].
const NOTES: [&str; 5] = [
    "Quarterly logistics review: shipping routes, warehouse capacity and carrier contracts were renegotiated.",
    "Staff may bring a dog to the office on Fridays, provided it stays out of meeting rooms.",
    "The cafeteria now serves vegetarian dishes every day and closes at three in the afternoon.",
    "Invoices are paid within thirty days of receipt unless the contract says otherwise.",
    "The parking garage will be repainted during the first week of March.",
];
const PARAPHRASE: &str = "Are pets allowed at work?";

#[tokio::test]
async fn a_paraphrase_finds_the_message_and_the_file_passage_that_share_no_word_with_it() {
    let Some(dir) = model_dir() else { return };
    let dir = dir.display().to_string();
    let h = Harness::new(&[
        ("CONVERSA_EMBEDDER", "minilm"),
        ("CONVERSA_EMBED_MODEL", dir.as_str()),
    ])
    .await;
    assert!(h.app.embedder.is_some());
    let mut dog = None;
    for note in NOTES {
        let turn = h.say(ALICE, note, &[]).await;
        if note.contains("dog") {
            dog = Some(turn["conversation_id"].clone());
        }
    }
    let pages: Vec<&str> = NOTES.iter().rev().copied().collect();
    let pdf = conversa::testing::pdf_with_pages(&pages);
    let file = h.upload(ALICE, "manual.pdf", "application/pdf", &pdf).await;
    // Words alone find nothing: no word of the question is in any note.
    assert!(conversa::service::retrieval::terms(PARAPHRASE)
        .iter()
        .all(|t| NOTES.iter().all(|n| !n.to_lowercase().contains(t.as_str()))));

    let items = h
        .search_until(ALICE, PARAPHRASE, |i| i["file_id"] == file.as_str())
        .await;
    let first_message = items.iter().find(|i| i["kind"] == "message").unwrap();
    assert_eq!(first_message["conversation_id"], dog.unwrap(), "{items:?}");
    assert!(first_message["snippet"].as_str().unwrap().contains("dog"));
    let passage = items.iter().find(|i| i["kind"] == "file").unwrap();
    assert_eq!(passage["file_id"], file.as_str());
    assert!(
        passage["snippet"].as_str().unwrap().contains("dog"),
        "the page about dogs is the best passage: {items:?}"
    );
    // Bob has nothing, whatever it means.
    assert_eq!(h.search(BOB, PARAPHRASE).await, Vec::<Value>::new());
}

// ---- Memory ----

/// The canary: said only in one conversation of Alice's.
const CANARY: &str = "4417";
const FACT: &str = "Please remember this: the gate code is 4417.";

/// What the model received for the last chat turn, every message's text joined.
fn last_prompt(h: &Harness) -> String {
    conversa::testing::message_texts(&h.fake.chat_requests().pop().unwrap()).join("\n")
}

/// `who` says `fact` in a conversation of its own, and waits until search finds it; the reply.
async fn tell(h: &Harness, who: (&str, &str), fact: &str) -> Value {
    let told = h.say(who, fact, &[]).await;
    let conversation = told["conversation_id"].clone();
    h.search_until(who, "gate code", |i| {
        i["kind"] == "message" && i["conversation_id"] == conversation
    })
    .await;
    told
}

/// Alice says the fact in conversation A; Bob says his own code. In a new conversation, Alice's question
/// gets A's message as a labelled passage of memory, the model cites it, and the citation points
/// at A and that message (in `done`'s stored answer and through the messages API). Bob's code never
/// joins Alice's prompt, and a user with no such fact gets no memory of theirs.
async fn memory_recalls_another_conversation(h: &Harness) {
    let told = tell(h, ALICE, FACT).await;
    let a = told["conversation_id"].as_str().unwrap().to_owned();
    let a_messages = [
        told["message"]["parent_id"].as_str().unwrap().to_owned(),
        told["message"]["id"].as_str().unwrap().to_owned(),
    ];
    let a_title = told["title"].as_str().unwrap().to_owned();
    // Bob's gate code, in his own conversation: it matches Alice's question as well as hers does.
    tell(h, BOB, "Please remember this: the gate code is 9902.").await;

    let asked = h
        .say(
            ALICE,
            &format!("What is the gate code? [[cite:{CANARY}]]"),
            &[],
        )
        .await;
    let b = asked["conversation_id"].as_str().unwrap();
    assert_ne!(b, a);
    let prompt = last_prompt(h);
    assert!(prompt.contains("the gate code is 4417"), "{prompt}");
    assert!(
        prompt.contains(&format!("Memory, from your conversation “{a_title}”")),
        "labelled as memory, with its conversation: {prompt}"
    );
    assert!(
        prompt.contains("Passages labelled as memory come from the user's other conversations"),
        "the model is told what memory is: {prompt}"
    );
    assert!(
        !prompt.contains("9902"),
        "Bob's conversation never joins Alice's prompt: {prompt}"
    );
    let answer = asked["message"]["content"].as_str().unwrap();
    let citations = asked["message"]["citations"].as_array().unwrap().clone();
    assert_eq!(citations.len(), 1, "{answer}: {citations:?}");
    let c = &citations[0];
    assert_eq!(answer, format!("{CANARY} is stated there [{}].", c["n"]));
    assert!(c["file_id"].is_null() && c["filename"].is_null(), "{c}");
    assert!(c["page"].is_null() && c["sheet"].is_null(), "{c}");
    assert!(c["snippet"].as_str().unwrap().contains(CANARY), "{c}");
    assert_eq!(c["memory"]["conversation_id"], a.as_str());
    assert_eq!(c["memory"]["title"], a_title.as_str());
    let message = c["memory"]["message_id"].as_str().unwrap();
    assert!(a_messages.iter().any(|m| m == message), "{c}");

    // The stored answer keeps the citation.
    let (s, v) = h
        .call(
            Method::GET,
            &format!("/api/conversations/{b}/messages"),
            ALICE,
            None,
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let stored = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == asked["message"]["id"])
        .unwrap()
        .clone();
    assert_eq!(stored["citations"], asked["message"]["citations"]);

    // A file attached to another conversation is memory too: the citation names the file and
    // that conversation, with no message.
    let file = h
        .upload(
            ALICE,
            "boiler.txt",
            "text/plain",
            b"Household notes. The boiler service is booked with Hendrik for the fourteenth.",
        )
        .await;
    let d = h.say(ALICE, "Keep this note for later.", &[&file]).await;
    let d_id = d["conversation_id"].clone();
    h.search_until(ALICE, "boiler service", |i| {
        i["file_id"] == file.as_str() && i["conversation_id"] == d_id
    })
    .await;
    let asked = h
        .say(
            ALICE,
            "When is the boiler service booked? [[cite:Hendrik]]",
            &[],
        )
        .await;
    let prompt = last_prompt(h);
    assert!(
        prompt.contains("Memory, from the file boiler.txt"),
        "{prompt}"
    );
    let c = &asked["message"]["citations"][0];
    assert_eq!(c["file_id"], file.as_str(), "{asked}");
    assert_eq!(c["filename"], "boiler.txt");
    assert!(c["page"].is_null());
    assert!(c["snippet"].as_str().unwrap().contains("Hendrik"));
    assert_eq!(c["memory"]["conversation_id"], d_id);
    assert!(c["memory"]["message_id"].is_null());
    assert_eq!(c["memory"]["title"], d["title"]);

    // Carol has no conversation at all: nothing of Alice's (or Bob's) joins hers.
    let carol = h
        .say(
            CAROL,
            &format!("What is the gate code? [[cite:{CANARY}]]"),
            &[],
        )
        .await;
    let prompt = last_prompt(h);
    assert!(!prompt.contains("gate code is"), "{prompt}");
    assert!(!prompt.contains("Memory, from"), "{prompt}");
    assert_eq!(
        carol["message"]["content"],
        format!("No passage holds {CANARY}.")
    );
    assert_eq!(carol["message"]["citations"], json!([]));
}

const CAROL: (&str, &str) = ("authorization", "Bearer carol-token-0123456789a");
const MEMORY_ON: (&str, &str) = ("CONVERSA_MEMORY", "on");

/// Alice, Bob and Carol, with memory on (and `extra`).
async fn with_memory(extra: &[(&str, &str)]) -> Harness {
    let tokens = format!("{TOKENS},carol:carol-token-0123456789a");
    let mut env = vec![MEMORY_ON, ("CONVERSA_AUTH_TOKENS", tokens.as_str())];
    env.extend_from_slice(extra);
    Harness::new(&env).await
}

#[tokio::test]
async fn memory_brings_a_fact_of_another_conversation_labelled_and_cited() {
    memory_recalls_another_conversation(&with_memory(&[]).await).await;
}

/// Memory on DynamoDB (its own table in moto).
#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn memory_on_dynamodb() {
    common::on_dynamodb("memory", |env| async move {
        memory_recalls_another_conversation(&with_memory(&common::pairs(&env)).await).await;
    })
    .await;
}

/// Memory on MongoDB (its own database on the MongoDB-wire server).
#[cfg(feature = "mongodb")]
#[tokio::test]
async fn memory_on_mongodb() {
    common::on_mongodb("memory", |env| async move {
        memory_recalls_another_conversation(&with_memory(&common::pairs(&env)).await).await;
    })
    .await;
}

#[tokio::test]
async fn with_memory_off_another_conversation_never_joins() {
    let h = Harness::new(&[]).await;
    tell(&h, ALICE, FACT).await;
    let asked = h
        .say(
            ALICE,
            &format!("What is the gate code? [[cite:{CANARY}]]"),
            &[],
        )
        .await;
    let prompt = last_prompt(&h);
    assert!(!prompt.contains("gate code is 4417"), "{prompt}");
    assert!(!prompt.contains("Memory, from"), "{prompt}");
    assert_eq!(
        asked["message"]["content"],
        format!("No passage holds {CANARY}.")
    );
}

#[tokio::test]
async fn the_turns_own_conversation_is_not_memory() {
    let h = with_memory(&[]).await;
    let told = tell(&h, ALICE, FACT).await;
    let a = told["conversation_id"].as_str().unwrap();
    // A follow-up in the same conversation: the fact is its history, not memory.
    let body = json!({
        "message": format!("What is the gate code? [[cite:{CANARY}]]"),
        "conversation_id": a,
    })
    .to_string();
    let (s, v) = h
        .call(
            Method::POST,
            "/api/chat/send-simple",
            ALICE,
            Some("application/json"),
            body.into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let prompt = last_prompt(&h);
    assert!(prompt.contains(FACT), "the history carries it: {prompt}");
    assert!(!prompt.contains("Memory, from"), "{prompt}");
    assert_eq!(
        v["message"]["content"],
        format!("No passage holds {CANARY}.")
    );
    assert_eq!(v["message"]["citations"], json!([]));
}

#[tokio::test]
async fn a_question_of_100000_characters_still_gets_its_memory() {
    let h = with_memory(&[("CONVERSA_CONTEXT_TOKENS", "128000")]).await;
    let told = tell(&h, ALICE, FACT).await;
    let mut question = format!("What is the gate code? [[cite:{CANARY}]] ");
    while question.chars().count() < 100_000 {
        question.push_str("lorem ipsum ");
    }
    let question: String = question.chars().take(100_000).collect();
    let asked = h.say(ALICE, &question, &[]).await;
    let prompt = last_prompt(&h);
    assert!(
        prompt.contains("the gate code is 4417"),
        "memory joined: {}",
        &prompt[..prompt.len().min(3000)]
    );
    let c = &asked["message"]["citations"][0];
    assert_eq!(c["memory"]["conversation_id"], told["conversation_id"]);
}

#[tokio::test]
async fn memory_by_meaning_recalls_a_note_that_shares_no_word_with_the_question() {
    let Some(dir) = model_dir() else { return };
    let dir = dir.display().to_string();
    let h = with_memory(&[
        ("CONVERSA_EMBEDDER", "minilm"),
        ("CONVERSA_EMBED_MODEL", dir.as_str()),
    ])
    .await;
    let mut dog = None;
    for note in NOTES {
        let turn = h.say(ALICE, note, &[]).await;
        if note.contains("dog") {
            dog = Some(turn["conversation_id"].clone());
        }
    }
    let dog = dog.unwrap();
    h.search_until(ALICE, PARAPHRASE, |i| i["conversation_id"] == dog)
        .await;
    h.say(ALICE, PARAPHRASE, &[]).await;
    let prompt = last_prompt(&h);
    assert!(
        prompt.contains("Staff may bring a dog to the office on Fridays"),
        "{prompt}"
    );
    assert!(
        prompt.contains("Memory, from your conversation"),
        "{prompt}"
    );
    assert!(
        !prompt.contains("parking garage will be repainted"),
        "unrelated notes stay below the floor: {prompt}"
    );
}

/// A long message costs the model its opening only (its first `MESSAGE_PIECES` word pieces), yet
/// is found by meaning from that opening and by any of its words, however far in.
#[tokio::test]
async fn a_long_message_is_found_by_meaning_from_its_opening_and_by_words_from_anywhere() {
    let Some(dir) = model_dir() else { return };
    let dir = dir.display().to_string();
    let h = Harness::new(&[
        ("CONVERSA_EMBEDDER", "minilm"),
        ("CONVERSA_EMBED_MODEL", dir.as_str()),
    ])
    .await;
    for note in NOTES.iter().filter(|n| !n.contains("dog")) {
        h.say(ALICE, note, &[]).await;
    }
    // The dog sentence, then far more than the model reads of unrelated text, then a rare word.
    let filler = "Minutes of the facilities committee, item by item, with nothing decided today. "
        .repeat(20);
    let long = format!(
        "{} {filler} Signed off by the quartermaster of Zanzibarite hall.",
        NOTES[1]
    );
    assert!(long.chars().count() < 2_000, "within the entry's bound");
    let pieces = conversa::service::search::MESSAGE_PIECES;
    assert!(
        long.split_whitespace().count() > 2 * pieces,
        "the rare word is beyond what the model reads"
    );
    let turn = h.say(ALICE, &long, &[]).await;
    let conversation = turn["conversation_id"].clone();

    let by_words = h
        .search_until(ALICE, "zanzibarite", |i| {
            i["conversation_id"] == conversation
        })
        .await;
    assert_eq!(by_words[0]["conversation_id"], conversation, "{by_words:?}");
    assert!(by_words[0]["snippet"]
        .as_str()
        .unwrap()
        .contains("Zanzibarite"));

    // By meaning: the question shares no word with the message, whose vector is of its opening.
    let by_meaning = h
        .search_until(ALICE, PARAPHRASE, |i| i["conversation_id"] == conversation)
        .await;
    let first = by_meaning.iter().find(|i| i["kind"] == "message").unwrap();
    assert_eq!(first["conversation_id"], conversation, "{by_meaning:?}");
}

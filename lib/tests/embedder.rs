//! The in-process embedding model with the real all-MiniLM-L6-v2 weights: its vectors against
//! sentence-transformers' published example, bounded inputs, stored vectors (made, reused, damaged
//! and made again), and a question that shares no word with its answer, found by meaning where
//! words alone miss it — in the ranking and through a whole chat turn.
//!
//! Needs the model (`scripts/fetch-embedder.sh`, or `CONVERSA_EMBED_MODEL`). Without it every test
//! says SKIPPED on stderr and passes, except under CI (`CI` set) or `CONVERSA_REQUIRE_SERVICES=1`,
//! where a missing model is a failure.
#![cfg(all(feature = "embedder", feature = "test-support", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use conversa::blobs::{keys, BlobStore};
use conversa::domain::{FileId, Owner};
use conversa::embed::minilm::{MiniLm, MAX_TOKENS};
use conversa::embed::{cosine, Embedder, DEFAULT_MODEL_DIR, FETCH_SCRIPT};
use conversa::service::retrieval::{self, Dense, Doc};
use conversa::service::vectors::PassageVectors;
use conversa::testing::{body_text, eventually, last_user_text, parse_sse, FakeOpenAi};
use serde_json::{json, Value};
use tower::ServiceExt;

fn model_dir() -> PathBuf {
    std::env::var_os("CONVERSA_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(DEFAULT_MODEL_DIR)
        })
}

/// The model, loaded once for all tests; `None` (with a loud note) when it is absent.
fn model() -> Option<Arc<MiniLm>> {
    static MODEL: OnceLock<Option<Arc<MiniLm>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir();
            if !dir.join("model.safetensors").is_file() {
                if std::env::var_os("CI").is_some()
                    || std::env::var("CONVERSA_REQUIRE_SERVICES").as_deref() == Ok("1")
                {
                    panic!("{} is missing: CI must run {FETCH_SCRIPT}", dir.display());
                }
                eprintln!(
                    "SKIPPED: {} is missing; run {FETCH_SCRIPT} to test the embedding model",
                    dir.display()
                );
                return None;
            }
            Some(Arc::new(MiniLm::load(&dir).unwrap()))
        })
        .clone()
}

/// The office manual of the tests: fourteen pages, one topic each; page 7 allows dogs.
const PAGES: [&str; 14] = [
    "Quarterly logistics review: shipping routes, warehouse capacity and carrier contracts were renegotiated in the spring.",
    "The marketing team ran three campaigns; the autumn launch reached the most customers in the northern region.",
    "Headcount grew by twelve people, mostly engineers hired for the payments platform.",
    "Our supplier audit found two compliance gaps in packaging labels, both fixed by June.",
    "The board approved the budget for next year with a modest increase for research.",
    "Customer churn fell after the pricing change; retention is now the highest in five years.",
    "Staff may bring a dog to the office on Fridays, provided it stays out of meeting rooms.",
    "The cafeteria now serves vegetarian dishes every day and closes at three in the afternoon.",
    "Invoices are paid within thirty days of receipt unless the contract says otherwise.",
    "Survey feedback praised the new onboarding guide but asked for more video tutorials.",
    "The parking garage will be repainted during the first week of March.",
    "Printer toner is ordered through the facilities portal by each floor's coordinator.",
    "Travel expenses above five hundred euros need a manager's approval before booking.",
    "The annual summer party takes place by the lake in July, with buses from the station.",
];
const PARAPHRASE: &str = "Are pets allowed at work?";

fn manual_text() -> String {
    PAGES
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[page {}]\n{p}\n", i + 1))
        .collect()
}

/// The Lambda functions' embedder: loads nothing until first used, then is the same model (same
/// id, so vectors stored by the extraction container are reused; same vectors); configured but
/// absent, it stops the start naming the variable and the fetch script.
#[test]
fn the_lazy_model_loads_on_first_use_and_is_the_same_model() {
    use conversa::embed::minilm::LazyMiniLm;
    use conversa::embed::{load, EmbedSettings, EmbedderKind};
    let Some(m) = model() else { return };
    let lazy = LazyMiniLm::new(&model_dir()).unwrap();
    assert!(!lazy.loaded(), "nothing is loaded at start");
    assert_eq!(lazy.dim(), 384, "the dimension comes from config.json");
    assert!(!lazy.loaded());
    let text = "Staff may bring a dog to the office on Fridays.";
    let v = lazy.embed(&[text]).unwrap();
    assert!(lazy.loaded(), "the first embedding loads the model");
    assert_eq!(lazy.id(), m.id());
    assert!(cosine(&v[0], &m.embed(&[text]).unwrap()[0]) > 0.9999);
    // Bounded as the model bounds it: 4 pieces of the sentence are not all of it.
    let short = lazy.embed_prefix(&[text], 4).unwrap();
    assert!(cosine(&short[0], &m.embed_prefix(&[text], 4).unwrap()[0]) > 0.9999);
    assert!(cosine(&short[0], &v[0]) < 0.99);

    let absent = EmbedSettings {
        kind: EmbedderKind::MiniLm,
        model_dir: Some(PathBuf::from("/nonexistent/all-MiniLM-L6-v2")),
        lazy: true,
        function: None,
    };
    let Err(e) = load(&absent) else {
        panic!("an absent model stops the start")
    };
    let msg = e.to_string();
    assert!(msg.contains("CONVERSA_EMBED_MODEL"), "{msg}");
    assert!(msg.contains(FETCH_SCRIPT), "{msg}");
    assert!(msg.contains("/nonexistent/all-MiniLM-L6-v2"), "{msg}");
}

#[test]
fn vectors_match_the_published_example() {
    let Some(m) = model() else { return };
    assert_eq!(m.dim(), 384);
    assert!(
        m.id().starts_with("bert/") && m.id().ends_with("/mean-l2/p256"),
        "{}",
        m.id()
    );
    assert_eq!(
        m.token_ids("The weather is lovely today.").unwrap(),
        [101, 1996, 4633, 2003, 8403, 2651, 1012, 102]
    );
    let v = m
        .embed(&[
            "The weather is lovely today.",
            "It's so sunny outside!",
            "He drove to the stadium.",
        ])
        .unwrap();
    for x in &v {
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, not {norm}");
    }
    let close = |a: f32, b: f32| (a - b).abs() < 1e-3;
    assert!(
        close(cosine(&v[0], &v[1]), 0.6660),
        "{}",
        cosine(&v[0], &v[1])
    );
    assert!(
        close(cosine(&v[0], &v[2]), 0.1046),
        "{}",
        cosine(&v[0], &v[2])
    );
    assert!(
        close(cosine(&v[1], &v[2]), 0.1411),
        "{}",
        cosine(&v[1], &v[2])
    );
    let first = [
        0.019196, 0.120085, 0.159598, 0.067066, 0.050075, -0.025919, 0.056468, -0.092858,
    ];
    for (a, b) in v[0].iter().zip(first) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn a_text_gets_the_same_vector_alone_and_in_a_padded_batch() {
    let Some(m) = model() else { return };
    let alone = m.embed(&["Short one."]).unwrap();
    let long =
        "A much longer sentence that makes the batch pad the short one with many positions. "
            .repeat(3);
    let batch = m.embed(&[&long, "Short one.", "Another"]).unwrap();
    assert_eq!(batch.len(), 3);
    for (a, b) in alone[0].iter().zip(&batch[1]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn empty_and_whitespace_texts_get_a_vector_and_long_ones_a_bounded_prefix() {
    let Some(m) = model() else { return };
    let v = m.embed(&["", "   \n\t "]).unwrap();
    assert_eq!(v.len(), 2);
    assert!(v.iter().flatten().all(|x| x.is_finite()));
    for (a, b) in v[0].iter().zip(&v[1]) {
        assert!((a - b).abs() < 1e-6, "whitespace is no text");
    }
    assert!(m.embed(&[]).unwrap().is_empty());

    // A 100,000-character question costs what its beginning does, and means what it does.
    let sentence = "The quarterly report covers revenue, costs and the outlook for next year. ";
    let huge: String = sentence.repeat(100_000 / sentence.len() + 1);
    assert!(huge.len() >= 100_000);
    assert_eq!(m.token_ids(&huge).unwrap().len(), MAX_TOKENS);
    let prefix: String = sentence.repeat(30);
    assert!(
        m.token_ids(&prefix).unwrap().len() == MAX_TOKENS,
        "the prefix fills the window"
    );
    let (a, b) = (m.embed(&[&huge]).unwrap(), m.embed(&[&prefix]).unwrap());
    for (x, y) in a[0].iter().zip(&b[0]) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[test]
fn a_paraphrase_that_words_miss_is_found_by_meaning() {
    let Some(m) = model() else { return };
    let chunks = retrieval::chunk(&[Doc {
        name: "manual.pdf".into(),
        text: manual_text(),
    }]);
    assert_eq!(chunks.len(), 14);
    let dog = &chunks[6];
    assert_eq!(dog.label, "page 7");
    // No word of the question is in the page.
    let page_terms = retrieval::terms(&dog.text);
    assert!(retrieval::terms(PARAPHRASE)
        .iter()
        .all(|t| !page_terms.contains(t)));
    assert!(retrieval::bm25(&chunks, PARAPHRASE)
        .iter()
        .all(|s| *s == 0.0));
    // Room for four pages.
    let budget: u64 = chunks.iter().map(|c| c.tokens).max().unwrap() * 4;
    let words = retrieval::select(&chunks, PARAPHRASE, budget);
    assert!(
        !words.iter().any(|c| c.label == "page 7"),
        "words alone miss it"
    );

    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let dense = Dense {
        query: m.embed(&[PARAPHRASE]).unwrap().remove(0),
        docs: vec![Some(m.embed(&texts).unwrap())],
    };
    let cosines = dense.scores(&chunks);
    let best = (0..chunks.len())
        .max_by(|&a, &b| cosines[a].unwrap().total_cmp(&cosines[b].unwrap()))
        .unwrap();
    assert_eq!(chunks[best].label, "page 7");
    let hybrid = retrieval::select_hybrid(&chunks, PARAPHRASE, Some(&cosines), budget);
    assert!(
        hybrid.iter().any(|c| c.label == "page 7"),
        "found by meaning"
    );
    assert!(hybrid.iter().map(|c| c.tokens).sum::<u64>() <= budget);
}

fn vectors_in(dir: &std::path::Path) -> (Arc<PassageVectors>, Arc<dyn BlobStore>) {
    let m = model().unwrap();
    let blobs: Arc<dyn BlobStore> =
        Arc::new(conversa::blobs::local::LocalBlobs::new(dir.join("blobs")).unwrap());
    (PassageVectors::new(blobs.clone(), m), blobs)
}

#[tokio::test]
async fn stored_vectors_are_reused_and_damaged_ones_made_again() {
    if model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (vectors, blobs) = vectors_in(dir.path());
    let owner = Owner::local();
    let id = FileId::generate();
    let text = manual_text();
    assert_eq!(vectors.compute(&owner, &id, &text).await.unwrap(), 14);
    let stored = vectors.stored(&owner, &id, &text).await.unwrap().unwrap();
    assert_eq!(stored.len(), 14);
    let fresh = vectors.embed(vec![PAGES[6].to_owned()]).await.unwrap();
    assert!(
        cosine(&stored[6], &fresh[0]) > 0.9999,
        "the stored vector is the page's"
    );

    // A flipped byte: not used, made again in the background, then used.
    let key = keys::vectors(&owner, &id);
    let mut bytes = blobs.get(&key).await.unwrap().unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    blobs
        .put(&key, bytes.clone().into(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(vectors.stored(&owner, &id, &text).await.unwrap(), None);
    let again = eventually(Duration::from_secs(60), "the vectors made again", || {
        let (vectors, owner, id, text) = (vectors.clone(), owner.clone(), id.clone(), text.clone());
        async move { vectors.stored(&owner, &id, &text).await.unwrap() }
    })
    .await;
    assert_eq!(again, stored);
    assert_ne!(blobs.get(&key).await.unwrap().unwrap().to_vec(), bytes);

    // Vectors of another text (the file's text changed) are not used either.
    let other = format!("{text}\n[page 15]\nA new page.\n");
    assert_eq!(vectors.stored(&owner, &id, &other).await.unwrap(), None);
}

#[tokio::test]
async fn a_file_with_no_text_has_no_vectors_and_no_error() {
    if model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (vectors, blobs) = vectors_in(dir.path());
    let owner = Owner::local();
    let id = FileId::generate();
    assert_eq!(vectors.compute(&owner, &id, "  \n ").await.unwrap(), 0);
    assert_eq!(blobs.get(&keys::vectors(&owner, &id)).await.unwrap(), None);
    assert_eq!(
        vectors.stored(&owner, &id, "  \n ").await.unwrap(),
        Some(vec![])
    );
}

/// Uploads the manual as a 14-page PDF, waits for its vectors when an embedder runs, asks the
/// paraphrase, and gives the text of the request the model received.
async fn ask_about_the_manual(embedder: bool) -> String {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir().display().to_string();
    let mut env = vec![
        // A small window: the manual must be cut to a few pages.
        ("CONVERSA_CONTEXT_TOKENS", "560"),
        ("CONVERSA_MAX_ANSWER_TOKENS", "100"),
    ];
    if embedder {
        env.push(("CONVERSA_EMBEDDER", "minilm"));
        env.push(("CONVERSA_EMBED_MODEL", model.as_str()));
    }
    let app = conversa::testing::test_app(&fake, dir.path(), &env).await;
    assert_eq!(app.embedder.is_some(), embedder);
    let owner = Owner::local();
    let pdf = conversa::testing::pdf_with_pages(&PAGES);
    let file = app
        .state
        .files
        .upload(
            &owner,
            conversa::service::files::Upload {
                filename: "manual.pdf".into(),
                content_type: Some("application/pdf".into()),
                bytes: pdf.into(),
            },
            None,
        )
        .await
        .unwrap()
        .file;
    if embedder {
        let blobs = app.blobs.clone();
        let key = keys::vectors(&owner, &file.id);
        eventually(Duration::from_secs(60), "the manual's vectors", || {
            let (blobs, key) = (blobs.clone(), key.clone());
            async move { blobs.get(&key).await.unwrap() }
        })
        .await;
    }
    let body = json!({ "message": PARAPHRASE, "file_ids": [file.id] }).to_string();
    let response = conversa::api::router(app.state.clone())
        .oneshot(
            Request::post("/api/chat/send")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = parse_sse(&body_text(response).await);
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    let request: Value = fake.chat_requests().pop().unwrap();
    assert!(last_user_text(&request).ends_with(PARAPHRASE));
    request.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_turn_finds_the_page_by_meaning() {
    if model().is_none() {
        return;
    }
    let words_only = ask_about_the_manual(false).await;
    assert!(
        words_only.contains("manual.pdf is too long"),
        "the file was cut"
    );
    assert!(
        !words_only.contains("bring a dog"),
        "words alone miss page 7"
    );
    let hybrid = ask_about_the_manual(true).await;
    assert!(
        hybrid.contains("manual.pdf is too long"),
        "the file was cut"
    );
    assert!(hybrid.contains("bring a dog"), "page 7 is sent");
    assert!(hybrid.contains("page 7"));
    assert!(!words_only.contains("page 7"));
}

#[tokio::test]
async fn a_missing_model_stops_the_start_naming_the_variable_and_the_script() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = conversa::testing::test_config(
        &fake.base_url,
        dir.path(),
        &[
            ("CONVERSA_EMBEDDER", "minilm"),
            ("CONVERSA_EMBED_MODEL", "/nonexistent/all-MiniLM-L6-v2"),
        ],
    );
    let Err(e) = conversa::App::from_config(config).await else {
        panic!("a missing embedding model must stop the start");
    };
    let msg = e.to_string();
    assert!(msg.contains("CONVERSA_EMBED_MODEL"), "{msg}");
    assert!(msg.contains(FETCH_SCRIPT), "{msg}");
    assert!(msg.contains("/nonexistent/all-MiniLM-L6-v2"), "{msg}");
}

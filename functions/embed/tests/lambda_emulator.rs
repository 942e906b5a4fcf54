//! The embedding function as Lambda runs it: the real `embed` binary polling cargo-lambda's
//! emulated Runtime API, called by the client the other functions use (`CONVERSA_EMBEDDER=lambda`)
//! through the emulated Invoke API. Its vectors and model id are the in-process model's.
//!
//! Needs `cargo lambda` on PATH (`bash scripts/tools.sh install`) and the model
//! (`scripts/fetch-embedder.sh`, or `CONVERSA_EMBED_MODEL`). Without them the test says so and
//! passes, unless `CONVERSA_REQUIRE_SERVICES=1` (CI), where a missing tool or model fails it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::path::PathBuf;
use std::sync::Arc;

use conversa::embed::minilm::MiniLm;
use conversa::embed::remote::TEXTS_PER_INVOKE;
use conversa::embed::{cosine, EmbedSettings, Embedder, EmbedderKind, DEFAULT_MODEL_DIR};
use conversa::testing::{cargo_lambda_available, LambdaEmulator};

fn required() -> bool {
    std::env::var("CONVERSA_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn model_dir() -> PathBuf {
    std::env::var_os("CONVERSA_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(DEFAULT_MODEL_DIR)
        })
}

/// The client of `function` as a function built with `embed-lambda` makes it from its settings.
async fn client(function: &str) -> Arc<dyn Embedder> {
    let settings = EmbedSettings {
        kind: EmbedderKind::Lambda,
        model_dir: None,
        lazy: true,
        function: Some(function.into()),
    };
    tokio::task::spawn_blocking(move || conversa::embed::load(&settings))
        .await
        .unwrap()
        .unwrap()
        .expect("an embedder")
}

/// Sentences of different lengths, so the function batches and pads them as it would real ones.
fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "Note {i}: the warehouse in region {} ships {} parcels a day{}",
                i % 7,
                i * 13,
                " and checks every label twice".repeat(i % 4)
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_embed_through_the_embedding_function_as_the_model_would() {
    let dir = model_dir();
    let missing = if !cargo_lambda_available() {
        Some("`cargo lambda` is not on PATH (bash scripts/tools.sh install)".to_owned())
    } else if !dir.join("model.safetensors").is_file() {
        Some(format!(
            "{} is missing (scripts/fetch-embedder.sh)",
            dir.display()
        ))
    } else {
        None
    };
    if let Some(what) = missing {
        if required() {
            panic!("{what}");
        }
        eprintln!("SKIPPED: the embedding function under the Lambda emulator: {what}");
        return;
    }
    let emulator = LambdaEmulator::start().await;
    let port = emulator.port;
    let _function = emulator.instance(
        env!("CARGO_BIN_EXE_embed"),
        [("CONVERSA_EMBED_MODEL", &dir)],
    );
    // The client reaches the emulator's Invoke API as it would Lambda's.
    conversa::testing::point_lambda_at(port);
    let local = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || MiniLm::load(&dir).unwrap())
            .await
            .unwrap()
    };
    let remote = client("_").await;

    // The model's id and dimension, asked for on an async worker as the vectors' checks do: the
    // same as the in-process model's, so vectors made by either are reused by the other.
    assert_eq!(remote.id(), local.id());
    assert_eq!(remote.dim(), 384);

    // More texts than one invocation carries: every vector comes back, in order, as the model
    // makes it.
    let texts = texts(TEXTS_PER_INVOKE + 6);
    let (got, want) = {
        let (remote, local, texts) = (remote.clone(), local, texts.clone());
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let got = remote.embed(&refs).unwrap();
            let want = local.embed(&refs).unwrap();
            let prefix_got = remote.embed_prefix(&refs[..3], 8).unwrap();
            let prefix_want = local.embed_prefix(&refs[..3], 8).unwrap();
            ((got, prefix_got), (want, prefix_want))
        })
        .await
        .unwrap()
    };
    assert_eq!(got.0.len(), texts.len());
    for (i, (g, w)) in got.0.iter().zip(&want.0).enumerate() {
        assert_eq!(g.len(), 384);
        assert!(cosine(g, w) > 0.9999, "text {i}: cosine {}", cosine(g, w));
    }
    // Neighbouring texts differ: a vector out of place would not match.
    assert!(cosine(&got.0[0], &want.0[1]) < 0.999);
    // From a bounded prefix, as the stored messages are embedded.
    for (g, w) in got.1.iter().zip(&want.1) {
        assert!(cosine(g, w) > 0.9999);
    }
    assert!(
        cosine(&got.1[3 - 1], &got.0[3 - 1]) < 0.999,
        "8 pieces of a long text are not all of it"
    );
}

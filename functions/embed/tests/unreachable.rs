//! The client of the embedding function when the function cannot be reached: the call fails
//! naming the function, and the id it reports matches no stored vectors, so none are reused as
//! if they were the model's. (A test binary of its own: it points the Lambda endpoint elsewhere.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::sync::Arc;

use conversa::embed::{EmbedSettings, Embedder, EmbedderKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_embedding_function_fails_the_call_and_matches_no_stored_vectors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    conversa::testing::point_lambda_at(port);
    let settings = EmbedSettings {
        kind: EmbedderKind::Lambda,
        model_dir: None,
        lazy: true,
        function: Some("conversa-embed".into()),
    };
    let remote: Arc<dyn Embedder> =
        tokio::task::spawn_blocking(move || conversa::embed::load(&settings))
            .await
            .unwrap()
            .unwrap()
            .expect("an embedder");
    let err = {
        let remote = remote.clone();
        tokio::task::spawn_blocking(move || remote.embed(&["hello"]).unwrap_err())
            .await
            .unwrap()
    };
    assert!(err.to_string().contains("conversa-embed"), "{err}");
    assert_eq!(remote.id(), "bert/not-reached");
    assert_eq!(remote.dim(), 0);
}

//! The MongoDB store against a real MongoDB-wire server (`MONGODB_URI`), each run in its own database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(feature = "mongodb")]

mod common;

use conversa::store::mongodb::MongoStore;

#[tokio::test]
async fn the_store_passes_the_contract() {
    let Some(uri) = common::service("MONGODB_URI", "mongodb store contract") else {
        return;
    };
    let db = common::unique("mongo").replace('-', "_");
    let store = MongoStore::connect(&uri, &db).await.unwrap();
    conversa::store::contract::run_all(&store).await;
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    client.database(&db).drop().await.unwrap();
}

#[tokio::test]
async fn from_config_builds_the_mongodb_store() {
    let Some(uri) = common::service("MONGODB_URI", "mongodb from_config") else {
        return;
    };
    let db = common::unique("cfg").replace('-', "_");
    let dir = tempfile::tempdir().unwrap();
    let state = common::build(&[
        ("CONVERSA_STORE", "mongodb"),
        ("MONGODB_URI", &uri),
        ("CONVERSA_MONGODB_DB", &db),
        ("CONVERSA_DATA_DIR", dir.path().to_str().unwrap()),
    ])
    .await
    .unwrap();
    state.store.health().await.unwrap();
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    client.database(&db).drop().await.unwrap();
}

#[tokio::test]
async fn a_missing_uri_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let err = common::build(&[
        ("CONVERSA_STORE", "mongodb"),
        ("CONVERSA_DATA_DIR", dir.path().to_str().unwrap()),
    ])
    .await
    .err()
    .unwrap();
    assert!(err.starts_with("MONGODB_URI: required"), "{err}");
}

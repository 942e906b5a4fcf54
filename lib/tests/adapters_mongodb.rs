//! The MongoDB store against a real MongoDB-wire server (`MONGODB_URI`), each test in its own
//! database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(feature = "mongodb")]

mod common;

use conversa::contract::Subject;
use conversa::domain::Owner;
use conversa::search::mongodb::MongoSearchLog;
use conversa::store::contract::{migrates_a_linear_history, LINEAR_CONVERSATION, LINEAR_MESSAGES};
use conversa::store::contract::{reads_back_the_earlier_format, EARLIER_FILE_JSON};
use conversa::store::mongodb::MongoStore;
use conversa::turns::contract::Instances;
use conversa::turns::mongodb::MongoTurnLog;
use mongodb::bson::doc;
use std::sync::Arc;

/// A store on a fresh database with the database's name, or `None` when MongoDB is not configured.
async fn store() -> Option<(MongoStore, String, String)> {
    let uri = common::service("MONGODB_URI", "MongoDB")?;
    let db = common::unique("mongo").replace('-', "_");
    Some((MongoStore::connect(&uri, &db).await.unwrap(), uri, db))
}

async fn drop_database(uri: String, db: String) {
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    client.database(&db).drop().await.unwrap();
}

conversa::store_contract_tests!(contract, async {
    let (store, uri, db) = store().await?;
    Some(Subject::new(store).with_teardown(drop_database(uri, db)))
});

conversa::accounts_contract_tests!(accounts, async {
    let (store, uri, db) = store().await?;
    Some(Subject::new(store).with_teardown(drop_database(uri, db)))
});

conversa::ledger_contract_tests!(ledger, async {
    let (store, uri, db) = store().await?;
    Some(Subject::new(store).with_teardown(drop_database(uri, db)))
});

conversa::turn_log_contract_tests!(turn_log, async {
    let (store, uri, db) = store().await?;
    let here = MongoTurnLog::open(store.database()).await.unwrap();
    // Another instance: its own client and broadcast, the same database.
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let elsewhere = MongoTurnLog::new(&client.database(&db));
    Some(
        Subject::new(Instances {
            here: Arc::new(here),
            elsewhere: Arc::new(elsewhere),
        })
        .with_teardown(drop_database(uri, db)),
    )
});

conversa::search_log_contract_tests!(search_log, async {
    let (store, uri, db) = store().await?;
    let log = MongoSearchLog::open(store.database()).await.unwrap();
    Some(Subject::new(log).with_teardown(drop_database(uri, db)))
});

/// A conversation and its messages exactly as written before message trees: no parents, no
/// current leaf.
#[tokio::test]
async fn documents_of_a_linear_history_become_one_branch() {
    let Some((store, uri, db)) = store().await else {
        return;
    };
    let database = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db);
    let last_at = LINEAR_MESSAGES[2].2;
    database
        .collection("conversations")
        .insert_one(doc! {
            "_id": LINEAR_CONVERSATION, "owner": "local", "title": "Trip", "title_default": false,
            "message_count": 3_i64, "created_at": "2026-02-28T10:00:00.000Z", "updated_at": last_at,
        })
        .await
        .unwrap();
    for (id, role, at) in LINEAR_MESSAGES {
        database
            .collection("messages")
            .insert_one(doc! {
                "_id": id, "owner": "local", "conversation_id": LINEAR_CONVERSATION, "role": role,
                "content": format!("said by {role}"), "files": "[]", "token_count": 3_i64,
                "status": "complete", "created_at": at, "usage": null,
            })
            .await
            .unwrap();
    }
    migrates_a_linear_history(&store, &Owner::local()).await;
    drop_database(uri, db).await;
}

/// A file document and a message document exactly as written before the store had its own records
/// (the API's JSON of `FileMeta` in `body` and `files`).
#[tokio::test]
async fn documents_written_in_the_earlier_format_read_back() {
    let Some((store, uri, db)) = store().await else {
        return;
    };
    let body = EARLIER_FILE_JSON;
    let database = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db);
    database
        .collection("files")
        .insert_one(
            doc! {"_id": "f-old", "owner": "local", "conversation_id": "c-old", "body": body},
        )
        .await
        .unwrap();
    database
        .collection("messages")
        .insert_one(doc! {
            "_id": "m-old", "owner": "local", "conversation_id": "c-old", "role": "user",
            "content": "hi", "files": format!("[{body}]"), "token_count": 1_i64,
            "status": "complete", "created_at": "2026-02-28T10:00:00.123Z",
        })
        .await
        .unwrap();
    reads_back_the_earlier_format(&store, &Owner::local()).await;
    drop_database(uri, db).await;
}

#[tokio::test]
async fn from_config_builds_the_mongodb_store() {
    let Some(uri) = common::service("MONGODB_URI", "MongoDB") else {
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
    drop_database(uri, db).await;
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

/// The sum of the stored receipts equals `/api/usage` and the admin totals on MongoDB.
#[tokio::test]
async fn receipts_add_up_on_mongodb() {
    let Some(uri) = common::service("MONGODB_URI", "MongoDB") else {
        return;
    };
    let db = common::unique("receipts").replace('-', "_");
    let fake = conversa::testing::FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = conversa::testing::receipts::env();
    env.extend([
        ("CONVERSA_STORE", "mongodb"),
        ("MONGODB_URI", uri.as_str()),
        ("CONVERSA_MONGODB_DB", db.as_str()),
    ]);
    let app = conversa::App::from_config(conversa::testing::test_config(
        &fake.base_url,
        dir.path(),
        &env,
    ))
    .await
    .unwrap();
    conversa::testing::receipts::receipts_add_up(conversa::api::router(app.state.clone())).await;
    drop(app);
    drop_database(uri, db).await;
}

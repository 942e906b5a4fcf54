//! The DynamoDB store and rate limiter against a real DynamoDB API (moto locally, `AWS_ENDPOINT_URL`),
//! each test in its own table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(feature = "dynamodb")]

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use conversa::contract::Subject;
use conversa::domain::*;
use conversa::limits::dynamodb::DynamoLimiter;
use conversa::search::dynamodb::DynamoSearchLog;
use conversa::search::{EntryKind, SearchEntry, SearchLog};
use conversa::store::contract::{migrates_a_linear_history, LINEAR_CONVERSATION, LINEAR_MESSAGES};
use conversa::store::contract::{reads_back_the_earlier_format, EARLIER_FILE_JSON};
use conversa::store::dynamodb::{ensure_table, DynamoStore, Table};
use conversa::store::{PageRequest, Store};
use conversa::turns::contract::Instances;
use conversa::turns::dynamodb::DynamoTurnLog;
use std::sync::Arc;

/// A fresh table, or `None` when DynamoDB is not configured.
async fn table() -> Option<Table> {
    common::service("AWS_ENDPOINT_URL", "DynamoDB")?;
    let client = Client::new(conversa::aws::sdk_config().await);
    let name = common::unique("ddb");
    ensure_table(&client, &name).await.unwrap();
    Some(Table::new(client, name))
}

async fn drop_table(table: Table) {
    table
        .client()
        .delete_table()
        .table_name(table.name())
        .send()
        .await
        .unwrap();
}

/// An adapter on a fresh table that is dropped after the check.
async fn subject<T>(adapter: impl FnOnce(Table) -> T) -> Option<Subject<T>> {
    let table = table().await?;
    Some(Subject::new(adapter(table.clone())).with_teardown(drop_table(table)))
}

conversa::store_contract_tests!(store, subject(DynamoStore::new));
conversa::turn_log_contract_tests!(turn_log, async {
    let table = table().await?;
    Some(
        Subject::new(Instances {
            here: Arc::new(DynamoTurnLog::new(table.clone())),
            // Another instance: its own client and broadcast, the same table.
            elsewhere: Arc::new(DynamoTurnLog::new(Table::new(
                Client::new(conversa::aws::sdk_config().await),
                table.name(),
            ))),
        })
        .with_teardown(drop_table(table)),
    )
});
conversa::limiter_contract_tests!(limiter, subject(DynamoLimiter::new));
conversa::accounts_contract_tests!(accounts, subject(DynamoStore::new));
conversa::ledger_contract_tests!(ledger, subject(DynamoStore::new));

#[tokio::test]
async fn deleting_a_long_conversation_removes_every_item() {
    let Some(table) = table().await else {
        return;
    };
    let store = DynamoStore::new(table.clone());
    let owner = Owner::new("batch@example.com");
    let conv = Conversation {
        id: ConversationId::generate(),
        title: DEFAULT_TITLE.into(),
        message_count: 0,
        created_at: Timestamp::from_millis(1_000),
        updated_at: Timestamp::from_millis(1_000),
        current_message_id: None,
        generating_message_id: None,
    };
    store.create_conversation(&owner, &conv).await.unwrap();
    let message = |i: i64, at: i64| Message {
        id: MessageId::generate(),
        conversation_id: conv.id.clone(),
        parent_id: None,
        role: Role::User,
        content: format!("message {i}"),
        files: vec![],
        token_count: 2,
        status: MessageStatus::Complete,
        created_at: Timestamp::from_millis(at),
        usage: None,
        citations: vec![],
    };
    let mut ids = Vec::new();
    // More than one batch of 25 deletes (each message has a pointer item too).
    for i in 0..40 {
        let m = message(i, 2_000 + i);
        store.add_message(&owner, &m).await.unwrap();
        ids.push(m.id);
    }
    let got = store
        .get_conversation(&owner, &conv.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.message_count, got.updated_at),
        (40, Timestamp::from_millis(2_039))
    );
    // An older message (a clock behind) does not move updated_at back.
    store
        .add_message(&owner, &message(40, 1_500))
        .await
        .unwrap();
    let got = store
        .get_conversation(&owner, &conv.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.message_count, got.updated_at),
        (41, Timestamp::from_millis(2_039))
    );

    assert!(store
        .delete_conversation(&owner, &conv.id)
        .await
        .unwrap()
        .is_some());
    for id in &ids {
        assert_eq!(store.get_message(&owner, id).await.unwrap(), None);
    }
    let left = table
        .client()
        .scan()
        .table_name(table.name())
        .send()
        .await
        .unwrap()
        .count();
    assert_eq!(left, 0, "no message, pointer or conversation item is left");
    let page = store
        .list_conversations(
            &owner,
            &PageRequest {
                limit: 10,
                cursor: None,
            },
            None,
        )
        .await
        .unwrap();
    assert!(page.items.is_empty());
    drop_table(table).await;
}

/// A file item and a message item exactly as written before the store had its own records (the
/// API's JSON of `FileMeta` in `body` and `files`).
#[tokio::test]
async fn items_written_in_the_earlier_format_read_back() {
    let Some(table) = table().await else {
        return;
    };
    let body = EARLIER_FILE_JSON;
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let at = "2026-02-28T10:00:00.123Z";
    let items: Vec<HashMap<String, AttributeValue>> = vec![
        HashMap::from([
            ("pk".into(), s("U#old@example.com")),
            ("sk".into(), s("F#f-old")),
            ("id".into(), s("f-old")),
            ("conversation_id".into(), s("c-old")),
            ("body".into(), s(body)),
        ]),
        HashMap::from([
            ("pk".into(), s("U#old@example.com#C#c-old")),
            ("sk".into(), s(&format!("M#{at}#m-old"))),
            ("id".into(), s("m-old")),
            ("conversation_id".into(), s("c-old")),
            ("role".into(), s("user")),
            ("content".into(), s("hi")),
            ("files".into(), s(&format!("[{body}]"))),
            ("token_count".into(), AttributeValue::N("1".into())),
            ("status".into(), s("complete")),
            ("created_at".into(), s(at)),
        ]),
        HashMap::from([
            ("pk".into(), s("U#old@example.com")),
            ("sk".into(), s("MSG#m-old")),
            ("conversation_id".into(), s("c-old")),
            ("msk".into(), s(&format!("M#{at}#m-old"))),
        ]),
    ];
    for item in items {
        table
            .client()
            .put_item()
            .table_name(table.name())
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    let store = DynamoStore::new(table.clone());
    reads_back_the_earlier_format(&store, &Owner::new("old@example.com")).await;
    drop_table(table).await;
}

#[tokio::test]
async fn from_config_builds_the_dynamodb_store_and_limiter() {
    let Some(table) = table().await else {
        return;
    };
    let state = common::build(&[
        ("CONVERSA_STORE", "dynamodb"),
        ("CONVERSA_LIMITER", "dynamodb"),
        ("CONVERSA_DYNAMODB_TABLE", table.name()),
    ])
    .await
    .unwrap();
    state.store.health().await.unwrap();
    state.limiter.health().await.unwrap();
    drop_table(table).await;
}

#[tokio::test]
async fn an_unreachable_table_is_unavailable() {
    if common::service("AWS_ENDPOINT_URL", "DynamoDB").is_none() {
        return;
    }
    let client = Client::new(conversa::aws::sdk_config().await);
    let store = DynamoStore::new(Table::new(client, common::unique("absent")));
    assert!(matches!(
        store.health().await,
        Err(conversa::store::StoreError::Unavailable(_))
    ));
}

/// The sum of the stored receipts equals `/api/usage` and the admin totals on DynamoDB.
#[tokio::test]
async fn receipts_add_up_on_dynamodb() {
    let Some(table) = table().await else {
        return;
    };
    let fake = conversa::testing::FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = conversa::testing::receipts::env();
    env.extend([
        ("CONVERSA_STORE", "dynamodb"),
        ("CONVERSA_DYNAMODB_TABLE", table.name()),
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
    drop_table(table).await;
}

/// A conversation and its messages exactly as written before message trees: no parents, no
/// current leaf.
#[tokio::test]
async fn items_of_a_linear_history_become_one_branch() {
    let Some(table) = table().await else {
        return;
    };
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let owner = "linear@example.com";
    let put = |item: HashMap<String, AttributeValue>| {
        let table = table.clone();
        async move {
            table
                .client()
                .put_item()
                .table_name(table.name())
                .set_item(Some(item))
                .send()
                .await
                .unwrap();
        }
    };
    let (last_at, created) = (LINEAR_MESSAGES[2].2, "2026-02-28T10:00:00.000Z");
    put(HashMap::from([
        ("pk".into(), s(&format!("U#{owner}"))),
        ("sk".into(), s(&format!("C#{LINEAR_CONVERSATION}"))),
        ("gsi1pk".into(), s(&format!("U#{owner}#UPD"))),
        (
            "gsi1sk".into(),
            s(&format!("{last_at}#{LINEAR_CONVERSATION}")),
        ),
        ("id".into(), s(LINEAR_CONVERSATION)),
        ("title".into(), s("Trip")),
        ("title_default".into(), AttributeValue::Bool(false)),
        ("message_count".into(), AttributeValue::N("3".into())),
        ("created_at".into(), s(created)),
        ("updated_at".into(), s(last_at)),
    ]))
    .await;
    for (id, role, at) in LINEAR_MESSAGES {
        let msk = format!("M#{at}#{id}");
        put(HashMap::from([
            (
                "pk".into(),
                s(&format!("U#{owner}#C#{LINEAR_CONVERSATION}")),
            ),
            ("sk".into(), s(&msk)),
            ("id".into(), s(id)),
            ("conversation_id".into(), s(LINEAR_CONVERSATION)),
            ("role".into(), s(role)),
            ("content".into(), s(&format!("said by {role}"))),
            ("files".into(), s("[]")),
            ("token_count".into(), AttributeValue::N("3".into())),
            ("status".into(), s("complete")),
            ("created_at".into(), s(at)),
        ]))
        .await;
        put(HashMap::from([
            ("pk".into(), s(&format!("U#{owner}"))),
            ("sk".into(), s(&format!("MSG#{id}"))),
            ("conversation_id".into(), s(LINEAR_CONVERSATION)),
            ("msk".into(), s(&msk)),
        ]))
        .await;
    }
    let store = DynamoStore::new(table.clone());
    migrates_a_linear_history(&store, &Owner::new(owner)).await;
    drop_table(table).await;
}

conversa::search_log_contract_tests!(search_log, subject(DynamoSearchLog::new));

/// Reads follow `LastEvaluatedKey`: a log of more than 1 MB (DynamoDB's page) reads back whole,
/// and a removal finds every reference of a conversation across pages.
#[tokio::test]
async fn a_search_log_larger_than_a_page_reads_back_whole() {
    let Some(table) = table().await else {
        return;
    };
    let log = DynamoSearchLog::new(table.clone());
    let owner = Owner::new(common::unique("big"));
    let conversation = ConversationId::generate();
    let text = "x".repeat(conversa::search::MAX_ENTRY_CHARS);
    let entries: Vec<SearchEntry> = (0..600)
        .map(|i| {
            let id = MessageId::generate();
            SearchEntry {
                id: id.as_str().to_owned(),
                kind: EntryKind::Message,
                conversation_id: Some(conversation.clone()),
                message_id: Some(id),
                file_id: None,
                chunk: None,
                label: None,
                created_at: Timestamp::from_millis(i),
                text: text.clone(),
                vector: conversa::search::encode_vector(&[0.5; 384]),
            }
        })
        .collect();
    log.append(&owner, &entries).await.unwrap();
    let page = log.read(&owner, None).await.unwrap();
    assert_eq!(page.entries, entries);
    log.remove_conversation(&owner, &conversation)
        .await
        .unwrap();
    assert!(log.read(&owner, None).await.unwrap().entries.is_empty());
    let left = table
        .client()
        .scan()
        .table_name(table.name())
        .send()
        .await
        .unwrap()
        .count();
    assert_eq!(left, 1, "only the generation item is left");
    drop_table(table).await;
}

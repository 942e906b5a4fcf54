//! The DynamoDB store and rate limiter against a real DynamoDB API (moto locally, `AWS_ENDPOINT_URL`),
//! each run in its own table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(feature = "dynamodb")]

mod common;

use aws_sdk_dynamodb::Client;
use conversa::domain::*;
use conversa::limits::dynamodb::DynamoLimiter;
use conversa::store::dynamodb::{ensure_table, DynamoStore};
use conversa::store::{PageRequest, Store};

async fn table(what: &str) -> Option<(Client, String)> {
    common::service("AWS_ENDPOINT_URL", what)?;
    let client = Client::new(conversa::aws::sdk_config().await);
    let name = common::unique("ddb");
    ensure_table(&client, &name).await.unwrap();
    Some((client, name))
}

async fn drop_table(client: &Client, name: &str) {
    client.delete_table().table_name(name).send().await.unwrap();
}

#[tokio::test]
async fn the_store_passes_the_contract() {
    let Some((client, name)) = table("dynamodb store contract").await else {
        return;
    };
    let store = DynamoStore::new(client.clone(), &name);
    conversa::store::contract::run_all(&store).await;
    drop_table(&client, &name).await;
}

#[tokio::test]
async fn the_limiter_passes_the_contract() {
    let Some((client, name)) = table("dynamodb limiter contract").await else {
        return;
    };
    let limiter = DynamoLimiter::new(client.clone(), &name);
    conversa::limits::contract::run_all(&limiter).await;
    drop_table(&client, &name).await;
}

#[tokio::test]
async fn deleting_a_long_conversation_removes_every_item() {
    let Some((client, name)) = table("dynamodb batch delete").await else {
        return;
    };
    let store = DynamoStore::new(client.clone(), &name);
    let owner = Owner::new("batch@example.com");
    let conv = Conversation {
        id: ConversationId::generate(),
        title: DEFAULT_TITLE.into(),
        message_count: 0,
        created_at: Timestamp::from_millis(1_000),
        updated_at: Timestamp::from_millis(1_000),
    };
    store.create_conversation(&owner, &conv).await.unwrap();
    let mut ids = Vec::new();
    // More than one batch of 25 deletes (each message has a pointer item too).
    for i in 0..40 {
        let m = Message {
            id: MessageId::generate(),
            conversation_id: conv.id.clone(),
            role: Role::User,
            content: format!("message {i}"),
            files: vec![],
            token_count: 2,
            status: MessageStatus::Complete,
            created_at: Timestamp::from_millis(2_000 + i),
        };
        store.add_message(&owner, &m).await.unwrap();
        ids.push(m.id);
    }
    let got = store
        .get_conversation(&owner, &conv.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 40);
    assert_eq!(got.updated_at, Timestamp::from_millis(2_039));
    // An older message (a clock behind) does not move updated_at back.
    let late = Message {
        id: MessageId::generate(),
        conversation_id: conv.id.clone(),
        role: Role::Assistant,
        content: "late".into(),
        files: vec![],
        token_count: 1,
        status: MessageStatus::Complete,
        created_at: Timestamp::from_millis(1_500),
    };
    store.add_message(&owner, &late).await.unwrap();
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
    let left = client
        .scan()
        .table_name(&name)
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
    drop_table(&client, &name).await;
}

#[tokio::test]
async fn from_config_builds_the_dynamodb_store_and_limiter() {
    let Some((client, name)) = table("dynamodb from_config").await else {
        return;
    };
    let state = common::build(&[
        ("CONVERSA_STORE", "dynamodb"),
        ("CONVERSA_LIMITER", "dynamodb"),
        ("CONVERSA_DYNAMODB_TABLE", &name),
    ])
    .await
    .unwrap();
    state.store.health().await.unwrap();
    state.limiter.health().await.unwrap();
    drop_table(&client, &name).await;
}

#[tokio::test]
async fn an_unreachable_table_is_unavailable() {
    if common::service("AWS_ENDPOINT_URL", "dynamodb missing table").is_none() {
        return;
    }
    let client = Client::new(conversa::aws::sdk_config().await);
    let store = DynamoStore::new(client, common::unique("absent"));
    assert!(matches!(
        store.health().await,
        Err(conversa::store::StoreError::Unavailable(_))
    ));
}

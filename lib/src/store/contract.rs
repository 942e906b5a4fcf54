//! The contract every `Store` adapter passes. Each adapter's tests call [`run_all`] on a fresh,
//! empty store; the checks use unique ids, so a shared server is fine too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use crate::domain::*;

use super::{PageRequest, Store, StoreError};

fn conversation(title: &str, at: i64) -> Conversation {
    Conversation {
        id: ConversationId::generate(),
        title: title.to_owned(),
        message_count: 0,
        created_at: Timestamp::from_millis(at),
        updated_at: Timestamp::from_millis(at),
    }
}

fn message(conv: &ConversationId, role: Role, content: &str, at: i64) -> Message {
    Message {
        id: MessageId::generate(),
        conversation_id: conv.clone(),
        role,
        content: content.to_owned(),
        files: vec![],
        token_count: 3,
        status: MessageStatus::Complete,
        created_at: Timestamp::from_millis(at),
    }
}

fn file(conv: Option<&ConversationId>, name: &str) -> FileMeta {
    FileMeta {
        id: FileId::generate(),
        conversation_id: conv.cloned(),
        filename: name.to_owned(),
        content_type: "text/plain".into(),
        size: 12,
        file_type: FileType::Text,
        status: FileStatus::Ready,
        char_count: Some(12),
        token_count: Some(3),
        pages: None,
        error: None,
        note: None,
        progress: None,
        created_at: Timestamp::now(),
    }
}

fn unique_owner(tag: &str) -> Owner {
    Owner::new(format!("{tag}-{}", uuid::Uuid::now_v7().simple()))
}

/// Runs every check.
pub async fn run_all(store: &dyn Store) {
    store.health().await.expect("health");
    conversations_are_owner_scoped(store).await;
    lists_newest_first_with_stable_cursors(store).await;
    search_matches_titles_and_messages(store).await;
    titles(store).await;
    messages(store).await;
    a_conversation_starts_with_its_first_message(store).await;
    files_and_delete(store).await;
}

async fn a_conversation_starts_with_its_first_message(store: &dyn Store) {
    let owner = unique_owner("starter");
    let c = conversation(DEFAULT_TITLE, 6_000_000);
    let mut first = message(&c.id, Role::User, "hello there", 6_000_007);
    first.files = vec![file(Some(&c.id), "notes.txt")];
    store.start_conversation(&owner, &c, &first).await.unwrap();
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 1);
    assert_eq!(got.created_at, c.created_at);
    assert_eq!(got.updated_at, first.created_at);
    let page = PageRequest {
        limit: 10,
        cursor: None,
    };
    let listed = store.list_messages(&owner, &c.id, &page).await.unwrap();
    assert_eq!(listed.items, vec![first.clone()]);
    // Nobody else sees it, and starting the same conversation twice fails without a second message.
    assert_eq!(
        store
            .get_conversation(&unique_owner("other"), &c.id)
            .await
            .unwrap(),
        None
    );
    let again = message(&c.id, Role::User, "again", 6_000_008);
    assert!(store.start_conversation(&owner, &c, &again).await.is_err());
    let listed = store.list_messages(&owner, &c.id, &page).await.unwrap();
    assert_eq!(listed.items.len(), 1, "a failed start adds no message");
}

async fn conversations_are_owner_scoped(store: &dyn Store) {
    let (alice, bob) = (unique_owner("alice"), unique_owner("bob"));
    let c = conversation(DEFAULT_TITLE, 1_000_000);
    store.create_conversation(&alice, &c).await.unwrap();
    assert_eq!(
        store.get_conversation(&alice, &c.id).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(store.get_conversation(&bob, &c.id).await.unwrap(), None);
    assert_eq!(
        store
            .get_conversation(&alice, &ConversationId::from("nope"))
            .await
            .unwrap(),
        None
    );
    assert!(store
        .rename_conversation(&bob, &c.id, "x", Timestamp::now())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .delete_conversation(&bob, &c.id)
        .await
        .unwrap()
        .is_none());
    let page = store
        .list_conversations(
            &bob,
            &PageRequest {
                limit: 50,
                cursor: None,
            },
            None,
        )
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert!(store
        .get_conversation(&alice, &c.id)
        .await
        .unwrap()
        .is_some());
}

async fn lists_newest_first_with_stable_cursors(store: &dyn Store) {
    let owner = unique_owner("lister");
    let mut made = Vec::new();
    for i in 0..7 {
        // Two pairs share an updated_at: ties are broken by id.
        let c = conversation(&format!("c{i}"), 2_000_000 + (i / 2) * 1000);
        store.create_conversation(&owner, &c).await.unwrap();
        made.push(c);
    }
    let mut expected = made.clone();
    expected.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_conversations(
                &owner,
                &PageRequest {
                    limit: 3,
                    cursor: cursor.clone(),
                },
                None,
            )
            .await
            .unwrap();
        pages += 1;
        if pages == 1 {
            // A conversation created between two page reads must not shift the later pages.
            store
                .create_conversation(&owner, &conversation("late", 9_000_000))
                .await
                .unwrap();
        }
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen.iter().map(|c| &c.id).collect::<Vec<_>>(),
        expected.iter().map(|c| &c.id).collect::<Vec<_>>()
    );

    let bad = store
        .list_conversations(
            &owner,
            &PageRequest {
                limit: 3,
                cursor: Some("not-a-cursor".into()),
            },
            None,
        )
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidCursor)), "{bad:?}");
}

async fn search_matches_titles_and_messages(store: &dyn Store) {
    let owner = unique_owner("searcher");
    let a = conversation("Quarterly Report Q4", 3_000_000);
    let b = conversation("Holiday plans", 3_001_000);
    let c = conversation("Other", 3_002_000);
    for x in [&a, &b, &c] {
        store.create_conversation(&owner, x).await.unwrap();
    }
    store
        .add_message(
            &owner,
            &message(
                &b.id,
                Role::User,
                "Where is the REPORT about 100% growth?",
                3_003_000,
            ),
        )
        .await
        .unwrap();
    let page = store
        .list_conversations(
            &owner,
            &PageRequest {
                limit: 50,
                cursor: None,
            },
            Some("report"),
        )
        .await
        .unwrap();
    let mut ids: Vec<_> = page.items.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let page = store
        .list_conversations(
            &owner,
            &PageRequest {
                limit: 50,
                cursor: None,
            },
            Some("100%"),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "a % in the query is literal");
    let page = store
        .list_conversations(
            &owner,
            &PageRequest {
                limit: 50,
                cursor: None,
            },
            Some("zzz"),
        )
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

async fn titles(store: &dyn Store) {
    let owner = unique_owner("titler");
    let c = conversation(DEFAULT_TITLE, 4_000_000);
    store.create_conversation(&owner, &c).await.unwrap();
    assert!(store.set_auto_title(&owner, &c.id, "Auto").await.unwrap());
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.title, "Auto");
    assert_eq!(
        got.updated_at, c.updated_at,
        "the automatic title does not move updated_at"
    );

    let d = conversation(DEFAULT_TITLE, 4_000_000);
    store.create_conversation(&owner, &d).await.unwrap();
    let renamed = store
        .rename_conversation(&owner, &d.id, "Mine", Timestamp::from_millis(4_500_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.title, "Mine");
    assert_eq!(renamed.updated_at, Timestamp::from_millis(4_500_000));
    assert!(
        !store.set_auto_title(&owner, &d.id, "Auto").await.unwrap(),
        "a user's title wins"
    );
    assert_eq!(
        store
            .get_conversation(&owner, &d.id)
            .await
            .unwrap()
            .unwrap()
            .title,
        "Mine"
    );
}

async fn messages(store: &dyn Store) {
    let owner = unique_owner("talker");
    let c = conversation(DEFAULT_TITLE, 5_000_000);
    store.create_conversation(&owner, &c).await.unwrap();
    let mut made = Vec::new();
    for i in 0..5 {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        let mut m = message(&c.id, role, &format!("m{i}"), 5_001_000 + i);
        if i == 0 {
            m.files = vec![file(Some(&c.id), "a.txt")];
        }
        store.add_message(&owner, &m).await.unwrap();
        made.push(m);
    }
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 5);
    assert_eq!(got.updated_at, Timestamp::from_millis(5_001_004));

    let first = store
        .list_messages(
            &owner,
            &c.id,
            &PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items, made[..2].to_vec());
    let second = store
        .list_messages(
            &owner,
            &c.id,
            &PageRequest {
                limit: 10,
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items, made[2..].to_vec());
    assert!(second.next_cursor.is_none());

    let recent = store.recent_messages(&owner, &c.id, 3).await.unwrap();
    assert_eq!(recent, made[2..].to_vec());

    let mut answer = made[4].clone();
    answer.content = "finished".into();
    answer.status = MessageStatus::Incomplete;
    answer.token_count = 9;
    store.update_message(&owner, &answer).await.unwrap();
    assert_eq!(
        store.get_message(&owner, &answer.id).await.unwrap(),
        Some(answer.clone())
    );
    assert_eq!(
        store
            .get_message(&unique_owner("x"), &answer.id)
            .await
            .unwrap(),
        None
    );
    let other = store
        .list_messages(
            &unique_owner("x"),
            &c.id,
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert!(other.items.is_empty());
}

async fn files_and_delete(store: &dyn Store) {
    let owner = unique_owner("filer");
    let c = conversation(DEFAULT_TITLE, 6_000_000);
    store.create_conversation(&owner, &c).await.unwrap();
    let mut f = file(None, "report.pdf");
    store.put_file(&owner, &f).await.unwrap();
    assert_eq!(
        store.get_file(&owner, &f.id).await.unwrap(),
        Some(f.clone())
    );
    assert_eq!(
        store.get_file(&unique_owner("x"), &f.id).await.unwrap(),
        None
    );
    f.conversation_id = Some(c.id.clone());
    f.status = FileStatus::Failed;
    f.error = Some("damaged".into());
    store.put_file(&owner, &f).await.unwrap();
    assert_eq!(
        store.get_file(&owner, &f.id).await.unwrap(),
        Some(f.clone())
    );
    let loose = file(None, "loose.txt");
    store.put_file(&owner, &loose).await.unwrap();
    store
        .add_message(&owner, &message(&c.id, Role::User, "hi", 6_001_000))
        .await
        .unwrap();

    let deleted = store
        .delete_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deleted.iter().map(|f| &f.id).collect::<Vec<_>>(),
        vec![&f.id]
    );
    assert_eq!(store.get_conversation(&owner, &c.id).await.unwrap(), None);
    assert_eq!(store.get_file(&owner, &f.id).await.unwrap(), None);
    assert!(store
        .list_messages(
            &owner,
            &c.id,
            &PageRequest {
                limit: 10,
                cursor: None
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(
        store.get_file(&owner, &loose.id).await.unwrap().is_some(),
        "files of other conversations stay"
    );
    assert!(store
        .delete_conversation(&owner, &c.id)
        .await
        .unwrap()
        .is_none());
    assert!(store.delete_file(&owner, &loose.id).await.unwrap());
    assert!(!store.delete_file(&owner, &loose.id).await.unwrap());
}

//! The contract every `Store` adapter passes, one test per check through
//! [`store_contract_tests!`](crate::store_contract_tests). The checks use unique owners and ids, so
//! a shared server is fine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;

use crate::domain::*;

use super::{PageRequest, Store, StoreError, TurnStart};

/// One `#[tokio::test]` per check of the `Store` contract, in `mod $name`, against the adapter the
/// setup (an `async` block giving `Option<Subject<_>>`) builds.
#[macro_export]
macro_rules! store_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(store; $name, $setup;
            health_answers,
            conversations_are_owner_scoped,
            lists_newest_first_with_stable_cursors,
            a_cursor_it_did_not_issue_is_refused,
            search_matches_titles_and_messages,
            search_treats_wildcards_literally,
            the_automatic_title_lands_without_moving_updated_at,
            a_users_title_wins_over_the_automatic_one,
            messages_are_counted_and_paged_oldest_first,
            a_branch_is_the_path_to_its_leaf,
            branches_of_a_tree_follow_parents,
            an_answer_is_updated_in_place,
            messages_are_owner_scoped,
            a_turn_starts_a_conversation_in_one_write,
            starting_a_conversation_twice_adds_nothing,
            a_regenerated_answer_begins_without_a_user_message,
            a_turn_finishes_in_place,
            an_answers_citations_are_kept_on_every_write,
            finishing_clears_only_its_own_generating_answer,
            the_current_leaf_moves_within_its_conversation,
            file_records_keep_every_field,
            deleting_a_conversation_removes_its_messages_and_files,
            deleting_a_file_says_whether_it_existed,
        );
    };
}

fn conversation(title: &str, at: i64) -> Conversation {
    Conversation {
        id: ConversationId::generate(),
        title: title.to_owned(),
        message_count: 0,
        created_at: Timestamp::from_millis(at),
        updated_at: Timestamp::from_millis(at),
        current_message_id: None,
        generating_message_id: None,
    }
}

fn message(conv: &ConversationId, role: Role, content: &str, at: i64) -> Message {
    Message {
        id: MessageId::generate(),
        conversation_id: conv.clone(),
        parent_id: None,
        role,
        content: content.to_owned(),
        files: vec![],
        token_count: 3,
        status: MessageStatus::Complete,
        created_at: Timestamp::from_millis(at),
        usage: None,
        citations: vec![],
    }
}

/// An answer's receipt.
fn receipt(model: &str, completion_tokens: u64) -> Receipt {
    Receipt {
        model: model.to_owned(),
        provider: "anthropic".into(),
        prompt_tokens: 120,
        completion_tokens,
        cost_usd: Some(0.000_405),
        time_to_first_token_ms: Some(310),
        duration_ms: 1_250,
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

fn first_page(limit: u32) -> PageRequest {
    PageRequest {
        limit,
        cursor: None,
    }
}

async fn search(store: &dyn Store, owner: &Owner, q: &str) -> Vec<ConversationId> {
    let page = store
        .list_conversations(owner, &first_page(50), Some(q))
        .await
        .unwrap();
    let mut ids: Vec<_> = page.items.into_iter().map(|c| c.id).collect();
    ids.sort();
    ids
}

/// The first ten messages of a conversation, as `owner` sees them.
async fn listed(store: &dyn Store, owner: &Owner, c: &ConversationId) -> Vec<Message> {
    store
        .list_messages(owner, c, &first_page(10))
        .await
        .unwrap()
        .items
}

/// A conversation with five messages, each the child of the one before (the first with a file,
/// the answers with receipts), oldest first.
async fn talk(store: &dyn Store, owner: &Owner) -> (Conversation, Vec<Message>) {
    let c = conversation(DEFAULT_TITLE, 5_000_000);
    store.create_conversation(owner, &c).await.unwrap();
    let mut made: Vec<Message> = Vec::new();
    for i in 0..5 {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        let mut m = message(&c.id, role, &format!("m{i}"), 5_001_000 + i);
        m.parent_id = made.last().map(|p| p.id.clone());
        if i == 0 {
            m.files = vec![file(Some(&c.id), "a.txt")];
        }
        if role == Role::Assistant {
            m.usage = Some(receipt("sonnet", 3));
        }
        store.add_message(owner, &m).await.unwrap();
        made.push(m);
    }
    (c, made)
}

/// The store answers a health check.
pub async fn health_answers(store: Arc<dyn Store>) {
    store.health().await.expect("health");
}

/// Another owner neither sees nor changes a conversation; an unknown id reads as absent.
pub async fn conversations_are_owner_scoped(store: Arc<dyn Store>) {
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
        .list_conversations(&bob, &first_page(50), None)
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(
        store.get_conversation(&alice, &c.id).await.unwrap(),
        Some(c)
    );
}

/// Conversations list by `updated_at` then id, newest first, and a conversation created between
/// two page reads does not shift the later pages.
pub async fn lists_newest_first_with_stable_cursors(store: Arc<dyn Store>) {
    let owner = unique_owner("lister");
    let mut made = Vec::new();
    for i in 0..7 {
        // Two pairs share an updated_at: ties are broken by id.
        let c = conversation(&format!("c{i}"), 2_000_000 + (i / 2) * 1000);
        store.create_conversation(&owner, &c).await.unwrap();
        made.push(c);
    }
    made.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));

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
        made.iter().map(|c| &c.id).collect::<Vec<_>>()
    );
}

/// A cursor this store did not issue is refused as such (never read as "from the start").
pub async fn a_cursor_it_did_not_issue_is_refused(store: Arc<dyn Store>) {
    let owner = unique_owner("cursor");
    let bad = PageRequest {
        limit: 3,
        cursor: Some("not-a-cursor".into()),
    };
    let conversations = store.list_conversations(&owner, &bad, None).await;
    assert!(
        matches!(conversations, Err(StoreError::InvalidCursor)),
        "{conversations:?}"
    );
    let messages = store
        .list_messages(&owner, &ConversationId::generate(), &bad)
        .await;
    assert!(
        matches!(messages, Err(StoreError::InvalidCursor)),
        "{messages:?}"
    );
}

/// Search finds a word in a title or in any message, whatever its case.
pub async fn search_matches_titles_and_messages(store: Arc<dyn Store>) {
    let owner = unique_owner("searcher");
    let a = conversation("Quarterly Report Q4", 3_000_000);
    let b = conversation("Holiday plans", 3_001_000);
    let c = conversation("Other", 3_002_000);
    for x in [&a, &b, &c] {
        store.create_conversation(&owner, x).await.unwrap();
    }
    let said = message(&b.id, Role::User, "Where is the REPORT?", 3_003_000);
    store.add_message(&owner, &said).await.unwrap();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(search(&*store, &owner, "report").await, want);
    assert!(search(&*store, &owner, "zzz").await.is_empty());
    assert!(
        search(&*store, &unique_owner("x"), "report")
            .await
            .is_empty(),
        "another owner's conversations are not searched"
    );
}

/// `%`, `_` and regular-expression characters in a query match themselves.
pub async fn search_treats_wildcards_literally(store: Arc<dyn Store>) {
    let owner = unique_owner("wildcards");
    let a = conversation("Growth of 100% (a.k.a. doubling)", 3_100_000);
    let b = conversation("Growth of 1000", 3_101_000);
    for x in [&a, &b] {
        store.create_conversation(&owner, x).await.unwrap();
    }
    assert_eq!(search(&*store, &owner, "100%").await, vec![a.id.clone()]);
    assert_eq!(search(&*store, &owner, "(a.k.a.").await, vec![a.id.clone()]);
    assert!(search(&*store, &owner, "1_0").await.is_empty());
    assert!(search(&*store, &owner, "a.k.a.*x").await.is_empty());
}

/// The automatic title replaces the default one and does not move `updated_at`.
pub async fn the_automatic_title_lands_without_moving_updated_at(store: Arc<dyn Store>) {
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
    assert_eq!(got.updated_at, c.updated_at);
    assert!(
        !store.set_auto_title(&owner, &c.id, "Again").await.unwrap(),
        "an automatic title lands once"
    );
    assert!(!store
        .set_auto_title(&unique_owner("x"), &c.id, "Theirs")
        .await
        .unwrap());
}

/// A rename sets the title and moves `updated_at`; an automatic title never replaces it.
pub async fn a_users_title_wins_over_the_automatic_one(store: Arc<dyn Store>) {
    let owner = unique_owner("renamer");
    let d = conversation(DEFAULT_TITLE, 4_000_000);
    store.create_conversation(&owner, &d).await.unwrap();
    let renamed = store
        .rename_conversation(&owner, &d.id, "Mine", Timestamp::from_millis(4_500_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.title, "Mine");
    assert_eq!(renamed.updated_at, Timestamp::from_millis(4_500_000));
    assert!(!store.set_auto_title(&owner, &d.id, "Auto").await.unwrap());
    let got = store
        .get_conversation(&owner, &d.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.title, "Mine");
    let back = store
        .rename_conversation(&owner, &d.id, "Older", Timestamp::from_millis(4_100_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        back.updated_at,
        Timestamp::from_millis(4_500_000),
        "updated_at never moves back"
    );
}

/// Messages count on their conversation, move its `updated_at`, and page oldest first with their
/// files intact.
pub async fn messages_are_counted_and_paged_oldest_first(store: Arc<dyn Store>) {
    let owner = unique_owner("talker");
    let (c, made) = talk(&*store, &owner).await;
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 5);
    assert_eq!(got.updated_at, Timestamp::from_millis(5_001_004));
    assert_eq!(
        got.current_message_id.as_ref(),
        Some(&made[4].id),
        "the last message added is the current leaf"
    );
    assert_eq!(got.generating_message_id, None);

    let first = store
        .list_messages(&owner, &c.id, &first_page(2))
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
}

/// A branch is the path from the first message to its leaf, oldest first, cut to its last
/// messages when asked; a leaf the conversation does not hold has no branch.
pub async fn a_branch_is_the_path_to_its_leaf(store: Arc<dyn Store>) {
    let owner = unique_owner("branch");
    let (c, made) = talk(&*store, &owner).await;
    let leaf = &made[4].id;
    assert_eq!(store.branch(&owner, &c.id, leaf, None).await.unwrap(), made);
    assert_eq!(
        store.branch(&owner, &c.id, leaf, Some(3)).await.unwrap(),
        made[2..].to_vec()
    );
    assert_eq!(
        store
            .branch(&owner, &c.id, &made[1].id, Some(50))
            .await
            .unwrap(),
        made[..2].to_vec()
    );
    assert!(store
        .branch(&owner, &c.id, leaf, Some(0))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .branch(&owner, &c.id, &MessageId::from("nope"), None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .branch(&unique_owner("x"), &c.id, leaf, None)
        .await
        .unwrap()
        .is_empty());
}

/// Siblings (a regenerated answer, an edited message) start branches of their own; every message
/// is still listed, oldest first.
pub async fn branches_of_a_tree_follow_parents(store: Arc<dyn Store>) {
    let owner = unique_owner("tree");
    let (c, made) = talk(&*store, &owner).await;
    // Another answer to m2, and an edit of m2 (another child of m1) with its own answer.
    let mut again = message(&c.id, Role::Assistant, "m3 again", 5_002_000);
    again.parent_id = Some(made[2].id.clone());
    let mut edit = message(&c.id, Role::User, "m2 edited", 5_002_001);
    edit.parent_id = Some(made[1].id.clone());
    let mut answer = message(&c.id, Role::Assistant, "to the edit", 5_002_002);
    answer.parent_id = Some(edit.id.clone());
    for m in [&again, &edit, &answer] {
        store.add_message(&owner, m).await.unwrap();
    }
    let branch = |leaf: &MessageId| {
        let (store, owner, c, leaf) = (store.clone(), owner.clone(), c.id.clone(), leaf.clone());
        async move { store.branch(&owner, &c, &leaf, None).await.unwrap() }
    };
    assert_eq!(
        branch(&again.id).await,
        vec![
            made[0].clone(),
            made[1].clone(),
            made[2].clone(),
            again.clone()
        ]
    );
    assert_eq!(
        branch(&answer.id).await,
        vec![
            made[0].clone(),
            made[1].clone(),
            edit.clone(),
            answer.clone()
        ]
    );
    assert_eq!(branch(&made[4].id).await, made, "the first branch stays");
    let all = store
        .list_messages(&owner, &c.id, &first_page(50))
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 8);
    assert_eq!(all[5..].to_vec(), vec![again, edit, answer.clone()]);
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 8);
    assert_eq!(got.current_message_id, Some(answer.id));
}

/// An answer's content, token count, status and receipt are replaced in place.
pub async fn an_answer_is_updated_in_place(store: Arc<dyn Store>) {
    let owner = unique_owner("updater");
    let (c, made) = talk(&*store, &owner).await;
    let mut answer = made[3].clone();
    answer.content = "finished".into();
    answer.status = MessageStatus::Incomplete;
    answer.token_count = 9;
    answer.usage = Some(receipt("nova-pro", 9));
    store.update_message(&owner, &answer).await.unwrap();
    assert_eq!(
        store.get_message(&owner, &answer.id).await.unwrap(),
        Some(answer.clone())
    );
    let messages = listed(&*store, &owner, &c.id).await;
    assert_eq!(messages[3], answer);
    assert_eq!(messages.len(), 5, "an update adds no message");
}

/// Another owner reads none of a conversation's messages.
pub async fn messages_are_owner_scoped(store: Arc<dyn Store>) {
    let owner = unique_owner("private");
    let (c, made) = talk(&*store, &owner).await;
    let other = unique_owner("x");
    assert_eq!(store.get_message(&other, &made[0].id).await.unwrap(), None);
    assert!(listed(&*store, &other, &c.id).await.is_empty());
    assert!(store
        .branch(&other, &c.id, &made[4].id, None)
        .await
        .unwrap()
        .is_empty());
}

/// The first turn of a new conversation: the conversation, its user message and the answer's
/// placeholder, in one write.
fn first_turn(at: i64) -> TurnStart {
    let c = conversation(DEFAULT_TITLE, at);
    let user = message(&c.id, Role::User, "hello there", at + 7);
    let mut answer = message(&c.id, Role::Assistant, "", at + 8);
    answer.parent_id = Some(user.id.clone());
    answer.status = MessageStatus::Incomplete;
    answer.token_count = 0;
    TurnStart {
        conversation: c,
        created: true,
        user: Some(user),
        answer,
    }
}

/// A turn that starts a conversation stores it with its user message and the answer's
/// placeholder, counted; the answer is the current leaf and the one being generated.
pub async fn a_turn_starts_a_conversation_in_one_write(store: Arc<dyn Store>) {
    let owner = unique_owner("starter");
    let mut turn = first_turn(6_000_000);
    turn.user.as_mut().unwrap().files = vec![file(Some(&turn.conversation.id), "notes.txt")];
    store.begin_turn(&owner, &turn).await.unwrap();
    let c = &turn.conversation;
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 2);
    assert_eq!(got.created_at, c.created_at);
    assert_eq!(got.updated_at, turn.answer.created_at);
    assert_eq!(got.current_message_id.as_ref(), Some(&turn.answer.id));
    assert_eq!(got.generating_message_id.as_ref(), Some(&turn.answer.id));
    let messages = listed(&*store, &owner, &c.id).await;
    assert_eq!(
        messages,
        vec![turn.user.clone().unwrap(), turn.answer.clone()]
    );
    assert_eq!(
        store
            .get_conversation(&unique_owner("other"), &c.id)
            .await
            .unwrap(),
        None
    );
}

/// Starting the same conversation twice fails and leaves no second message.
pub async fn starting_a_conversation_twice_adds_nothing(store: Arc<dyn Store>) {
    let owner = unique_owner("twice");
    let turn = first_turn(6_000_000);
    store.begin_turn(&owner, &turn).await.unwrap();
    let mut again = first_turn(6_100_000);
    again.conversation = turn.conversation.clone();
    for m in again.user.iter_mut().chain([&mut again.answer]) {
        m.conversation_id = turn.conversation.id.clone();
    }
    assert!(store.begin_turn(&owner, &again).await.is_err());
    let messages = listed(&*store, &owner, &turn.conversation.id).await;
    assert_eq!(messages.len(), 2, "a failed start adds no message");
    let got = store
        .get_conversation(&owner, &turn.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 2);
}

/// A regenerated answer begins alone, a sibling of the answer it replaces: counted, current,
/// being generated.
pub async fn a_regenerated_answer_begins_without_a_user_message(store: Arc<dyn Store>) {
    let owner = unique_owner("regen");
    let (c, made) = talk(&*store, &owner).await;
    let mut answer = message(&c.id, Role::Assistant, "", 5_003_000);
    answer.parent_id = Some(made[2].id.clone());
    answer.status = MessageStatus::Incomplete;
    store
        .begin_turn(
            &owner,
            &TurnStart {
                conversation: c.clone(),
                created: false,
                user: None,
                answer: answer.clone(),
            },
        )
        .await
        .unwrap();
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message_count, 6);
    assert_eq!(got.updated_at, answer.created_at);
    assert_eq!(got.current_message_id.as_ref(), Some(&answer.id));
    assert_eq!(got.generating_message_id.as_ref(), Some(&answer.id));
    assert_eq!(
        store.branch(&owner, &c.id, &answer.id, None).await.unwrap(),
        vec![made[0].clone(), made[1].clone(), made[2].clone(), answer]
    );
    // A turn on a conversation that does not exist stores nothing.
    let mut lost = message(&ConversationId::generate(), Role::Assistant, "", 5_004_000);
    lost.status = MessageStatus::Incomplete;
    let missing = TurnStart {
        conversation: conversation(DEFAULT_TITLE, 5_004_000),
        created: false,
        user: None,
        answer: lost.clone(),
    };
    assert!(store.begin_turn(&owner, &missing).await.is_err());
    assert_eq!(store.get_message(&owner, &lost.id).await.unwrap(), None);
}

/// The end of a turn replaces the placeholder with the answer and its receipt and clears the answer
/// being generated (`updated_at` stays); an answer that is not stored is an error.
pub async fn a_turn_finishes_in_place(store: Arc<dyn Store>) {
    let owner = unique_owner("finisher");
    let turn = first_turn(7_000_000);
    store.begin_turn(&owner, &turn).await.unwrap();
    let mut answer = turn.answer.clone();
    answer.content = "General Kenobi".into();
    answer.status = MessageStatus::Complete;
    answer.token_count = 4;
    answer.usage = Some(receipt("sonnet", 4));
    store.finish_turn(&owner, &answer).await.unwrap();
    assert_eq!(
        store.get_message(&owner, &answer.id).await.unwrap(),
        Some(answer.clone())
    );
    let got = store
        .get_conversation(&owner, &turn.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.updated_at, answer.created_at);
    assert_eq!(got.generating_message_id, None);
    assert_eq!(got.current_message_id.as_ref(), Some(&answer.id));
    assert_eq!(got.message_count, 2, "finishing adds no message");
    let mut stranger = answer.clone();
    stranger.id = MessageId::generate();
    assert!(store.finish_turn(&owner, &stranger).await.is_err());
    assert!(store
        .finish_turn(&unique_owner("x"), &answer)
        .await
        .is_err());
}

/// The passages an answer cites.
fn citations() -> Vec<Citation> {
    vec![
        Citation {
            n: 4,
            file_id: Some(FileId::generate()),
            filename: Some("report \"final\".pdf".into()),
            page: Some(7),
            sheet: None,
            snippet: "The canary — ZEBRA-7731 — sings at dawn.".into(),
            memory: None,
        },
        Citation {
            n: 1,
            file_id: Some(FileId::generate()),
            filename: Some("book.xlsx".into()),
            page: None,
            sheet: Some("Costs Q4".into()),
            snippet: "| q1 | 4 |".into(),
            memory: None,
        },
        // Memory: a message of another conversation.
        Citation {
            n: 5,
            file_id: None,
            filename: None,
            page: None,
            sheet: None,
            snippet: "The gate code is 4417.".into(),
            memory: Some(crate::domain::MemorySource {
                conversation_id: ConversationId::generate(),
                message_id: Some(MessageId::generate()),
                title: "Moving “house”".into(),
            }),
        },
    ]
}

/// An answer's citations are stored when it finishes, when it is updated (and removed when it
/// no longer has any) and when it is added whole, and read back by id, in lists and in branches;
/// a message without them reads as citing nothing.
pub async fn an_answers_citations_are_kept_on_every_write(store: Arc<dyn Store>) {
    let owner = unique_owner("citer");
    let turn = first_turn(7_500_000);
    store.begin_turn(&owner, &turn).await.unwrap();
    let placeholder = store
        .get_message(&owner, &turn.answer.id)
        .await
        .unwrap()
        .unwrap();
    assert!(placeholder.citations.is_empty());
    let mut answer = turn.answer.clone();
    answer.content = "It sings at dawn [4]; costs were flat [1].".into();
    answer.status = MessageStatus::Complete;
    answer.usage = Some(receipt("sonnet", 11));
    answer.citations = citations();
    store.finish_turn(&owner, &answer).await.unwrap();
    assert_eq!(
        store.get_message(&owner, &answer.id).await.unwrap(),
        Some(answer.clone())
    );
    let c = &turn.conversation.id;
    assert_eq!(listed(&*store, &owner, c).await[1], answer);
    let branch = store.branch(&owner, c, &answer.id, None).await.unwrap();
    assert_eq!(branch.last(), Some(&answer));

    answer.citations.truncate(1);
    store.update_message(&owner, &answer).await.unwrap();
    assert_eq!(
        store.get_message(&owner, &answer.id).await.unwrap(),
        Some(answer.clone())
    );
    answer.citations.clear();
    store.update_message(&owner, &answer).await.unwrap();
    assert_eq!(
        store.get_message(&owner, &answer.id).await.unwrap(),
        Some(answer.clone()),
        "citations removed"
    );

    let mut added = message(c, Role::Assistant, "Again [1]", 7_500_100);
    added.parent_id = turn.user.as_ref().map(|u| u.id.clone());
    added.citations = citations();
    store.add_message(&owner, &added).await.unwrap();
    assert_eq!(
        store.get_message(&owner, &added.id).await.unwrap(),
        Some(added)
    );
}

/// Two turns of one conversation at once: the one that ends first leaves the other's answer
/// being generated.
pub async fn finishing_clears_only_its_own_generating_answer(store: Arc<dyn Store>) {
    let owner = unique_owner("overlap");
    let turn = first_turn(8_000_000);
    store.begin_turn(&owner, &turn).await.unwrap();
    let mut second = message(&turn.conversation.id, Role::Assistant, "", 8_000_100);
    second.parent_id = turn.user.as_ref().map(|u| u.id.clone());
    second.status = MessageStatus::Incomplete;
    store
        .begin_turn(
            &owner,
            &TurnStart {
                conversation: turn.conversation.clone(),
                created: false,
                user: None,
                answer: second.clone(),
            },
        )
        .await
        .unwrap();
    let mut first = turn.answer.clone();
    first.content = "one".into();
    first.status = MessageStatus::Complete;
    store.finish_turn(&owner, &first).await.unwrap();
    let got = store
        .get_conversation(&owner, &turn.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.generating_message_id.as_ref(), Some(&second.id));
    assert_eq!(got.current_message_id.as_ref(), Some(&second.id));
    assert_eq!(got.message_count, 3);
}

/// The current leaf moves to any message of its conversation without moving `updated_at`; a
/// message of another conversation is refused, another owner's conversation is absent.
pub async fn the_current_leaf_moves_within_its_conversation(store: Arc<dyn Store>) {
    let owner = unique_owner("switcher");
    let (c, made) = talk(&*store, &owner).await;
    let moved = store
        .set_current(&owner, &c.id, &made[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.current_message_id.as_ref(), Some(&made[1].id));
    assert_eq!(moved.updated_at, Timestamp::from_millis(5_001_004));
    let got = store
        .get_conversation(&owner, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, moved);
    let (other, theirs) = talk(&*store, &owner).await;
    assert!(store
        .set_current(&owner, &c.id, &theirs[0].id)
        .await
        .is_err());
    assert_eq!(
        store
            .set_current(&unique_owner("x"), &other.id, &theirs[0].id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .set_current(&owner, &ConversationId::generate(), &theirs[0].id)
            .await
            .unwrap(),
        None
    );
}

/// A file record reads back with every field, is replaced whole, and is the owner's only.
pub async fn file_records_keep_every_field(store: Arc<dyn Store>) {
    let owner = unique_owner("filer");
    let mut f = file(None, "report \"q4\" é.pdf");
    f.status = FileStatus::Processing;
    f.progress = Some(40);
    f.pages = Some(12);
    f.note = Some("page 3 is a scan".into());
    store.put_file(&owner, &f).await.unwrap();
    assert_eq!(
        store.get_file(&owner, &f.id).await.unwrap(),
        Some(f.clone())
    );
    assert_eq!(
        store.get_file(&unique_owner("x"), &f.id).await.unwrap(),
        None
    );
    f.conversation_id = Some(ConversationId::generate());
    f.status = FileStatus::Failed;
    f.progress = None;
    f.note = None;
    f.error = Some("damaged".into());
    store.put_file(&owner, &f).await.unwrap();
    assert_eq!(store.get_file(&owner, &f.id).await.unwrap(), Some(f));
}

/// Deleting a conversation removes its messages and file records and returns the files; files of
/// other conversations stay, and a second delete finds nothing.
pub async fn deleting_a_conversation_removes_its_messages_and_files(store: Arc<dyn Store>) {
    let owner = unique_owner("deleter");
    let c = conversation(DEFAULT_TITLE, 6_000_000);
    store.create_conversation(&owner, &c).await.unwrap();
    let attached = file(Some(&c.id), "report.pdf");
    store.put_file(&owner, &attached).await.unwrap();
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
    assert_eq!(deleted, vec![attached.clone()]);
    assert_eq!(store.get_conversation(&owner, &c.id).await.unwrap(), None);
    assert_eq!(store.get_file(&owner, &attached.id).await.unwrap(), None);
    assert!(listed(&*store, &owner, &c.id).await.is_empty());
    assert!(
        store.get_file(&owner, &loose.id).await.unwrap().is_some(),
        "files of other conversations stay"
    );
    assert!(store
        .delete_conversation(&owner, &c.id)
        .await
        .unwrap()
        .is_none());
}

/// Deleting a file record says whether it existed, for its owner only.
pub async fn deleting_a_file_says_whether_it_existed(store: Arc<dyn Store>) {
    let owner = unique_owner("unfiler");
    let f = file(None, "gone.txt");
    store.put_file(&owner, &f).await.unwrap();
    assert!(!store.delete_file(&unique_owner("x"), &f.id).await.unwrap());
    assert!(store.delete_file(&owner, &f.id).await.unwrap());
    assert!(!store.delete_file(&owner, &f.id).await.unwrap());
    assert_eq!(store.get_file(&owner, &f.id).await.unwrap(), None);
}

/// A file record as the stores wrote it before they had records of their own (the API's JSON of
/// `FileMeta`): id `f-old`, conversation `c-old`. Adapter tests store it (as a file's body, and in
/// `[...]` as a message's files) in their own way, then call [`reads_back_the_earlier_format`].
pub const EARLIER_FILE_JSON: &str = r#"{"id":"f-old","conversation_id":"c-old","filename":"notes.txt","content_type":"text/plain","size":12,"file_type":"text","status":"ready","char_count":12,"token_count":3,"pages":null,"error":null,"created_at":"2026-02-28T10:00:00.123Z"}"#;

/// Reads back, for `owner`, file `f-old` stored as [`EARLIER_FILE_JSON`] and message `m-old`
/// with that file attached.
pub async fn reads_back_the_earlier_format(store: &dyn Store, owner: &Owner) {
    let file = store
        .get_file(owner, &FileId::from("f-old"))
        .await
        .unwrap()
        .expect("the file stored in the earlier format");
    assert_eq!(file.filename, "notes.txt");
    assert_eq!(file.file_type, FileType::Text);
    assert_eq!(file.created_at, Timestamp::from_millis(1_772_272_800_123));
    let message = store
        .get_message(owner, &MessageId::from("m-old"))
        .await
        .unwrap()
        .expect("the message stored in the earlier format");
    assert_eq!(message.files, vec![file]);
    assert_eq!(message.usage, None, "written before receipts");
}

/// A conversation as the stores wrote it before message trees: `c-lin`, created at
/// `2026-02-28T10:00:00.000Z`, with these messages (id, role, created at) and no parents, the
/// conversation with no current leaf. Adapter tests store it in their own way, then call
/// [`migrates_a_linear_history`].
pub const LINEAR_MESSAGES: [(&str, &str, &str); 3] = [
    ("m-lin-1", "user", "2026-02-28T10:00:01.000Z"),
    ("m-lin-2", "assistant", "2026-02-28T10:00:02.000Z"),
    ("m-lin-3", "user", "2026-02-28T10:00:03.000Z"),
];

/// The id of the conversation of [`LINEAR_MESSAGES`].
pub const LINEAR_CONVERSATION: &str = "c-lin";

/// Reads back, for `owner`, the conversation of [`LINEAR_MESSAGES`] as one branch: each message
/// the child of the one before, the last one the current leaf; listed the same way; continued
/// from its leaf.
pub async fn migrates_a_linear_history(store: &dyn Store, owner: &Owner) {
    let id = ConversationId::from(LINEAR_CONVERSATION);
    let ids: Vec<MessageId> = LINEAR_MESSAGES
        .iter()
        .map(|m| MessageId::from(m.0))
        .collect();
    let listed = store
        .list_conversations(owner, &first_page(10), None)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].current_message_id.as_ref(), Some(&ids[2]));
    let c = store.get_conversation(owner, &id).await.unwrap().unwrap();
    assert_eq!(c.current_message_id.as_ref(), Some(&ids[2]));
    assert_eq!(c.generating_message_id, None);
    assert_eq!(c.message_count, 3);
    let branch = store.branch(owner, &id, &ids[2], None).await.unwrap();
    assert_eq!(
        branch.iter().map(|m| &m.id).collect::<Vec<_>>(),
        ids.iter().collect::<Vec<_>>()
    );
    assert_eq!(branch[0].parent_id, None);
    assert_eq!(branch[1].parent_id.as_ref(), Some(&ids[0]));
    assert_eq!(branch[2].parent_id.as_ref(), Some(&ids[1]));
    assert_eq!(
        store
            .get_message(owner, &ids[1])
            .await
            .unwrap()
            .unwrap()
            .parent_id
            .as_ref(),
        Some(&ids[0]),
        "the parents are stored"
    );
    // Read again: nothing changes.
    assert_eq!(
        store.get_conversation(owner, &id).await.unwrap().unwrap(),
        c
    );
    let mut next = message(&id, Role::Assistant, "an answer at last", 1_772_272_804_000);
    next.parent_id = Some(ids[2].clone());
    store.add_message(owner, &next).await.unwrap();
    let branch = store.branch(owner, &id, &next.id, None).await.unwrap();
    assert_eq!(branch.len(), 4);
    assert_eq!(
        store
            .get_conversation(owner, &id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        4
    );
}

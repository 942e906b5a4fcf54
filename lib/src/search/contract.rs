//! The contract every `SearchLog` adapter passes, one test per check through
//! [`search_log_contract_tests!`](crate::search_log_contract_tests). Every check uses owners of its
//! own, so a shared server is fine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;

use super::{encode_vector, EntryKind, SearchEntry, SearchLog};
use crate::domain::{ConversationId, FileId, MessageId, Owner, Timestamp};

/// One `#[tokio::test]` per check of the `SearchLog` contract, in `mod $name`, against the adapter
/// the setup (an `async` block giving `Option<Subject<_>>`) builds.
#[macro_export]
macro_rules! search_log_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(search; $name, $setup;
            appended_entries_read_back_whole_and_in_order,
            a_read_after_the_watermark_returns_everything_appended_since,
            appending_an_id_again_replaces_it,
            owners_never_see_each_others_entries,
            removing_a_conversation_removes_its_entries_and_bumps_the_generation,
            removing_a_file_removes_its_chunks_and_bumps_the_generation,
        );
    };
}

fn owner() -> Owner {
    Owner::new(format!("search-{}", uuid::Uuid::now_v7().simple()))
}

fn message(conversation: &ConversationId, text: &str, at: i64) -> SearchEntry {
    let id = MessageId::generate();
    SearchEntry {
        id: id.as_str().to_owned(),
        kind: EntryKind::Message,
        conversation_id: Some(conversation.clone()),
        message_id: Some(id),
        file_id: None,
        chunk: None,
        label: None,
        created_at: Timestamp::from_millis(at),
        text: text.into(),
        vector: encode_vector(&[0.6, 0.8, 0.0]),
    }
}

fn chunk(file: &FileId, n: u32, text: &str) -> SearchEntry {
    SearchEntry {
        id: format!("{file}#{n}"),
        kind: EntryKind::File,
        conversation_id: None,
        message_id: None,
        file_id: Some(file.clone()),
        chunk: Some(n),
        label: Some(format!("page {}", n + 1)),
        created_at: Timestamp::from_millis(1_000),
        text: text.into(),
        vector: Vec::new(),
    }
}

fn texts(entries: &[SearchEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.text.as_str()).collect()
}

/// What goes in comes out, field for field, oldest first.
pub async fn appended_entries_read_back_whole_and_in_order<L: SearchLog + ?Sized>(l: Arc<L>) {
    let o = owner();
    let c = ConversationId::generate();
    let f = FileId::generate();
    let a = message(&c, "first message", 1_700_000_000_123);
    let b = chunk(&f, 6, "page seven text");
    l.append(&o, std::slice::from_ref(&a)).await.unwrap();
    l.append(&o, std::slice::from_ref(&b)).await.unwrap();
    let page = l.read(&o, None).await.unwrap();
    assert_eq!(page.entries, vec![a.clone(), b]);
    assert!(page.watermark.is_some());
    assert_eq!(
        page.entries[0].vector(),
        Some(vec![0.6, 0.8, 0.0])
            .map(|v: Vec<f32>| v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect())
    );
    let empty = l.read(&owner(), None).await.unwrap();
    assert!(empty.entries.is_empty());
    assert_eq!(empty.watermark, None);
}

/// The log a reader holds after applying `page` to `held`: an entry with an id held before
/// replaces it, a new one goes last.
fn apply(held: &mut Vec<SearchEntry>, page: &super::LogPage) {
    for e in &page.entries {
        match held.iter_mut().find(|h| h.id == e.id) {
            Some(h) => *h = e.clone(),
            None => held.push(e.clone()),
        }
    }
}

/// A read from a watermark returns every entry appended after the read that issued it, oldest
/// first. Stores without a sequence shared by every instance may return entries read before
/// again, so nothing more is promised: applied in order, by id, the reads give the log as it is.
pub async fn a_read_after_the_watermark_returns_everything_appended_since<L: SearchLog + ?Sized>(
    l: Arc<L>,
) {
    let o = owner();
    let c = ConversationId::generate();
    l.append(&o, &[message(&c, "one", 1), message(&c, "two", 2)])
        .await
        .unwrap();
    let first = l.read(&o, None).await.unwrap();
    assert_eq!(texts(&first.entries), ["one", "two"]);
    let mut held = Vec::new();
    apply(&mut held, &first);
    // Nothing new: at most what was read already, and the same generation.
    let quiet = l
        .read(&o, Some(&first.watermark.clone().unwrap()))
        .await
        .unwrap();
    assert!(
        quiet.entries.iter().all(|e| first.entries.contains(e)),
        "{:?}",
        quiet.entries
    );
    assert_eq!(quiet.generation, first.generation);
    apply(&mut held, &quiet);
    let w = quiet.watermark.unwrap();
    l.append(&o, &[message(&c, "three", 3)]).await.unwrap();
    let next = l.read(&o, Some(&w)).await.unwrap();
    assert_eq!(texts(&next.entries).last(), Some(&"three"));
    apply(&mut held, &next);
    assert_eq!(texts(&held), ["one", "two", "three"]);
    let last = l.read(&o, Some(&next.watermark.unwrap())).await.unwrap();
    apply(&mut held, &last);
    assert_eq!(texts(&held), ["one", "two", "three"]);
    assert_eq!(held, l.read(&o, None).await.unwrap().entries);
}

/// An id appended again replaces the earlier entry (one copy stays in the log), and an
/// incremental reader sees the new one.
pub async fn appending_an_id_again_replaces_it<L: SearchLog + ?Sized>(l: Arc<L>) {
    let o = owner();
    let f = FileId::generate();
    l.append(&o, &[chunk(&f, 0, "old text")]).await.unwrap();
    let w = l.read(&o, None).await.unwrap().watermark.unwrap();
    let mut again = chunk(&f, 0, "new text");
    again.vector = encode_vector(&[1.0, 0.0]);
    l.append(&o, std::slice::from_ref(&again)).await.unwrap();
    assert_eq!(l.read(&o, Some(&w)).await.unwrap().entries, vec![again]);
    assert_eq!(
        texts(&l.read(&o, None).await.unwrap().entries),
        ["new text"]
    );
}

/// One owner's entries never reach another's reads, and removals are per owner.
pub async fn owners_never_see_each_others_entries<L: SearchLog + ?Sized>(l: Arc<L>) {
    let (a, b) = (owner(), owner());
    let c = ConversationId::generate();
    let f = FileId::generate();
    l.append(
        &a,
        &[
            message(&c, "alice's secret", 1),
            chunk(&f, 0, "alice's file"),
        ],
    )
    .await
    .unwrap();
    l.append(&b, &[message(&c, "bob's note", 2)]).await.unwrap();
    assert_eq!(
        texts(&l.read(&a, None).await.unwrap().entries),
        ["alice's secret", "alice's file"]
    );
    assert_eq!(
        texts(&l.read(&b, None).await.unwrap().entries),
        ["bob's note"]
    );
    l.remove_conversation(&b, &c).await.unwrap();
    l.remove_file(&b, &f).await.unwrap();
    assert_eq!(l.read(&a, None).await.unwrap().entries.len(), 2);
    assert!(l.read(&b, None).await.unwrap().entries.is_empty());
}

/// Deleting a conversation removes its messages' entries (not others'), and the generation moves
/// so that caches reload.
pub async fn removing_a_conversation_removes_its_entries_and_bumps_the_generation<
    L: SearchLog + ?Sized,
>(
    l: Arc<L>,
) {
    let o = owner();
    let (gone, kept) = (ConversationId::generate(), ConversationId::generate());
    l.append(
        &o,
        &[
            message(&gone, "to be deleted", 1),
            message(&kept, "to be kept", 2),
            message(&gone, "also deleted", 3),
        ],
    )
    .await
    .unwrap();
    let before = l.read(&o, None).await.unwrap();
    l.remove_conversation(&o, &gone).await.unwrap();
    let after = l.read(&o, None).await.unwrap();
    assert_eq!(texts(&after.entries), ["to be kept"]);
    assert_ne!(after.generation, before.generation);
    // An incremental reader learns of the removal through the generation.
    let since = l.read(&o, before.watermark.as_deref()).await.unwrap();
    assert_eq!(since.generation, after.generation);
}

/// Deleting a file removes every chunk of it (not other files'), and the generation moves.
pub async fn removing_a_file_removes_its_chunks_and_bumps_the_generation<L: SearchLog + ?Sized>(
    l: Arc<L>,
) {
    let o = owner();
    let (gone, kept) = (FileId::generate(), FileId::generate());
    l.append(
        &o,
        &[
            chunk(&gone, 0, "gone 0"),
            chunk(&kept, 0, "kept 0"),
            chunk(&gone, 1, "gone 1"),
        ],
    )
    .await
    .unwrap();
    let before = l.read(&o, None).await.unwrap().generation;
    l.remove_file(&o, &gone).await.unwrap();
    let after = l.read(&o, None).await.unwrap();
    assert_eq!(texts(&after.entries), ["kept 0"]);
    assert_ne!(after.generation, before);
}

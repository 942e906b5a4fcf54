//! The search log in the DynamoDB table of the store, in one partition per owner:
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | entry | `U#{owner}#S` | `E#{stamp, 20 digits}#{id}` | `id`, `kind`, `conversation_id`, `message_id`, `file_id`, `chunk`, `label`, `created_at`, `text`, `v` (f16 vector, binary) |
//! | reference | `U#{owner}#S` | `R#C#{conversation}#{id}`, `R#F#{file}#{id}` (`R#N#{id}` for an entry with neither) | `e`: the entry's `sk` |
//! | generation | `U#{owner}#S` | `G` | `generation` (a number, `ADD 1` on every removal) |
//!
//! The stamp is the write time in microseconds (`search::stamped`): a read queries
//! `sk BETWEEN E#{watermark − 10 s} AND E#~`, following `LastEvaluatedKey`, and keeps the newest
//! copy of each id. An entry is at most ~9 KB (2,000 characters and a 768-byte vector), far below
//! the 400 KB item limit.
//!
//! References exist so that neither a removal nor a replacement reads the whole log (megabytes
//! for a heavy user): removing a conversation or a file queries its references (a few hundred
//! bytes each) and deletes them with the entries they name; appending an id again puts its
//! reference with `ReturnValues=ALL_OLD`, which names the entry it replaces, and deletes that one.
//! Concurrent appends of the same id each delete what their put replaced, so one copy stays.
//! Reads and the generation are strongly consistent; the generation is read before the entries,
//! and bumped after a removal's deletes, so a reader that saw the old generation reloads.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use futures::{StreamExt, TryStreamExt};

use super::{stamped, LogPage, SearchEntry, SearchLog};
use crate::domain::{ConversationId, FileId, Owner};
use crate::store::dynamodb::{get_n, get_s, key, n, s, unavailable, Item, Pages, Table};
use crate::store::StoreError;

/// The generation's sort key.
const GENERATION: &str = "G";
/// Above every entry's sort key (`~` sorts after the digits of a stamp).
const ENTRIES_END: &str = "E#~";
/// Reference puts in flight at once during an append.
const IN_FLIGHT: usize = 8;

/// The search log in a DynamoDB table (the store's).
#[derive(Clone)]
pub struct DynamoSearchLog {
    table: Table,
}

fn log_pk(owner: &Owner) -> String {
    format!("U#{}#S", owner.as_str())
}

fn entry_sk(stamp: i64, id: &str) -> String {
    format!("E#{stamp:020}#{id}")
}

fn stamp_of(sk: &str) -> Result<i64, StoreError> {
    sk.get(2..22)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("search entry key {sk} has no stamp")))
}

fn conversation_refs(id: &ConversationId) -> String {
    format!("R#C#{}#", id.as_str())
}

fn file_refs(id: &FileId) -> String {
    format!("R#F#{}#", id.as_str())
}

/// The references an entry is found by: its conversation's and its file's.
fn refs(e: &SearchEntry) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = &e.conversation_id {
        out.push(format!("{}{}", conversation_refs(c), e.id));
    }
    if let Some(f) = &e.file_id {
        out.push(format!("{}{}", file_refs(f), e.id));
    }
    if out.is_empty() {
        out.push(format!("R#N#{}", e.id));
    }
    out
}

fn entry_item(pk: &str, sk: String, e: &SearchEntry) -> Item {
    let mut item = key(pk.to_owned(), sk);
    item.extend([
        ("id".to_owned(), s(&e.id)),
        ("kind".to_owned(), s(e.kind.as_str())),
        ("created_at".to_owned(), n(e.created_at.millis())),
        ("text".to_owned(), s(stamped::text(e))),
    ]);
    let optional = [
        (
            "conversation_id",
            e.conversation_id.as_ref().map(|c| c.as_str()),
        ),
        ("message_id", e.message_id.as_ref().map(|m| m.as_str())),
        ("file_id", e.file_id.as_ref().map(|f| f.as_str())),
        ("label", e.label.as_deref()),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            item.insert(k.to_owned(), s(v));
        }
    }
    if let Some(c) = e.chunk {
        item.insert("chunk".to_owned(), n(c));
    }
    if !e.vector.is_empty() {
        item.insert(
            "v".to_owned(),
            AttributeValue::B(Blob::new(e.vector.clone())),
        );
    }
    item
}

fn entry_from(item: &Item) -> Result<(i64, SearchEntry), StoreError> {
    let stamp = stamp_of(get_s(item, "sk")?)?;
    let chunk = match item.get("chunk") {
        None => None,
        Some(_) => Some(
            u32::try_from(get_n(item, "chunk")?)
                .map_err(|_| StoreError::Corrupt("a negative chunk".into()))?,
        ),
    };
    let vector = match item.get("v") {
        Some(AttributeValue::B(b)) => b.clone().into_inner(),
        None => Vec::new(),
        Some(_) => return Err(StoreError::Corrupt("`v` is not binary".into())),
    };
    Ok((stamp, stamped::entry(item, chunk, vector)?))
}

impl DynamoSearchLog {
    /// The log in `table` (the store's).
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    async fn generation(&self, pk: &str) -> Result<u64, StoreError> {
        match self
            .table
            .get_item(key(pk.to_owned(), GENERATION.into()))
            .await?
        {
            Some(item) => Ok(get_n(&item, "generation")?.max(0) as u64),
            None => Ok(0),
        }
    }

    /// Puts a reference to `entry`, giving the entry it referred to before (if another).
    async fn point(
        &self,
        pk: String,
        reference: String,
        entry: String,
    ) -> Result<Option<String>, StoreError> {
        let mut item = key(pk, reference);
        item.insert("e".to_owned(), s(entry.clone()));
        let out = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(item))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out
            .attributes
            .as_ref()
            .and_then(|old| get_s(old, "e").ok())
            .filter(|old| *old != entry.as_str())
            .map(str::to_owned))
    }

    /// Deletes the entries under a reference prefix, their references, then bumps the generation.
    async fn remove(&self, owner: &Owner, prefix: String) -> Result<(), StoreError> {
        let pk = log_pk(owner);
        let found = Pages::new(
            self.table
                .query()
                .key_condition_expression("pk = :p AND begins_with(sk, :r)")
                .expression_attribute_values(":p", s(pk.clone()))
                .expression_attribute_values(":r", s(prefix))
                .consistent_read(true),
        )
        .collect(usize::MAX)
        .await?;
        let mut keys = Vec::with_capacity(found.len() * 2);
        let mut entries = HashSet::new();
        for r in &found {
            keys.push(key(pk.clone(), get_s(r, "sk")?.to_owned()));
            let e = get_s(r, "e")?;
            if entries.insert(e.to_owned()) {
                keys.push(key(pk.clone(), e.to_owned()));
            }
        }
        self.table.delete_keys(keys).await?;
        self.table
            .client()
            .update_item()
            .table_name(self.table.name())
            .set_key(Some(key(pk, GENERATION.into())))
            .update_expression("ADD #g :one")
            .expression_attribute_names("#g", "generation")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl SearchLog for DynamoSearchLog {
    async fn append(&self, owner: &Owner, entries: &[SearchEntry]) -> Result<(), StoreError> {
        let pk = log_pk(owner);
        let stamped: Vec<(String, &SearchEntry)> = stamped::last_per_id(entries)
            .into_iter()
            .map(|e| (entry_sk(stamped::next(), &e.id), e))
            .collect();
        // The entries first, so that a reference never names an entry that is not there yet.
        self.table
            .put_items(
                stamped
                    .iter()
                    .map(|(sk, e)| entry_item(&pk, sk.clone(), e))
                    .collect(),
            )
            .await?;
        let mut pointers = Vec::new();
        for (sk, e) in &stamped {
            pointers.extend(refs(e).into_iter().map(|r| (r, sk.clone())));
        }
        let replaced: Vec<Option<String>> = futures::stream::iter(pointers)
            .map(|(r, sk)| {
                let (log, pk) = (self.clone(), pk.clone());
                async move { log.point(pk, r, sk).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        let replaced: HashSet<String> = replaced.into_iter().flatten().collect();
        self.table
            .delete_keys(replaced.into_iter().map(|sk| key(pk.clone(), sk)).collect())
            .await
    }

    async fn read(&self, owner: &Owner, after: Option<&str>) -> Result<LogPage, StoreError> {
        let after = stamped::watermark(after)?;
        let pk = log_pk(owner);
        // The generation first: a removal that ends during the query shows as a new generation
        // at the next read.
        let generation = self.generation(&pk).await?;
        let mut pages = Pages::new(
            self.table
                .query()
                .key_condition_expression("pk = :p AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":p", s(pk))
                .expression_attribute_values(":from", s(entry_sk(stamped::read_from(after), "")))
                .expression_attribute_values(":to", s(ENTRIES_END))
                .consistent_read(true),
        );
        let mut rows = Vec::new();
        while let Some(items) = pages.next().await? {
            for item in &items {
                rows.push(entry_from(item)?);
            }
        }
        Ok(stamped::page(rows, after, generation))
    }

    async fn remove_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<(), StoreError> {
        self.remove(owner, conversation_refs(id)).await
    }

    async fn remove_file(&self, owner: &Owner, id: &FileId) -> Result<(), StoreError> {
        self.remove(owner, file_refs(id)).await
    }
}

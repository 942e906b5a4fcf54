//! The search log in MongoDB: collection `search_entries`, one document per entry (`owner`, `id`
//! unique together, its fields, `v` the f16 vector as binary, `w` its write stamp), and
//! `search_generations` (`_id` the owner, `generation` moved by `$inc` on every removal).
//!
//! There is no sequence shared by every instance, so entries carry a write stamp
//! (`search::stamped`) and a read asks for `w ≥ watermark − 10 s` in `(w, id)` order (index
//! `(owner, w, id)`), keeping the newest copy of each id. The stamp is the write time, not the
//! entry's `created_at`: an entry written now for an old message or file must still reach readers
//! whose watermark has passed its `created_at`. Appending an id again replaces its document in
//! place (upsert on `(owner, id)`) with a new stamp. Removals delete by `(owner,
//! conversation_id)` or `(owner, file_id)` (indexed), then bump the generation.

use ::mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use ::mongodb::options::IndexOptions;
use ::mongodb::{Collection, Database, IndexModel};
use async_trait::async_trait;

use super::{stamped, LogPage, SearchEntry, SearchLog};
use crate::domain::{ConversationId, FileId, Owner};
use crate::store::mongodb::{all, unavailable};
use crate::store::record::Fields;
use crate::store::StoreError;

/// The search log in a MongoDB database (the store's).
#[derive(Clone)]
pub struct MongoSearchLog {
    entries: Collection<Document>,
    generations: Collection<Document>,
}

fn or_null(v: Option<&str>) -> Bson {
    v.map_or(Bson::Null, |v| Bson::String(v.to_owned()))
}

fn entry_doc(owner: &Owner, stamp: i64, e: &SearchEntry) -> Document {
    doc! {
        "owner": owner.as_str(),
        "id": &e.id,
        "w": stamp,
        "kind": e.kind.as_str(),
        "conversation_id": or_null(e.conversation_id.as_ref().map(|c| c.as_str())),
        "message_id": or_null(e.message_id.as_ref().map(|m| m.as_str())),
        "file_id": or_null(e.file_id.as_ref().map(|f| f.as_str())),
        "chunk": e.chunk.map_or(Bson::Null, |c| Bson::Int64(i64::from(c))),
        "label": or_null(e.label.as_deref()),
        "created_at": e.created_at.millis(),
        "text": stamped::text(e),
        "v": Binary { subtype: BinarySubtype::Generic, bytes: e.vector.clone() },
    }
}

fn entry_from(d: &Document) -> Result<(i64, SearchEntry), StoreError> {
    let chunk = match d.get("chunk") {
        None | Some(Bson::Null) => None,
        Some(_) => Some(
            u32::try_from(d.whole("chunk")?)
                .map_err(|_| StoreError::Corrupt("a negative chunk".into()))?,
        ),
    };
    let vector = match d.get("v") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => return Err(StoreError::Corrupt("`v` is not binary".into())),
    };
    Ok((d.whole("w")?, stamped::entry(d, chunk, vector)?))
}

impl MongoSearchLog {
    /// The log in `db`, creating its indexes when they are missing.
    pub async fn open(db: &Database) -> Result<Self, StoreError> {
        let log = Self::new(db);
        let index = |keys: Document, unique: bool| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(unique).build())
                .build()
        };
        for (keys, unique) in [
            (doc! {"owner": 1, "id": 1}, true),
            (doc! {"owner": 1, "w": 1, "id": 1}, false),
            (doc! {"owner": 1, "conversation_id": 1}, false),
            (doc! {"owner": 1, "file_id": 1}, false),
        ] {
            log.entries
                .create_index(index(keys, unique))
                .await
                .map_err(unavailable)?;
        }
        Ok(log)
    }

    /// The log in `db`, as it is.
    pub fn new(db: &Database) -> Self {
        Self {
            entries: db.collection("search_entries"),
            generations: db.collection("search_generations"),
        }
    }

    async fn remove(&self, owner: &Owner, filter: Document) -> Result<(), StoreError> {
        self.entries
            .delete_many(filter)
            .await
            .map_err(unavailable)?;
        self.generations
            .update_one(
                doc! {"_id": owner.as_str()},
                doc! {"$inc": {"generation": 1_i64}},
            )
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl SearchLog for MongoSearchLog {
    async fn append(&self, owner: &Owner, entries: &[SearchEntry]) -> Result<(), StoreError> {
        for e in stamped::last_per_id(entries) {
            let filter = doc! {"owner": owner.as_str(), "id": &e.id};
            let replacement = entry_doc(owner, stamped::next(), e);
            let first = self
                .entries
                .replace_one(filter.clone(), replacement.clone())
                .upsert(true)
                .await;
            if let Err(first) = first {
                // Two upserts of a new id at once: one inserts, the other hits the unique
                // index; replacing again finds the document.
                if !matches!(*first.kind, ::mongodb::error::ErrorKind::Write(_)) {
                    return Err(unavailable(first));
                }
                self.entries
                    .replace_one(filter, replacement)
                    .upsert(true)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    async fn read(&self, owner: &Owner, after: Option<&str>) -> Result<LogPage, StoreError> {
        let after = stamped::watermark(after)?;
        // The generation first: a removal that ends during the query shows as a new generation
        // at the next read.
        let generation = match self
            .generations
            .find_one(doc! {"_id": owner.as_str()})
            .await
            .map_err(unavailable)?
        {
            Some(d) => d.whole("generation")?.max(0) as u64,
            None => 0,
        };
        let rows = all(
            self.entries
                .find(doc! {"owner": owner.as_str(), "w": {"$gte": stamped::read_from(after)}})
                .sort(doc! {"w": 1, "id": 1}),
            entry_from,
        )
        .await?;
        Ok(stamped::page(rows, after, generation))
    }

    async fn remove_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<(), StoreError> {
        self.remove(
            owner,
            doc! {"owner": owner.as_str(), "conversation_id": id.as_str()},
        )
        .await
    }

    async fn remove_file(&self, owner: &Owner, id: &FileId) -> Result<(), StoreError> {
        self.remove(
            owner,
            doc! {"owner": owner.as_str(), "file_id": id.as_str()},
        )
        .await
    }
}

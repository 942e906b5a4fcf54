//! The MongoDB store: collections `conversations`, `messages` and `files`, each document keyed by
//! its id (`_id`) and carrying its `owner`; every query filters by owner, so another owner's id
//! reads as absent.
//!
//! Indexes: `(owner, updated_at desc, _id desc)` on conversations (the newest-first list and its
//! keyset cursors), `(owner, conversation_id, created_at, _id)` on messages, `(owner,
//! conversation_id)` on files. Timestamps are stored as fixed-width RFC 3339 strings (they sort in
//! time order and read back exactly); message files and file records as the JSON text of
//! `store::record::FileRecord`, as in SQLite.
//!
//! Without multi-document transactions (a single-node server has none), adding a message first
//! bumps the conversation (`$inc` + `$max`) and then inserts the message, undoing the bump if the
//! insert fails.

use std::future::IntoFuture;

use ::mongodb::bson::{doc, Bson, Document};
use ::mongodb::options::ReturnDocument;
use ::mongodb::{Client, Collection, Cursor, Database, IndexModel};
use async_trait::async_trait;
use futures::TryStreamExt;

use super::cursor::{page, Keyset};
use super::record::{self, Fields};
use super::{PageRequest, Store, StoreError};
use crate::domain::{
    Conversation, ConversationId, FileId, FileMeta, Message, MessageId, Owner, Page, Timestamp,
    DEFAULT_TITLE,
};

/// Conversations, messages and file records in one MongoDB database.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    conversations: Collection<Document>,
    messages: Collection<Document>,
    files: Collection<Document>,
}

fn unavailable(e: ::mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl Fields for Document {
    const ID: &'static str = "_id";

    fn text(&self, name: &str) -> Result<String, StoreError> {
        match self.get(name) {
            Some(Bson::String(v)) => Ok(v.clone()),
            other => Err(corrupt(format!("`{name}` is not text: {other:?}"))),
        }
    }

    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.get(name) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::String(v)) => Ok(Some(v.clone())),
            other => Err(corrupt(format!("`{name}` is not text: {other:?}"))),
        }
    }

    /// Numbers may come back as 32- or 64-bit integers or doubles, depending on the server.
    fn whole(&self, name: &str) -> Result<i64, StoreError> {
        match self.get(name) {
            Some(Bson::Int32(v)) => Ok(i64::from(*v)),
            Some(Bson::Int64(v)) => Ok(*v),
            Some(Bson::Double(v)) if v.fract() == 0.0 => Ok(*v as i64),
            other => Err(corrupt(format!("`{name}` is not a count: {other:?}"))),
        }
    }
}

/// Every document a query finds, converted.
async fn all<T>(
    find: impl IntoFuture<Output = ::mongodb::error::Result<Cursor<Document>>>,
    from: fn(&Document) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let docs: Vec<Document> = find
        .await
        .map_err(unavailable)?
        .try_collect()
        .await
        .map_err(unavailable)?;
    docs.iter().map(from).collect()
}

/// The one document a query finds (or changes), converted, or `None`.
async fn one<T>(
    found: impl IntoFuture<Output = ::mongodb::error::Result<Option<Document>>>,
    from: fn(&Document) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    found
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(from)
        .transpose()
}

/// A keyset page of `collection`: the documents under `filter` past the request's cursor, ordered
/// by the time `field` then `_id`, newest or oldest first.
async fn keyset_page<T: Keyset>(
    collection: &Collection<Document>,
    filter: Document,
    (field, newest_first): (&str, bool),
    request: &PageRequest,
    from: fn(&Document) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let (past, order) = if newest_first {
        ("$lt", -1)
    } else {
        ("$gt", 1)
    };
    let filter = match request.after()? {
        Some((at, id)) => doc! {"$and": [filter, {"$or": [
            {field: {past: &at}},
            {field: &at, "_id": {past: &id}},
        ]}]},
        None => filter,
    };
    let rows = all(
        collection
            .find(filter)
            .sort(doc! {field: order, "_id": order})
            .limit(request.fetch() as i64),
        from,
    )
    .await?;
    Ok(page(rows, request))
}

/// `q` as a literal inside a regular expression.
fn regex_escape(q: &str) -> String {
    let mut out = String::with_capacity(q.len() * 2);
    for c in q.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn count(v: u64) -> Bson {
    Bson::Int64(i64::try_from(v).unwrap_or(i64::MAX))
}

impl MongoStore {
    /// Connects to `uri` and uses database `db`, creating the indexes when they are missing.
    pub async fn connect(uri: &str, db: &str) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(uri).await.map_err(unavailable)?;
        let store = Self::new(client.database(db));
        store.ensure_indexes().await?;
        Ok(store)
    }

    /// Uses a database handle as it is.
    pub fn new(db: Database) -> Self {
        Self {
            conversations: db.collection("conversations"),
            messages: db.collection("messages"),
            files: db.collection("files"),
            db,
        }
    }

    /// The database (the accounts live in it too).
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Creates the indexes (idempotent), the accounts' included.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        crate::accounts::mongodb::ensure_indexes(&self.db).await?;
        crate::ledger::mongodb::ensure_indexes(&self.db).await?;
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        self.conversations
            .create_index(index(doc! {"owner": 1, "updated_at": -1, "_id": -1}))
            .await
            .map_err(unavailable)?;
        self.messages
            .create_index(index(
                doc! {"owner": 1, "conversation_id": 1, "created_at": 1, "_id": 1},
            ))
            .await
            .map_err(unavailable)?;
        self.files
            .create_index(index(doc! {"owner": 1, "conversation_id": 1}))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn by_id(owner: &Owner, id: &str) -> Document {
        doc! {"_id": id, "owner": owner.as_str()}
    }

    /// Conversation ids that have a message containing `pattern` (a case-insensitive regex).
    async fn conversations_with_message(
        &self,
        owner: &Owner,
        pattern: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = all(
            self.messages
                .find(
                    doc! {"owner": owner.as_str(), "content": {"$regex": pattern, "$options": "i"}},
                )
                .projection(doc! {"conversation_id": 1}),
            |d| d.text("conversation_id"),
        )
        .await?;
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn health(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn create_conversation(&self, owner: &Owner, c: &Conversation) -> Result<(), StoreError> {
        self.conversations
            .insert_one(doc! {
                "_id": c.id.as_str(),
                "owner": owner.as_str(),
                "title": &c.title,
                "title_default": c.title == DEFAULT_TITLE,
                "message_count": count(c.message_count),
                "created_at": c.created_at.to_rfc3339(),
                "updated_at": c.updated_at.to_rfc3339(),
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        one(
            self.conversations.find_one(Self::by_id(owner, id.as_str())),
            Document::conversation,
        )
        .await
    }

    async fn list_conversations(
        &self,
        owner: &Owner,
        request: &PageRequest,
        query: Option<&str>,
    ) -> Result<Page<Conversation>, StoreError> {
        let mut filter = doc! {"owner": owner.as_str()};
        if let Some(q) = query.map(str::trim).filter(|q| !q.is_empty()) {
            let pattern = regex_escape(q);
            let ids = self.conversations_with_message(owner, &pattern).await?;
            filter.insert(
                "$or",
                vec![
                    doc! {"title": {"$regex": &pattern, "$options": "i"}},
                    doc! {"_id": {"$in": ids}},
                ],
            );
        }
        let order = ("updated_at", true);
        keyset_page(
            &self.conversations,
            filter,
            order,
            request,
            Document::conversation,
        )
        .await
    }

    async fn rename_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
        at: Timestamp,
    ) -> Result<Option<Conversation>, StoreError> {
        one(
            self.conversations
                .find_one_and_update(
                    Self::by_id(owner, id.as_str()),
                    doc! {
                        "$set": {"title": title, "title_default": false},
                        "$max": {"updated_at": at.to_rfc3339()},
                    },
                )
                .return_document(ReturnDocument::After),
            Document::conversation,
        )
        .await
    }

    async fn set_auto_title(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
    ) -> Result<bool, StoreError> {
        let mut filter = Self::by_id(owner, id.as_str());
        filter.insert("title_default", true);
        let r = self
            .conversations
            .update_one(
                filter,
                doc! {"$set": {"title": title, "title_default": false}},
            )
            .await
            .map_err(unavailable)?;
        Ok(r.matched_count > 0)
    }

    async fn delete_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Vec<FileMeta>>, StoreError> {
        let gone = self
            .conversations
            .delete_one(Self::by_id(owner, id.as_str()))
            .await
            .map_err(unavailable)?;
        if gone.deleted_count == 0 {
            return Ok(None);
        }
        let children = doc! {"owner": owner.as_str(), "conversation_id": id.as_str()};
        let files = all(self.files.find(children.clone()), Document::file).await?;
        self.files
            .delete_many(children.clone())
            .await
            .map_err(unavailable)?;
        self.messages
            .delete_many(children)
            .await
            .map_err(unavailable)?;
        Ok(Some(files))
    }

    async fn add_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let files = record::files_json(&m.files)?;
        let usage = record::receipt_json(m.usage.as_ref())?;
        let conv = Self::by_id(owner, m.conversation_id.as_str());
        let bumped = self
            .conversations
            .update_one(
                conv.clone(),
                doc! {
                    "$inc": {"message_count": 1_i64},
                    "$max": {"updated_at": m.created_at.to_rfc3339()},
                },
            )
            .await
            .map_err(unavailable)?;
        if bumped.matched_count == 0 {
            return Err(StoreError::Corrupt(format!(
                "conversation {} does not exist",
                m.conversation_id
            )));
        }
        let inserted = self
            .messages
            .insert_one(doc! {
                "_id": m.id.as_str(),
                "owner": owner.as_str(),
                "conversation_id": m.conversation_id.as_str(),
                "role": m.role.as_str(),
                "content": &m.content,
                "files": files,
                "token_count": count(m.token_count),
                "status": m.status.as_str(),
                "created_at": m.created_at.to_rfc3339(),
                "usage": usage,
            })
            .await;
        if let Err(e) = inserted {
            let _ = self
                .conversations
                .update_one(conv, doc! {"$inc": {"message_count": -1_i64}})
                .await;
            return Err(unavailable(e));
        }
        Ok(())
    }

    async fn update_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let usage = record::receipt_json(m.usage.as_ref())?;
        self.messages
            .update_one(
                Self::by_id(owner, m.id.as_str()),
                doc! {"$set": {
                    "content": &m.content,
                    "token_count": count(m.token_count),
                    "status": m.status.as_str(),
                    "usage": usage,
                }},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_message(
        &self,
        owner: &Owner,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        one(
            self.messages.find_one(Self::by_id(owner, id.as_str())),
            Document::message,
        )
        .await
    }

    async fn list_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        request: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let filter = doc! {"owner": owner.as_str(), "conversation_id": conversation.as_str()};
        let order = ("created_at", false);
        keyset_page(&self.messages, filter, order, request, Document::message).await
    }

    async fn recent_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        if limit == 0 {
            return Ok(vec![]);
        }
        let mut items = all(
            self.messages
                .find(doc! {"owner": owner.as_str(), "conversation_id": conversation.as_str()})
                .sort(doc! {"created_at": -1, "_id": -1})
                .limit(i64::from(limit)),
            Document::message,
        )
        .await?;
        items.reverse();
        Ok(items)
    }

    async fn put_file(&self, owner: &Owner, f: &FileMeta) -> Result<(), StoreError> {
        let body = record::file_json(f)?;
        let conversation = f
            .conversation_id
            .as_ref()
            .map_or(Bson::Null, |c| Bson::String(c.as_str().to_owned()));
        self.files
            .replace_one(
                Self::by_id(owner, f.id.as_str()),
                doc! {
                    "_id": f.id.as_str(),
                    "owner": owner.as_str(),
                    "conversation_id": conversation,
                    "body": body,
                },
            )
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_file(&self, owner: &Owner, id: &FileId) -> Result<Option<FileMeta>, StoreError> {
        one(
            self.files.find_one(Self::by_id(owner, id.as_str())),
            Document::file,
        )
        .await
    }

    async fn delete_file(&self, owner: &Owner, id: &FileId) -> Result<bool, StoreError> {
        let r = self
            .files
            .delete_one(Self::by_id(owner, id.as_str()))
            .await
            .map_err(unavailable)?;
        Ok(r.deleted_count > 0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn regex_metacharacters_are_literal() {
        assert_eq!(super::regex_escape("100%"), "100%");
        assert_eq!(super::regex_escape("a.b*(c)"), "a\\.b\\*\\(c\\)");
    }
}

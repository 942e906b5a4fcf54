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
//! Message trees: a message document holds `parent_id` (null for a first message), a conversation
//! `current_message_id` and `generating_message_id`. Documents written before trees lack these
//! fields; a conversation read in that state is migrated once, in place ([`MongoStore::upgrade`]).
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
use super::tree::Walk;
use super::{PageRequest, Store, StoreError, TurnStart};
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

pub(crate) fn unavailable(e: ::mongodb::error::Error) -> StoreError {
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
pub(crate) async fn all<T>(
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

/// An optional id: its text, or null.
fn id_or_null(id: Option<&MessageId>) -> Bson {
    id.map_or(Bson::Null, |m| Bson::String(m.as_str().to_owned()))
}

/// The document of a message.
fn message_doc(owner: &Owner, m: &Message) -> Result<Document, StoreError> {
    let files = record::files_json(&m.files)?;
    let usage = record::receipt_json(m.usage.as_ref())?;
    let citations = record::citations_json(&m.citations)?;
    Ok(doc! {
        "_id": m.id.as_str(),
        "owner": owner.as_str(),
        "conversation_id": m.conversation_id.as_str(),
        "parent_id": id_or_null(m.parent_id.as_ref()),
        "role": m.role.as_str(),
        "content": &m.content,
        "files": files,
        "token_count": count(m.token_count),
        "status": m.status.as_str(),
        "created_at": m.created_at.to_rfc3339(),
        "usage": usage,
        "citations": citations,
    })
}

impl MongoStore {
    /// Connects to `uri` and uses database `db`, creating the indexes when they are missing.
    pub async fn connect(uri: &str, db: &str) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(uri).await.map_err(unavailable)?;
        let store = Self::new(client.database(db));
        store.ensure_indexes().await?;
        Ok(store)
    }

    /// The database it uses (the accounts and the turn log live in it too).
    pub fn database(&self) -> &Database {
        &self.db
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

    /// Adds `messages` to an existing conversation: first counts them on it (moving `updated_at`,
    /// the current leaf and, when given, the answer being generated), then inserts them; when an
    /// insert fails, the inserted ones go and the count is undone.
    async fn append(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        messages: &[&Message],
        at: Timestamp,
        leaf: &MessageId,
        generating: Option<&MessageId>,
    ) -> Result<(), StoreError> {
        let docs = messages
            .iter()
            .map(|m| message_doc(owner, m))
            .collect::<Result<Vec<_>, _>>()?;
        let conv = Self::by_id(owner, conversation.as_str());
        let mut set = doc! {"current_message_id": leaf.as_str()};
        if let Some(g) = generating {
            set.insert("generating_message_id", g.as_str());
        }
        let k = messages.len() as i64;
        let bumped = self
            .conversations
            .update_one(
                conv.clone(),
                doc! {
                    "$inc": {"message_count": k},
                    "$max": {"updated_at": at.to_rfc3339()},
                    "$set": set,
                },
            )
            .await
            .map_err(unavailable)?;
        if bumped.matched_count == 0 {
            return Err(StoreError::Corrupt(format!(
                "conversation {conversation} does not exist"
            )));
        }
        if let Err(e) = self.insert_all(owner, messages, docs).await {
            let _ = self
                .conversations
                .update_one(conv, doc! {"$inc": {"message_count": -k}})
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Inserts message documents one by one; when one fails, those inserted before it go.
    async fn insert_all(
        &self,
        owner: &Owner,
        messages: &[&Message],
        docs: Vec<Document>,
    ) -> Result<(), StoreError> {
        for (i, d) in docs.into_iter().enumerate() {
            if let Err(e) = self.messages.insert_one(d).await {
                for m in &messages[..i] {
                    let _ = self
                        .messages
                        .delete_one(Self::by_id(owner, m.id.as_str()))
                        .await;
                }
                return Err(unavailable(e));
            }
        }
        Ok(())
    }

    /// A conversation document as this version stores it: one written before message trees
    /// (without `current_message_id`) is migrated first — each of its messages gets the one before
    /// it as parent, its last message becomes the current leaf — idempotently. `None` when it was
    /// deleted meanwhile.
    async fn upgrade(&self, owner: &Owner, d: Document) -> Result<Option<Document>, StoreError> {
        if d.contains_key("current_message_id") {
            return Ok(Some(d));
        }
        let id = d.text("_id")?;
        let ids: Vec<(String, bool)> = all(
            self.messages
                .find(doc! {"owner": owner.as_str(), "conversation_id": &id})
                .sort(doc! {"created_at": 1, "_id": 1})
                .projection(doc! {"_id": 1, "parent_id": 1}),
            |m| Ok((m.text("_id")?, m.contains_key("parent_id"))),
        )
        .await?;
        let mut previous: Option<String> = None;
        for (mid, linked) in ids {
            if !linked {
                let parent = previous.clone().map_or(Bson::Null, Bson::String);
                self.messages
                    .update_one(
                        doc! {"_id": &mid, "owner": owner.as_str(), "parent_id": {"$exists": false}},
                        doc! {"$set": {"parent_id": parent}},
                    )
                    .await
                    .map_err(unavailable)?;
            }
            previous = Some(mid);
        }
        let current = previous.map_or(Bson::Null, Bson::String);
        self.conversations
            .update_one(
                doc! {"_id": &id, "owner": owner.as_str(), "current_message_id": {"$exists": false}},
                doc! {"$set": {"current_message_id": current, "generating_message_id": Bson::Null}},
            )
            .await
            .map_err(unavailable)?;
        self.conversations
            .find_one(Self::by_id(owner, &id))
            .await
            .map_err(unavailable)
    }

    /// Conversations of `docs`, each upgraded when it needs it.
    async fn conversations_of(
        &self,
        owner: &Owner,
        docs: Vec<Document>,
    ) -> Result<Vec<Conversation>, StoreError> {
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            if let Some(d) = self.upgrade(owner, d).await? {
                out.push(d.conversation()?);
            }
        }
        Ok(out)
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
                "current_message_id": id_or_null(c.current_message_id.as_ref()),
                "generating_message_id": id_or_null(c.generating_message_id.as_ref()),
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn begin_turn(&self, owner: &Owner, turn: &TurnStart) -> Result<(), StoreError> {
        let answer = &turn.answer;
        let messages = turn.messages();
        if !turn.created {
            return self
                .append(
                    owner,
                    &answer.conversation_id,
                    &messages,
                    answer.created_at,
                    &answer.id,
                    Some(&answer.id),
                )
                .await;
        }
        let started = turn.started();
        let docs = messages
            .iter()
            .map(|m| message_doc(owner, m))
            .collect::<Result<Vec<_>, _>>()?;
        self.create_conversation(owner, &started).await?;
        if let Err(e) = self.insert_all(owner, &messages, docs).await {
            let _ = self
                .conversations
                .delete_one(Self::by_id(owner, started.id.as_str()))
                .await;
            return Err(e);
        }
        Ok(())
    }

    async fn finish_turn(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let usage = record::receipt_json(m.usage.as_ref())?;
        let citations = record::citations_json(&m.citations)?;
        let updated = self
            .messages
            .update_one(
                Self::by_id(owner, m.id.as_str()),
                doc! {"$set": {
                    "content": &m.content,
                    "token_count": count(m.token_count),
                    "status": m.status.as_str(),
                    "usage": usage,
                    "citations": citations,
                }},
            )
            .await
            .map_err(unavailable)?;
        if updated.matched_count == 0 {
            return Err(StoreError::Corrupt(format!(
                "answer {} is not stored",
                m.id
            )));
        }
        let mut generating = Self::by_id(owner, m.conversation_id.as_str());
        generating.insert("generating_message_id", m.id.as_str());
        self.conversations
            .update_one(
                generating,
                doc! {"$set": {"generating_message_id": Bson::Null}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let found = self
            .conversations
            .find_one(Self::by_id(owner, id.as_str()))
            .await
            .map_err(unavailable)?;
        match found {
            None => Ok(None),
            Some(d) => self
                .upgrade(owner, d)
                .await?
                .as_ref()
                .map(Document::conversation)
                .transpose(),
        }
    }

    async fn list_conversations(
        &self,
        owner: &Owner,
        request: &PageRequest,
        query: Option<&str>,
    ) -> Result<Page<Conversation>, StoreError> {
        // Conversations written before message trees are migrated before they are listed.
        let legacy: Vec<Document> = self
            .conversations
            .find(doc! {"owner": owner.as_str(), "current_message_id": {"$exists": false}})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        self.conversations_of(owner, legacy).await?;
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
        self.append(owner, &m.conversation_id, &[m], m.created_at, &m.id, None)
            .await
    }

    async fn update_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let usage = record::receipt_json(m.usage.as_ref())?;
        let citations = record::citations_json(&m.citations)?;
        self.messages
            .update_one(
                Self::by_id(owner, m.id.as_str()),
                doc! {"$set": {
                    "content": &m.content,
                    "token_count": count(m.token_count),
                    "status": m.status.as_str(),
                    "usage": usage,
                    "citations": citations,
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

    async fn branch(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        leaf: &MessageId,
        limit: Option<u32>,
    ) -> Result<Vec<Message>, StoreError> {
        if limit == Some(0) {
            return Ok(vec![]);
        }
        // Newest first: a leaf's ancestors come after it, so the walk stops once it has them.
        let mut walk = Walk::new(leaf, limit);
        let mut cursor = self
            .messages
            .find(doc! {"owner": owner.as_str(), "conversation_id": conversation.as_str()})
            .sort(doc! {"created_at": -1, "_id": -1})
            .await
            .map_err(unavailable)?;
        while let Some(d) = cursor.try_next().await.map_err(unavailable)? {
            if walk.feed(d.message()?) {
                break;
            }
        }
        Ok(walk.finish())
    }

    async fn set_current(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        leaf: &MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        let in_conversation = self
            .messages
            .find_one(doc! {"_id": leaf.as_str(), "owner": owner.as_str(), "conversation_id": conversation.as_str()})
            .await
            .map_err(unavailable)?
            .is_some();
        if !in_conversation {
            return match self.get_conversation(owner, conversation).await? {
                None => Ok(None),
                Some(_) => Err(StoreError::Corrupt(format!(
                    "message {leaf} is not in conversation {conversation}"
                ))),
            };
        }
        one(
            self.conversations
                .find_one_and_update(
                    Self::by_id(owner, conversation.as_str()),
                    doc! {"$set": {"current_message_id": leaf.as_str()}},
                )
                .return_document(ReturnDocument::After),
            Document::conversation,
        )
        .await
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

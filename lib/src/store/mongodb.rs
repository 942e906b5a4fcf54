//! The MongoDB store: collections `conversations`, `messages` and `files`, each document keyed by
//! its id (`_id`) and carrying its `owner`; every query filters by owner, so another owner's id
//! reads as absent.
//!
//! Indexes: `(owner, updated_at desc, _id desc)` on conversations (the newest-first list and its
//! keyset cursors), `(owner, conversation_id, created_at, _id)` on messages, `(owner,
//! conversation_id)` on files. Timestamps are stored as fixed-width RFC 3339 strings (they sort in
//! time order and read back exactly); message files and file records as JSON text, as in SQLite.
//!
//! Without multi-document transactions (a single-node server has none), adding a message first
//! bumps the conversation (`$inc` + `$max`) and then inserts the message, undoing the bump if the
//! insert fails.

use ::mongodb::bson::{doc, Bson, Document};
use ::mongodb::options::ReturnDocument;
use ::mongodb::{Client, Collection, Database, IndexModel};
use async_trait::async_trait;
use futures::TryStreamExt;

use super::{cursor, PageRequest, Store, StoreError};
use crate::domain::{
    Conversation, ConversationId, FileId, FileMeta, Message, MessageId, MessageStatus, Owner, Page,
    Role, Timestamp, DEFAULT_TITLE,
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

fn get_str<'a>(d: &'a Document, k: &str) -> Result<&'a str, StoreError> {
    d.get_str(k).map_err(|e| corrupt(format!("`{k}`: {e}")))
}

/// Numbers may come back as 32- or 64-bit integers or doubles, depending on the server.
fn get_count(d: &Document, k: &str) -> Result<u64, StoreError> {
    match d.get(k) {
        Some(Bson::Int32(v)) => Ok((*v).max(0) as u64),
        Some(Bson::Int64(v)) => Ok((*v).max(0) as u64),
        Some(Bson::Double(v)) if v.fract() == 0.0 => Ok(v.max(0.0) as u64),
        other => Err(corrupt(format!("`{k}` is not a count: {other:?}"))),
    }
}

fn get_ts(d: &Document, k: &str) -> Result<Timestamp, StoreError> {
    let v = get_str(d, k)?;
    Timestamp::parse(v).ok_or_else(|| corrupt(format!("bad timestamp {v}")))
}

fn conversation_from(d: &Document) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: get_str(d, "_id")?.into(),
        title: get_str(d, "title")?.to_owned(),
        message_count: get_count(d, "message_count")?,
        created_at: get_ts(d, "created_at")?,
        updated_at: get_ts(d, "updated_at")?,
    })
}

fn message_from(d: &Document) -> Result<Message, StoreError> {
    let role = get_str(d, "role")?;
    let status = get_str(d, "status")?;
    Ok(Message {
        id: get_str(d, "_id")?.into(),
        conversation_id: get_str(d, "conversation_id")?.into(),
        role: Role::parse(role).ok_or_else(|| corrupt(format!("bad role {role}")))?,
        content: get_str(d, "content")?.to_owned(),
        files: serde_json::from_str(get_str(d, "files")?).map_err(corrupt)?,
        token_count: get_count(d, "token_count")?,
        status: MessageStatus::parse(status)
            .ok_or_else(|| corrupt(format!("bad status {status}")))?,
        created_at: get_ts(d, "created_at")?,
    })
}

fn file_from(d: &Document) -> Result<FileMeta, StoreError> {
    serde_json::from_str(get_str(d, "body")?).map_err(corrupt)
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

async fn collect(cursor: ::mongodb::Cursor<Document>) -> Result<Vec<Document>, StoreError> {
    cursor.try_collect().await.map_err(unavailable)
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

    /// Creates the indexes (idempotent).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
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
        let docs = collect(
            self.messages
                .find(
                    doc! {"owner": owner.as_str(), "content": {"$regex": pattern, "$options": "i"}},
                )
                .projection(doc! {"conversation_id": 1})
                .await
                .map_err(unavailable)?,
        )
        .await?;
        let mut ids: Vec<String> = docs
            .iter()
            .filter_map(|d| d.get_str("conversation_id").ok().map(str::to_owned))
            .collect();
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
        self.conversations
            .find_one(Self::by_id(owner, id.as_str()))
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(conversation_from)
            .transpose()
    }

    async fn list_conversations(
        &self,
        owner: &Owner,
        page: &PageRequest,
        query: Option<&str>,
    ) -> Result<Page<Conversation>, StoreError> {
        let limit = page.limit.clamp(1, 200);
        let after = page.cursor.as_deref().map(cursor::decode).transpose()?;
        let mut filter = doc! {"owner": owner.as_str()};
        let mut and: Vec<Document> = Vec::new();
        if let Some((at, id)) = after {
            and.push(doc! {"$or": [
                {"updated_at": {"$lt": &at}},
                {"updated_at": &at, "_id": {"$lt": &id}},
            ]});
        }
        if let Some(q) = query.map(str::trim).filter(|q| !q.is_empty()) {
            let pattern = regex_escape(q);
            let ids = self.conversations_with_message(owner, &pattern).await?;
            and.push(doc! {"$or": [
                {"title": {"$regex": &pattern, "$options": "i"}},
                {"_id": {"$in": ids}},
            ]});
        }
        if !and.is_empty() {
            filter.insert("$and", and);
        }
        let docs = collect(
            self.conversations
                .find(filter)
                .sort(doc! {"updated_at": -1, "_id": -1})
                .limit(i64::from(limit) + 1)
                .await
                .map_err(unavailable)?,
        )
        .await?;
        let mut items = docs
            .iter()
            .map(conversation_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|l| cursor::encode(&l.updated_at.to_rfc3339(), l.id.as_str()))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn rename_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
        at: Timestamp,
    ) -> Result<Option<Conversation>, StoreError> {
        self.conversations
            .find_one_and_update(
                Self::by_id(owner, id.as_str()),
                doc! {
                    "$set": {"title": title, "title_default": false},
                    "$max": {"updated_at": at.to_rfc3339()},
                },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(conversation_from)
            .transpose()
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
        let files = collect(
            self.files
                .find(children.clone())
                .await
                .map_err(unavailable)?,
        )
        .await?
        .iter()
        .map(file_from)
        .collect::<Result<Vec<_>, _>>()?;
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
        let files = serde_json::to_string(&m.files).map_err(corrupt)?;
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
        self.messages
            .update_one(
                Self::by_id(owner, m.id.as_str()),
                doc! {"$set": {
                    "content": &m.content,
                    "token_count": count(m.token_count),
                    "status": m.status.as_str(),
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
        self.messages
            .find_one(Self::by_id(owner, id.as_str()))
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(message_from)
            .transpose()
    }

    async fn list_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let limit = page.limit.clamp(1, 200);
        let after = page.cursor.as_deref().map(cursor::decode).transpose()?;
        let mut filter = doc! {"owner": owner.as_str(), "conversation_id": conversation.as_str()};
        if let Some((at, id)) = after {
            filter.insert(
                "$or",
                vec![
                    doc! {"created_at": {"$gt": &at}},
                    doc! {"created_at": &at, "_id": {"$gt": &id}},
                ],
            );
        }
        let docs = collect(
            self.messages
                .find(filter)
                .sort(doc! {"created_at": 1, "_id": 1})
                .limit(i64::from(limit) + 1)
                .await
                .map_err(unavailable)?,
        )
        .await?;
        let mut items = docs
            .iter()
            .map(message_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|l| cursor::encode(&l.created_at.to_rfc3339(), l.id.as_str()))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
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
        let docs = collect(
            self.messages
                .find(doc! {"owner": owner.as_str(), "conversation_id": conversation.as_str()})
                .sort(doc! {"created_at": -1, "_id": -1})
                .limit(i64::from(limit))
                .await
                .map_err(unavailable)?,
        )
        .await?;
        let mut items = docs
            .iter()
            .map(message_from)
            .collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        Ok(items)
    }

    async fn put_file(&self, owner: &Owner, f: &FileMeta) -> Result<(), StoreError> {
        let body = serde_json::to_string(f).map_err(corrupt)?;
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
        self.files
            .find_one(Self::by_id(owner, id.as_str()))
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(file_from)
            .transpose()
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

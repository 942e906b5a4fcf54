//! Listing, reading, renaming, deleting and exporting conversations.

use std::sync::Arc;

use crate::blobs::{keys, BlobStore};
use crate::domain::{
    Conversation, ConversationId, Message, Owner, Page, Role, Timestamp, MAX_TITLE_CHARS,
};
use crate::service::Error;
use crate::store::{PageRequest, Store};

/// The default and largest page sizes of `API.md`.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page size.
pub const MAX_LIMIT: u32 = 200;
/// The longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// A page request from `?limit=&cursor=`: 1–200, 50 when absent.
pub fn page_request(limit: Option<u32>, cursor: Option<String>) -> Result<PageRequest, Error> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(PageRequest {
        limit,
        cursor: cursor.filter(|c| !c.is_empty()),
    })
}

/// A title a user gives: trimmed, 1 to [`MAX_TITLE_CHARS`] characters, no control character.
pub fn check_title(title: &str) -> Result<&str, Error> {
    let title = title.trim();
    let n = title.chars().count();
    if n == 0 {
        return Err(Error::Unprocessable("The title cannot be empty.".into()));
    }
    if n > MAX_TITLE_CHARS {
        return Err(Error::Unprocessable(format!(
            "The title is {n} characters; the limit is {MAX_TITLE_CHARS}."
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(Error::Unprocessable(
            "The title cannot contain control characters.".into(),
        ));
    }
    Ok(title)
}

/// One of `owner`'s conversations, or not found (shared by the services that take a
/// conversation id).
pub async fn find(
    store: &dyn Store,
    owner: &Owner,
    id: &ConversationId,
) -> Result<Conversation, Error> {
    store
        .get_conversation(owner, id)
        .await?
        .ok_or_else(not_found)
}

fn not_found() -> Error {
    Error::NotFound("No such conversation.".into())
}

/// The conversations use case: list, read, rename, delete, export. Cheap to clone.
#[derive(Clone)]
pub struct ConversationService {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
}

impl ConversationService {
    /// A service over the store and the blob store (a deleted conversation's file bytes go too).
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) -> Self {
        Self { store, blobs }
    }

    /// One conversation, or not found.
    pub async fn get(&self, owner: &Owner, id: &ConversationId) -> Result<Conversation, Error> {
        find(self.store.as_ref(), owner, id).await
    }

    /// Most recently updated first; `query` filters by title and message text.
    pub async fn list(
        &self,
        owner: &Owner,
        page: PageRequest,
        query: Option<&str>,
    ) -> Result<Page<Conversation>, Error> {
        if query.is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
            return Err(Error::Invalid(format!(
                "The search text is too long ({MAX_QUERY_CHARS} characters at most)."
            )));
        }
        Ok(self.store.list_conversations(owner, &page, query).await?)
    }

    /// Messages oldest first.
    pub async fn messages(
        &self,
        owner: &Owner,
        id: &ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>, Error> {
        self.get(owner, id).await?;
        Ok(self.store.list_messages(owner, id, &page).await?)
    }

    /// The user renames: 1–200 characters after trimming.
    pub async fn rename(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
    ) -> Result<Conversation, Error> {
        let title = check_title(title)?;
        self.store
            .rename_conversation(owner, id, title, Timestamp::now())
            .await?
            .ok_or_else(not_found)
    }

    /// Deletes a conversation, its messages, its file records and their bytes.
    pub async fn delete(&self, owner: &Owner, id: &ConversationId) -> Result<(), Error> {
        let files = self
            .store
            .delete_conversation(owner, id)
            .await?
            .ok_or_else(not_found)?;
        for f in files {
            // The records are gone; a blob that fails to go is logged, not fatal to the request.
            if let Err(e) = self
                .blobs
                .delete_prefix(&keys::file_prefix(owner, &f.id))
                .await
            {
                tracing::warn!(file = %f.id, error = %e, "could not delete a deleted conversation's file bytes");
            }
        }
        Ok(())
    }

    /// A conversation with every message, oldest first (exports).
    pub async fn export(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<(Conversation, Vec<Message>), Error> {
        let conversation = self.get(owner, id).await?;
        let mut messages = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_messages(
                    owner,
                    id,
                    &PageRequest {
                        limit: MAX_LIMIT,
                        cursor,
                    },
                )
                .await?;
            messages.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok((conversation, messages)),
            }
        }
    }
}

/// The conversation as a Markdown document.
pub fn to_markdown(conversation: &Conversation, messages: &[Message]) -> String {
    let mut out = format!("# {}\n\n", conversation.title);
    out.push_str(&format!(
        "_Exported from Conversa — created {}_\n\n",
        conversation.created_at.to_rfc3339()
    ));
    for m in messages {
        let who = match m.role {
            Role::User => "You",
            Role::Assistant => "Assistant",
        };
        out.push_str(&format!("## {who} — {}\n\n", m.created_at.to_rfc3339()));
        if !m.files.is_empty() {
            let names: Vec<&str> = m.files.iter().map(|f| f.filename.as_str()).collect();
            out.push_str(&format!("Attached: {}\n\n", names.join(", ")));
        }
        out.push_str(m.content.trim_end());
        out.push_str("\n\n");
    }
    out
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;
    use crate::domain::{MessageId, MessageStatus, DEFAULT_TITLE};

    fn service(dir: &std::path::Path) -> ConversationService {
        ConversationService::new(
            Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap()),
            Arc::new(crate::blobs::local::LocalBlobs::new(dir).unwrap()),
        )
    }

    async fn conversation_with(
        svc: &ConversationService,
        owner: &Owner,
        n: usize,
    ) -> ConversationId {
        let now = Timestamp::now();
        let c = Conversation {
            id: ConversationId::generate(),
            title: DEFAULT_TITLE.into(),
            message_count: 0,
            created_at: now,
            updated_at: now,
        };
        svc.store.create_conversation(owner, &c).await.unwrap();
        for i in 0..n {
            let m = Message {
                id: MessageId::generate(),
                conversation_id: c.id.clone(),
                role: if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                content: format!("message {i}"),
                files: vec![],
                token_count: 2,
                status: MessageStatus::Complete,
                created_at: Timestamp::now(),
                usage: None,
            };
            svc.store.add_message(owner, &m).await.unwrap();
        }
        c.id
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_request(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert!(matches!(
            page_request(Some(0), None),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            page_request(Some(MAX_LIMIT + 1), None),
            Err(Error::Invalid(_))
        ));
        assert_eq!(
            page_request(Some(5), Some(String::new())).unwrap().cursor,
            None
        );
    }

    #[tokio::test]
    async fn an_export_reads_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let owner = Owner::local();
        let id = conversation_with(&svc, &owner, MAX_LIMIT as usize + 3).await;
        let (c, messages) = svc.export(&owner, &id).await.unwrap();
        assert_eq!(messages.len(), MAX_LIMIT as usize + 3);
        assert_eq!(messages[0].content, "message 0");
        let md = to_markdown(&c, &messages);
        assert!(md.starts_with("# New conversation\n"));
        assert!(md.contains("## You — ") && md.contains("## Assistant — "));
    }

    #[tokio::test]
    async fn renames_are_checked_and_other_owners_see_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let owner = Owner::new("alice");
        let id = conversation_with(&svc, &owner, 1).await;
        for bad in ["   ", "a\u{7}b"] {
            assert!(matches!(
                svc.rename(&owner, &id, bad).await,
                Err(Error::Unprocessable(_))
            ));
        }
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        assert!(matches!(
            svc.rename(&owner, &id, &long).await,
            Err(Error::Unprocessable(_))
        ));
        assert_eq!(
            svc.rename(&owner, &id, " Trip ").await.unwrap().title,
            "Trip"
        );
        let bob = Owner::new("bob");
        assert!(matches!(svc.get(&bob, &id).await, Err(Error::NotFound(_))));
        assert!(matches!(
            svc.rename(&bob, &id, "mine").await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            svc.delete(&bob, &id).await,
            Err(Error::NotFound(_))
        ));
        svc.delete(&owner, &id).await.unwrap();
        assert!(matches!(
            svc.get(&owner, &id).await,
            Err(Error::NotFound(_))
        ));
    }
}

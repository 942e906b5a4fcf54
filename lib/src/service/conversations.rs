//! Listing, reading, renaming, deleting and exporting conversations; the branch shown (the path
//! to the current leaf) and moving it.

use std::sync::Arc;

use crate::blobs::{keys, BlobStore};
use crate::domain::{
    Conversation, ConversationId, Message, MessageId, Owner, Page, Role, Timestamp, MAX_TITLE_CHARS,
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
    search: Option<Arc<crate::service::search::SearchService>>,
}

impl ConversationService {
    /// A service over the store and the blob store (a deleted conversation's file bytes go too).
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            store,
            blobs,
            search: None,
        }
    }

    /// The same service, removing a deleted conversation's entries from `search`'s log.
    pub fn with_search(mut self, search: Arc<crate::service::search::SearchService>) -> Self {
        self.search = Some(search);
        self
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

    /// The current branch, from the first message to the current leaf (`all`: every message of
    /// the tree), oldest first.
    pub async fn messages(
        &self,
        owner: &Owner,
        id: &ConversationId,
        page: PageRequest,
        all: bool,
    ) -> Result<Page<Message>, Error> {
        let conversation = self.get(owner, id).await?;
        if all {
            return Ok(self.store.list_messages(owner, id, &page).await?);
        }
        let branch = match &conversation.current_message_id {
            Some(leaf) => self.store.branch(owner, id, leaf, None).await?,
            None => Vec::new(),
        };
        // The branch is ordered like a list of messages: the same keyset cursors page it.
        let after = page.after()?;
        let rows: Vec<Message> = branch
            .into_iter()
            .filter(|m| match &after {
                Some((at, mid)) => {
                    (m.created_at.to_rfc3339(), m.id.as_str()) > (at.clone(), mid.as_str())
                }
                None => true,
            })
            .take(page.fetch())
            .collect();
        Ok(crate::store::cursor::page(rows, &page))
    }

    /// Every message of the conversation, oldest first.
    async fn tree(&self, owner: &Owner, id: &ConversationId) -> Result<Vec<Message>, Error> {
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
                None => return Ok(messages),
            }
        }
    }

    /// Shows the branch through `message_id`: its latest descendant (following the most recent
    /// child at each step) becomes the current leaf. A message of another conversation is not
    /// found.
    pub async fn set_current(
        &self,
        owner: &Owner,
        id: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Conversation, Error> {
        self.get(owner, id).await?;
        let tree = self.tree(owner, id).await?;
        if !tree.iter().any(|m| &m.id == message_id) {
            return Err(Error::NotFound(format!(
                "No message with id {message_id} in this conversation."
            )));
        }
        let leaf = crate::store::tree::latest_leaf(&tree, message_id);
        self.store
            .set_current(owner, id, &leaf)
            .await?
            .ok_or_else(not_found)
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
        if let Some(search) = &self.search {
            // Deleted text must stop answering searches: a failure here fails the request, and
            // deleting again finishes the job.
            let ids: Vec<_> = files.iter().map(|f| f.id.clone()).collect();
            search.forget_conversation(owner, id, &ids).await?;
        }
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

    /// A conversation with every message, oldest first, and its current branch (exports).
    pub async fn export(&self, owner: &Owner, id: &ConversationId) -> Result<Export, Error> {
        let conversation = self.get(owner, id).await?;
        let messages = self.tree(owner, id).await?;
        let branch = match &conversation.current_message_id {
            Some(leaf) => crate::store::tree::branch(messages.clone(), leaf, None),
            None => Vec::new(),
        };
        Ok(Export {
            conversation,
            messages,
            branch,
        })
    }
}

/// A conversation as exported.
#[derive(Debug, Clone)]
pub struct Export {
    /// The conversation.
    pub conversation: Conversation,
    /// Every message of its tree, oldest first.
    pub messages: Vec<Message>,
    /// The current branch, from the first message to the current leaf.
    pub branch: Vec<Message>,
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
    use crate::domain::{MessageStatus, DEFAULT_TITLE};

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
            current_message_id: None,
            generating_message_id: None,
        };
        svc.store.create_conversation(owner, &c).await.unwrap();
        let mut parent = None;
        for i in 0..n {
            let id = MessageId::generate();
            let m = Message {
                id: id.clone(),
                conversation_id: c.id.clone(),
                parent_id: parent.replace(id),
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
                citations: vec![],
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
        let export = svc.export(&owner, &id).await.unwrap();
        let messages = &export.messages;
        assert_eq!(messages.len(), MAX_LIMIT as usize + 3);
        assert_eq!(messages[0].content, "message 0");
        assert_eq!(&export.branch, messages, "one branch: every message");
        let md = to_markdown(&export.conversation, &export.branch);
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

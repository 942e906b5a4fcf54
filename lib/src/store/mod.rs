//! The `Store` port: conversations, messages and file metadata, always scoped by owner.
//!
//! Adapters: `sqlite` (embedded, the local default), and the cloud ones behind features.
//! Every adapter passes the same contract suite (`store::contract`) and keeps its data in the
//! store's own record shapes (`store::record`), not in the API's.

use async_trait::async_trait;

use crate::domain::{
    Conversation, ConversationId, FileId, FileMeta, Message, MessageId, Owner, Page, Timestamp,
};

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
pub mod cursor;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
pub mod record;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service cannot be reached or refused the request; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A cursor that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// Stored data could not be read back (a bug or a manual edit).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// How much of a list to read.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Items per page (1–200; callers clamp).
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Persistence of conversations, messages and file metadata.
///
/// Every method takes the owner and only ever sees that owner's records: another owner's id reads as
/// absent. Methods that change a conversation return `None`/`false` when it does not exist for the owner.
#[async_trait]
pub trait Store: Send + Sync {
    /// A cheap round trip proving the store answers.
    async fn health(&self) -> Result<(), StoreError>;

    /// Inserts a new conversation.
    async fn create_conversation(
        &self,
        owner: &Owner,
        conversation: &Conversation,
    ) -> Result<(), StoreError>;

    /// Inserts a new conversation with its first message (`add_message`'s effects included), in one
    /// transaction where the store has them: a turn never leaves an empty conversation behind, and the
    /// embedded store answers in one round trip.
    async fn start_conversation(
        &self,
        owner: &Owner,
        conversation: &Conversation,
        first: &Message,
    ) -> Result<(), StoreError> {
        self.create_conversation(owner, conversation).await?;
        self.add_message(owner, first).await
    }

    /// One conversation.
    async fn get_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Conversations by `updated_at` descending, ties by id descending; `query` keeps those whose
    /// title or any message contains it (case-insensitive).
    async fn list_conversations(
        &self,
        owner: &Owner,
        page: &PageRequest,
        query: Option<&str>,
    ) -> Result<Page<Conversation>, StoreError>;

    /// The user renames: sets the title and moves `updated_at`.
    async fn rename_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
        at: Timestamp,
    ) -> Result<Option<Conversation>, StoreError>;

    /// The automatic title lands: sets the title only if it is still the default, without moving
    /// `updated_at`. Returns whether it was set.
    async fn set_auto_title(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
    ) -> Result<bool, StoreError>;

    /// Deletes a conversation with its messages and file records; returns the deleted files (so their
    /// blobs can be removed) or `None` when it did not exist.
    async fn delete_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Vec<FileMeta>>, StoreError>;

    /// Appends a message: bumps `message_count` and sets `updated_at` to the message's `created_at`.
    async fn add_message(&self, owner: &Owner, message: &Message) -> Result<(), StoreError>;

    /// Replaces a stored message's content, token count and status (an answer being finished).
    async fn update_message(&self, owner: &Owner, message: &Message) -> Result<(), StoreError>;

    /// One message.
    async fn get_message(
        &self,
        owner: &Owner,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError>;

    /// Messages of a conversation, oldest first.
    async fn list_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError>;

    /// The `limit` most recent messages of a conversation, returned oldest first.
    async fn recent_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// Inserts or replaces a file record.
    async fn put_file(&self, owner: &Owner, file: &FileMeta) -> Result<(), StoreError>;

    /// One file record.
    async fn get_file(&self, owner: &Owner, id: &FileId) -> Result<Option<FileMeta>, StoreError>;

    /// Deletes one file record; returns whether it existed.
    async fn delete_file(&self, owner: &Owner, id: &FileId) -> Result<bool, StoreError>;
}

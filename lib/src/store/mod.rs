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
pub mod tree;

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

/// What [`Store::begin_turn`] stores.
#[derive(Debug, Clone)]
pub struct TurnStart {
    /// The conversation (as it is to be stored when new).
    pub conversation: Conversation,
    /// Whether the turn starts the conversation.
    pub created: bool,
    /// The user message (a child of the leaf it follows); `None` when an answer is regenerated.
    pub user: Option<Message>,
    /// The answer's placeholder: empty, `incomplete`, a child of the user message.
    pub answer: Message,
}

impl TurnStart {
    /// The messages the turn stores, in order: the user message (if any), then the answer.
    pub fn messages(&self) -> Vec<&Message> {
        self.user.iter().chain([&self.answer]).collect()
    }

    /// The new conversation as it is once the turn began: its messages counted, the answer
    /// current and generating.
    pub fn started(&self) -> Conversation {
        let (c, a) = (&self.conversation, &self.answer);
        Conversation {
            message_count: c.message_count + self.messages().len() as u64,
            updated_at: c.updated_at.max(a.created_at),
            current_message_id: Some(a.id.clone()),
            generating_message_id: Some(a.id.clone()),
            ..c.clone()
        }
    }
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

    /// Stores the start of a chat turn in one write (one transaction where the store has them): the
    /// conversation when [`TurnStart::created`] (a turn never leaves an empty conversation behind),
    /// the user message when there is one (none when an answer is regenerated), and the answer's
    /// placeholder (empty, `incomplete`). Each message is counted and moves `updated_at`; the
    /// answer becomes the conversation's current leaf and the answer being generated.
    async fn begin_turn(&self, owner: &Owner, turn: &TurnStart) -> Result<(), StoreError>;

    /// Stores the end of a chat turn: the answer's content, token count, status and receipt replace
    /// its placeholder, and the conversation's answer being generated is cleared when it is this
    /// one (`updated_at` stays: the answer was added when the turn began). An answer that is no
    /// longer stored (its conversation was deleted) is an error.
    async fn finish_turn(&self, owner: &Owner, answer: &Message) -> Result<(), StoreError>;

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

    /// Appends a message: bumps `message_count`, sets `updated_at` to the message's `created_at`
    /// (never back) and makes the message the conversation's current leaf.
    async fn add_message(&self, owner: &Owner, message: &Message) -> Result<(), StoreError>;

    /// Replaces a stored message's content, token count and status (an answer being finished).
    async fn update_message(&self, owner: &Owner, message: &Message) -> Result<(), StoreError>;

    /// One message.
    async fn get_message(
        &self,
        owner: &Owner,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError>;

    /// Every message of a conversation (all branches), oldest first.
    async fn list_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError>;

    /// The branch that ends at `leaf`: the path from the conversation's first message to `leaf`,
    /// oldest first, at most its last `limit` messages (`None`: all of them). Empty when `leaf` is
    /// not a message of this conversation.
    async fn branch(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        leaf: &MessageId,
        limit: Option<u32>,
    ) -> Result<Vec<Message>, StoreError>;

    /// Makes `leaf` (a message of the conversation) its current leaf; `updated_at` stays. `None`
    /// when the conversation does not exist; a `leaf` of another conversation is an error.
    async fn set_current(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        leaf: &MessageId,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Inserts or replaces a file record.
    async fn put_file(&self, owner: &Owner, file: &FileMeta) -> Result<(), StoreError>;

    /// One file record.
    async fn get_file(&self, owner: &Owner, id: &FileId) -> Result<Option<FileMeta>, StoreError>;

    /// Deletes one file record; returns whether it existed.
    async fn delete_file(&self, owner: &Owner, id: &FileId) -> Result<bool, StoreError>;
}

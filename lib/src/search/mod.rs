//! The `SearchLog` port: per owner, an entry for each message and each chunk of each file, with a
//! bounded copy of its text and its sentence vector (f16), so that everything a person has said and
//! uploaded can be searched by meaning and by words without a vector database.
//!
//! The log is append-mostly and read incrementally: [`SearchLog::read`] returns the entries after a
//! watermark it issued, so an in-process cache (`service::search`) only reads what is new. Removals
//! (a conversation or a file deleted) bump the owner's **generation**; a reader that sees another
//! generation reloads everything, so deleted text stops answering searches everywhere.
//!
//! Adapters: SQLite (in the store's database, a row sequence as the watermark), DynamoDB and
//! MongoDB (in the store's table or database; a write stamp as the watermark and a read that looks
//! back, `search::stamped`, since they have no sequence shared by every instance). Each passes the
//! contract suite in `search::contract`.

use async_trait::async_trait;
use half::f16;

use crate::domain::{ConversationId, FileId, MessageId, Owner, Timestamp};
use crate::store::StoreError;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "dynamodb", feature = "mongodb"))]
pub mod stamped;

/// The longest text an entry keeps, in characters (searched by words, shown as snippets).
pub const MAX_ENTRY_CHARS: usize = 2_000;

/// What an entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A message (a question or an answer).
    Message,
    /// A chunk of a file's text.
    File,
}

impl EntryKind {
    /// As stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::File => "file",
        }
    }

    /// From its stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message" => Some(Self::Message),
            "file" => Some(Self::File),
            _ => None,
        }
    }
}

/// One searchable thing.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchEntry {
    /// Unique per owner: the message id, or `{file_id}#{chunk}`. Appending an id again replaces it.
    pub id: String,
    /// A message or a file chunk.
    pub kind: EntryKind,
    /// The conversation, when known (a file may not be attached yet).
    pub conversation_id: Option<ConversationId>,
    /// The message, for messages.
    pub message_id: Option<MessageId>,
    /// The file, for file chunks.
    pub file_id: Option<FileId>,
    /// The chunk's position in its file.
    pub chunk: Option<u32>,
    /// Where in the file (`page 7`, `sheet Revenue`, `part 2`).
    pub label: Option<String>,
    /// When it was written.
    pub created_at: Timestamp,
    /// Its text, at most [`MAX_ENTRY_CHARS`] characters.
    pub text: String,
    /// Its vector as little-endian f16 ([`encode_vector`]); empty when no embedder ran.
    pub vector: Vec<u8>,
}

impl SearchEntry {
    /// The entry's vector, when it has one.
    pub fn vector(&self) -> Option<Vec<f32>> {
        decode_vector(&self.vector)
    }
}

/// What [`SearchLog::read`] returns.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    /// The entries appended after the read that issued the watermark asked for, oldest first,
    /// possibly with some that read already returned (stores without a shared sequence look back
    /// a little); an entry with an id read before replaces the earlier copy.
    pub entries: Vec<SearchEntry>,
    /// Pass it back to read only what comes after; `None` when the log is empty.
    pub watermark: Option<String>,
    /// The owner's generation: it changes with every removal.
    pub generation: u64,
}

/// A per-owner log of searchable entries.
#[async_trait]
pub trait SearchLog: Send + Sync {
    /// Adds entries (or replaces those with the same ids).
    async fn append(&self, owner: &Owner, entries: &[SearchEntry]) -> Result<(), StoreError>;
    /// Every entry appended after the read that issued `after` (a watermark this log issued;
    /// `None`: all), oldest first, maybe with some returned before, with the new watermark and the
    /// owner's generation. Applying reads in order, by id, gives the log as it is.
    async fn read(&self, owner: &Owner, after: Option<&str>) -> Result<LogPage, StoreError>;
    /// Removes every entry of a conversation's messages; bumps the generation.
    async fn remove_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<(), StoreError>;
    /// Removes every entry of a file; bumps the generation.
    async fn remove_file(&self, owner: &Owner, id: &FileId) -> Result<(), StoreError>;
}

/// A vector as little-endian f16 (2 bytes a dimension).
pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 2);
    for &x in v {
        out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
    }
    out
}

/// A vector from [`encode_vector`]'s form; `None` when empty or of odd length.
pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.is_empty() || bytes.len() % 2 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    )
}

/// `text` cut to at most [`MAX_ENTRY_CHARS`] characters (at a character boundary).
pub fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_ENTRY_CHARS) {
        Some((i, _)) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_f16() {
        let v = vec![0.5f32, -0.25, 0.125, 0.0];
        assert_eq!(decode_vector(&encode_vector(&v)), Some(v));
        assert_eq!(decode_vector(&[]), None);
        assert_eq!(decode_vector(&[1, 2, 3]), None);
    }

    #[test]
    fn text_is_bounded_at_a_character_boundary() {
        let long = "é".repeat(MAX_ENTRY_CHARS + 10);
        assert_eq!(bounded(&long).chars().count(), MAX_ENTRY_CHARS);
        assert_eq!(bounded("short"), "short");
    }
}

//! The `BlobStore` port: original file bytes and extracted text, by key.
//!
//! Keys are `{owner}/{file_id}/original` and `{owner}/{file_id}/text` (see [`keys`]).

use async_trait::async_trait;
use bytes::Bytes;

pub mod local;

/// What can go wrong in a blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The backing service cannot be reached or refused the request.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    /// A key that would escape the store (the adapters refuse it).
    #[error("invalid blob key: {0}")]
    InvalidKey(String),
}

/// Storage of opaque bytes by key.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// A cheap round trip proving the store answers.
    async fn health(&self) -> Result<(), BlobError>;
    /// Stores bytes under a key, replacing what was there.
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError>;
    /// Reads a key; `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError>;
    /// Deletes every key that starts with `prefix` (absent keys are fine).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError>;
}

/// Key layout shared by every adapter.
pub mod keys {
    use crate::domain::{FileId, Owner};

    /// Owner ids may hold `@` and `.`; keys keep only characters safe in paths and S3 keys.
    fn owner_part(owner: &Owner) -> String {
        owner
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
    /// Everything stored for one file.
    pub fn file_prefix(owner: &Owner, id: &FileId) -> String {
        format!("{}/{}/", owner_part(owner), id.as_str())
    }
    /// The bytes as uploaded.
    pub fn original(owner: &Owner, id: &FileId) -> String {
        format!("{}original", file_prefix(owner, id))
    }
    /// The extracted text.
    pub fn text(owner: &Owner, id: &FileId) -> String {
        format!("{}text", file_prefix(owner, id))
    }
    /// The image prepared for the model (downscaled, re-encoded).
    pub fn image(owner: &Owner, id: &FileId) -> String {
        format!("{}image", file_prefix(owner, id))
    }
}

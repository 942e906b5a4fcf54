//! The `BlobStore` port: original file bytes and extracted text, by key.
//!
//! Keys are `{owner}/{file_id}/original`, `{owner}/{file_id}/text` and their siblings (see [`keys`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::Timestamp;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
pub mod local;
#[cfg(feature = "s3")]
pub mod s3;

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

/// A request the client makes itself, straight to the blob store (large uploads, downloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// `PUT` for uploads, `GET` for downloads.
    pub method: String,
    /// The signed URL.
    pub url: String,
    /// Headers the client must send exactly as given (they are part of the signature).
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working.
    pub expires_at: Timestamp,
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

    /// A URL the client can `PUT` exactly `size` bytes of `content_type` to, under `key`, until
    /// `expires`; `None` when this store cannot sign URLs (local disk).
    async fn presign_put(
        &self,
        _key: &str,
        _content_type: &str,
        _size: u64,
        _expires: Duration,
    ) -> Result<Option<PresignedRequest>, BlobError> {
        Ok(None)
    }

    /// A URL the client can `GET` `key` from until `expires`, served as an attachment named
    /// `filename`; `None` when this store cannot sign URLs (local disk).
    async fn presign_get(
        &self,
        _key: &str,
        _filename: &str,
        _expires: Duration,
    ) -> Result<Option<PresignedRequest>, BlobError> {
        Ok(None)
    }
}

/// `attachment; filename="…"; filename*=UTF-8''…` for any file name (RFC 6266: an ASCII fallback, then
/// the exact name percent-encoded). Served with downloads, and asked of S3 for presigned ones.
pub fn attachment_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
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
    /// The vectors of the text's chunks (`embed::vectors`).
    pub fn vectors(owner: &Owner, id: &FileId) -> String {
        format!("{}vectors", file_prefix(owner, id))
    }
}

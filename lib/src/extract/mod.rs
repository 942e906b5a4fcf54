//! Documents → text: type detection from the bytes, then extraction per family, within limits.
//!
//! Every function here is synchronous and CPU-bound; callers run it off the async workers
//! (`tokio::task::spawn_blocking`) under a time limit.

use std::time::Duration;

use bytes::Bytes;

use crate::domain::FileType;

/// Bounds applied to every file.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted upload.
    pub max_bytes: u64,
    /// Most PDF pages read.
    pub max_pages: u32,
    /// Largest total decompressed size of a zip-based document.
    pub max_decompressed_bytes: u64,
    /// Most entries in a zip-based document.
    pub max_zip_entries: usize,
    /// Most characters of text kept per file.
    pub max_chars: usize,
    /// Largest image, in pixels (width × height), before decoding.
    pub max_image_pixels: u64,
    /// Longest side of the image sent to the model.
    pub max_image_side: u32,
    /// Time allowed for one file.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_pages: 2_000,
            max_decompressed_bytes: 200 * 1024 * 1024,
            max_zip_entries: 10_000,
            max_chars: 5_000_000,
            max_image_pixels: 80_000_000,
            max_image_side: 2048,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a file was refused. Each variant maps to one HTTP status (415 or 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The type is not one the product reads (415).
    #[error("{0}")]
    Unsupported(String),
    /// The bytes are not what the name or claimed type says (415).
    #[error("{0}")]
    Mismatch(String),
    /// The document is damaged or not readable (422).
    #[error("{0}")]
    Corrupt(String),
    /// The document is password-protected (422).
    #[error("{0}")]
    Encrypted(String),
    /// The document expands past the limits: zip bombs, too many pixels (422).
    #[error("{0}")]
    TooLarge(String),
    /// Extraction took longer than allowed (422).
    #[error("{0}")]
    Timeout(String),
}

/// What came out of a file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extracted {
    /// The text for the model (for images: empty).
    pub text: String,
    /// Pages (PDF) or sheets (spreadsheets).
    pub pages: Option<u32>,
    /// For images: the image prepared for the model.
    pub image: Option<PreparedImage>,
    /// A remark for the user and the model (e.g. "no text layer: scanned PDF").
    pub note: Option<String>,
}

/// An image ready for a vision model.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedImage {
    /// Media type of `data`.
    pub mime: String,
    /// Encoded bytes.
    pub data: Bytes,
    /// Width after downscaling.
    pub width: u32,
    /// Height after downscaling.
    pub height: u32,
}

/// A file type decided from the bytes, with the media type to store it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The family.
    pub file_type: FileType,
    /// The canonical media type (`application/pdf`, `image/png`, …).
    pub content_type: String,
}

mod detect;
mod text;

pub use detect::detect;

/// Extracts the text (or prepares the image) of a file whose type was decided by [`detect`].
pub fn extract(
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    text::extract(file_type, bytes, limits)
}

//! Documents → text: type detection from the bytes, then extraction per family, within limits.
//!
//! Every function here is synchronous and CPU-bound; callers run it off the async workers
//! (`tokio::task::spawn_blocking`) under a time limit.
//!
//! Two ways to run an extractor:
//! - [`extract`]: in this process. A panicking parser is caught (`catch_unwind`; the release profile
//!   keeps `panic = "unwind"` for this) and reported as [`ExtractError::Corrupt`]. A parser that loops
//!   cannot be stopped in-process, so this path suits small trusted inputs and tests.
//! - [`extract_isolated`]: in a child process (this same binary re-executed, see [`child_main`]) with
//!   an address-space limit and a wall-clock kill. A parser that panics, aborts, loops or allocates
//!   without end takes down only the child; the server gets a clear error.
//!
//! The text of every family is Markdown-flavoured plain text: `#` headings, `-`/`1.` lists, pipe
//! tables, `[page N]` markers for PDF pages and `## Sheet: NAME` for spreadsheet sheets.
//! [`Extracted::sections`] holds the same text split per page or sheet, for chunking.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::FileType;

/// Bounds applied to every file.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Most rows written per spreadsheet sheet or CSV file; the rest is cut with a note.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Address-space limit of an isolated extraction child ([`extract_isolated`]), in bytes.
    #[serde(default = "default_child_memory")]
    pub child_memory_bytes: u64,
}

fn default_max_rows() -> usize {
    5_000
}

fn default_child_memory() -> u64 {
    1024 * 1024 * 1024
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
            max_rows: default_max_rows(),
            child_memory_bytes: default_child_memory(),
        }
    }
}

/// Why a file was refused. Each variant maps to one HTTP status (415 or 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Extracted {
    /// The text for the model (for images: empty).
    pub text: String,
    /// Pages (PDF) or sheets (spreadsheets).
    pub pages: Option<u32>,
    /// For images: the image prepared for the model.
    pub image: Option<PreparedImage>,
    /// A remark for the user and the model (e.g. "no text layer: scanned PDF").
    pub note: Option<String>,
    /// The text split by page (PDF) or sheet (spreadsheets), in order; empty for the other families.
    /// Joining the sections' texts gives the content of `text` without its markers, so a chunker can
    /// cut along pages and cite them by `label`.
    #[serde(default)]
    pub sections: Vec<Section>,
}

/// One page of a PDF or one sheet of a spreadsheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// How a person names it: `page 3`, `sheet Revenue`.
    pub label: String,
    /// Its text (without the marker line).
    pub text: String,
}

/// An image ready for a vision model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedImage {
    /// Media type of `data`.
    pub mime: String,
    /// Encoded bytes.
    #[serde(with = "b64")]
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

mod b64 {
    //! Base64 for image bytes crossing the process boundary.
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

mod cfb;
mod detect;
mod docx;
mod image;
mod isolate;
mod markdown;
mod pdf;
mod sheets;
mod text;
mod zipsafe;

pub use detect::{claim, detect, image_type};

/// Where extraction reports how far it got (0–100): set per thread by [`with_progress`].
type ProgressSink = Box<dyn Fn(u8)>;

thread_local! {
    static PROGRESS: std::cell::RefCell<Option<ProgressSink>> = const { std::cell::RefCell::new(None) };
    /// The last value passed to the sink: it only ever gets a higher one.
    static LAST_PROGRESS: std::cell::Cell<Option<u8>> = const { std::cell::Cell::new(None) };
}

/// Runs `body` with `sink` receiving progress (0–100) from the extractors on this thread: PDFs
/// report page by page, DOCX documents by the share of the main part parsed, spreadsheets by
/// sheets and rows. The sink gets each value once, rising (at most 100 calls per run).
pub fn with_progress<R>(sink: impl Fn(u8) + 'static, body: impl FnOnce() -> R) -> R {
    PROGRESS.with(|p| *p.borrow_mut() = Some(Box::new(sink)));
    LAST_PROGRESS.with(|l| l.set(None));
    let out = body();
    PROGRESS.with(|p| *p.borrow_mut() = None);
    LAST_PROGRESS.with(|l| l.set(None));
    out
}

/// Reports that `done` of `total` units are read (a no-op without a sink, or when the percentage
/// has not risen since the last report). Never reports 100: the caller says when it is done.
pub(crate) fn report_progress(done: usize, total: usize) {
    if total == 0 {
        return;
    }
    let pct = (done.saturating_mul(100) / total).min(99) as u8;
    if LAST_PROGRESS.with(|l| l.get().is_some_and(|last| pct <= last)) {
        return;
    }
    PROGRESS.with(|p| {
        if let Some(sink) = p.borrow().as_ref() {
            LAST_PROGRESS.with(|l| l.set(Some(pct)));
            sink(pct);
        }
    });
}
pub use isolate::{
    child_main, extract_isolated, extract_isolated_reporting, extract_isolated_with,
    isolation_available, Isolation, CHILD_ENV,
};

/// Extracts the text (or prepares the image) of a file whose type was decided by [`detect`], in
/// this process. A panic inside a parser becomes [`ExtractError::Corrupt`].
pub fn extract(
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let run = std::panic::AssertUnwindSafe(|| extract_unguarded(file_type, bytes, limits));
    match std::panic::catch_unwind(run) {
        Ok(result) => result,
        Err(_) => Err(ExtractError::Corrupt(format!(
            "the {} could not be read (the document is malformed)",
            family_name(file_type)
        ))),
    }
}

/// Whether a family's parsers are heavy enough (and fed hostile input often enough) to run in a
/// child process ([`extract_isolated`]) in production: PDF, DOCX and spreadsheets. Text, CSV, JSON
/// and images are bounded before parsing and run in-process.
pub fn prefers_isolation(file_type: FileType) -> bool {
    matches!(
        file_type,
        FileType::Pdf | FileType::Docx | FileType::Xlsx | FileType::Xls | FileType::Ods
    )
}

fn extract_unguarded(
    file_type: FileType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let mut out = match file_type {
        FileType::Pdf => pdf::extract(bytes, limits)?,
        FileType::Docx => docx::extract(bytes, limits)?,
        FileType::Xlsx | FileType::Xls | FileType::Ods => {
            sheets::extract(file_type, bytes, limits)?
        }
        FileType::Csv => text::csv(bytes, limits)?,
        FileType::Text => text::plain(bytes),
        FileType::Json => text::json(bytes)?,
        FileType::Image => image::extract(bytes, limits)?,
    };
    if out.text.trim().is_empty() && out.image.is_none() && out.note.is_none() {
        out.note = Some(format!("This {} contains no text.", family_name(file_type)));
    }
    cut_to(&mut out, limits.max_chars);
    Ok(out)
}

/// Keeps at most `max_chars` characters of text, saying so in the note.
fn cut_to(out: &mut Extracted, max_chars: usize) {
    if let Some((at, _)) = out.text.char_indices().nth(max_chars) {
        out.text.truncate(at);
        let cut = format!("Text cut at {max_chars} characters.");
        out.note = Some(match out.note.take() {
            Some(n) => format!("{n} {cut}"),
            None => cut,
        });
        // Sections past the cut are dropped too, so both views hold the same text.
        let mut budget = max_chars;
        out.sections.retain_mut(|s| {
            if budget == 0 {
                return false;
            }
            match s.text.char_indices().nth(budget) {
                Some((at, _)) => {
                    s.text.truncate(at);
                    budget = 0;
                }
                None => budget -= s.text.chars().count(),
            }
            true
        });
    }
}

/// How error messages name a family.
fn family_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Pdf => "PDF",
        FileType::Docx => "DOCX document",
        FileType::Xlsx | FileType::Xls | FileType::Ods => "spreadsheet",
        FileType::Csv => "CSV file",
        FileType::Text => "text file",
        FileType::Json => "JSON file",
        FileType::Image => "image",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_keeps_whole_characters_and_says_so() {
        let mut out = Extracted {
            text: "héllo wörld".into(),
            sections: vec![
                Section {
                    label: "page 1".into(),
                    text: "héllo".into(),
                },
                Section {
                    label: "page 2".into(),
                    text: " wörld".into(),
                },
            ],
            ..Default::default()
        };
        cut_to(&mut out, 7);
        assert_eq!(out.text, "héllo w");
        assert_eq!(out.note.as_deref(), Some("Text cut at 7 characters."));
        assert_eq!(out.sections.len(), 2);
        assert_eq!(out.sections[1].text, " w");
        let mut short = Extracted {
            text: "abc".into(),
            ..Default::default()
        };
        cut_to(&mut short, 7);
        assert_eq!(short.text, "abc");
        assert!(short.note.is_none());
    }

    #[test]
    fn extracted_crosses_a_process_boundary_intact() {
        let out = Extracted {
            text: "t".into(),
            pages: Some(2),
            image: Some(PreparedImage {
                mime: "image/png".into(),
                data: Bytes::from_static(b"\x89PNG\x00\xff"),
                width: 3,
                height: 4,
            }),
            note: Some("n".into()),
            sections: vec![Section {
                label: "page 1".into(),
                text: "t".into(),
            }],
        };
        let json = serde_json::to_string(&out).unwrap();
        let back: Extracted = serde_json::from_str(&json).unwrap();
        assert_eq!(back, out);
    }
}

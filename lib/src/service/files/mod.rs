//! Files: ingest uploads (check the size, decide the type from the bytes, extract the text, store
//! bytes, text and record), run extraction for large files in the background, presigned uploads
//! straight to storage, and downloads.
//!
//! [`FileService`] holds only what files need: the store, the blob store, the job queue and
//! [`FileSettings`]. Each concern has its own module: [`ingest`] (uploads and their records),
//! [`extraction`] (the extraction runner), [`presign`] (uploads that bypass the API),
//! [`download`] (bytes and text), [`job`] (the background worker).

use std::sync::Arc;

use bytes::Bytes;

use super::{human_size, Error};
use crate::blobs::{keys, BlobStore};
use crate::domain::{FileId, FileMeta, FileStatus, Owner};
use crate::extract::{Extracted, Limits};
use crate::jobs::JobQueue;
use crate::service::search::SearchService;
use crate::service::vectors::PassageVectors;
use crate::store::Store;

pub mod download;
pub mod extraction;
pub mod ingest;
pub mod job;
pub mod presign;

pub use download::{Download, DOWNLOAD_TTL};
pub use ingest::Accepted;
pub use presign::{PresignRequest, PresignedUpload, MAX_PRESIGNED_BYTES, PRESIGN_TTL};

/// The settings files use, from the configuration.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The largest accepted upload, in bytes (`CONVERSA_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
    /// Larger uploads are extracted as background jobs (`CONVERSA_INLINE_MAX_BYTES`).
    pub inline_max_bytes: u64,
    /// PDFs with more pages are extracted as background jobs (`CONVERSA_INLINE_MAX_PAGES`).
    pub inline_max_pages: u32,
    /// Downloads at least this large redirect to a presigned URL when the blob store can sign
    /// (`CONVERSA_DOWNLOAD_REDIRECT_BYTES`).
    pub download_redirect_bytes: u64,
    /// Extraction bounds (sizes, pages, time).
    pub limits: Limits,
    /// The model whose tokenizer counts a file's `token_count` (the chat model).
    pub count_model: String,
}

/// The files use case: uploads, extraction, presigned uploads, downloads. Cheap to clone.
#[derive(Clone)]
pub struct FileService {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    jobs: Arc<dyn JobQueue>,
    settings: FileSettings,
    /// Makes the vectors of extracted text, when an embedder runs.
    vectors: Option<Arc<PassageVectors>>,
    /// Keeps the search log up to date.
    search: Option<Arc<SearchService>>,
}

/// A file as it arrived.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The client's file name (any path is stripped).
    pub filename: String,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Bytes,
}

/// A file checked and extracted, not stored yet.
#[derive(Debug)]
pub struct Prepared {
    /// The record to store.
    pub meta: FileMeta,
    /// The bytes as uploaded.
    pub original: Bytes,
    /// What extraction produced.
    pub extracted: Extracted,
}

impl FileService {
    /// A service over these ports. Starts nothing: the job workers are started by the process
    /// that runs them.
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        jobs: Arc<dyn JobQueue>,
        settings: FileSettings,
    ) -> Self {
        Self {
            store,
            blobs,
            jobs,
            settings,
            vectors: None,
            search: None,
        }
    }

    /// The same service, adding each extracted text's chunks to `search`'s log.
    pub fn with_search(mut self, search: Option<Arc<SearchService>>) -> Self {
        self.search = search;
        self
    }

    /// The search log's keeper, when there is one.
    pub fn search(&self) -> Option<&Arc<SearchService>> {
        self.search.as_ref()
    }

    /// The same service, making the vectors of each extracted text with `vectors`.
    pub fn with_vectors(mut self, vectors: Option<Arc<PassageVectors>>) -> Self {
        self.vectors = vectors;
        self
    }

    /// Where the vectors of files' chunks are made and read, when an embedder runs.
    pub fn vectors(&self) -> Option<&Arc<PassageVectors>> {
        self.vectors.as_ref()
    }

    /// Starts making the vectors of a file's extracted text in the background (the file is ready
    /// meanwhile: until they are there, its passages are ranked by words alone), then adds its
    /// chunks to the search log; the task, which a caller may wait for (the job worker does, so
    /// that an extraction container acknowledges a job only once its vectors are stored).
    fn start_vectors(
        &self,
        owner: &Owner,
        meta: &FileMeta,
        text: &str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if text.trim().is_empty() {
            return None;
        }
        let made = self
            .vectors
            .as_ref()
            .and_then(|v| v.refresh(owner, &meta.id, text.to_owned()));
        let Some(search) = self.search.clone() else {
            return made;
        };
        let (owner, meta, text) = (owner.clone(), meta.clone(), text.to_owned());
        Some(tokio::spawn(async move {
            if let Some(made) = made {
                let _ = made.await;
            }
            if let Err(e) = search.index_file(&owner, &meta, &text).await {
                tracing::warn!(file = %meta.id, error = %e, "could not index a file for search");
            }
        }))
    }

    /// The settings this service runs with.
    pub fn settings(&self) -> &FileSettings {
        &self.settings
    }

    /// One file record, or not found.
    pub async fn get(&self, owner: &Owner, id: &FileId) -> Result<FileMeta, Error> {
        self.store
            .get_file(owner, id)
            .await?
            .ok_or_else(|| Error::NotFound("No such file.".into()))
    }

    /// Removes a file's record and bytes after a later step failed (best effort: the error that
    /// caused it is what the caller reports).
    pub async fn discard(&self, owner: &Owner, id: &FileId) {
        let _ = self.store.delete_file(owner, id).await;
        if let Some(search) = &self.search {
            let _ = search.forget_file(owner, id).await;
        }
        let _ = self
            .blobs
            .delete_prefix(&keys::file_prefix(owner, id))
            .await;
    }

    /// Refuses an upload over the limit or empty; its size otherwise.
    fn check_size(&self, filename: &str, size: u64) -> Result<u64, Error> {
        if size > self.settings.max_upload_bytes {
            return Err(too_large(filename, size, self.settings.max_upload_bytes));
        }
        if size == 0 {
            return Err(Error::Unprocessable(format!("{filename} is empty")));
        }
        Ok(size)
    }

    /// Fills a record from what extraction produced (counts, pages, note) and marks it ready.
    fn fill(&self, meta: &mut FileMeta, extracted: &Extracted) {
        meta.status = FileStatus::Ready;
        meta.char_count = Some(extracted.text.chars().count() as u64);
        meta.token_count = Some(crate::tokens::count(
            &self.settings.count_model,
            &extracted.text,
        ));
        meta.pages = extracted.pages;
        meta.note = extracted.note.clone();
        meta.error = None;
        meta.progress = None;
    }
}

/// Keeps the last path segment and drops control characters; never empty.
pub fn clean_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(255)
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".into()
    } else {
        cleaned
    }
}

/// The upload limit message of `API.md`: `report.pdf is 14.2 MB; the limit is 10 MB`.
pub fn too_large(filename: &str, size: u64, limit: u64) -> Error {
    Error::TooLarge(format!(
        "{filename} is {}; the limit is {}",
        human_size(size),
        human_size(limit)
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file service on an in-memory SQLite store and local blobs under `dir`, its queue not
    /// started.
    #[cfg(feature = "sqlite")]
    pub(crate) fn service(
        dir: &std::path::Path,
    ) -> (
        FileService,
        Arc<dyn Store>,
        Arc<crate::jobs::local::LocalJobs>,
    ) {
        let store: Arc<dyn Store> =
            Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap());
        let blobs = Arc::new(crate::blobs::local::LocalBlobs::new(dir.join("blobs")).unwrap());
        let jobs = Arc::new(crate::jobs::local::LocalJobs::new(dir.join("jobs")));
        let settings = FileSettings {
            max_upload_bytes: 1024 * 1024,
            inline_max_bytes: 64 * 1024,
            inline_max_pages: 50,
            download_redirect_bytes: 0,
            limits: Limits {
                max_bytes: 1024 * 1024,
                ..Limits::default()
            },
            count_model: "chat-model".into(),
        };
        let files = FileService::new(store.clone(), blobs, jobs.clone(), settings);
        (files, store, jobs)
    }

    /// A ready text file's record (not stored) with its text in `blobs`.
    pub(crate) async fn text_file(
        blobs: &dyn BlobStore,
        owner: &Owner,
        name: &str,
        text: &str,
    ) -> FileMeta {
        let meta = FileMeta::new(
            name.into(),
            "text/plain".into(),
            text.len() as u64,
            crate::domain::FileType::Text,
            FileStatus::Ready,
        );
        blobs
            .put(
                &crate::blobs::keys::text(owner, &meta.id),
                Bytes::from(text.to_owned()),
                "text/plain",
            )
            .await
            .unwrap();
        meta
    }

    #[test]
    fn filenames_lose_paths_and_controls() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(clean_filename("a\u{0}b\n.txt"), "ab.txt");
        assert_eq!(clean_filename(""), "file");
        assert_eq!(clean_filename(".."), "file");
    }

    #[test]
    fn the_size_limit_message_names_the_file() {
        assert_eq!(
            too_large("big.txt", 2048, 1024),
            Error::TooLarge("big.txt is 2 KB; the limit is 1 KB".into())
        );
    }
}

//! The extraction runner: detect and extract bytes off the async workers, under a time limit and,
//! for heavy parsers, in a child process; and processing a stored upload in place (presigned
//! uploads and background jobs), recording `ready` or `failed` with the reason.

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use super::{FileService, MAX_PRESIGNED_BYTES};
use crate::blobs::keys;
use crate::domain::{FileId, FileMeta, FileStatus, Owner};
use crate::extract::{self, Detected, ExtractError, Extracted};
use crate::service::Error;

/// Background jobs may take this many times longer than a request.
const JOB_TIME_FACTOR: u32 = 10;

impl FileService {
    /// Detects and extracts bytes off the async workers, under the time limit (longer for jobs).
    /// `progress` receives 0–100 while extraction goes on, when the extractor reports it.
    pub async fn extract_bytes(
        &self,
        filename: &str,
        content_type: Option<&str>,
        bytes: Bytes,
        progress: Option<UnboundedSender<u8>>,
    ) -> Result<(Detected, Extracted), Error> {
        let mut limits = self.settings.limits.clone();
        if progress.is_some() {
            limits.timeout *= JOB_TIME_FACTOR;
        }
        // Just above the child's own kill, so its clearer error wins.
        let timeout = limits.timeout + std::time::Duration::from_secs(2);
        let name = filename.to_owned();
        let claimed = content_type.map(str::to_owned);
        let work = tokio::task::spawn_blocking(move || {
            let detected = extract::detect(&bytes, &name, claimed.as_deref())?;
            let report = progress.clone();
            let sink = move |p: u8| {
                if let Some(tx) = &report {
                    let _ = tx.send(p);
                }
            };
            // Heavy parsers run in a child process with a memory and time cap when this binary can
            // serve as its own child: a parser that loops or balloons is killed, the server stays up.
            let out = if extract::isolation_available()
                && extract::prefers_isolation(detected.file_type)
            {
                let isolation = extract::Isolation::current_exe()?;
                extract::extract_isolated_reporting(
                    &isolation,
                    detected.file_type,
                    &bytes,
                    &limits,
                    Some(&sink),
                )?
            } else {
                extract::with_progress(sink, || {
                    extract::extract(detected.file_type, &bytes, &limits)
                })?
            };
            if let Some(p) = progress {
                let _ = p.send(100);
            }
            Ok::<_, ExtractError>((detected, out))
        });
        match tokio::time::timeout(timeout, work).await {
            Err(_) => Err(Error::Unprocessable(format!(
                "{filename} took longer than {} seconds to read and was stopped",
                timeout.as_secs()
            ))),
            Ok(Err(join)) => {
                tracing::error!(error = %join, "extraction panicked");
                Err(Error::Unprocessable(format!(
                    "{filename} could not be read (the document is malformed)"
                )))
            }
            Ok(Ok(Err(e))) => Err(name_the_file(filename, e.into())),
            Ok(Ok(Ok(v))) => Ok(v),
        }
    }

    /// Stores extracted text (and a prepared image) for a record and marks it ready.
    pub(super) async fn store_extracted(
        &self,
        owner: &Owner,
        meta: &mut FileMeta,
        extracted: Extracted,
    ) -> Result<(), Error> {
        self.fill(meta, &extracted);
        self.blobs
            .put(
                &keys::text(owner, &meta.id),
                Bytes::from(extracted.text.into_bytes()),
                "text/plain; charset=utf-8",
            )
            .await?;
        if let Some(img) = extracted.image {
            self.blobs
                .put(&keys::image(owner, &meta.id), img.data, &img.mime)
                .await?;
        }
        Ok(())
    }

    /// The original bytes of a stored upload, or `Invalid` when they have not arrived.
    pub(super) async fn original(&self, owner: &Owner, id: &FileId) -> Result<Bytes, Error> {
        self.blobs
            .get(&keys::original(owner, id))
            .await?
            .ok_or_else(|| {
                Error::Invalid(
                    "The file has not arrived yet: PUT its bytes to upload_url, then complete."
                        .into(),
                )
            })
    }

    /// Processes a stored upload in place: reads the bytes from the blob store, decides the type from
    /// them, extracts the text (reporting 0–100 on `progress`) and marks the record `ready`, or
    /// `failed` with the reason. Used by `complete`, by the job worker and by the extraction
    /// container. Records no longer `processing` are left alone; a dependency that is down is an
    /// error (the job is tried again), a bad file is not (it is recorded as `failed`).
    pub async fn process_upload(
        &self,
        owner: &Owner,
        id: &FileId,
        progress: Option<UnboundedSender<u8>>,
    ) -> Result<FileMeta, Error> {
        // Ready: the vectors follow in the background.
        let (meta, _vectors) = self.process_upload_then(owner, id, progress).await?;
        Ok(meta)
    }

    /// [`FileService::process_upload`], with the task that makes the file's vectors and adds it to
    /// the search log (when there is one), for a caller that waits for them.
    pub(super) async fn process_upload_then(
        &self,
        owner: &Owner,
        id: &FileId,
        progress: Option<UnboundedSender<u8>>,
    ) -> Result<(FileMeta, Option<tokio::task::JoinHandle<()>>), Error> {
        let meta = self.get(owner, id).await?;
        if meta.status != FileStatus::Processing {
            return Ok((meta, None));
        }
        let bytes = self.original(owner, id).await?;
        let size = bytes.len() as u64;
        let outcome = if size > MAX_PRESIGNED_BYTES {
            Err(super::too_large(&meta.filename, size, MAX_PRESIGNED_BYTES))
        } else if size == 0 {
            Err(Error::Unprocessable(format!("{} is empty", meta.filename)))
        } else {
            self.extract_bytes(&meta.filename, Some(&meta.content_type), bytes, progress)
                .await
        };
        // The user may have deleted the file meanwhile.
        let Some(mut meta) = self.store.get_file(owner, id).await? else {
            return Err(Error::NotFound("No such file.".into()));
        };
        meta.size = size;
        let mut text = None;
        match outcome {
            Ok((detected, extracted)) => {
                meta.file_type = detected.file_type;
                meta.content_type = detected.content_type;
                text = Some(extracted.text.clone());
                self.store_extracted(owner, &mut meta, extracted).await?;
            }
            Err(e) if e.is_permanent() => {
                meta.status = FileStatus::Failed;
                meta.error = Some(e.public_message());
                meta.progress = None;
            }
            Err(e) => return Err(e),
        }
        self.store.put_file(owner, &meta).await?;
        let vectors = text.and_then(|text| self.start_vectors(owner, &meta, &text));
        Ok((meta, vectors))
    }
}

/// Names the file in extraction errors that do not already.
pub(super) fn name_the_file(filename: &str, e: Error) -> Error {
    let name_it = |m: String| {
        if m.contains(filename) {
            m
        } else {
            format!("{filename}: {m}")
        }
    };
    match e {
        Error::Unsupported(m) => Error::Unsupported(name_it(m)),
        Error::Unprocessable(m) => Error::Unprocessable(name_it(m)),
        other => other,
    }
}

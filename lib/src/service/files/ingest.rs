//! Uploads: check the size, decide the type from the bytes, extract small files before the answer
//! and queue large ones, then store the bytes, the text and the record.

use bytes::Bytes;

use super::{clean_filename, FileService, Prepared, Upload};
use crate::blobs::keys;
use crate::domain::{ConversationId, FileMeta, FileStatus, FileType, Owner};
use crate::extract;
use crate::jobs::Job;
use crate::service::Error;

/// A stored file record, and whether its extraction was queued (it is still `processing`) or done
/// before the answer.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The record.
    pub file: FileMeta,
    /// Whether a background job will finish it.
    pub queued: bool,
}

/// A cheap count of a PDF's pages from its bytes (page objects that are not compressed away).
pub fn pdf_page_hint(bytes: &[u8]) -> usize {
    let mut n = 0;
    for pat in [&b"/Type/Page"[..], &b"/Type /Page"[..]] {
        let mut i = 0;
        while let Some(pos) = bytes[i..].windows(pat.len()).position(|w| w == pat) {
            let after = i + pos + pat.len();
            if bytes.get(after) != Some(&b's') {
                n += 1;
            }
            i = after;
        }
    }
    n
}

impl FileService {
    /// Whether an upload is large enough to be processed as a background job.
    pub fn is_large(&self, file_type: FileType, bytes: &[u8]) -> bool {
        bytes.len() as u64 > self.settings.inline_max_bytes
            || (file_type == FileType::Pdf
                && pdf_page_hint(bytes) > self.settings.inline_max_pages as usize)
    }

    /// Checks the size, detects and extracts one upload. Nothing is stored.
    pub async fn prepare(&self, upload: Upload) -> Result<Prepared, Error> {
        let filename = clean_filename(&upload.filename);
        let size = self.check_size(&filename, upload.bytes.len() as u64)?;
        let (detected, extracted) = self
            .extract_bytes(
                &filename,
                upload.content_type.as_deref(),
                upload.bytes.clone(),
                None,
            )
            .await?;
        let mut meta = FileMeta::new(
            filename,
            detected.content_type,
            size,
            detected.file_type,
            FileStatus::Ready,
        );
        self.fill(&mut meta, &extracted);
        Ok(Prepared {
            meta,
            original: upload.bytes,
            extracted,
        })
    }

    /// `POST /api/files`: small files are extracted before the answer (ready); large ones are
    /// stored, queued and answered at once (`processing`, with `progress`). `conversation`, when
    /// given, must be one of the owner's.
    pub async fn upload(
        &self,
        owner: &Owner,
        upload: Upload,
        conversation: Option<&ConversationId>,
    ) -> Result<Accepted, Error> {
        if let Some(id) = conversation {
            crate::service::conversations::find(self.store.as_ref(), owner, id).await?;
        }
        let filename = clean_filename(&upload.filename);
        let size = self.check_size(&filename, upload.bytes.len() as u64)?;
        let bytes = upload.bytes.clone();
        let name = filename.clone();
        let claimed = upload.content_type.clone();
        let detected =
            tokio::task::spawn_blocking(move || extract::detect(&bytes, &name, claimed.as_deref()))
                .await
                .map_err(|e| Error::Internal(format!("detection task: {e}")))?
                .map_err(|e| super::extraction::name_the_file(&filename, e.into()))?;
        if !self.is_large(detected.file_type, &upload.bytes) {
            let prepared = self.prepare(upload).await?;
            let file = self.persist(owner, prepared, conversation).await?;
            return Ok(Accepted {
                file,
                queued: false,
            });
        }
        let mut meta = FileMeta::new(
            filename,
            detected.content_type,
            size,
            detected.file_type,
            FileStatus::Processing,
        );
        meta.progress = Some(0);
        meta.conversation_id = conversation.cloned();
        self.blobs
            .put(
                &keys::original(owner, &meta.id),
                upload.bytes,
                &meta.content_type,
            )
            .await?;
        self.store.put_file(owner, &meta).await?;
        if let Err(e) = self.enqueue(owner, &meta).await {
            self.discard(owner, &meta.id).await;
            return Err(e);
        }
        Ok(Accepted {
            file: meta,
            queued: true,
        })
    }

    /// Queues the extraction of a stored record.
    pub(super) async fn enqueue(&self, owner: &Owner, meta: &FileMeta) -> Result<(), Error> {
        let job = Job {
            owner: owner.as_str().to_owned(),
            file_id: meta.id.clone(),
        };
        Ok(self.jobs.enqueue(job).await?)
    }

    /// Stores a prepared file (bytes, text, prepared image, record), attached to `conversation`.
    pub async fn persist(
        &self,
        owner: &Owner,
        prepared: Prepared,
        conversation: Option<&ConversationId>,
    ) -> Result<FileMeta, Error> {
        let mut meta = prepared.meta;
        meta.conversation_id = conversation.cloned();
        self.blobs
            .put(
                &keys::original(owner, &meta.id),
                prepared.original,
                &meta.content_type,
            )
            .await?;
        let text = prepared.extracted.text;
        self.blobs
            .put(
                &keys::text(owner, &meta.id),
                Bytes::from(text.clone().into_bytes()),
                "text/plain; charset=utf-8",
            )
            .await?;
        if let Some(img) = prepared.extracted.image {
            self.blobs
                .put(&keys::image(owner, &meta.id), img.data, &img.mime)
                .await?;
        }
        if let Err(e) = self.store.put_file(owner, &meta).await {
            // Leave no orphan bytes behind.
            let _ = self
                .blobs
                .delete_prefix(&keys::file_prefix(owner, &meta.id))
                .await;
            return Err(e.into());
        }
        // The vectors follow in the background.
        let _ = self.start_vectors(owner, &meta, &text);
        Ok(meta)
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;

    fn upload(name: &str, bytes: &[u8]) -> Upload {
        Upload {
            filename: name.into(),
            content_type: None,
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    #[tokio::test]
    async fn a_small_file_is_read_before_the_answer_and_stored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _, _) = super::super::tests::service(dir.path());
        let owner = Owner::local();
        let got = files
            .upload(&owner, upload("notes.txt", b"The code is PLUTO-7."), None)
            .await
            .unwrap();
        assert!(!got.queued);
        assert_eq!(got.file.status, FileStatus::Ready);
        assert_eq!(got.file.file_type, FileType::Text);
        assert_eq!(files.get(&owner, &got.file.id).await.unwrap(), got.file);
        assert_eq!(
            files.text(&owner, &got.file.id).await.unwrap(),
            "The code is PLUTO-7."
        );
    }

    #[tokio::test]
    async fn a_large_file_is_stored_and_queued_as_processing() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _, _) = super::super::tests::service(dir.path());
        let owner = Owner::local();
        let big = "line of text\n".repeat(10_000);
        let got = files
            .upload(&owner, upload("big.txt", big.as_bytes()), None)
            .await
            .unwrap();
        assert!(got.queued);
        assert_eq!(got.file.status, FileStatus::Processing);
        assert_eq!(got.file.progress, Some(0));
        let job = dir
            .path()
            .join("jobs")
            .join(format!("{}.json", got.file.id));
        assert!(job.is_file(), "the job waits on disk for a worker");
    }

    #[tokio::test]
    async fn refused_uploads_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _, _) = super::super::tests::service(dir.path());
        let owner = Owner::local();
        let e = files
            .upload(&owner, upload("empty.txt", b""), None)
            .await
            .unwrap_err();
        assert_eq!(e, Error::Unprocessable("empty.txt is empty".into()));
        let e = files
            .upload(&owner, upload("photo.png", b"%PDF-1.4 not a png"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Unsupported(m) if m.contains("photo.png")),
            "{e:?}"
        );
        let e = files
            .upload(
                &owner,
                upload("a.txt", b"hi"),
                Some(&ConversationId::from("nope")),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert!(
            std::fs::read_dir(dir.path().join("blobs"))
                .map(|d| d.count() == 0)
                .unwrap_or(true),
            "no bytes were kept"
        );
    }
}

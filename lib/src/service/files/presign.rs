//! Uploads that go straight to the blob store (past the 6 MB request cap of Lambda): a record
//! waiting for its bytes and a signed `PUT` URL, then completion, which processes the bytes.

use super::ingest::Accepted;
use super::{clean_filename, too_large, FileService};
use crate::blobs::{keys, PresignedRequest};
use crate::domain::{ConversationId, FileId, FileMeta, FileStatus, Owner};
use crate::extract;
use crate::service::Error;

/// The largest file a presigned upload may carry.
pub const MAX_PRESIGNED_BYTES: u64 = 100 * 1024 * 1024;

/// How long a presigned upload URL works.
pub const PRESIGN_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What the client says about a file it will upload itself.
#[derive(Debug, Clone)]
pub struct PresignRequest {
    /// The file's name (any path is stripped).
    pub filename: String,
    /// Its media type, if the client knows it.
    pub content_type: Option<String>,
    /// Its exact size in bytes (the URL only accepts that many).
    pub size: u64,
    /// Attach it to this conversation.
    pub conversation_id: Option<ConversationId>,
}

/// A file record waiting for its bytes, and where to send them.
#[derive(Debug, Clone)]
pub struct PresignedUpload {
    /// The record, `processing` until the upload is completed.
    pub file: FileMeta,
    /// The request the client makes to upload the bytes.
    pub request: PresignedRequest,
}

impl FileService {
    /// Starts an upload that goes straight to the blob store: checks the claim, stores a
    /// `processing` record and signs a `PUT` URL for exactly `size` bytes.
    pub async fn presign_upload(
        &self,
        owner: &Owner,
        req: PresignRequest,
    ) -> Result<PresignedUpload, Error> {
        let filename = clean_filename(&req.filename);
        if req.size == 0 {
            return Err(Error::Unprocessable(format!("{filename} is empty")));
        }
        if req.size > MAX_PRESIGNED_BYTES {
            return Err(too_large(&filename, req.size, MAX_PRESIGNED_BYTES));
        }
        let content_type = req
            .content_type
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.len() <= 255 && c.is_ascii())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let file_type = extract::claim(&filename, Some(&content_type))?;
        if let Some(c) = &req.conversation_id {
            crate::service::conversations::find(self.store.as_ref(), owner, c).await?;
        }
        let mut file = FileMeta::new(
            filename,
            content_type,
            req.size,
            file_type,
            FileStatus::Processing,
        );
        file.conversation_id = req.conversation_id;
        let request = self
            .blobs
            .presign_put(
                &keys::original(owner, &file.id),
                &file.content_type,
                req.size,
                PRESIGN_TTL,
            )
            .await?
            .ok_or_else(|| {
                Error::Invalid("Presigned uploads need S3; use POST /api/files.".into())
            })?;
        self.store.put_file(owner, &file).await?;
        Ok(PresignedUpload { file, request })
    }

    /// Finishes a presigned upload: a large file is queued and answered at once (still
    /// `processing`), a small one is processed before the answer. A record that is no longer
    /// `processing` is returned as it is (completing twice is harmless).
    pub async fn complete_upload(&self, owner: &Owner, id: &FileId) -> Result<Accepted, Error> {
        let meta = self.get(owner, id).await?;
        if meta.status != FileStatus::Processing {
            return Ok(Accepted {
                file: meta,
                queued: false,
            });
        }
        let bytes = self.original(owner, id).await?;
        if self.is_large(meta.file_type, &bytes) {
            self.enqueue(owner, &meta).await?;
            let mut meta = meta;
            meta.progress = Some(0);
            self.store.put_file(owner, &meta).await?;
            return Ok(Accepted {
                file: meta,
                queued: true,
            });
        }
        Ok(Accepted {
            file: self.process_upload(owner, id, None).await?,
            queued: false,
        })
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;

    fn request(filename: &str, content_type: Option<&str>, size: u64) -> PresignRequest {
        PresignRequest {
            filename: filename.into(),
            content_type: content_type.map(str::to_owned),
            size,
            conversation_id: None,
        }
    }

    #[tokio::test]
    async fn claims_and_sizes_are_checked_before_anything_is_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _, _) = super::super::tests::service(dir.path());
        let owner = Owner::local();
        let e = files
            .presign_upload(&owner, request("a.exe", None, 10))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
        let e = files
            .presign_upload(&owner, request("a.pdf", None, MAX_PRESIGNED_BYTES + 1))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
        let e = files
            .presign_upload(&owner, request("a.pdf", None, 0))
            .await
            .unwrap_err();
        assert_eq!(e, Error::Unprocessable("a.pdf is empty".into()));
        // Local disk cannot sign URLs: a clear refusal, and no record left behind.
        let e = files
            .presign_upload(&owner, request("a.pdf", Some("application/pdf"), 10))
            .await
            .unwrap_err();
        assert!(matches!(&e, Error::Invalid(m) if m.contains("S3")), "{e:?}");
    }
}

//! Reading a file back: the original bytes (or a short-lived presigned URL to them) and the
//! extracted text.

use bytes::Bytes;

use super::FileService;
use crate::blobs::{keys, PresignedRequest};
use crate::domain::{FileId, FileMeta, Owner};
use crate::service::Error;

/// How long a presigned download URL works: enough to start the download, short enough that a
/// leaked link soon stops working.
pub const DOWNLOAD_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// What `GET /api/files/{id}/download` answers.
#[derive(Debug)]
pub enum Download {
    /// The client fetches the bytes itself from this presigned URL (S3): no size limit on the way.
    Redirect(PresignedRequest),
    /// The bytes, served through the API (local disk, or files under the redirect threshold).
    Bytes(FileMeta, Bytes),
}

impl FileService {
    /// The original bytes of one of `owner`'s files, or where to get them. The owner check comes
    /// first: another user's file is not found, never a URL. When the blob store can sign URLs and
    /// the file is at least `download_redirect_bytes`, the answer is a short-lived presigned `GET`
    /// that downloads as an attachment under the file's name (a Lambda response carries at most
    /// ~6 MB).
    pub async fn download(&self, owner: &Owner, id: &FileId) -> Result<Download, Error> {
        let meta = self.get(owner, id).await?;
        let key = keys::original(owner, id);
        if meta.size >= self.settings.download_redirect_bytes {
            if let Some(request) = self
                .blobs
                .presign_get(&key, &meta.filename, DOWNLOAD_TTL)
                .await?
            {
                return Ok(Download::Redirect(request));
            }
        }
        let bytes = self
            .blobs
            .get(&key)
            .await?
            .ok_or_else(|| Error::NotFound("The file's content is no longer stored.".into()))?;
        Ok(Download::Bytes(meta, bytes))
    }

    /// The extracted text (empty for images and files still processing).
    pub async fn text(&self, owner: &Owner, id: &FileId) -> Result<String, Error> {
        self.get(owner, id).await?;
        let bytes = self
            .blobs
            .get(&keys::text(owner, id))
            .await?
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;
    use crate::service::files::Upload;

    #[tokio::test]
    async fn another_owners_file_is_not_found_and_local_disk_serves_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _, _) = super::super::tests::service(dir.path());
        let alice = Owner::new("alice");
        let got = files
            .upload(
                &alice,
                Upload {
                    filename: "a.csv".into(),
                    content_type: None,
                    bytes: Bytes::from_static(b"a,b\n1,2\n"),
                },
                None,
            )
            .await
            .unwrap();
        match files.download(&alice, &got.file.id).await.unwrap() {
            Download::Bytes(meta, bytes) => {
                assert_eq!(meta.content_type, "text/csv");
                assert_eq!(&bytes[..], b"a,b\n1,2\n");
            }
            Download::Redirect(_) => panic!("local disk cannot sign URLs"),
        }
        let bob = Owner::new("bob");
        for e in [
            files.download(&bob, &got.file.id).await.unwrap_err(),
            files.text(&bob, &got.file.id).await.unwrap_err(),
        ] {
            assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        }
    }
}

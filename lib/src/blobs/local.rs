//! Blob store on local disk, under `{data_dir}/blobs`. Writes go to a temporary file first and are
//! renamed into place, so a reader never sees half a file.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobError, BlobStore};

/// Files under one directory.
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| BlobError::Unavailable(format!("{}: {e}", root.display())))?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(BlobError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(rel))
    }
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Unavailable(e.to_string())
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn health(&self) -> Result<(), BlobError> {
        tokio::fs::metadata(&self.root)
            .await
            .map(|_| ())
            .map_err(io)
    }

    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
        tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(Some(b.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        // Prefixes end in `/` (a directory) or name a single file.
        let trimmed = prefix.trim_end_matches('/');
        let path = self.path(trimmed)?;
        let result = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&path).await,
            Ok(_) => tokio::fs::remove_file(&path).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What every blob store does is checked by the contract (`blobs::contract`); this is local
    // disk's own promise.
    #[tokio::test]
    async fn a_write_leaves_no_temporary_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path()).unwrap();
        blobs
            .put("o/f1/original", Bytes::from_static(b"abc"), "text/plain")
            .await
            .unwrap();
        blobs
            .put("o/f1/original", Bytes::from_static(b"abcd"), "text/plain")
            .await
            .unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("o/f1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["original".to_owned()]);
    }
}

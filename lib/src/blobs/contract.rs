//! The contract every `BlobStore` adapter passes, one test per check through
//! [`blob_contract_tests!`](crate::blob_contract_tests). The checks use unique keys, so a shared
//! bucket is fine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{keys, BlobError, BlobStore};
use crate::domain::{FileId, Owner, Timestamp};

/// One `#[tokio::test]` per check of the `BlobStore` contract, in `mod $name`, against the adapter
/// the setup (an `async` block giving `Option<Subject<_>>`) builds.
#[macro_export]
macro_rules! blob_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(blobs; $name, $setup;
            health_answers,
            absent_keys_read_as_none,
            bytes_read_back_exactly_and_are_replaced_whole,
            delete_prefix_removes_one_file_only,
            deleting_what_is_gone_is_fine,
            refuses_escaping_keys,
            presigned_urls_are_well_formed,
        );
    };
}

fn unique_owner(tag: &str) -> Owner {
    Owner::new(format!(
        "{tag}-{}@example.com",
        uuid::Uuid::now_v7().simple()
    ))
}

fn text(b: &'static [u8]) -> Bytes {
    Bytes::from_static(b)
}

/// The store answers a health check.
pub async fn health_answers(blobs: Arc<dyn BlobStore>) {
    blobs.health().await.expect("health");
}

/// A key never written reads as `None`, not as an error.
pub async fn absent_keys_read_as_none(blobs: Arc<dyn BlobStore>) {
    let key = keys::original(&unique_owner("reader"), &FileId::generate());
    assert_eq!(blobs.get(&key).await.unwrap(), None);
}

/// Binary bytes read back exactly; a put replaces what was there; empty blobs exist.
pub async fn bytes_read_back_exactly_and_are_replaced_whole(blobs: Arc<dyn BlobStore>) {
    let owner = unique_owner("putter");
    let id = FileId::generate();
    let key = keys::original(&owner, &id);
    let binary = Bytes::from((0u8..=255).cycle().take(70_000).collect::<Vec<_>>());
    blobs
        .put(&key, binary.clone(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(blobs.get(&key).await.unwrap(), Some(binary));
    blobs
        .put(&key, text(b"replaced"), "text/plain")
        .await
        .unwrap();
    assert_eq!(blobs.get(&key).await.unwrap(), Some(text(b"replaced")));
    blobs.put(&key, Bytes::new(), "text/plain").await.unwrap();
    assert_eq!(
        blobs.get(&key).await.unwrap(),
        Some(Bytes::new()),
        "empty blobs exist"
    );
    blobs
        .delete_prefix(&keys::file_prefix(&owner, &id))
        .await
        .unwrap();
}

/// Deleting a file's prefix removes all its blobs and nothing of another file.
pub async fn delete_prefix_removes_one_file_only(blobs: Arc<dyn BlobStore>) {
    let owner = unique_owner("deleter");
    let (a, b) = (FileId::generate(), FileId::generate());
    for id in [&a, &b] {
        for key in [keys::original(&owner, id), keys::text(&owner, id)] {
            blobs.put(&key, text(b"x"), "text/plain").await.unwrap();
        }
    }
    blobs
        .delete_prefix(&keys::file_prefix(&owner, &a))
        .await
        .unwrap();
    assert_eq!(blobs.get(&keys::original(&owner, &a)).await.unwrap(), None);
    assert_eq!(blobs.get(&keys::text(&owner, &a)).await.unwrap(), None);
    assert_eq!(
        blobs.get(&keys::original(&owner, &b)).await.unwrap(),
        Some(text(b"x")),
        "another file's blobs stay"
    );
    blobs
        .delete_prefix(&keys::file_prefix(&owner, &b))
        .await
        .unwrap();
    assert_eq!(blobs.get(&keys::text(&owner, &b)).await.unwrap(), None);
}

/// Deleting a prefix with nothing under it succeeds.
pub async fn deleting_what_is_gone_is_fine(blobs: Arc<dyn BlobStore>) {
    let prefix = keys::file_prefix(&unique_owner("nobody"), &FileId::generate());
    blobs.delete_prefix(&prefix).await.unwrap();
    blobs.delete_prefix(&prefix).await.unwrap();
}

/// Keys that would escape the store, and the empty prefix, are refused.
pub async fn refuses_escaping_keys(blobs: Arc<dyn BlobStore>) {
    for key in ["../x", "/etc/passwd", "a/../../b", ""] {
        assert!(
            matches!(
                blobs.put(key, text(b"x"), "text/plain").await,
                Err(BlobError::InvalidKey(_))
            ),
            "put {key:?}"
        );
        assert!(
            matches!(blobs.get(key).await, Err(BlobError::InvalidKey(_))),
            "get {key:?}"
        );
    }
    assert!(
        matches!(blobs.delete_prefix("").await, Err(BlobError::InvalidKey(_))),
        "an empty prefix would delete everything"
    );
}

/// A store that signs URLs signs a `PUT` bound to the content type and a `GET`, both expiring.
pub async fn presigned_urls_are_well_formed(blobs: Arc<dyn BlobStore>) {
    let key = keys::original(&unique_owner("signer"), &FileId::generate());
    let expires = Duration::from_secs(600);
    let before = Timestamp::now();
    let put = blobs
        .presign_put(&key, "application/pdf", 1234, expires)
        .await
        .unwrap();
    let get = blobs
        .presign_get(&key, "report \"q4\".pdf", expires)
        .await
        .unwrap();
    assert_eq!(
        put.is_some(),
        get.is_some(),
        "a store signs both directions or neither"
    );
    if let (Some(put), Some(get)) = (put, get) {
        assert_eq!(put.method, "PUT");
        assert!(put.url.starts_with("http"), "{}", put.url);
        assert_eq!(
            put.headers.get("content-type").map(String::as_str),
            Some("application/pdf")
        );
        assert!(put.expires_at.millis() >= before.millis() + 590_000);
        assert_eq!(get.method, "GET");
        assert!(get.url.starts_with("http"), "{}", get.url);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::local::LocalBlobs;
    use super::BlobStore;
    use crate::contract::Subject;

    crate::blob_contract_tests!(local, async {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path()).unwrap();
        Some(Subject::new(blobs).with_teardown(async move { drop(dir) }))
    });

    #[tokio::test]
    async fn local_disk_signs_no_urls() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path()).unwrap();
        let put = blobs.presign_put("a/b", "text/plain", 1, Duration::from_secs(1));
        assert!(put.await.unwrap().is_none());
        let get = blobs.presign_get("a/b", "b.txt", Duration::from_secs(1));
        assert!(get.await.unwrap().is_none());
    }
}

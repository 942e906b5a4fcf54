//! The contract every `BlobStore` adapter passes. Each adapter's tests call [`run_all`] on a fresh
//! store; the checks use unique keys, so a shared bucket is fine too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::time::Duration;

use bytes::Bytes;

use super::{keys, BlobError, BlobStore};
use crate::domain::{FileId, Owner, Timestamp};

fn unique_owner(tag: &str) -> Owner {
    Owner::new(format!(
        "{tag}-{}@example.com",
        uuid::Uuid::now_v7().simple()
    ))
}

/// Runs every check.
pub async fn run_all(blobs: &dyn BlobStore) {
    blobs.health().await.expect("health");
    put_get_replace(blobs).await;
    delete_prefix_removes_one_file_only(blobs).await;
    refuses_escaping_keys(blobs).await;
    presigned_urls_are_well_formed(blobs).await;
}

async fn put_get_replace(blobs: &dyn BlobStore) {
    let owner = unique_owner("putter");
    let id = FileId::generate();
    let key = keys::original(&owner, &id);
    assert_eq!(
        blobs.get(&key).await.unwrap(),
        None,
        "absent keys read as None"
    );
    let binary = Bytes::from((0u8..=255).cycle().take(70_000).collect::<Vec<_>>());
    blobs
        .put(&key, binary.clone(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(blobs.get(&key).await.unwrap(), Some(binary));
    blobs
        .put(&key, Bytes::from_static(b"replaced"), "text/plain")
        .await
        .unwrap();
    assert_eq!(
        blobs.get(&key).await.unwrap(),
        Some(Bytes::from_static(b"replaced"))
    );
    blobs.put(&key, Bytes::new(), "text/plain").await.unwrap();
    assert_eq!(
        blobs.get(&key).await.unwrap(),
        Some(Bytes::new()),
        "empty blobs exist"
    );
}

async fn delete_prefix_removes_one_file_only(blobs: &dyn BlobStore) {
    let owner = unique_owner("deleter");
    let (a, b) = (FileId::generate(), FileId::generate());
    for id in [&a, &b] {
        blobs
            .put(
                &keys::original(&owner, id),
                Bytes::from_static(b"o"),
                "text/plain",
            )
            .await
            .unwrap();
        blobs
            .put(
                &keys::text(&owner, id),
                Bytes::from_static(b"t"),
                "text/plain",
            )
            .await
            .unwrap();
    }
    blobs
        .delete_prefix(&keys::file_prefix(&owner, &a))
        .await
        .unwrap();
    assert_eq!(blobs.get(&keys::original(&owner, &a)).await.unwrap(), None);
    assert_eq!(blobs.get(&keys::text(&owner, &a)).await.unwrap(), None);
    assert!(
        blobs
            .get(&keys::original(&owner, &b))
            .await
            .unwrap()
            .is_some(),
        "another file's blobs stay"
    );
    blobs
        .delete_prefix(&keys::file_prefix(&owner, &a))
        .await
        .expect("deleting what is gone is fine");
    blobs
        .delete_prefix(&keys::file_prefix(&owner, &b))
        .await
        .unwrap();
    assert_eq!(blobs.get(&keys::text(&owner, &b)).await.unwrap(), None);
}

async fn refuses_escaping_keys(blobs: &dyn BlobStore) {
    for key in ["../x", "/etc/passwd", "a/../../b", ""] {
        assert!(
            matches!(
                blobs.put(key, Bytes::from_static(b"x"), "text/plain").await,
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

async fn presigned_urls_are_well_formed(blobs: &dyn BlobStore) {
    let owner = unique_owner("signer");
    let key = keys::original(&owner, &FileId::generate());
    let expires = Duration::from_secs(600);
    let before = Timestamp::now();
    if let Some(put) = blobs
        .presign_put(&key, "application/pdf", 1234, expires)
        .await
        .unwrap()
    {
        assert_eq!(put.method, "PUT");
        assert!(put.url.starts_with("http"), "{}", put.url);
        assert_eq!(
            put.headers.get("content-type").map(String::as_str),
            Some("application/pdf")
        );
        assert!(put.expires_at.millis() >= before.millis() + 590_000);
    }
    if let Some(get) = blobs
        .presign_get(&key, "report \"q4\".pdf", expires)
        .await
        .unwrap()
    {
        assert_eq!(get.method, "GET");
        assert!(get.url.starts_with("http"), "{}", get.url);
    }
}

#[cfg(test)]
mod tests {
    use super::BlobStore;

    #[tokio::test]
    async fn the_local_store_passes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = super::super::local::LocalBlobs::new(dir.path()).unwrap();
        super::run_all(&blobs).await;
        assert!(blobs
            .presign_put("a/b", "text/plain", 1, std::time::Duration::from_secs(1))
            .await
            .unwrap()
            .is_none());
    }
}

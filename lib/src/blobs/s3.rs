//! Blob store on S3: objects under the store's keys in one bucket, encrypted at rest (SSE-S3) on every
//! put, with presigned `PUT`/`GET` URLs so large files travel straight between the client and S3.
//! Path-style addressing is used when `AWS_ENDPOINT_URL` points at an emulator.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::{BlobError, BlobStore, PresignedRequest};
use crate::domain::Timestamp;

/// One bucket.
#[derive(Clone)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

fn unavailable<E: ProvideErrorMetadata + std::error::Error>(e: E) -> BlobError {
    BlobError::Unavailable(crate::aws::describe(&e))
}

/// Keys are relative paths: not empty, no leading `/`, no `.` or `..` segments.
fn check(key: &str) -> Result<(), BlobError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.split('/').any(|seg| seg == ".." || seg == ".");
    if bad {
        Err(BlobError::InvalidKey(key.to_owned()))
    } else {
        Ok(())
    }
}

impl S3Blobs {
    /// Uses an SDK client and a bucket.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// A client from the process's AWS configuration (path-style when `AWS_ENDPOINT_URL` is set).
    pub async fn from_env(bucket: impl Into<String>) -> Self {
        Self::new(client(crate::aws::sdk_config().await), bucket)
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn presigning(expires: Duration) -> Result<PresigningConfig, BlobError> {
        PresigningConfig::expires_in(expires)
            .map_err(|e| BlobError::Unavailable(format!("cannot presign for {expires:?}: {e}")))
    }
}

/// An S3 client for `sdk`: path-style addressing for emulators, and checksums only where S3 requires
/// them (a presigned `PUT` must not carry a checksum of an empty body).
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(crate::aws::custom_endpoint())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    Client::from_conf(config)
}

fn expiry(expires: Duration) -> Timestamp {
    Timestamp::from_millis(
        Timestamp::now()
            .millis()
            .saturating_add(i64::try_from(expires.as_millis()).unwrap_or(i64::MAX)),
    )
}

fn presigned(
    req: aws_sdk_s3::presigning::PresignedRequest,
    expires: Duration,
    skip: &[&str],
) -> PresignedRequest {
    PresignedRequest {
        method: req.method().to_owned(),
        url: req.uri().to_owned(),
        headers: req
            .headers()
            .filter(|(k, _)| !skip.iter().any(|s| k.eq_ignore_ascii_case(s)))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect::<BTreeMap<_, _>>(),
        expires_at: expiry(expires),
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn health(&self) -> Result<(), BlobError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError> {
        check(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        check(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| BlobError::Unavailable(format!("reading {key}: {e}")))?;
        Ok(Some(body.into_bytes()))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        check(prefix)?;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(unavailable)?;
            let objects = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BlobError::Unavailable(e.to_string()))?;
            if !objects.is_empty() {
                let delete = Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
                    .map_err(|e| BlobError::Unavailable(e.to_string()))?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(unavailable)?;
                if let Some(err) = out.errors().first() {
                    return Err(BlobError::Unavailable(format!(
                        "deleting {}: {}",
                        err.key().unwrap_or("?"),
                        err.message().unwrap_or("refused")
                    )));
                }
            }
            match page.next_continuation_token {
                Some(t) if page.is_truncated == Some(true) => token = Some(t),
                _ => return Ok(()),
            }
        }
    }

    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        expires: Duration,
    ) -> Result<Option<PresignedRequest>, BlobError> {
        check(key)?;
        let length = i64::try_from(size)
            .map_err(|_| BlobError::Unavailable(format!("{size} bytes is too large")))?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .presigned(Self::presigning(expires)?)
            .await
            .map_err(unavailable)?;
        // The length is signed; clients send it by themselves (browsers refuse to set it).
        Ok(Some(presigned(req, expires, &["content-length"])))
    }

    async fn presign_get(
        &self,
        key: &str,
        filename: &str,
        expires: Duration,
    ) -> Result<Option<PresignedRequest>, BlobError> {
        check(key)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(super::attachment_disposition(filename))
            .presigned(Self::presigning(expires)?)
            .await
            .map_err(unavailable)?;
        Ok(Some(presigned(req, expires, &[])))
    }
}

/// Creates the bucket when it does not exist (tests, local setups; deployed buckets come from the
/// template).
pub async fn ensure_bucket(client: &Client, bucket: &str) -> Result<(), BlobError> {
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_stay_relative() {
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a/./b"] {
            assert!(super::check(bad).is_err(), "{bad}");
        }
        assert!(super::check("owner/file/original").is_ok());
    }
}

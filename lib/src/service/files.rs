//! Ingesting files: check the size, decide the type from the bytes, extract (off the async workers,
//! under a time limit), then store the bytes, the text and the record.

use bytes::Bytes;

use super::human_size;
use crate::api::ApiError;
use crate::blobs::keys;
use crate::domain::{ConversationId, FileId, FileMeta, FileStatus, Owner, Timestamp};
use crate::extract::{self, ExtractError, Extracted};
use crate::AppState;

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
pub fn too_large(filename: &str, size: u64, limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "{filename} is {}; the limit is {}",
        human_size(size),
        human_size(limit)
    ))
}

/// Checks, detects and extracts one upload. Nothing is stored.
pub async fn prepare(state: &AppState, upload: Upload) -> Result<Prepared, ApiError> {
    let filename = clean_filename(&upload.filename);
    let size = upload.bytes.len() as u64;
    if size > state.config.max_upload_bytes {
        return Err(too_large(&filename, size, state.config.max_upload_bytes));
    }
    if size == 0 {
        return Err(ApiError::Unprocessable(format!("{filename} is empty")));
    }
    let limits = state.limits.clone();
    let timeout = limits.timeout;
    let bytes = upload.bytes.clone();
    let name = filename.clone();
    let claimed = upload.content_type.clone();
    let work = tokio::task::spawn_blocking(move || {
        let detected = extract::detect(&bytes, &name, claimed.as_deref())?;
        let out = extract::extract(detected.file_type, &bytes, &limits)?;
        Ok::<_, ExtractError>((detected, out))
    });
    let (detected, extracted) = match tokio::time::timeout(timeout, work).await {
        Err(_) => {
            return Err(ApiError::Unprocessable(format!(
                "{filename} took longer than {} seconds to read and was stopped",
                timeout.as_secs()
            )))
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "extraction panicked");
            return Err(ApiError::Unprocessable(format!(
                "{filename} could not be read (the document is malformed)"
            )));
        }
        Ok(Ok(Err(e))) => return Err(prefix(&filename, e)),
        Ok(Ok(Ok(v))) => v,
    };
    let char_count = extracted.text.chars().count() as u64;
    let meta = FileMeta {
        id: FileId::generate(),
        conversation_id: None,
        filename,
        content_type: detected.content_type,
        size,
        file_type: detected.file_type,
        status: FileStatus::Ready,
        char_count: Some(char_count),
        token_count: Some(crate::tokens::estimate(&extracted.text)),
        pages: extracted.pages,
        error: None,
        progress: None,
        created_at: Timestamp::now(),
    };
    Ok(Prepared {
        meta,
        original: upload.bytes,
        extracted,
    })
}

/// Names the file in extraction errors that do not already.
fn prefix(filename: &str, e: ExtractError) -> ApiError {
    let api = ApiError::from(e);
    let name_it = |m: String| {
        if m.contains(filename) {
            m
        } else {
            format!("{filename}: {m}")
        }
    };
    match api {
        ApiError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(name_it(m)),
        ApiError::Unprocessable(m) => ApiError::Unprocessable(name_it(m)),
        other => other,
    }
}

/// Stores a prepared file (bytes, text, prepared image, record), attached to `conversation`.
pub async fn persist(
    state: &AppState,
    owner: &Owner,
    prepared: Prepared,
    conversation: Option<&ConversationId>,
) -> Result<FileMeta, ApiError> {
    let mut meta = prepared.meta;
    meta.conversation_id = conversation.cloned();
    state
        .blobs
        .put(
            &keys::original(owner, &meta.id),
            prepared.original,
            &meta.content_type,
        )
        .await?;
    state
        .blobs
        .put(
            &keys::text(owner, &meta.id),
            Bytes::from(prepared.extracted.text.into_bytes()),
            "text/plain; charset=utf-8",
        )
        .await?;
    if let Some(img) = prepared.extracted.image {
        state
            .blobs
            .put(&keys::image(owner, &meta.id), img.data, &img.mime)
            .await?;
    }
    if let Err(e) = state.store.put_file(owner, &meta).await {
        // Leave no orphan bytes behind.
        let _ = state
            .blobs
            .delete_prefix(&keys::file_prefix(owner, &meta.id))
            .await;
        return Err(e.into());
    }
    Ok(meta)
}

/// One file record, or 404.
pub async fn get(state: &AppState, owner: &Owner, id: &FileId) -> Result<FileMeta, ApiError> {
    state
        .store
        .get_file(owner, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("No such file.".into()))
}

/// The bytes as uploaded.
pub async fn original(
    state: &AppState,
    owner: &Owner,
    id: &FileId,
) -> Result<(FileMeta, Bytes), ApiError> {
    let meta = get(state, owner, id).await?;
    let bytes = state
        .blobs
        .get(&keys::original(owner, id))
        .await?
        .ok_or_else(|| ApiError::NotFound("The file's content is no longer stored.".into()))?;
    Ok((meta, bytes))
}

/// The extracted text (empty for images and files still processing).
pub async fn text(state: &AppState, owner: &Owner, id: &FileId) -> Result<String, ApiError> {
    let _ = get(state, owner, id).await?;
    let bytes = state
        .blobs
        .get(&keys::text(owner, id))
        .await?
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_paths_and_controls() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(clean_filename("a\u{0}b\n.txt"), "ab.txt");
        assert_eq!(clean_filename(""), "file");
        assert_eq!(clean_filename(".."), "file");
    }
}

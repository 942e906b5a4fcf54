//! Ingesting files: check the size, decide the type from the bytes, extract (off the async workers,
//! under a time limit), then store the bytes, the text and the record.

use bytes::Bytes;

use super::human_size;
use crate::api::ApiError;
use crate::blobs::{keys, PresignedRequest};
use crate::domain::{ConversationId, FileId, FileMeta, FileStatus, FileType, Owner, Timestamp};
use crate::extract::{self, Detected, ExtractError, Extracted};
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

/// Detects and extracts bytes off the async workers, under the time limit (longer for jobs).
/// `progress` receives 0–100 while extraction goes on, when the extractor reports it.
pub async fn extract_bytes(
    state: &AppState,
    filename: &str,
    content_type: Option<&str>,
    bytes: Bytes,
    progress: Option<tokio::sync::mpsc::UnboundedSender<u8>>,
) -> Result<(Detected, Extracted), ApiError> {
    let mut limits = state.limits.clone();
    if progress.is_some() {
        // Background jobs may take longer than a request.
        limits.timeout *= 10;
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
        let out =
            if extract::isolation_available() && extract::prefers_isolation(detected.file_type) {
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
        Err(_) => Err(ApiError::Unprocessable(format!(
            "{filename} took longer than {} seconds to read and was stopped",
            timeout.as_secs()
        ))),
        Ok(Err(join)) => {
            tracing::error!(error = %join, "extraction panicked");
            Err(ApiError::Unprocessable(format!(
                "{filename} could not be read (the document is malformed)"
            )))
        }
        Ok(Ok(Err(e))) => Err(prefix(filename, e)),
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

fn new_meta(
    filename: String,
    content_type: String,
    size: u64,
    file_type: crate::domain::FileType,
    status: FileStatus,
) -> FileMeta {
    FileMeta {
        id: FileId::generate(),
        conversation_id: None,
        filename,
        content_type,
        size,
        file_type,
        status,
        char_count: None,
        token_count: None,
        pages: None,
        error: None,
        note: None,
        progress: None,
        created_at: Timestamp::now(),
    }
}

/// Fills a record from what extraction produced (counts, pages, note) and marks it ready.
fn fill(state: &AppState, meta: &mut FileMeta, extracted: &Extracted) {
    meta.status = FileStatus::Ready;
    meta.char_count = Some(extracted.text.chars().count() as u64);
    meta.token_count = Some(crate::tokens::count(
        &state.config.chat_model,
        &extracted.text,
    ));
    meta.pages = extracted.pages;
    meta.note = extracted.note.clone();
    meta.error = None;
    meta.progress = None;
}

/// Checks the size, detects and extracts one upload. Nothing is stored.
pub async fn prepare(state: &AppState, upload: Upload) -> Result<Prepared, ApiError> {
    let filename = clean_filename(&upload.filename);
    let size = check_size(state, &filename, upload.bytes.len() as u64)?;
    let (detected, extracted) = extract_bytes(
        state,
        &filename,
        upload.content_type.as_deref(),
        upload.bytes.clone(),
        None,
    )
    .await?;
    let mut meta = new_meta(
        filename,
        detected.content_type,
        size,
        detected.file_type,
        FileStatus::Ready,
    );
    fill(state, &mut meta, &extracted);
    Ok(Prepared {
        meta,
        original: upload.bytes,
        extracted,
    })
}

fn check_size(state: &AppState, filename: &str, size: u64) -> Result<u64, ApiError> {
    if size > state.config.max_upload_bytes {
        return Err(too_large(filename, size, state.config.max_upload_bytes));
    }
    if size == 0 {
        return Err(ApiError::Unprocessable(format!("{filename} is empty")));
    }
    Ok(size)
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

/// Whether an upload is large enough to be processed as a background job.
pub fn is_large(state: &AppState, file_type: crate::domain::FileType, bytes: &[u8]) -> bool {
    bytes.len() as u64 > state.config.inline_max_bytes
        || (file_type == crate::domain::FileType::Pdf
            && pdf_page_hint(bytes) > state.config.inline_max_pages as usize)
}

/// `POST /api/files`: small files are extracted before the answer (`201`, ready); large ones are
/// stored, queued and answered at once (`202`, processing, with `progress`).
pub async fn upload(
    state: &AppState,
    owner: &Owner,
    upload: Upload,
    conversation: Option<&ConversationId>,
) -> Result<(bool, FileMeta), ApiError> {
    let filename = clean_filename(&upload.filename);
    let size = check_size(state, &filename, upload.bytes.len() as u64)?;
    let bytes = upload.bytes.clone();
    let name = filename.clone();
    let claimed = upload.content_type.clone();
    let detected =
        tokio::task::spawn_blocking(move || extract::detect(&bytes, &name, claimed.as_deref()))
            .await
            .map_err(|e| ApiError::Internal(format!("detection task: {e}")))?
            .map_err(|e| prefix(&filename, e))?;
    if !is_large(state, detected.file_type, &upload.bytes) {
        let prepared = prepare(state, upload).await?;
        return Ok((false, persist(state, owner, prepared, conversation).await?));
    }
    let mut meta = new_meta(
        filename,
        detected.content_type,
        size,
        detected.file_type,
        FileStatus::Processing,
    );
    meta.progress = Some(0);
    meta.conversation_id = conversation.cloned();
    state
        .blobs
        .put(
            &keys::original(owner, &meta.id),
            upload.bytes,
            &meta.content_type,
        )
        .await?;
    state.store.put_file(owner, &meta).await?;
    let job = crate::jobs::Job {
        owner: owner.as_str().to_owned(),
        file_id: meta.id.clone(),
    };
    if let Err(e) = state.jobs.enqueue(job).await {
        discard(state, owner, &meta.id).await;
        return Err(e.into());
    }
    Ok((true, meta))
}

/// Removes a file's record and bytes after a later step failed (best effort: the error that
/// caused it is what the caller reports).
pub(super) async fn discard(state: &AppState, owner: &Owner, id: &FileId) {
    let _ = state.store.delete_file(owner, id).await;
    let _ = state
        .blobs
        .delete_prefix(&keys::file_prefix(owner, id))
        .await;
}

/// Stores extracted text (and a prepared image) for a record and marks it ready.
pub async fn store_extracted(
    state: &AppState,
    owner: &Owner,
    meta: &mut FileMeta,
    extracted: Extracted,
) -> Result<(), ApiError> {
    fill(state, meta, &extracted);
    state
        .blobs
        .put(
            &keys::text(owner, &meta.id),
            Bytes::from(extracted.text.into_bytes()),
            "text/plain; charset=utf-8",
        )
        .await?;
    if let Some(img) = extracted.image {
        state
            .blobs
            .put(&keys::image(owner, &meta.id), img.data, &img.mime)
            .await?;
    }
    Ok(())
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

/// The original bytes of one of `owner`'s files, or where to get them. The owner check comes first:
/// another user's file is 404, never a URL. When the blob store can sign URLs and the file is at
/// least `CONVERSA_DOWNLOAD_REDIRECT_BYTES`, the answer is a short-lived presigned `GET` that
/// downloads as an attachment under the file's name (a Lambda response carries at most ~6 MB).
pub async fn download(state: &AppState, owner: &Owner, id: &FileId) -> Result<Download, ApiError> {
    let meta = get(state, owner, id).await?;
    let key = keys::original(owner, id);
    if meta.size >= state.config.download_redirect_bytes {
        if let Some(request) = state
            .blobs
            .presign_get(&key, &meta.filename, DOWNLOAD_TTL)
            .await?
        {
            return Ok(Download::Redirect(request));
        }
    }
    let bytes = state
        .blobs
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound("The file's content is no longer stored.".into()))?;
    Ok(Download::Bytes(meta, bytes))
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

/// The largest file a presigned upload may carry (it goes straight to the blob store, past the
/// 6 MB request cap of Lambda).
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

/// The type the client claims by extension (else by media type), before any byte is seen: the
/// bytes decide at completion.
fn claimed_type(filename: &str, content_type: Option<&str>) -> Option<FileType> {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let by_ext = match ext.as_str() {
        "pdf" => Some(FileType::Pdf),
        "docx" => Some(FileType::Docx),
        "xlsx" | "xlsm" | "xlsb" => Some(FileType::Xlsx),
        "xls" => Some(FileType::Xls),
        "ods" => Some(FileType::Ods),
        "csv" | "tsv" => Some(FileType::Csv),
        "txt" | "md" | "markdown" | "text" | "log" => Some(FileType::Text),
        "json" => Some(FileType::Json),
        "png" | "jpg" | "jpeg" | "webp" | "gif" => Some(FileType::Image),
        _ => None,
    };
    by_ext.or_else(|| {
        let ct = content_type?
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Some(match ct.as_str() {
            "application/pdf" => FileType::Pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                FileType::Docx
            }
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => FileType::Xlsx,
            "application/vnd.ms-excel" => FileType::Xls,
            "application/vnd.oasis.opendocument.spreadsheet" => FileType::Ods,
            "text/csv" | "text/tab-separated-values" => FileType::Csv,
            "text/plain" | "text/markdown" => FileType::Text,
            "application/json" => FileType::Json,
            "image/png" | "image/jpeg" | "image/webp" | "image/gif" => FileType::Image,
            _ => return None,
        })
    })
}

/// Starts an upload that goes straight to the blob store: checks the claim, stores a `processing`
/// record and signs a `PUT` URL for exactly `size` bytes.
pub async fn presign_upload(
    state: &AppState,
    owner: &Owner,
    req: PresignRequest,
) -> Result<PresignedUpload, ApiError> {
    let filename = clean_filename(&req.filename);
    if req.size == 0 {
        return Err(ApiError::Unprocessable(format!("{filename} is empty")));
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
    let file_type = claimed_type(&filename, Some(&content_type)).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "{filename}: unsupported file type (supported: PDF, DOCX, XLSX, XLS, ODS, CSV, text, Markdown, JSON, PNG, JPEG, WEBP, GIF)"
        ))
    })?;
    if let Some(c) = &req.conversation_id {
        crate::service::conversations::get(state, owner, c).await?;
    }
    let id = FileId::generate();
    let request = state
        .blobs
        .presign_put(
            &keys::original(owner, &id),
            &content_type,
            req.size,
            PRESIGN_TTL,
        )
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest("Presigned uploads need S3; use POST /api/files.".into())
        })?;
    let file = FileMeta {
        id,
        conversation_id: req.conversation_id,
        filename,
        content_type,
        size: req.size,
        file_type,
        status: FileStatus::Processing,
        char_count: None,
        token_count: None,
        pages: None,
        error: None,
        note: None,
        progress: None,
        created_at: Timestamp::now(),
    };
    state.store.put_file(owner, &file).await?;
    Ok(PresignedUpload { file, request })
}

/// Finishes a presigned upload (`POST /api/files/{id}/complete`): a large file is queued and
/// answered at once (`true`, the record stays `processing`), a small one is processed before the
/// answer. A record that is no longer `processing` is returned as it is (completing twice is harmless).
pub async fn complete_upload(
    state: &AppState,
    owner: &Owner,
    id: &FileId,
) -> Result<(bool, FileMeta), ApiError> {
    let meta = get(state, owner, id).await?;
    if meta.status != FileStatus::Processing {
        return Ok((false, meta));
    }
    let bytes = state
        .blobs
        .get(&keys::original(owner, id))
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest(
                "The file has not arrived yet: PUT its bytes to upload_url, then complete.".into(),
            )
        })?;
    if is_large(state, meta.file_type, &bytes) {
        let job = crate::jobs::Job {
            owner: owner.as_str().to_owned(),
            file_id: id.clone(),
        };
        state.jobs.enqueue(job).await?;
        let mut meta = meta;
        meta.progress = Some(0);
        state.store.put_file(owner, &meta).await?;
        return Ok((true, meta));
    }
    Ok((false, process_upload(state, owner, id, None).await?))
}

/// Processes a stored upload in place: reads the bytes from the blob store, decides the type from
/// them, extracts the text (reporting 0–100 on `progress`) and marks the record `ready`, or
/// `failed` with the reason. Used by `complete`, by the local job workers and by the extraction
/// container. Records no longer `processing` are left alone; a dependency that is down is an
/// error (the job is tried again), a bad file is not (it is recorded as `failed`).
pub async fn process_upload(
    state: &AppState,
    owner: &Owner,
    id: &FileId,
    progress: Option<tokio::sync::mpsc::UnboundedSender<u8>>,
) -> Result<FileMeta, ApiError> {
    let mut meta = get(state, owner, id).await?;
    if meta.status != FileStatus::Processing {
        return Ok(meta);
    }
    let bytes = state
        .blobs
        .get(&keys::original(owner, id))
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest(
                "The file has not arrived yet: PUT its bytes to upload_url, then complete.".into(),
            )
        })?;
    meta.size = bytes.len() as u64;
    let outcome = if meta.size > MAX_PRESIGNED_BYTES {
        Err(too_large(&meta.filename, meta.size, MAX_PRESIGNED_BYTES))
    } else if meta.size == 0 {
        Err(ApiError::Unprocessable(format!(
            "{} is empty",
            meta.filename
        )))
    } else {
        let claimed = meta.content_type.clone();
        extract_bytes(state, &meta.filename, Some(&claimed), bytes, progress).await
    };
    // The user may have deleted the file meanwhile.
    let Some(mut meta) = state.store.get_file(owner, id).await?.map(|m| FileMeta {
        size: meta.size,
        ..m
    }) else {
        return Err(ApiError::NotFound("No such file.".into()));
    };
    match outcome {
        Ok((detected, extracted)) => {
            meta.file_type = detected.file_type;
            meta.content_type = detected.content_type;
            store_extracted(state, owner, &mut meta, extracted).await?;
        }
        Err(e) if e.status_code().is_client_error() => {
            meta.status = FileStatus::Failed;
            meta.error = Some(e.public_message());
            meta.progress = None;
        }
        Err(e) => return Err(e),
    }
    state.store.put_file(owner, &meta).await?;
    Ok(meta)
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

    #[test]
    fn presigned_claims_come_from_the_extension_first() {
        assert_eq!(claimed_type("a.PDF", None), Some(FileType::Pdf));
        assert_eq!(
            claimed_type("notes", Some("text/markdown; charset=utf-8")),
            Some(FileType::Text)
        );
        assert_eq!(
            claimed_type("a.exe", Some("application/x-msdownload")),
            None
        );
        assert_eq!(claimed_type("archive.zip", None), None);
    }
}

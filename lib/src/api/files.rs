//! `/api/files`: upload, metadata, download, extracted text.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Schema;
use utoipa::ToSchema;

use super::extract::{Json, Path};
use super::{multipart, ApiError, ErrorBody};
use crate::app::HttpSettings;
use crate::auth::Principal;
use crate::domain::{ConversationId, FileId, FileMeta};
use crate::service::files::{self as svc, FileService};
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/files", post(upload))
        .route("/api/files/{id}", get(get_one))
        .route("/api/files/{id}/download", get(download))
        .route("/api/files/{id}/text", get(text))
        .route("/api/files/presign", post(presign))
        .route("/api/files/{id}/complete", post(complete))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// The router of the files function.
pub fn router(state: AppState) -> Router {
    super::with_fallbacks(routes(), state)
}

/// The upload form (for the OpenAPI document).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file (not empty, at most `CONVERSA_MAX_UPLOAD_BYTES`): PDF, DOCX, XLSX, XLS, ODS, CSV,
    /// text, Markdown, JSON, PNG, JPEG, WEBP or GIF, decided from its bytes.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    file: Vec<u8>,
    /// Attach it to this conversation; absent or blank leaves it unattached (a form has no null).
    #[schema(required = false)]
    conversation_id: String,
}

/// Extracted text.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileText {
    /// The file.
    pub file_id: FileId,
    /// Its text.
    pub text: String,
}

/// Uploads one file. Small files are extracted before the answer (201, `ready`); large ones are
/// processed in the background (202, `processing` with `progress`; poll `GET /api/files/{id}`).
#[utoipa::path(post, path = "/api/files", tag = "files", request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FileMeta), (status = 202, body = FileMeta), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(files): State<Arc<FileService>>,
    State(http): State<Arc<HttpSettings>>,
    auth: Principal,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, axum::Json<FileMeta>), ApiError> {
    let form = multipart::read(mp?, &["file"], http.max_upload_bytes, 1).await?;
    let conversation = form
        .first("conversation_id")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(ConversationId::from);
    let upload = form
        .files
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("Attach the file in a part named `file`."))?;
    let accepted = files
        .upload(&auth.owner, upload, conversation.as_ref())
        .await?;
    Ok(reply(accepted, StatusCode::CREATED))
}

/// `202 Accepted` for a file a background job will finish, else `settled`, with the record.
fn reply(accepted: svc::Accepted, settled: StatusCode) -> (StatusCode, axum::Json<FileMeta>) {
    let status = if accepted.queued {
        StatusCode::ACCEPTED
    } else {
        settled
    };
    (status, axum::Json(accepted.file))
}

/// A file's metadata.
#[utoipa::path(get, path = "/api/files/{id}", tag = "files", params(("id" = String, Path)),
    responses((status = 200, body = FileMeta), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(files): State<Arc<FileService>>,
    auth: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<FileMeta>, ApiError> {
    Ok(axum::Json(files.get(&auth.owner, &FileId::from(id)).await?))
}

/// The original bytes. Where storage can sign URLs (S3), the answer is `302 Found` to a presigned
/// URL valid for 5 minutes that downloads the file as an attachment under its name (files under
/// `CONVERSA_DOWNLOAD_REDIRECT_BYTES` are served directly); on local disk, the bytes themselves.
#[utoipa::path(get, path = "/api/files/{id}/download", tag = "files", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The file as uploaded, with the media type it was stored with: the type decided from its \
            bytes (`application/pdf`, `image/png`, `text/csv`, …), or the type a presigned upload claimed while it is not completed",
            content_type = "*/*", body = inline(FileBytes),
            headers(
                ("Content-Disposition" = String, description = "`attachment` with the file's name"),
                ("X-Content-Type-Options" = String, description = "`nosniff`"))),
        (status = 302, description = "Download the file from storage: `Location` is a presigned URL that works for 5 minutes and \
            answers the bytes with `Content-Disposition: attachment` and the file's name",
            headers(
                ("Location" = String, description = "The presigned URL"),
                ("Cache-Control" = String, description = "`no-store`: the URL expires"))),
        (status = 404, body = ErrorBody)))]
pub async fn download(
    State(files): State<Arc<FileService>>,
    auth: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match files.download(&auth.owner, &FileId::from(id)).await? {
        svc::Download::Redirect(request) => Ok((
            StatusCode::FOUND,
            [
                (header::LOCATION, request.url),
                // The URL expires: neither the browser nor CloudFront may keep this answer.
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response()),
        svc::Download::Bytes(meta, bytes) => Ok((
            [
                (header::CONTENT_TYPE, meta.content_type.clone()),
                (
                    header::CONTENT_DISPOSITION,
                    crate::blobs::attachment_disposition(&meta.filename),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            ],
            bytes,
        )
            .into_response()),
    }
}

/// A file's bytes (for the OpenAPI document).
pub struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        Schema::Object(super::openapi::binary_object("The file's bytes.")).into()
    }
}

impl ToSchema for FileBytes {}

/// The extracted text.
#[utoipa::path(get, path = "/api/files/{id}/text", tag = "files", params(("id" = String, Path)),
    responses((status = 200, body = FileText), (status = 404, body = ErrorBody)))]
pub async fn text(
    State(files): State<Arc<FileService>>,
    auth: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<FileText>, ApiError> {
    let id = FileId::from(id);
    let text = files.text(&auth.owner, &id).await?;
    Ok(axum::Json(FileText { file_id: id, text }))
}

/// A file the client will upload straight to storage.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PresignBody {
    /// The file's name; its extension (else `content_type`) must be a supported type.
    pub filename: String,
    /// Its media type; sent back in `headers` and required on the upload.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Its exact size in bytes (at most 100 MB).
    #[schema(schema_with = presigned_size)]
    pub size: u64,
    /// Attach it to this conversation.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

/// `size` of a presigned upload: 1 to [`svc::MAX_PRESIGNED_BYTES`].
fn presigned_size() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{Object, Type};
    let mut s = Object::with_type(Type::Integer);
    s.minimum = Some(1.into());
    s.maximum = Some(svc::MAX_PRESIGNED_BYTES.into());
    s.description = Some(format!(
        "Its exact size in bytes, 1 to {} (100 MB).",
        svc::MAX_PRESIGNED_BYTES
    ));
    s
}

/// Where and how to upload the bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignReply {
    /// The file record, `processing` until `POST /api/files/{id}/complete`.
    pub file_id: FileId,
    /// `PUT` the bytes here.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: String,
    /// Send these headers with the upload, exactly as given.
    pub headers: std::collections::BTreeMap<String, String>,
    /// When `upload_url` stops working.
    pub expires_at: crate::domain::Timestamp,
}

/// Starts an upload that bypasses the API (files up to 100 MB): `PUT` the bytes to `upload_url`
/// with `headers`, then call `POST /api/files/{id}/complete`.
#[utoipa::path(post, path = "/api/files/presign", tag = "files", request_body = PresignBody,
    responses((status = 200, body = PresignReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn presign(
    State(files): State<Arc<FileService>>,
    auth: Principal,
    Json(body): Json<PresignBody>,
) -> Result<axum::Json<PresignReply>, ApiError> {
    let conversation_id = body
        .conversation_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(ConversationId::from);
    let up = files
        .presign_upload(
            &auth.owner,
            svc::PresignRequest {
                filename: body.filename,
                content_type: body.content_type,
                size: body.size,
                conversation_id,
            },
        )
        .await?;
    Ok(axum::Json(PresignReply {
        file_id: up.file.id,
        upload_url: up.request.url,
        method: up.request.method,
        headers: up.request.headers,
        expires_at: up.request.expires_at,
    }))
}

/// Finishes a presigned upload: the bytes are read from storage, their type decided and their text
/// extracted. A small file comes back `ready` (or `failed` with `error` saying why); a large one is
/// processed in the background (202, `processing` with `progress`).
#[utoipa::path(post, path = "/api/files/{id}/complete", tag = "files", params(("id" = String, Path)),
    responses((status = 200, body = FileMeta), (status = 202, body = FileMeta), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn complete(
    State(files): State<Arc<FileService>>,
    auth: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<FileMeta>), ApiError> {
    let accepted = files
        .complete_upload(&auth.owner, &FileId::from(id))
        .await?;
    Ok(reply(accepted, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dispositions_are_safe_for_any_name() {
        let d = crate::blobs::attachment_disposition("rapport \"final\" é.pdf");
        assert!(
            d.starts_with("attachment; filename=\"rapport _final_ _.pdf\""),
            "{d}"
        );
        assert!(
            d.contains("filename*=UTF-8''rapport%20%22final%22%20%C3%A9.pdf"),
            "{d}"
        );
    }
}

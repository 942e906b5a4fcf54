//! Reading multipart forms with limits: files are read chunk by chunk and refused as soon as one
//! passes the upload limit, so an oversized upload is never held in memory whole.

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::Multipart;
use bytes::BytesMut;

use super::ApiError;
use crate::service::files::{clean_filename, too_large, Upload};

/// Most parts in one form.
const MAX_PARTS: usize = 64;
/// Largest text field.
const MAX_TEXT_FIELD: usize = 1024 * 1024;

/// The fields and files of a form, in order.
#[derive(Debug, Default)]
pub struct Form {
    /// Text fields (a name may repeat).
    pub fields: Vec<(String, String)>,
    /// File parts.
    pub files: Vec<Upload>,
}

impl Form {
    /// The first value of a field.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated field, each also split on commas.
    pub fn all_split(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("The request is too large.")
    } else {
        ApiError::bad_request(format!("The form could not be read: {}", e.body_text()))
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        ApiError::bad_request(format!(
            "Send a multipart/form-data body ({}).",
            r.body_text()
        ))
    }
}

/// Reads a field into memory up to `limit` bytes. Past it, the rest is counted (not kept), up to
/// four times the limit, so the refusal can say how large the file really is.
async fn read_limited(
    field: &mut Field<'_>,
    limit: usize,
    on_exceed: impl Fn(u64) -> ApiError,
) -> Result<BytesMut, ApiError> {
    let mut buf = BytesMut::new();
    let mut total: usize = 0;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        total = total.saturating_add(chunk.len());
        if total > limit {
            if total > limit.saturating_mul(4) {
                return Err(on_exceed(total as u64));
            }
            buf.clear();
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if total > limit {
        return Err(on_exceed(total as u64));
    }
    Ok(buf)
}

/// Reads a whole form. Parts named in `file_fields` (or carrying a file name) are files of at most
/// `max_file` bytes each, `max_files` at most.
pub async fn read(
    mut multipart: Multipart,
    file_fields: &[&str],
    max_file: u64,
    max_files: usize,
) -> Result<Form, ApiError> {
    let mut form = Form::default();
    let mut parts = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::bad_request(format!(
                "The form has more than {MAX_PARTS} parts."
            )));
        }
        let name = field.name().unwrap_or("").to_owned();
        let is_file = file_fields.contains(&name.as_str()) || field.file_name().is_some();
        if is_file {
            if form.files.len() >= max_files {
                return Err(ApiError::bad_request(format!(
                    "Attach at most {max_files} files."
                )));
            }
            let filename = clean_filename(field.file_name().unwrap_or("file"));
            let content_type = field.content_type().map(str::to_owned);
            let limit = usize::try_from(max_file).unwrap_or(usize::MAX);
            let bytes = read_limited(&mut field, limit, |n| {
                ApiError::from(too_large(&filename, n, max_file))
            })
            .await?;
            form.files.push(Upload {
                filename,
                content_type,
                bytes: bytes.freeze(),
            });
        } else {
            let bytes = read_limited(&mut field, MAX_TEXT_FIELD, |_| {
                ApiError::too_large(format!("The field {name} is too large."))
            })
            .await?;
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                ApiError::bad_request(format!("The field {name} is not UTF-8 text."))
            })?;
            form.fields.push((name, text));
        }
    }
    Ok(form)
}

//! `POST /api/chat/send` (SSE) and `POST /api/chat/send-simple` (one JSON document).

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Array, Object, SchemaType, Type};
use utoipa::ToSchema;

use super::extract::ClientKey;
use super::{multipart, openapi, ApiError, ErrorBody};
use crate::app::HttpSettings;
use crate::auth::Principal;
use crate::domain::{ConversationId, FileId, Message};
use crate::service::chat::{
    ChatInput, ChatService, Turn, MAX_FILES, MAX_MESSAGE_CHARS, MAX_MODEL_CHARS,
};
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/chat/send", post(send))
        .route("/api/chat/send-simple", post(send_simple))
}

/// The router of the chat function: the chat routes and the models on offer.
pub fn router(state: AppState) -> Router {
    super::with_fallbacks(routes().merge(super::models::routes()), state)
}

/// The JSON form of a chat request. Something to send is required: a message with more than
/// whitespace, or a file id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequestBody {
    /// The user's text (may be empty only when files are attached).
    #[serde(default)]
    #[schema(schema_with = message_schema)]
    pub message: String,
    /// Continue this conversation; absent (or blank) starts a new one.
    pub conversation_id: Option<String>,
    /// Files uploaded earlier with `POST /api/files`.
    #[serde(default)]
    #[schema(schema_with = file_ids_schema)]
    pub file_ids: Vec<String>,
    /// The id of a model of `GET /api/models`; absent (or blank) means the default model.
    #[schema(schema_with = model_schema)]
    pub model: Option<String>,
}

/// The multipart form of a chat request (for the OpenAPI document). Something to send is
/// required: a message with more than whitespace, a file, or a file id.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ChatForm {
    /// The user's text.
    #[schema(required = false, schema_with = message_schema)]
    message: String,
    /// Continue this conversation; absent (or blank) starts a new one.
    #[schema(required = false)]
    conversation_id: String,
    /// Files of this message (a part named `files` or `file`, or any part with a file name); files
    /// and file ids together are at most 10.
    #[schema(required = false, schema_with = files_schema)]
    files: Vec<Vec<u8>>,
    /// Files uploaded earlier (repeat the field, or separate ids with commas; blank ids are
    /// ignored).
    #[schema(required = false)]
    file_ids: Vec<String>,
    /// The id of a model of `GET /api/models`; absent (or blank) means the default model.
    #[schema(required = false, schema_with = form_model_schema)]
    model: String,
}

/// `message`: at most [`MAX_MESSAGE_CHARS`] characters after trimming.
fn message_schema() -> Object {
    let mut s = Object::with_type(Type::String);
    s.max_length = Some(MAX_MESSAGE_CHARS);
    s.description = Some(format!(
        "The user's text, at most {MAX_MESSAGE_CHARS} characters after trimming (may be blank only when files are attached)."
    ));
    s
}

/// `model` of a form: a text part (a form has no null; leave the part out instead).
fn form_model_schema() -> Object {
    let mut s = model_schema();
    s.schema_type = Type::String.into();
    s
}

/// `model`: 1–[`MAX_MODEL_CHARS`] characters after trimming without control characters, or blank.
fn model_schema() -> Object {
    let mut s = openapi::string_with_pattern(
        openapi::trimmed_line_pattern(MAX_MODEL_CHARS, true),
        &format!("A model name of at most {MAX_MODEL_CHARS} characters after trimming, without control characters; absent or blank means the configured chat model."),
    );
    s.schema_type = SchemaType::Array(vec![Type::String, Type::Null]);
    s
}

/// `files`: binary parts, at most [`MAX_FILES`].
fn files_schema() -> Array {
    let mut file = openapi::binary_object(
        "A file (not empty, at most `CONVERSA_MAX_UPLOAD_BYTES`): PDF, DOCX, XLSX, XLS, ODS, CSV, text, Markdown, JSON, PNG, JPEG, WEBP or GIF, decided from its bytes.",
    );
    file.min_length = Some(1);
    let mut a = Array::new(file);
    a.max_items = Some(MAX_FILES);
    a.description = Some(format!(
        "Files of this message (a part named `files` or `file`, or any part with a file name); files and file ids together are at most {MAX_FILES}."
    ));
    a
}

/// `file_ids` of the JSON form: at most [`MAX_FILES`] ids that are not blank (blank ones are
/// ignored).
fn file_ids_schema() -> Array {
    let mut a = Array::new(Object::with_type(Type::String));
    a.description = Some(format!(
        "Files uploaded earlier with `POST /api/files`: at most {MAX_FILES} (blank ids are ignored)."
    ));
    openapi::keyword(
        &mut a.extensions,
        "contains",
        serde_json::to_value(openapi::string_with_pattern(
            openapi::not_blank_pattern(""),
            "An id that is not blank.",
        ))
        .unwrap_or_default(),
    );
    openapi::keyword(&mut a.extensions, "minContains", 0.into());
    openapi::keyword(&mut a.extensions, "maxContains", MAX_FILES.into());
    a
}

/// What a chat request must carry besides its fields' own rules: a message that is not blank, or
/// something attached (`anyOf`). In a form, file ids are split on commas.
pub(crate) fn something_to_send(form: bool) -> serde_json::Value {
    let not_blank = openapi::not_blank_pattern("");
    let id = openapi::not_blank_pattern(if form { "," } else { "" });
    let mut branches = vec![
        serde_json::json!({ "required": ["message"], "properties": { "message": { "pattern": not_blank } } }),
        serde_json::json!({ "required": ["file_ids"], "properties": { "file_ids": { "contains": { "pattern": id } } } }),
    ];
    if form {
        branches.push(serde_json::json!({ "required": ["files"], "properties": { "files": { "minItems": 1 } } }));
    }
    serde_json::Value::Array(branches)
}

/// The reply of `send-simple`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimpleReply {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Whether this turn started it.
    pub created_conversation: bool,
    /// The stored answer.
    pub message: Message,
    /// The automatic title, when this turn produced one.
    pub title: Option<String>,
}

/// Largest JSON chat body.
const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// Reads a chat request, multipart or JSON.
async fn read_input(http: &HttpSettings, request: Request) -> Result<ChatInput, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let optional_id = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if content_type.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(request, &()).await?;
        let form =
            multipart::read(mp, &["files", "file"], http.max_upload_bytes, MAX_FILES).await?;
        Ok(ChatInput {
            message: form.first("message").unwrap_or("").to_owned(),
            conversation_id: optional_id(form.first("conversation_id").map(str::to_owned))
                .map(ConversationId::from),
            file_ids: form
                .all_split("file_ids")
                .into_iter()
                .map(FileId::from)
                .collect(),
            model: optional_id(form.first("model").map(str::to_owned)),
            uploads: form.files,
        })
    } else if content_type.starts_with("application/json") || content_type.is_empty() {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|_| ApiError::too_large("The request body is too large."))?;
        let body: ChatRequestBody = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("The JSON body is not valid: {e}")))?;
        Ok(ChatInput {
            message: body.message,
            conversation_id: optional_id(body.conversation_id).map(ConversationId::from),
            file_ids: body
                .file_ids
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .map(FileId::from)
                .collect(),
            model: optional_id(body.model),
            uploads: vec![],
        })
    } else {
        Err(ApiError::bad_request(
            "Send multipart/form-data or application/json.",
        ))
    }
}

/// What a chat request is refused with before its answer starts (for the OpenAPI document; both
/// forms of the answer share it).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Refusals {
    /// Nothing to send, a body that cannot be read, too many files, or a model name that is none.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Authentication is on and the token is missing or wrong.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The account is disabled.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such conversation or file.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body or a file is over its limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A file of a type the product does not read.
    #[response(status = 415)]
    Unsupported(ErrorBody),
    /// The message is too long, or a file cannot be read or is still being processed.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Too many requests this minute.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds until a request is counted again")))]
    RateLimited(ErrorBody),
    /// A store is unreachable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The start both answers share: the client is admitted (rate limit) before the request is read,
/// then the turn starts.
async fn begin(
    http: &HttpSettings,
    chat: &ChatService,
    auth: &Principal,
    key: &ClientKey,
    request: Request,
) -> Result<Turn, ApiError> {
    chat.admit(auth, &key.0).await?;
    let input = read_input(http, request).await?;
    Ok(chat.start(auth, input).await?)
}

/// A chat turn, answered as a stream of server-sent events.
#[utoipa::path(
    post,
    path = "/api/chat/send",
    tag = "chat",
    request_body(content(
        (ChatForm = "multipart/form-data"),
        (ChatRequestBody = "application/json"),
    )),
    responses(
        (status = 200, description = "Server-sent events: `meta`, `token`…, `title`, then `done` or `error`; each event's `data` is a JSON document of the event's schema",
            content_type = "text/event-stream", body = super::sse::TurnEventSchema),
        Refusals,
    )
)]
pub async fn send(
    State(http): State<Arc<HttpSettings>>,
    State(chat): State<Arc<ChatService>>,
    auth: Principal,
    key: ClientKey,
    request: Request,
) -> Result<Response, ApiError> {
    let turn = begin(&http, &chat, &auth, &key, request).await?;
    Ok(super::sse::response(turn).into_response())
}

/// The same turn, answered as one JSON document when the answer is complete.
#[utoipa::path(
    post,
    path = "/api/chat/send-simple",
    tag = "chat",
    request_body(content(
        (ChatForm = "multipart/form-data"),
        (ChatRequestBody = "application/json"),
    )),
    responses(
        (status = 200, body = SimpleReply),
        (status = 502, description = "The model failed; nothing of the answer is returned", body = ErrorBody),
        Refusals,
    )
)]
pub async fn send_simple(
    State(http): State<Arc<HttpSettings>>,
    State(chat): State<Arc<ChatService>>,
    auth: Principal,
    key: ClientKey,
    request: Request,
) -> Result<axum::Json<SimpleReply>, ApiError> {
    let turn = begin(&http, &chat, &auth, &key, request).await?;
    let finished = chat.finish(&auth.owner, turn).await?;
    Ok(axum::Json(SimpleReply {
        conversation_id: finished.meta.conversation_id,
        created_conversation: finished.meta.created_conversation,
        message: finished.message,
        title: finished.title,
    }))
}

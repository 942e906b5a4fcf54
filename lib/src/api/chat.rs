//! `POST /api/chat/send` (SSE) and `POST /api/chat/send-simple` (one JSON document);
//! `POST /api/chat/regenerate` (SSE, a new answer beside an earlier one); following and stopping a
//! turn from anywhere: `GET /api/chat/stream/{message_id}` (SSE, after `Last-Event-ID` or
//! `?after=`) and `POST /api/chat/stop/{message_id}`.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Array, Object, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ClientKey, Path, Query};
use super::{multipart, openapi, ApiError, ErrorBody};
use crate::app::HttpSettings;
use crate::auth::Principal;
use crate::domain::{ConversationId, FileId, Message, MessageId};
use crate::service::chat::follow::StopStatus;
use crate::service::chat::regenerate::RegenerateInput;
use crate::service::chat::{
    ChatInput, ChatService, Turn, MAX_FILES, MAX_MESSAGE_CHARS, MAX_MODEL_CHARS,
};
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/chat/send", post(send))
        .route("/api/chat/send-simple", post(send_simple))
        .route("/api/chat/regenerate", post(regenerate))
        .route("/api/chat/stream/{message_id}", get(stream))
        .route("/api/chat/stop/{message_id}", post(stop))
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
    /// The message the new one follows: absent, the conversation's current leaf; `null` (or
    /// blank), none — a new first message; an id, that message of the conversation (how a
    /// message is edited: send its new text with its `parent_id`). Without `conversation_id`,
    /// the parent's conversation is continued.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = parent_schema)]
    pub parent_id: Option<Option<String>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `parent_id` of the JSON form: an id, or null.
fn parent_schema() -> Object {
    let mut s = Object::new();
    s.schema_type = SchemaType::Array(vec![Type::String, Type::Null]);
    s.description = Some("The message the new one follows: absent, the current leaf; null (or blank), none (a new first message); an id, that message (an edit).".into());
    s
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
    /// The message the new one follows: absent, the current leaf; blank, none (a new first
    /// message); an id, that message (an edit).
    #[schema(required = false)]
    parent_id: String,
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
            parent_id: form
                .first("parent_id")
                .map(|p| optional_id(Some(p.to_owned())).map(MessageId::from)),
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
            parent_id: body.parent_id.map(|p| optional_id(p).map(MessageId::from)),
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
    chat.admit(&key.0).await?;
    let input = read_input(http, request).await?;
    Ok(chat.start(&auth.owner, input).await?)
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

/// A regenerate request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateBody {
    /// An answer (an assistant message): its question is answered again, beside it.
    pub message_id: String,
    /// The id of a model of `GET /api/models`; absent (or blank) means the default model.
    #[schema(schema_with = model_schema)]
    pub model: Option<String>,
}

/// What regenerate is refused with before its answer starts.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum RegenerateRefusals {
    /// A body that cannot be read, or a model name that is none.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Authentication is on and the token is missing or wrong.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such message.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The message is not an answer, or the model is not one on offer.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Too many requests this minute.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds until a request is counted again")))]
    RateLimited(ErrorBody),
    /// A store is unreachable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A new answer to the question an answer answered, streamed like `send`: a sibling of
/// `message_id` in the conversation's tree, and its current leaf.
#[utoipa::path(
    post,
    path = "/api/chat/regenerate",
    tag = "chat",
    request_body = RegenerateBody,
    responses(
        (status = 200, description = "Server-sent events, as `POST /api/chat/send` sends them",
            content_type = "text/event-stream", body = super::sse::TurnEventSchema),
        RegenerateRefusals,
    )
)]
pub async fn regenerate(
    State(chat): State<Arc<ChatService>>,
    auth: Principal,
    key: ClientKey,
    request: Request,
) -> Result<Response, ApiError> {
    chat.admit(&key.0).await?;
    let bytes = axum::body::to_bytes(request.into_body(), MAX_JSON_BODY)
        .await
        .map_err(|_| ApiError::too_large("The request body is too large."))?;
    let body: RegenerateBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("The JSON body is not valid: {e}")))?;
    let optional = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let turn = chat
        .regenerate(
            &auth.owner,
            RegenerateInput {
                message_id: MessageId::from(body.message_id),
                model: optional(body.model),
            },
        )
        .await?;
    Ok(super::sse::response(turn).into_response())
}

/// The largest event id a client may resume after (12 digits).
const MAX_EVENT_ID: u64 = 999_999_999_999;

/// `?after=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamParams {
    /// Send the events after this id (default 0: all of them). `Last-Event-ID` wins when both
    /// are given.
    #[param(minimum = 0, maximum = 999_999_999_999_i64)]
    pub after: Option<u64>,
}

/// The events of a turn, from any instance: every event after `Last-Event-ID` (or `?after=`),
/// then the live ones until `done` or `error`. A turn that has ended is replayed (its tokens
/// possibly merged into fewer events, each numbered as the last token it holds); an id past the
/// end waits for that id, or gets the turn's last event when the turn has ended.
#[utoipa::path(
    get,
    path = "/api/chat/stream/{message_id}",
    tag = "chat",
    params(
        ("message_id" = String, Path, description = "The answer of the turn (`meta.assistant_message_id`)"),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = r"^[0-9]{1,12}$", description = "The id of the last event received: the stream resumes after it"),
        StreamParams,
    ),
    responses(
        (status = 200, description = "Server-sent events, as `POST /api/chat/send` sends them, after the id asked for",
            content_type = "text/event-stream", body = super::sse::TurnEventSchema),
        (status = 400, description = "`Last-Event-ID` or `after` is not a whole number", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such answer", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn stream(
    State(chat): State<Arc<ChatService>>,
    auth: Principal,
    Path(message_id): Path<String>,
    Query(p): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if p.after.is_some_and(|a| a > MAX_EVENT_ID) {
        return Err(ApiError::bad_request(format!(
            "after must be at most {MAX_EVENT_ID}."
        )));
    }
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| (1..=12).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID must be a whole number of at most 12 digits.")
            })?,
        None => p.after.unwrap_or(0),
    };
    let events = chat
        .follow(&auth.owner, &MessageId::from(message_id), after)
        .await?;
    Ok(super::sse::followed(events).into_response())
}

/// What a stop request came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct StopReply {
    /// `stopping`: the answer is being stopped (within a second); `finished`: it had ended.
    #[schema(pattern = "^(stopping|finished)$")]
    pub status: &'static str,
}

/// Stops the turn whose answer is `message_id`, on whichever instance generates it: the model's
/// request is aborted within a second, the answer is stored `incomplete` with what was generated
/// (and billed), and the turn's stream ends with `done` (`finish_reason: "stopped"`).
#[utoipa::path(
    post,
    path = "/api/chat/stop/{message_id}",
    tag = "chat",
    params(("message_id" = String, Path, description = "The answer of the turn")),
    responses(
        (status = 202, description = "The answer is being stopped", body = StopReply),
        (status = 200, description = "The answer had ended (or was being stopped and has ended)", body = StopReply),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such answer", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn stop(
    State(chat): State<Arc<ChatService>>,
    auth: Principal,
    Path(message_id): Path<String>,
) -> Result<Response, ApiError> {
    let status = chat.stop(&auth.owner, &MessageId::from(message_id)).await?;
    Ok(match status {
        StopStatus::Stopping => (
            StatusCode::ACCEPTED,
            axum::Json(StopReply { status: "stopping" }),
        )
            .into_response(),
        StopStatus::Finished => axum::Json(StopReply { status: "finished" }).into_response(),
    })
}

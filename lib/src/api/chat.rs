//! `POST /api/chat/send` (SSE) and `POST /api/chat/send-simple` (one JSON document).

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::ClientKey;
use super::{multipart, ApiError, ErrorBody};
use crate::app::HttpSettings;
use crate::auth::Principal;
use crate::domain::{ConversationId, FileId, Message};
use crate::service::chat::{ChatInput, ChatService, MAX_FILES};
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

/// The JSON form of a chat request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequestBody {
    /// The user's text (may be empty only when files are attached).
    #[serde(default)]
    pub message: String,
    /// Continue this conversation; absent starts a new one.
    pub conversation_id: Option<String>,
    /// Files uploaded earlier with `POST /api/files`.
    #[serde(default)]
    pub file_ids: Vec<String>,
    /// The id of a model of `GET /api/models`; absent means the default model.
    pub model: Option<String>,
}

/// The multipart form of a chat request (for the OpenAPI document).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ChatForm {
    /// The user's text.
    message: String,
    /// Continue this conversation.
    conversation_id: Option<String>,
    /// Files of this message (up to 10).
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
    /// Files uploaded earlier (repeat the field, or separate ids with commas).
    file_ids: Vec<String>,
    /// The id of a model of `GET /api/models`.
    model: Option<String>,
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
        (status = 200, description = "`text/event-stream`: `meta`, `token`…, `title`, then `done` or `error`", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn send(
    State(http): State<Arc<HttpSettings>>,
    State(chat): State<Arc<ChatService>>,
    auth: Principal,
    key: ClientKey,
    request: Request,
) -> Result<Response, ApiError> {
    chat.admit(&key.0).await?;
    let input = read_input(&http, request).await?;
    let turn = chat.start(&auth.owner, input).await?;
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
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn send_simple(
    State(http): State<Arc<HttpSettings>>,
    State(chat): State<Arc<ChatService>>,
    auth: Principal,
    key: ClientKey,
    request: Request,
) -> Result<axum::Json<SimpleReply>, ApiError> {
    chat.admit(&key.0).await?;
    let input = read_input(&http, request).await?;
    let turn = chat.start(&auth.owner, input).await?;
    let finished = chat.finish(&auth.owner, turn).await?;
    Ok(axum::Json(SimpleReply {
        conversation_id: finished.meta.conversation_id,
        created_conversation: finished.meta.created_conversation,
        message: finished.message,
        title: finished.title,
    }))
}

//! `/api/conversations`: list (with search), read, messages (the current branch, or all), rename,
//! delete, export, and the branch shown (`PUT …/current`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, Type};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Json, Path, Query};
use super::{openapi, ApiError, ErrorBody};
use crate::auth::Principal;
use crate::domain::{Conversation, ConversationId, Message, MessageId, Page, MAX_TITLE_CHARS};
use crate::service::conversations::{self as svc, ConversationService};
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/conversations", get(list))
        .route(
            "/api/conversations/{id}",
            get(get_one).patch(rename).delete(delete),
        )
        .route("/api/conversations/{id}/messages", get(messages))
        .route("/api/conversations/{id}/current", put(set_current))
        .route("/api/conversations/{id}/export", get(export))
}

/// The router of the conversations function (with health, `/api`, the OpenAPI document, and
/// signing in, API keys and the admin routes).
pub fn router(state: AppState) -> Router {
    super::with_fallbacks(
        routes()
            .merge(super::health::routes())
            .merge(super::identity_routes()),
        state,
    )
}

/// `?limit=&cursor=&q=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Items per page.
    #[param(schema_with = openapi::page_limit)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = openapi::page_cursor)]
    pub cursor: Option<String>,
    /// Keep conversations whose title or messages contain this text.
    pub q: Option<String>,
}

/// `?limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageParams {
    /// Items per page.
    #[param(schema_with = openapi::page_limit)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = openapi::page_cursor)]
    pub cursor: Option<String>,
}

/// `?limit=&cursor=&all=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MessagesParams {
    /// Items per page.
    #[param(schema_with = openapi::page_limit)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = openapi::page_cursor)]
    pub cursor: Option<String>,
    /// `true`: every message of the conversation's tree, oldest first; `false` (default): the
    /// current branch, from the first message to the current leaf.
    pub all: Option<bool>,
}

/// The message whose branch to show.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CurrentBody {
    /// A message of the conversation: its branch is shown, down to its latest descendant.
    pub message_id: String,
}

/// `?format=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExportParams {
    /// `markdown` (default; `md` too) or `json`.
    #[param(schema_with = export_format)]
    pub format: Option<String>,
}

/// The export formats.
const EXPORT_FORMATS: [&str; 3] = ["markdown", "md", "json"];

fn export_format() -> Object {
    let mut s = Object::with_type(Type::String);
    s.enum_values = Some(EXPORT_FORMATS.iter().map(|f| (*f).into()).collect());
    s.default = Some("markdown".into());
    s.description = Some("`markdown` (or `md`) or `json`.".into());
    s
}

/// A new title.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameBody {
    /// 1–200 characters after trimming, without control characters.
    #[schema(schema_with = title_schema)]
    pub title: String,
}

fn title_schema() -> Object {
    openapi::string_with_pattern(
        openapi::trimmed_line_pattern(MAX_TITLE_CHARS, false),
        &format!("1–{MAX_TITLE_CHARS} characters after trimming, without control characters."),
    )
}

/// A conversation exported as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct Export {
    /// The conversation.
    pub conversation: Conversation,
    /// Every message of its tree (each names its parent), oldest first.
    pub messages: Vec<Message>,
}

/// Conversations, most recently updated first.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(ListParams),
    responses((status = 200, body = Page<Conversation>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(conversations): State<Arc<ConversationService>>,
    auth: Principal,
    Query(p): Query<ListParams>,
) -> Result<Json<Page<Conversation>>, ApiError> {
    let page = svc::page_request(p.limit, p.cursor)?;
    let q = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    Ok(Json(conversations.list(&auth.owner, page, q).await?))
}

/// One conversation.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path)),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(conversations): State<Arc<ConversationService>>,
    auth: Principal,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(
        conversations
            .get(&auth.owner, &ConversationId::from(id))
            .await?,
    ))
}

/// Its current branch (from the first message to the current leaf), or with `all=true` every
/// message of its tree; oldest first.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "conversations", params(("id" = String, Path), MessagesParams),
    responses((status = 200, body = Page<Message>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn messages(
    State(conversations): State<Arc<ConversationService>>,
    auth: Principal,
    Path(id): Path<String>,
    Query(p): Query<MessagesParams>,
) -> Result<Json<Page<Message>>, ApiError> {
    let page = svc::page_request(p.limit, p.cursor)?;
    Ok(Json(
        conversations
            .messages(
                &auth.owner,
                &ConversationId::from(id),
                page,
                p.all.unwrap_or(false),
            )
            .await?,
    ))
}

/// Shows the branch through a message: its latest descendant (the most recent child at each
/// step) becomes the current leaf. `updated_at` does not move.
#[utoipa::path(put, path = "/api/conversations/{id}/current", tag = "conversations", params(("id" = String, Path)), request_body = CurrentBody,
    responses((status = 200, body = Conversation), (status = 400, body = ErrorBody), (status = 404, description = "No such conversation, or no such message in it", body = ErrorBody)))]
pub async fn set_current(
    State(conversations): State<Arc<ConversationService>>,
    auth: Principal,
    Path(id): Path<String>,
    Json(body): Json<CurrentBody>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(
        conversations
            .set_current(
                &auth.owner,
                &ConversationId::from(id),
                &MessageId::from(body.message_id),
            )
            .await?,
    ))
}

/// Renames it.
#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path)), request_body = RenameBody,
    responses((status = 200, body = Conversation), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rename(
    State(conversations): State<Arc<ConversationService>>,
    auth: Principal,
    Path(id): Path<String>,
    Json(body): Json<RenameBody>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(
        conversations
            .rename(&auth.owner, &ConversationId::from(id), &body.title)
            .await?,
    ))
}

/// Deletes it with its messages and files.
#[utoipa::path(delete, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(conversations): State<Arc<ConversationService>>,
    auth: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    conversations
        .delete(&auth.owner, &ConversationId::from(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Downloads it: Markdown (the current branch) or JSON (every message).
#[utoipa::path(get, path = "/api/conversations/{id}/export", tag = "conversations", params(("id" = String, Path), ExportParams),
    responses(
        (status = 200, description = "The conversation as an attachment: Markdown, or JSON with every message",
            content((String = "text/markdown"), (Export = "application/json")),
            headers(("Content-Disposition" = String, description = "`attachment` with a file name made of the title"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(conversations): State<Arc<ConversationService>>,
    auth: Principal,
    Path(id): Path<String>,
    Query(p): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let svc::Export {
        conversation,
        messages,
        branch,
    } = conversations
        .export(&auth.owner, &ConversationId::from(id))
        .await?;
    let stem: String = conversation
        .title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    match p.format.as_deref().unwrap_or("markdown") {
        "markdown" | "md" => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "text/markdown; charset=utf-8".to_owned(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{stem}.md\""),
                ),
            ],
            svc::to_markdown(&conversation, &branch),
        )
            .into_response()),
        "json" => Ok((
            [(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{stem}.json\""),
            )],
            axum::Json(Export {
                conversation,
                messages,
            }),
        )
            .into_response()),
        other => Err(ApiError::bad_request(format!(
            "Unknown export format {other:?}; use markdown or json."
        ))),
    }
}

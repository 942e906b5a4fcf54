//! `GET /api/search`: the caller's messages and file chunks that match a query, by meaning and by
//! words.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Json, Query};
use super::{ApiError, ErrorBody};
use crate::auth::Principal;
use crate::domain::{ConversationId, FileId, MessageId};
use crate::search::EntryKind;
use crate::service::search::{Hit, SearchService, DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY_CHARS};
use crate::service::Error;
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/search", get(search))
}

/// `?q=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to look for: 1–1000 characters, not all spaces.
    // The pattern is `openapi::not_blank_pattern("")`: a character `str::trim` keeps (a test
    // checks the two agree).
    #[param(
        min_length = 1,
        max_length = 1000,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub q: String,
    /// Hits to return, 1–50 (default 20).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u32>,
}

/// What a hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HitKind {
    /// A message (question or answer).
    Message,
    /// A passage of a file.
    File,
}

/// One hit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchItem {
    /// A message or a file passage.
    pub kind: HitKind,
    /// The conversation it belongs to (`null`: a file not attached to one yet).
    pub conversation_id: Option<ConversationId>,
    /// The message, for messages.
    pub message_id: Option<MessageId>,
    /// The file, for file passages.
    pub file_id: Option<FileId>,
    /// The conversation's title (a file not attached: its name).
    pub title: String,
    /// A verbatim excerpt (at most 200 characters).
    pub snippet: String,
    /// Higher is better (reciprocal-rank fusion of meaning and words).
    pub score: f64,
}

/// `GET /api/search`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchReply {
    /// Best first.
    pub items: Vec<SearchItem>,
}

impl From<Hit> for SearchItem {
    fn from(h: Hit) -> Self {
        Self {
            kind: match h.kind {
                EntryKind::Message => HitKind::Message,
                EntryKind::File => HitKind::File,
            },
            conversation_id: h.conversation_id,
            message_id: h.message_id,
            file_id: h.file_id,
            title: h.title,
            snippet: h.snippet,
            score: h.score,
        }
    }
}

/// The caller's messages and file passages that match `q`, by meaning and by words, best first.
#[utoipa::path(get, path = "/api/search", tag = "conversations", params(SearchParams),
    responses((status = 200, body = SearchReply), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn search(
    State(search): State<Arc<SearchService>>,
    auth: Principal,
    Query(p): Query<SearchParams>,
) -> Result<Json<SearchReply>, ApiError> {
    let q = p.q;
    if q.trim().is_empty() || q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::Invalid(format!("q must be 1 to {MAX_QUERY_CHARS} characters")).into());
    }
    let limit = match p.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT as u32).contains(&n) => n as usize,
        Some(_) => return Err(Error::Invalid(format!("limit must be 1 to {MAX_LIMIT}")).into()),
    };
    let hits = search.search(&auth.owner, &q, limit).await?;
    Ok(Json(SearchReply {
        items: hits.into_iter().map(SearchItem::from).collect(),
    }))
}

//! `/api/keys`: personal API keys — create (the key is shown once), list, delete.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::conversations::PageParams;
use super::extract::{Json, Path, Query};
use super::{openapi, ApiError, ErrorBody};
use crate::accounts::ApiKey;
use crate::auth::Principal;
use crate::domain::{Page, Timestamp};
use crate::service::conversations::page_request;
use crate::service::keys::KeyService;
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/keys", get(list).post(create))
        .route("/api/keys/{id}", delete(remove))
}

/// A new key's name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    /// What the key is for: 1–100 characters after trimming, without control characters.
    #[schema(schema_with = key_name_schema)]
    pub name: String,
}

fn key_name_schema() -> utoipa::openapi::schema::Object {
    openapi::string_with_pattern(
        openapi::trimmed_line_pattern(crate::service::keys::MAX_NAME_CHARS, false),
        "What the key is for: 1–100 characters after trimming, without control characters.",
    )
}

/// A new key, with the key itself: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKey {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `cvk_…`: send it as `Authorization: Bearer <key>`. Only its hash is kept.
    pub key: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A key as listed (without the key).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyItem {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last used (to the minute).
    pub last_used_at: Option<Timestamp>,
}

impl From<ApiKey> for KeyItem {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// Creates a key; the reply holds the key itself, this once.
#[utoipa::path(post, path = "/api/keys", tag = "auth", request_body = NewKeyBody,
    responses((status = 201, body = NewKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(keys): State<Arc<KeyService>>,
    principal: Principal,
    Json(body): Json<NewKeyBody>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    let (key, secret) = keys.create(&principal, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKey {
            id: key.id,
            name: key.name,
            key: secret,
            created_at: key.created_at,
        }),
    ))
}

/// The caller's keys, oldest first, without the keys themselves.
#[utoipa::path(get, path = "/api/keys", tag = "auth", params(PageParams),
    responses((status = 200, body = Page<KeyItem>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    State(keys): State<Arc<KeyService>>,
    principal: Principal,
    Query(p): Query<PageParams>,
) -> Result<Json<Page<KeyItem>>, ApiError> {
    let page = keys
        .list(&principal, page_request(p.limit, p.cursor)?)
        .await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(KeyItem::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Deletes a key: it stops working at once on this instance and within 60 s everywhere.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "auth", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn remove(
    State(keys): State<Arc<KeyService>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    keys.delete(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

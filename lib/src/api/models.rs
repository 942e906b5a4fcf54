//! `GET /api/models`: the models on offer, for a picker — never an address or a key.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Auth;
use crate::llm::{Provider, Registry};
use crate::AppState;

/// The routes of this group (served by the chat function, whose configuration holds the models).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/models", get(list))
}

/// One model on offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelItem {
    /// What a chat request names in `model`.
    pub id: String,
    /// What people see.
    pub name: String,
    /// Who serves it.
    pub provider: Provider,
    /// Whether it reads images.
    pub vision: bool,
    /// Its context window, in tokens.
    pub context_tokens: u64,
    /// Whether it answers requests that name no model.
    pub default: bool,
    /// USD per million prompt (`input`) and answer (`output`) tokens, when known.
    pub price: Option<crate::llm::registry::Price>,
}

/// The models on offer, in the configuration's order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// The models.
    pub items: Vec<ModelItem>,
}

/// The models a chat can pick.
#[utoipa::path(get, path = "/api/models", tag = "chat",
    responses((status = 200, body = ModelList), (status = 401, body = super::ErrorBody)))]
pub async fn list(State(models): State<Arc<Registry>>, _auth: Auth) -> axum::Json<ModelList> {
    axum::Json(ModelList {
        items: models
            .list()
            .iter()
            .map(|m| ModelItem {
                id: m.id.clone(),
                name: m.name.clone(),
                provider: m.provider,
                vision: m.vision,
                context_tokens: m.context_tokens,
                default: m.default,
                price: m.price,
            })
            .collect(),
    })
}

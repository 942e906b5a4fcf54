//! `GET /health` (every dependency checked), `GET /api`, `GET /api/openapi.json`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::health::HealthService;
use crate::AppState;

/// The routes of this group.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api", get(index))
        .route("/api/openapi.json", get(openapi))
}

/// The health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a dependency fails.
    pub status: String,
    /// Each dependency: `ok` or what is wrong.
    pub checks: BTreeMap<String, String>,
    /// The server's version.
    pub version: String,
    /// The model that answers.
    pub model: String,
}

/// What this API is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Index {
    /// `conversa`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Where the OpenAPI document is.
    pub docs: String,
}

/// Whether the server and its dependencies answer; 503 when degraded.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(health): State<Arc<HealthService>>) -> (StatusCode, axum::Json<Health>) {
    let report = health.report().await;
    let ok = report.ok();
    let checks = report
        .checks
        .iter()
        .map(|(name, check)| ((*name).to_owned(), check.as_str().to_owned()))
        .collect::<BTreeMap<_, _>>();
    let body = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        checks,
        version: crate::VERSION.into(),
        model: report.model,
    };
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        axum::Json(body),
    )
}

/// Names the API and points at its document.
#[utoipa::path(get, path = "/api", tag = "meta", responses((status = 200, body = Index)))]
pub async fn index() -> axum::Json<Index> {
    axum::Json(Index {
        name: "conversa".into(),
        version: crate::VERSION.into(),
        docs: "/api/openapi.json".into(),
    })
}

/// The OpenAPI 3 document of this API, generated from the code (with the models on offer).
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi(
    State(models): State<Arc<crate::llm::Registry>>,
    State(auth): State<Arc<crate::auth::Authenticator>>,
) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(super::openapi::document_for(&models, auth.mode()))
}

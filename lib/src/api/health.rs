//! `GET /health` (every dependency checked), `GET /api`, `GET /api/openapi.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

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

async fn check<E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<(), E>>,
) -> String {
    match tokio::time::timeout(Duration::from_secs(3), f).await {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check failed");
            "unavailable".into()
        }
        Err(_) => "timeout".into(),
    }
}

/// Whether the server and its dependencies answer; 503 when degraded.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    let (store, blobs, limiter) = tokio::join!(
        check(state.store.health()),
        check(state.blobs.health()),
        check(state.limiter.health())
    );
    let checks = BTreeMap::from([
        ("store".to_owned(), store),
        ("blobs".to_owned(), blobs),
        ("limiter".to_owned(), limiter),
    ]);
    let ok = checks.values().all(|v| v == "ok");
    let body = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        checks,
        version: crate::VERSION.into(),
        model: state.model.describe(),
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

/// The OpenAPI 3 document of this API, generated from the code.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(super::openapi::document())
}

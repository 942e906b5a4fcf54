//! The HTTP API of `API.md`: one router per route group, merged by the local server and served one
//! group per Lambda function in AWS.

use axum::http::{HeaderValue, Method};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub mod admin;
pub mod auth;
pub mod chat;
pub mod conversations;
mod error;
pub mod extract;
pub mod files;
pub mod health;
pub mod keys;
pub mod models;
mod multipart;
pub mod openapi;
pub mod search;
pub mod sse;
pub mod usage;

pub use error::{ApiError, ErrorBody, ErrorDetail};

use crate::AppState;

/// Every route group, without state or fallbacks.
pub fn all_routes() -> Router<AppState> {
    Router::new()
        .merge(chat::routes())
        .merge(models::routes())
        .merge(conversations::routes())
        .merge(files::routes())
        .merge(health::routes())
        .merge(identity_routes())
}

/// Signing in, the caller, API keys and the admin routes (served by the conversations function in
/// AWS).
pub fn identity_routes() -> Router<AppState> {
    Router::new()
        .merge(auth::routes())
        .merge(keys::routes())
        .merge(usage::routes())
        .merge(search::routes())
        .merge(admin::routes())
}

/// Every route group, with the error-shaped fallbacks.
pub fn router(state: AppState) -> Router {
    with_fallbacks(all_routes(), state)
}

/// The JSON 404 of unknown addresses.
pub async fn not_found() -> ApiError {
    ApiError::not_found("There is nothing at this address.")
}

/// Adds the error-shaped 404/405 fallbacks, CORS and the state to a group's routes.
pub fn with_fallbacks(routes: Router<AppState>, state: AppState) -> Router {
    finish(routes.fallback(not_found), state)
}

/// Adds the 405 fallback, the authenticator (for the `Principal` extractor), CORS and the state
/// (the caller chose the 404 fallback).
pub fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("This method is not allowed here.".into())
        })
        .layer(axum::Extension(state.auth.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::require_origin,
        ))
        .layer(cors())
        .with_state(state)
}

/// Browsers on another origin (a deployed site calling function URLs) may call the API.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|_: &HeaderValue, _| true))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            axum::http::header::RETRY_AFTER,
            axum::http::header::CONTENT_DISPOSITION,
        ])
}

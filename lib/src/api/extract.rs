//! Request extractors: the principal (who is calling, `auth`), the admin check, the client key for
//! rate limits, and JSON/path/query extractors whose rejections use the API's error shape.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;

use super::ApiError;
use crate::auth::{secrets, Authenticator, Principal};
use crate::service;
use crate::AppState;

/// The outcome of authenticating a request, kept in its extensions so that the extractors of one
/// request (the principal, the rate-limit key, the admin check) authenticate it once.
#[derive(Clone)]
struct Authenticated(Result<Principal, service::Error>);

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    /// The principal of the request (`auth::Authenticator`, put in the extensions by
    /// [`super::finish`]): 401, 403 or 503 when there is none.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if let Some(Authenticated(outcome)) = parts.extensions.get::<Authenticated>() {
            return outcome.clone().map_err(ApiError::from);
        }
        let auth = parts
            .extensions
            .get::<Arc<Authenticator>>()
            .cloned()
            .ok_or_else(|| {
                ApiError::from(service::Error::Internal(
                    "the router has no authenticator".into(),
                ))
            })?;
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let outcome = auth
            .authenticate(header)
            .await
            .map_err(service::Error::from);
        parts.extensions.insert(Authenticated(outcome.clone()));
        outcome.map_err(ApiError::from)
    }
}

/// An admin's principal: routes that need an admin take it, or sit behind
/// `from_extractor::<RequireAdmin>()` (`api::admin`).
#[derive(Debug, Clone)]
pub struct RequireAdmin(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for RequireAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.is_admin() {
            tracing::info!(
                user = principal.owner.as_str(),
                "a non-admin on an admin route"
            );
            return Err(service::Error::Forbidden("This needs an administrator.".into()).into());
        }
        Ok(RequireAdmin(principal))
    }
}

/// The client's address as the transport saw it; the local server and the Lambda adapter put it
/// into the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Set by CloudFront: the viewer's address (trusted only with the origin secret).
pub const CLIENT_IP_HEADER: &str = "x-conversa-client-ip";
/// Set by CloudFront: the origin secret.
pub const ORIGIN_VERIFY_HEADER: &str = "x-conversa-origin-verify";

/// Whether the request carries the configured origin secret.
pub fn origin_verified(headers: &axum::http::HeaderMap, secret: &str) -> bool {
    headers
        .get(ORIGIN_VERIFY_HEADER)
        .is_some_and(|v| secrets::same(v.as_bytes(), secret.as_bytes()))
}

/// Refuses requests that did not come through the site's CDN when an origin secret is configured.
pub async fn require_origin(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(secret) = &state.http.origin_secret {
        if !origin_verified(request.headers(), secret) {
            return ApiError::unauthorized("Use the site's address to reach this service.")
                .into_response();
        }
    }
    next.run(request).await
}

/// The client's IP: from the CDN's header when the origin secret vouches for it, else from
/// [`ClientIp`] (the transport), else the socket, else unknown.
pub fn client_ip_for(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    if let Some(secret) = &state.http.origin_secret {
        if origin_verified(&parts.headers, secret) {
            let forwarded = parts
                .headers
                .get(CLIENT_IP_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
    }
    client_ip(parts)
}

/// The client's IP as the transport saw it: from [`ClientIp`], else the socket.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(ClientIp(ip)) = parts.extensions.get::<ClientIp>() {
        return Some(*ip);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The key rate limits count under: the signed-in user's id, else (mode `none`) the client IP.
#[derive(Debug, Clone)]
pub struct ClientKey(pub String);

impl FromRequestParts<AppState> for ClientKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if principal.signed_in() {
            return Ok(ClientKey(format!("user:{}", principal.owner.as_str())));
        }
        Ok(ClientKey(match client_ip_for(parts, state) {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".into(),
        }))
    }
}

/// `axum::Json` with the API's error shape on rejection.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` with the API's error shape on rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` with the API's error shape on rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::bad_request("Send JSON with `Content-Type: application/json`.")
            }
            other => {
                ApiError::bad_request(format!("The JSON body is not valid: {}", other.body_text()))
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::not_found(format!("Not found ({})", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(format!("The query string is not valid: {}", r.body_text()))
    }
}

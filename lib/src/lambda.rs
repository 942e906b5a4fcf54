//! Lambda entry points: each function runs one router under `lambda_http`, streaming (chat) or
//! buffered. The client's IP comes from the request context, not a socket.

use std::net::IpAddr;

use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::Request;
use tower::ServiceExt;

use crate::api::extract::ClientIp;
use crate::app::App;
use crate::Config;

/// The Lambda functions of the stack, one route group each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `POST /api/chat/send` (streamed) and `send-simple`.
    Chat,
    /// Conversations, with health, `/api` and the OpenAPI document.
    Conversations,
    /// Uploads, presigned uploads, downloads, text.
    Files,
}

impl Function {
    /// This function's router over the application's state.
    pub fn router(self, app: &App) -> Router {
        let state = app.state.clone();
        match self {
            Function::Chat => crate::api::chat::router(state),
            Function::Conversations => crate::api::conversations::router(state),
            Function::Files => crate::api::files::router(state),
        }
    }
}

/// What a function's `main` does: serve as an isolated extraction child when asked to, start
/// logging, read the configuration, build the application once (cold start), and serve the
/// function's routes, the chat function streaming.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    if let Some(code) = crate::extract::child_main() {
        std::process::exit(code);
    }
    init_tracing();
    let mut config = Config::from_env()?;
    // The embedding model loads on the first invocation that embeds, not in init.
    config.embed.lazy = true;
    let app = App::from_config(config).await?;
    // Jobs go to SQS in AWS; without a queue, they run in this process.
    app.start_workers();
    let router = function.router(&app);
    match function {
        Function::Chat => run_streaming(router).await,
        Function::Conversations | Function::Files => run_buffered(router).await,
    }
}

/// The embedding function's `main`: the sentence-embedding model (the `embedder` feature, from
/// `CONVERSA_EMBED_MODEL`: a layer) answers [`crate::embed::EmbedRequest`]s from the other
/// functions, which call it through the Lambda Invoke API (`CONVERSA_EMBEDDER=lambda`). The weights
/// load on the first invocation, not in init; their files are checked at start.
#[cfg(feature = "embedder")]
pub async fn run_embed() -> Result<(), lambda_http::Error> {
    use crate::embed::{EmbedRequest, EmbedSettings, EmbedderKind};
    use lambda_http::lambda_runtime::LambdaEvent;

    init_tracing();
    let settings = EmbedSettings {
        kind: EmbedderKind::MiniLm,
        model_dir: std::env::var_os("CONVERSA_EMBED_MODEL").map(std::path::PathBuf::from),
        lazy: true,
        function: None,
    };
    let embedder = tokio::task::spawn_blocking(move || crate::embed::load(&settings))
        .await??
        .ok_or("the embedding model is off")?;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: LambdaEvent<EmbedRequest>| {
            let embedder = embedder.clone();
            async move {
                let request = event.payload;
                let (texts, started) = (request.texts.len(), std::time::Instant::now());
                let answer = tokio::task::spawn_blocking(move || {
                    crate::embed::answer(embedder.as_ref(), &request)
                })
                .await??;
                tracing::info!(texts, ms = started.elapsed().as_millis() as u64, "embedded");
                Ok::<_, lambda_http::Error>(answer)
            }
        },
    ))
    .await
}

/// The source IP of a function URL, REST or ALB request, when the context has one.
pub fn source_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    let ip = match extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.clone(),
        _ => None,
    }?;
    ip.parse().ok()
}

/// Copies the client's IP into the extension the rate limiter reads.
pub fn with_client_ip(router: Router) -> Router {
    router.layer(axum::middleware::map_request(
        |mut request: axum::extract::Request| async move {
            if let Some(ip) = source_ip(request.extensions()) {
                request.extensions_mut().insert(ClientIp(ip));
            }
            request
        },
    ))
}

/// Runs a router as a streaming Lambda function (the chat function).
pub async fn run_streaming(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run_with_streaming_response(with_client_ip(router)).await
}

/// Runs a router as a buffered Lambda function.
pub async fn run_buffered(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(with_client_ip(router)).await
}

/// Serves one request through a router, as the Lambda runtime would (tests, local invokes).
pub async fn handle(router: Router, request: Request) -> axum::response::Response {
    let router = with_client_ip(router);
    match router.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Logging for a function: JSON lines, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .try_init();
}

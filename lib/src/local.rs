//! The local server: every route and the static frontend in one process, on embedded defaults;
//! and what every long-running binary does at start (the local server, the extraction worker).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::app::App;
use crate::Config;

/// A startup or serving failure, said once on the way out.
pub type BoxError = Box<dyn std::error::Error>;

/// `GET /metrics`: this process's figures in Prometheus text format.
#[cfg(feature = "prometheus")]
async fn metrics() -> axum::response::Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::prom::CONTENT_TYPE,
        )],
        crate::metrics::prom::render(),
    )
        .into_response()
}

/// `GET /metrics` for admins (built with Prometheus; nothing otherwise).
fn metrics_routes() -> Router<crate::AppState> {
    let routes = Router::new();
    #[cfg(feature = "prometheus")]
    let routes = routes
        .route("/metrics", axum::routing::get(metrics))
        .route_layer(axum::middleware::from_extractor::<
            crate::api::extract::RequireAdmin,
        >());
    routes
}

/// The API and `GET /metrics` (admins) plus, when the configured frontend directory holds an
/// `index.html`, the site at `/`.
pub fn app(app: &App) -> Router {
    let state = app.state.clone();
    let dir = app.config.frontend_dir.clone();
    let routes = crate::api::all_routes().merge(metrics_routes());
    if !has_frontend(&dir) {
        return crate::api::with_fallbacks(routes, state);
    }
    let site = ServeDir::new(&dir).fallback(ServeFile::new(dir.join("index.html")));
    // API paths keep their JSON 404s; everything else is the site (unknown paths get index.html,
    // so the app's own routes survive a reload).
    let fallback = move |request: Request| {
        let site = site.clone();
        async move {
            if request.uri().path() == "/api" || request.uri().path().starts_with("/api/") {
                return crate::api::not_found().await.into_response();
            }
            match site.oneshot(request).await {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            }
        }
    };
    crate::api::finish(routes.fallback(fallback), state)
}

/// Serves `app` on `listener` until `shutdown` resolves, with `TCP_NODELAY` on every connection
/// (without it the first token of a stream can wait ~40 ms).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Whether the frontend is present where the configuration says.
pub fn has_frontend(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// Logging for the local server: readable lines, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn")),
        )
        .try_init();
}

/// Completes on Ctrl-C or SIGTERM (how a terminal, a service manager or a container asks a process
/// to stop).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// The most threads the blocking pool may hold (file reads, extraction, the in-process models;
/// tokio's default allows 512). Calls on the embedded SQLite store do not use it: they queue for
/// the store's own thread.
pub const BLOCKING_THREADS: usize = 32;

/// The runtime of a long-running binary: `CONVERSA_WORKER_THREADS` workers (default one per core)
/// and at most [`BLOCKING_THREADS`] blocking threads.
pub fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().max_blocking_threads(BLOCKING_THREADS);
    if let Ok(raw) = std::env::var("CONVERSA_WORKER_THREADS") {
        let workers = raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| format!("CONVERSA_WORKER_THREADS: expected a number of threads from 1 to 1024, got {raw:?}"))?;
        builder.worker_threads(workers);
    }
    Ok(builder.build()?)
}

/// [`main`] on [`runtime`]: what a long-running binary's `fn main` calls.
pub fn start<F, Fut>(name: &str, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    match runtime() {
        Ok(rt) => rt.block_on(main(name, run)),
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a long-running binary's `main` does: serve as an isolated extraction child when asked to,
/// start logging, read the configuration, run `run` with it, and turn its failure into a message
/// naming the binary and a failing exit code.
pub async fn main<F, Fut>(name: &str, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    if let Some(code) = crate::extract::child_main() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    init_tracing();
    let outcome = match Config::from_env() {
        Ok(config) => run(config).await,
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `conversa-local`: binds, builds the application, starts the in-process job workers, says where
/// it runs, and serves until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> Result<(), BoxError> {
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("CONVERSA_BIND: cannot listen on {}: {e}", config.bind))?;
    let addr = listener.local_addr()?;
    let frontend = has_frontend(&config.frontend_dir);
    #[cfg(feature = "prometheus")]
    if let Some(bind) = config.metrics_bind {
        let metrics_listener = TcpListener::bind(bind)
            .await
            .map_err(|e| format!("CONVERSA_METRICS_BIND: cannot listen on {bind}: {e}"))?;
        println!("Metrics (no sign-in) at http://{bind}/metrics");
        tokio::spawn(serve(
            metrics_listener,
            Router::new().route("/metrics", axum::routing::get(metrics)),
            shutdown_signal(),
        ));
    }
    let built = App::from_config(config).await?;
    built.start_workers();
    println!("Model: {}", built.models.describe());
    if frontend {
        println!("Conversa is running at http://{addr}/");
    } else {
        println!("Conversa API is running at http://{addr}/api (no frontend build found; run `npm run build` in frontend/)");
    }
    let served = serve(listener, app(&built), shutdown_signal()).await;
    // The spans still queued go out, for a moment at most: a collector that is down does not
    // hold the exit.
    built.traces.shutdown(TRACES_SHUTDOWN).await;
    served?;
    Ok(())
}

/// The longest the local server waits, on its way out, for its last spans to be sent.
const TRACES_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(3);

/// `conversa-extractor`: processes extraction jobs from SQS until Ctrl-C or SIGTERM.
#[cfg(feature = "sqs")]
pub async fn run_extractor(config: Config) -> Result<(), BoxError> {
    crate::app::run_extractor(config, shutdown_signal()).await
}

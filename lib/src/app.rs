//! The application state shared by every route: configuration and the ports, chosen once at start.

use std::sync::Arc;

use crate::blobs::BlobStore;
use crate::config::{BlobsKind, Config, LimiterKind, StoreKind};
use crate::extract::Limits;
use crate::jobs::local::LocalJobs;
use crate::jobs::JobQueue;
use crate::limits::RateLimiter;
use crate::llm::ChatModel;
use crate::store::Store;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration read at start.
    pub config: Arc<Config>,
    /// Conversations, messages, file records.
    pub store: Arc<dyn Store>,
    /// File bytes and extracted text.
    pub blobs: Arc<dyn BlobStore>,
    /// Chat-turn counters.
    pub limiter: Arc<dyn RateLimiter>,
    /// The model that answers (and writes titles).
    pub model: Arc<dyn ChatModel>,
    /// Extraction bounds.
    pub limits: Limits,
    /// Background extraction of large files.
    pub jobs: Arc<dyn JobQueue>,
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl AppState {
    /// Assembles a state from parts (tests and custom deployments); large files are extracted by
    /// in-process workers, which start here (jobs a previous run left unfinished resume).
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        limiter: Arc<dyn RateLimiter>,
        model: Arc<dyn ChatModel>,
    ) -> Self {
        let limits = Limits {
            max_bytes: config.max_upload_bytes,
            ..Limits::default()
        };
        let local_jobs = Arc::new(LocalJobs::new(config.data_dir.join("jobs")));
        let concurrency = config.job_concurrency;
        let state = Self {
            config: Arc::new(config),
            store,
            blobs,
            limiter,
            model,
            limits,
            jobs: local_jobs.clone(),
        };
        local_jobs.start(state.clone(), concurrency);
        state
    }

    /// Builds the adapters the configuration names.
    pub async fn from_config(config: Config) -> Result<Self, BuildError> {
        let store: Arc<dyn Store> = match config.store {
            #[cfg(feature = "sqlite")]
            StoreKind::Sqlite => Arc::new(
                crate::store::sqlite::SqliteStore::open(&config.data_dir.join("conversa.db"))
                    .map_err(|e| {
                        BuildError(format!("CONVERSA_DATA_DIR: cannot open the database: {e}"))
                    })?,
            ),
            other => {
                return Err(BuildError(format!(
                    "CONVERSA_STORE: {other:?} is not built into this binary"
                )))
            }
        };
        let blobs: Arc<dyn BlobStore> = match config.blobs {
            BlobsKind::Local => Arc::new(
                crate::blobs::local::LocalBlobs::new(config.data_dir.join("blobs"))
                    .map_err(|e| BuildError(format!("CONVERSA_DATA_DIR: {e}")))?,
            ),
            #[allow(unreachable_patterns)]
            other => {
                return Err(BuildError(format!(
                    "CONVERSA_BLOBS: {other:?} is not built into this binary"
                )))
            }
        };
        let limiter: Arc<dyn RateLimiter> = match config.limiter {
            LimiterKind::Memory => Arc::new(crate::limits::memory::MemoryLimiter::new()),
            #[allow(unreachable_patterns)]
            other => {
                return Err(BuildError(format!(
                    "CONVERSA_LIMITER: {other:?} is not built into this binary"
                )))
            }
        };
        let model = build_model(&config)?;
        Ok(Self::new(config, store, blobs, limiter, model))
    }
}

/// The remote OpenAI-compatible provider when configured; otherwise the local model when built in.
fn build_model(config: &Config) -> Result<Arc<dyn ChatModel>, BuildError> {
    let remote = || -> Result<Arc<dyn ChatModel>, BuildError> {
        Ok(Arc::new(
            crate::llm::openai::OpenAiModel::new(
                config.openai_api_key.as_deref(),
                config.openai_base_url.as_deref(),
                &config.chat_model,
            )
            .map_err(|e| BuildError(format!("OPENAI_BASE_URL: {e}")))?,
        ))
    };
    if config.uses_remote_model() {
        return remote();
    }
    remote()
}

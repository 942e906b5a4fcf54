//! The application state shared by every route: configuration and the ports, chosen once at start.

use std::sync::Arc;

use crate::blobs::BlobStore;
use crate::config::{BlobsKind, Config, LimiterKind};
use crate::extract::Limits;
use crate::jobs::local::LocalJobs;
use crate::jobs::JobQueue;
use crate::limits::{RateLimit, RateLimiter};
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
    /// Chat-turn rate limits (the counters under the policy, on the system clock).
    pub limiter: RateLimit,
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
            limiter: RateLimit::system(limiter),
            model,
            limits,
            jobs: local_jobs.clone(),
        };
        local_jobs.start(state.clone(), concurrency);
        state
    }

    /// Builds the adapters the configuration names.
    pub async fn from_config(config: Config) -> Result<Self, BuildError> {
        let store = build_store(&config).await?;
        let blobs: Arc<dyn BlobStore> = match config.blobs {
            BlobsKind::Local => Arc::new(
                crate::blobs::local::LocalBlobs::new(config.data_dir.join("blobs"))
                    .map_err(|e| BuildError(format!("CONVERSA_DATA_DIR: {e}")))?,
            ),
            #[cfg(feature = "s3")]
            BlobsKind::S3 => {
                let bucket = config.s3_bucket.clone().ok_or_else(|| {
                    BuildError("CONVERSA_S3_BUCKET: required when CONVERSA_BLOBS=s3".into())
                })?;
                Arc::new(crate::blobs::s3::S3Blobs::from_env(bucket).await)
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(BuildError(format!(
                    "CONVERSA_BLOBS: {other:?} is not built into this binary"
                )))
            }
        };
        let limiter: Arc<dyn RateLimiter> = match config.limiter {
            LimiterKind::Memory => Arc::new(crate::limits::memory::MemoryLimiter::new()),
            #[cfg(feature = "dynamodb")]
            LimiterKind::DynamoDb => Arc::new(
                crate::limits::dynamodb::DynamoLimiter::from_env(config.dynamodb_table.clone())
                    .await,
            ),
            #[cfg(feature = "redis")]
            LimiterKind::Redis => {
                let url = config.redis_url.as_deref().ok_or_else(|| {
                    BuildError("REDIS_URL: required when CONVERSA_LIMITER=redis".into())
                })?;
                Arc::new(
                    crate::limits::redis::RedisLimiter::connect(url)
                        .await
                        .map_err(|e| BuildError(format!("REDIS_URL: {e}")))?,
                )
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(BuildError(format!(
                    "CONVERSA_LIMITER: {other:?} is not built into this binary"
                )))
            }
        };
        let mut config = config;
        if config.openai_api_key.is_none() {
            if let Some(name) = config.openai_api_key_parameter.clone() {
                config.openai_api_key = Some(read_parameter(&name).await?);
            }
        }
        let model = build_model(&config).await?;
        #[cfg(feature = "sqs")]
        let queue = config.jobs_queue_url.clone();
        #[allow(unused_mut)]
        let mut state = Self::new(config, store, blobs, limiter, model);
        // In AWS, large files go to the extraction container through SQS.
        #[cfg(feature = "sqs")]
        if let Some(url) = queue {
            state.jobs = Arc::new(crate::jobs::sqs::SqsJobs::from_env(url).await);
        }
        Ok(state)
    }
}

/// The store the configuration names; a clear error when that store is not compiled in.
#[cfg(any(feature = "sqlite", feature = "dynamodb", feature = "mongodb"))]
async fn build_store(config: &Config) -> Result<Arc<dyn Store>, BuildError> {
    Ok(match config.store {
        #[cfg(feature = "sqlite")]
        crate::config::StoreKind::Sqlite => Arc::new(
            crate::store::sqlite::SqliteStore::open(&config.data_dir.join("conversa.db")).map_err(
                |e| BuildError(format!("CONVERSA_DATA_DIR: cannot open the database: {e}")),
            )?,
        ),
        #[cfg(feature = "dynamodb")]
        crate::config::StoreKind::DynamoDb => Arc::new(
            crate::store::dynamodb::DynamoStore::from_env(config.dynamodb_table.clone()).await,
        ),
        #[cfg(feature = "mongodb")]
        crate::config::StoreKind::MongoDb => {
            let uri = config.mongodb_uri.as_deref().ok_or_else(|| {
                BuildError("MONGODB_URI: required when CONVERSA_STORE=mongodb".into())
            })?;
            Arc::new(
                crate::store::mongodb::MongoStore::connect(uri, &config.mongodb_db)
                    .await
                    .map_err(|e| BuildError(format!("MONGODB_URI: {e}")))?,
            )
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(BuildError(format!(
                "CONVERSA_STORE: {other:?} is not built into this binary"
            )))
        }
    })
}

/// Built without any store (e.g. only the local model for a benchmark): nothing to open.
#[cfg(not(any(feature = "sqlite", feature = "dynamodb", feature = "mongodb")))]
async fn build_store(config: &Config) -> Result<Arc<dyn Store>, BuildError> {
    Err(BuildError(format!(
        "CONVERSA_STORE: {:?} is not built into this binary (it has no store: build it with the \
         `sqlite`, `dynamodb` or `mongodb` feature)",
        config.store
    )))
}

/// The OpenAI key from an SSM SecureString (`OPENAI_API_KEY_PARAMETER`), read once at cold start.
#[cfg(feature = "ssm")]
async fn read_parameter(name: &str) -> Result<String, BuildError> {
    let client = aws_sdk_ssm::Client::new(crate::aws::sdk_config().await);
    let out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| {
            BuildError(format!(
                "OPENAI_API_KEY_PARAMETER: cannot read {name}: {}",
                crate::aws::describe(&e)
            ))
        })?;
    out.parameter()
        .and_then(|p| p.value())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| BuildError(format!("OPENAI_API_KEY_PARAMETER: {name} is empty")))
}

/// Without the `ssm` feature a parameter name cannot be honoured: say so rather than run keyless.
#[cfg(not(feature = "ssm"))]
async fn read_parameter(_name: &str) -> Result<String, BuildError> {
    Err(BuildError(
        "OPENAI_API_KEY_PARAMETER: reading SSM parameters is not built into this binary".into(),
    ))
}

/// The remote OpenAI-compatible provider when configured; otherwise the local model when built in.
async fn build_model(config: &Config) -> Result<Arc<dyn ChatModel>, BuildError> {
    if config.uses_remote_model() {
        return remote_model(config);
    }
    local_model(config).await
}

fn remote_model(config: &Config) -> Result<Arc<dyn ChatModel>, BuildError> {
    Ok(Arc::new(
        crate::llm::openai::OpenAiModel::new(
            config.openai_api_key.as_deref(),
            config.openai_base_url.as_deref(),
            &config.chat_model,
        )
        .map_err(|e| BuildError(format!("OPENAI_BASE_URL: {e}")))?,
    ))
}

/// The in-process GGUF model: `CONVERSA_LOCAL_MODEL`, else the default file. A missing file stops the
/// start and says what to do, rather than falling back to a remote provider that has no key and would
/// fail every chat.
#[cfg(feature = "local-model")]
async fn local_model(config: &Config) -> Result<Arc<dyn ChatModel>, BuildError> {
    use crate::llm::local::{LocalModel, DEFAULT_MODEL_PATH, FETCH_SCRIPT};
    let path = config
        .local_model
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_MODEL_PATH));
    if !path.is_file() {
        let what = if config.local_model.is_some() {
            format!("CONVERSA_LOCAL_MODEL: {} does not exist", path.display())
        } else {
            format!(
                "no model: the default local model {} is missing and CONVERSA_LOCAL_MODEL is not set",
                path.display()
            )
        };
        return Err(BuildError(format!(
            "{what}. Run {FETCH_SCRIPT} to fetch SmolLM2-135M-Instruct (98 MB), point \
             CONVERSA_LOCAL_MODEL at a GGUF chat model, or set OPENAI_API_KEY or OPENAI_BASE_URL to use \
             a remote provider."
        )));
    }
    let model = LocalModel::load_async(path)
        .await
        .map_err(|e| BuildError(e.to_string()))?;
    tracing::info!(
        model = model.name(),
        path = %model.path().display(),
        load_ms = model.load_time().as_millis() as u64,
        context_window = model.context_window(),
        "local model loaded"
    );
    Ok(Arc::new(model))
}

/// Without the local model built in (the Lambda functions), the remote default: chats need
/// `OPENAI_API_KEY` or `OPENAI_BASE_URL`.
#[cfg(not(feature = "local-model"))]
async fn local_model(config: &Config) -> Result<Arc<dyn ChatModel>, BuildError> {
    tracing::warn!("no model configured: set OPENAI_API_KEY or OPENAI_BASE_URL");
    remote_model(config)
}

//! Where the application is put together, once, at start: the ports the configuration names, the
//! services over them, and the state the routers hold. Building starts no background work; the
//! processes that run in-process job workers start them ([`App::start_workers`]).

use std::sync::Arc;

use axum::extract::FromRef;

use crate::accounts::Accounts;
use crate::auth::Authenticator;
use crate::blobs::BlobStore;
use crate::config::{BlobsKind, Config, LimiterKind};
use crate::embed::Embedder;
use crate::extract::Limits;
use crate::jobs::local::LocalJobs;
use crate::jobs::JobQueue;
use crate::ledger::Ledger;
use crate::limits::{RateLimit, RateLimiter};
use crate::llm::Registry;
use crate::search::SearchLog;
use crate::service::accounts::AccountService;
use crate::service::chat::{ChatPorts, ChatService, ChatSettings, ContextSettings};
use crate::service::conversations::ConversationService;
use crate::service::files::{FileService, FileSettings};
use crate::service::health::HealthService;
use crate::service::keys::KeyService;
use crate::service::search::SearchService;
use crate::service::usage::{Budgets, UsageService};
use crate::store::Store;
use crate::traces::Traces;
use crate::turns::TurnLog;

/// What the HTTP layer itself needs, beyond the services.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The CDN's origin secret (`CONVERSA_ORIGIN_SECRET`): requests must carry it, and it vouches
    /// for the client IP header.
    pub origin_secret: Option<String>,
    /// The largest file part a form may carry (`CONVERSA_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
}

/// What every handler can reach: the services, and the HTTP settings. Cheap to clone; handlers
/// take the part they need (`State<Arc<ChatService>>`, …).
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Chat turns.
    pub chat: Arc<ChatService>,
    /// Conversations: list, read, rename, delete, export.
    pub conversations: Arc<ConversationService>,
    /// Files: uploads, extraction, downloads.
    pub files: Arc<FileService>,
    /// Dependency checks.
    pub health: Arc<HealthService>,
    /// The models on offer.
    pub models: Arc<Registry>,
    /// Who is calling: credentials → principal.
    pub auth: Arc<Authenticator>,
    /// Local sign-in and the administration of users.
    pub accounts: Arc<AccountService>,
    /// API keys.
    pub keys: Arc<KeyService>,
    /// Usage reports and budgets.
    pub usage: Arc<UsageService>,
    /// Origin and form limits.
    pub http: Arc<HttpSettings>,
    /// Search over messages and files.
    pub search: Arc<SearchService>,
}

/// Everything a process builds at start: the configuration, the ports it names, and the state
/// over them. Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// The configuration read at start.
    pub config: Arc<Config>,
    /// Conversations, messages, file records.
    pub store: Arc<dyn Store>,
    /// Users, refresh tokens, API keys (in the same database as the store).
    pub accounts: Arc<dyn Accounts>,
    /// Budgets and usage (in the same database as the store).
    pub ledger: Arc<dyn Ledger>,
    /// Each turn's events and stop flag (beside the store, in the same database).
    pub turns: Arc<dyn TurnLog>,
    /// The searchable copy of messages and file chunks, when the store keeps one.
    pub search: Option<Arc<dyn SearchLog>>,
    /// File bytes and extracted text.
    pub blobs: Arc<dyn BlobStore>,
    /// Chat-turn rate limits (the counters under the policy, on the system clock).
    pub limiter: RateLimit,
    /// The models on offer: the default answers unless a request names another; the title model
    /// writes titles.
    pub models: Arc<Registry>,
    /// Background extraction of large files.
    pub jobs: Arc<dyn JobQueue>,
    /// The sentence-embedding model, when one runs in this process.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// The services, as the routers hold them.
    pub state: AppState,
    /// Where each turn's spans go (or nowhere): flush or shut it down on the way out.
    pub traces: Traces,
    /// The in-process queue, when jobs run in this process.
    local_jobs: Option<Arc<LocalJobs>>,
}

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// A kind of adapter the configuration names that this binary was built without.
fn not_built(var: &str, kind: impl std::fmt::Debug) -> BuildError {
    BuildError(format!("{var}: {kind:?} is not built into this binary"))
}

/// The trace exporter the configuration asks for (nothing without an endpoint).
fn start_traces(config: &Config) -> Result<Traces, BuildError> {
    Traces::start(config.otlp.as_ref())
        .map_err(|e| BuildError(format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}")))
}

/// The chat settings of a configuration (the models are the registry's).
pub fn chat_settings(config: &Config) -> ChatSettings {
    ChatSettings {
        history_messages: config.history_messages,
        rate_limit_per_minute: config.rate_limit_per_minute,
        model_timeout: config.model_timeout,
        metrics_emf: config.metrics_emf,
        metrics_namespace: config.metrics_namespace.clone(),
        context: ContextSettings {
            system_prompt: config.system_prompt.clone(),
            context_tokens: config.context_tokens,
            file_share: config.file_context_share,
            file_tokens: None,
            max_answer_tokens: config.max_answer_tokens,
            memory: config.memory,
        },
    }
}

/// The file settings of a configuration; file text is counted in the tokens of `count_model`
/// (the provider's name of the default model).
pub fn file_settings(config: &Config, count_model: &str) -> FileSettings {
    FileSettings {
        max_upload_bytes: config.max_upload_bytes,
        inline_max_bytes: config.inline_max_bytes,
        inline_max_pages: config.inline_max_pages,
        download_redirect_bytes: config.download_redirect_bytes,
        limits: Limits {
            max_bytes: config.max_upload_bytes,
            ..Limits::default()
        },
        count_model: count_model.to_owned(),
    }
}

/// The HTTP settings of a configuration.
pub fn http_settings(config: &Config) -> HttpSettings {
    HttpSettings {
        origin_secret: config.origin_secret.clone(),
        max_upload_bytes: config.max_upload_bytes,
    }
}

impl App {
    /// Assembles an application from parts (tests and custom deployments); large files are queued
    /// for in-process workers under `{data_dir}/jobs`, which run once [`App::start_workers`] is
    /// called. Fails, naming the variable, when the identity settings cannot work.
    pub fn new(
        config: Config,
        stores: Stores,
        blobs: Arc<dyn BlobStore>,
        limiter: Arc<dyn RateLimiter>,
        models: Arc<Registry>,
    ) -> Result<Self, BuildError> {
        let local = Arc::new(LocalJobs::new(config.data_dir.join("jobs")));
        let traces = start_traces(&config)?;
        Self::assemble(
            config,
            stores,
            blobs,
            RateLimit::system(limiter),
            models,
            (local.clone(), Some(local)),
            traces,
            None,
        )
    }

    /// The same application with `embedder` ranking file passages by meaning too (`None`: by
    /// words alone).
    pub fn with_embedder(self, embedder: Option<Arc<dyn Embedder>>) -> Result<Self, BuildError> {
        Self::assemble(
            (*self.config).clone(),
            Stores {
                store: self.store,
                accounts: self.accounts,
                ledger: self.ledger,
                turns: self.turns,
                search: self.search,
            },
            self.blobs,
            self.limiter,
            self.models,
            (self.jobs, self.local_jobs),
            self.traces,
            embedder,
        )
    }

    /// The same application with another rate-limit policy (tests: a clock that stands still;
    /// tokens and caches are timed by the same clock).
    pub fn with_rate_limit(self, limiter: RateLimit) -> Result<Self, BuildError> {
        Self::assemble(
            (*self.config).clone(),
            Stores {
                store: self.store,
                accounts: self.accounts,
                ledger: self.ledger,
                turns: self.turns,
                search: self.search,
            },
            self.blobs,
            limiter,
            self.models,
            (self.jobs, self.local_jobs),
            self.traces,
            self.embedder,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: Config,
        stores: Stores,
        blobs: Arc<dyn BlobStore>,
        limiter: RateLimit,
        models: Arc<Registry>,
        (jobs, local_jobs): (Arc<dyn JobQueue>, Option<Arc<LocalJobs>>),
        traces: Traces,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, BuildError> {
        let Stores {
            store,
            accounts,
            ledger,
            turns,
            search,
        } = stores;
        let budgets = Budgets::new(
            ledger.clone(),
            config.tiers.clone(),
            &config.auth.default_tier,
            limiter.clock(),
        );
        let auth = Arc::new(
            Authenticator::new(&config.auth, accounts.clone(), limiter.clock())
                .map_err(BuildError)?,
        );
        let vectors = embedder
            .clone()
            .map(|e| crate::service::vectors::PassageVectors::new(blobs.clone(), e));
        let search_service = SearchService::new(search.clone(), store.clone(), vectors.clone());
        let files = Arc::new(
            FileService::new(
                store.clone(),
                blobs.clone(),
                jobs.clone(),
                file_settings(&config, &models.default().model),
            )
            .with_vectors(vectors)
            .with_search(Some(search_service.clone())),
        );
        let chat = Arc::new(ChatService::new(
            ChatPorts {
                store: store.clone(),
                blobs: blobs.clone(),
                limiter: limiter.clone(),
                models: models.clone(),
                budgets: budgets.clone(),
                turns: turns.clone(),
                traces: traces.clone(),
            },
            files.clone(),
            chat_settings(&config),
        ));
        let state = AppState {
            chat,
            conversations: Arc::new(
                ConversationService::new(store.clone(), blobs.clone())
                    .with_search(search_service.clone()),
            ),
            search: search_service,
            files,
            health: Arc::new(HealthService::new(
                store.clone(),
                blobs.clone(),
                limiter.counter(),
                models.clone(),
            )),
            models: models.clone(),
            accounts: Arc::new(AccountService::new(
                auth.clone(),
                limiter.clone(),
                config.tiers.clone(),
            )),
            usage: Arc::new(UsageService::new(budgets)),
            keys: Arc::new(KeyService::new(auth.clone())),
            auth,
            http: Arc::new(http_settings(&config)),
        };
        Ok(Self {
            config: Arc::new(config),
            store,
            accounts,
            ledger,
            turns,
            search,
            blobs,
            limiter,
            models,
            jobs,
            embedder,
            state,
            traces,
            local_jobs,
        })
    }

    /// Starts the in-process extraction workers, when jobs run in this process (jobs a previous
    /// run left unfinished resume). Does nothing when jobs go to a queue elsewhere, or the second
    /// time.
    pub fn start_workers(&self) {
        if let Some(queue) = &self.local_jobs {
            queue.start(self.state.files.clone(), self.config.job_concurrency);
        }
    }

    /// Builds the adapters the configuration names.
    pub async fn from_config(config: Config) -> Result<Self, BuildError> {
        #[cfg(not(feature = "ssm"))]
        if matches!(
            config.auth.oidc.as_ref().map(|o| &o.audience),
            Some(crate::auth::config::AudienceSource::Parameter(_))
        ) {
            return Err(BuildError(
                "CONVERSA_OIDC_AUDIENCE_PARAMETER: reading SSM parameters is not built into this \
                 binary (set CONVERSA_OIDC_AUDIENCE)"
                    .into(),
            ));
        }
        let stores = build_store(&config).await?;
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
            other => return Err(not_built("CONVERSA_BLOBS", other)),
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
            other => return Err(not_built("CONVERSA_LIMITER", other)),
        };
        let models = Arc::new(
            Registry::from_config(&config)
                .await
                .map_err(|e| BuildError(e.to_string()))?,
        );
        for m in models.list() {
            tracing::info!(id = %m.id, model = %m.describe(), default = m.default, "model on offer");
        }
        let embed = config.embed.clone();
        let embedder = tokio::task::spawn_blocking(move || crate::embed::load(&embed))
            .await
            .map_err(|e| BuildError(format!("loading the embedding model: {e}")))?
            .map_err(|e| BuildError(e.to_string()))?;
        // In AWS, large files go to the extraction container through SQS.
        #[cfg(feature = "sqs")]
        if let Some(url) = config.jobs_queue_url.clone() {
            let jobs = Arc::new(crate::jobs::sqs::SqsJobs::from_env(url).await);
            let traces = start_traces(&config)?;
            return Self::assemble(
                config,
                stores,
                blobs,
                RateLimit::system(limiter),
                models,
                (jobs, None),
                traces,
                embedder,
            );
        }
        let local = Arc::new(LocalJobs::new(config.data_dir.join("jobs")));
        let traces = start_traces(&config)?;
        Self::assemble(
            config,
            stores,
            blobs,
            RateLimit::system(limiter),
            models,
            (local.clone(), Some(local)),
            traces,
            embedder,
        )
    }
}

/// `conversa-extractor`: receives extraction jobs from SQS and processes each file with the files
/// service until `shutdown` completes.
#[cfg(feature = "sqs")]
pub async fn run_extractor(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error>> {
    let queue = config
        .jobs_queue_url
        .clone()
        .ok_or("CONVERSA_JOBS_QUEUE_URL: required by the extractor")?;
    let app = App::from_config(config).await?;
    crate::jobs::sqs::run_worker(
        app.state.files.clone(),
        crate::jobs::sqs::client().await,
        queue,
        shutdown,
    )
    .await?;
    Ok(())
}

/// The store, the accounts, the ledger and the turn log, kept in one database.
#[derive(Clone)]
pub struct Stores {
    /// Conversations, messages, file records.
    pub store: Arc<dyn Store>,
    /// Users, refresh tokens, API keys.
    pub accounts: Arc<dyn Accounts>,
    /// Budgets and usage.
    pub ledger: Arc<dyn Ledger>,
    /// Each turn's events and stop flag.
    pub turns: Arc<dyn TurnLog>,
    /// The searchable copy of messages and file chunks (`None`: this store has no search log, and
    /// search answers that it is not available).
    pub search: Option<Arc<dyn SearchLog>>,
}

impl Stores {
    /// The store, the accounts and the ledger from one adapter that implements those ports, with
    /// its turn log.
    pub fn of<T: Store + Accounts + Ledger + 'static>(adapter: T, turns: Arc<dyn TurnLog>) -> Self {
        let shared = Arc::new(adapter);
        Self {
            store: shared.clone(),
            accounts: shared.clone(),
            ledger: shared,
            turns,
            search: None,
        }
    }

    /// The same stores with a search log.
    pub fn with_search(mut self, search: Arc<dyn SearchLog>) -> Self {
        self.search = Some(search);
        self
    }
}

/// The store the configuration names, with its accounts and turn log (the same database); a
/// clear error when that store is not compiled in.
#[cfg(any(feature = "sqlite", feature = "dynamodb", feature = "mongodb"))]
async fn build_store(config: &Config) -> Result<Stores, BuildError> {
    Ok(match config.store {
        #[cfg(feature = "sqlite")]
        crate::config::StoreKind::Sqlite => {
            crate::store::sqlite::SqliteStore::open(&config.data_dir.join("conversa.db"))
                .map_err(|e| {
                    BuildError(format!("CONVERSA_DATA_DIR: cannot open the database: {e}"))
                })?
                .with_turn_log()
        }
        #[cfg(feature = "dynamodb")]
        crate::config::StoreKind::DynamoDb => {
            let table =
                crate::store::dynamodb::Table::from_env(config.dynamodb_table.clone()).await;
            Stores::of(
                crate::store::dynamodb::DynamoStore::new(table.clone()),
                Arc::new(crate::turns::dynamodb::DynamoTurnLog::new(table.clone())),
            )
            .with_search(Arc::new(crate::search::dynamodb::DynamoSearchLog::new(
                table,
            )))
        }
        #[cfg(feature = "mongodb")]
        crate::config::StoreKind::MongoDb => {
            let uri = config.mongodb_uri.as_deref().ok_or_else(|| {
                BuildError("MONGODB_URI: required when CONVERSA_STORE=mongodb".into())
            })?;
            let store = crate::store::mongodb::MongoStore::connect(uri, &config.mongodb_db)
                .await
                .map_err(|e| BuildError(format!("MONGODB_URI: {e}")))?;
            let turns = crate::turns::mongodb::MongoTurnLog::open(store.database())
                .await
                .map_err(|e| BuildError(format!("MONGODB_URI: {e}")))?;
            let search = crate::search::mongodb::MongoSearchLog::open(store.database())
                .await
                .map_err(|e| BuildError(format!("MONGODB_URI: {e}")))?;
            Stores::of(store, Arc::new(turns)).with_search(Arc::new(search))
        }
        #[allow(unreachable_patterns)]
        other => return Err(not_built("CONVERSA_STORE", other)),
    })
}

/// Built without any store (e.g. only the local model for a benchmark): nothing to open.
#[cfg(not(any(feature = "sqlite", feature = "dynamodb", feature = "mongodb")))]
async fn build_store(config: &Config) -> Result<Stores, BuildError> {
    Err(BuildError(format!(
        "CONVERSA_STORE: {:?} is not built into this binary (it has no store: build it with the \
         `sqlite`, `dynamodb` or `mongodb` feature)",
        config.store
    )))
}

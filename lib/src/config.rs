//! All configuration, read once at start from the environment. Every variable is documented in the
//! README; an invalid value stops the process with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Where conversations, messages and file records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded SQLite under the data directory.
    Sqlite,
    /// DynamoDB single table.
    DynamoDb,
    /// MongoDB.
    MongoDb,
}

/// Where file bytes and extracted text live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobsKind {
    /// Local disk under the data directory.
    Local,
    /// S3.
    S3,
}

/// Where rate-limit counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterKind {
    /// This process's memory.
    Memory,
    /// DynamoDB (shared by every Lambda instance, no VPC needed).
    DynamoDb,
    /// Redis.
    Redis,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CONVERSA_BIND`: the local server's address.
    pub bind: SocketAddr,
    /// `CONVERSA_DATA_DIR`: the embedded store and local blobs.
    pub data_dir: PathBuf,
    /// `CONVERSA_FRONTEND_DIR`: the static site served at `/` by the local server, when present.
    pub frontend_dir: PathBuf,
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<String>,
    /// `OPENAI_API_KEY_PARAMETER`: an SSM SecureString holding the key when `OPENAI_API_KEY` is
    /// not set (AWS deployments); its read starts at cold start and the first model call waits for it.
    pub openai_api_key_parameter: Option<String>,
    /// `OPENAI_BASE_URL`; `None` means the OpenAI default.
    pub openai_base_url: Option<String>,
    /// `CONVERSA_CHAT_MODEL`, or its default.
    pub chat_model: String,
    /// `CONVERSA_TITLE_MODEL`, or its default.
    pub title_model: String,
    /// `CONVERSA_CHAT_MODEL` when it is set: with a models file, the id of the default model.
    pub chat_model_set: Option<String>,
    /// `CONVERSA_TITLE_MODEL` when it is set: with a models file, the id of the title model.
    pub title_model_set: Option<String>,
    /// `CONVERSA_MODELS_FILE`: a JSON list of the models on offer (see `llm::Registry`).
    pub models_file: Option<PathBuf>,
    /// `CONVERSA_MODELS`: the same list in the variable itself (Lambda, containers).
    pub models_json: Option<String>,
    /// `CONVERSA_FIRST_TOKEN_TIMEOUT_SECS`: how long a model that has fallbacks may take to its
    /// first token before the next one is tried.
    pub first_token_timeout: Duration,
    /// `CONVERSA_HISTORY_MESSAGES`.
    pub history_messages: u32,
    /// `CONVERSA_MAX_UPLOAD_BYTES`.
    pub max_upload_bytes: u64,
    /// `CONVERSA_RATE_LIMIT_PER_MINUTE`; 0 disables.
    pub rate_limit_per_minute: u32,
    /// `CONVERSA_SYSTEM_PROMPT`.
    pub system_prompt: String,
    /// `CONVERSA_MAX_ANSWER_TOKENS`: cap on an answer's length.
    pub max_answer_tokens: Option<u32>,
    /// `CONVERSA_MODEL_TIMEOUT_SECS`: the longest wait for the model's next piece of answer.
    pub model_timeout: Duration,
    /// Who is calling: `CONVERSA_AUTH` and what each mode needs (`auth::config`).
    pub auth: crate::auth::AuthConfig,
    /// `CONVERSA_STORE`.
    pub store: StoreKind,
    /// `CONVERSA_BLOBS`.
    pub blobs: BlobsKind,
    /// `CONVERSA_LIMITER`.
    pub limiter: LimiterKind,
    /// `CONVERSA_DYNAMODB_TABLE`.
    pub dynamodb_table: String,
    /// `CONVERSA_S3_BUCKET`.
    pub s3_bucket: Option<String>,
    /// `MONGODB_URI`.
    pub mongodb_uri: Option<String>,
    /// `CONVERSA_MONGODB_DB`.
    pub mongodb_db: String,
    /// `REDIS_URL`.
    pub redis_url: Option<String>,
    /// `CONVERSA_JOBS_QUEUE_URL`: SQS queue for extraction jobs (AWS).
    pub jobs_queue_url: Option<String>,
    /// `CONVERSA_LOCAL_MODEL`: a GGUF file for the offline model.
    pub local_model: Option<PathBuf>,
    /// `CONVERSA_EMBEDDER` (`minilm`, `lambda`, `off`; by default `minilm` when the binary has
    /// the `embedder` feature and the model is there), `CONVERSA_EMBED_MODEL` (the model's
    /// directory) and `CONVERSA_EMBED_FUNCTION` (the embedding Lambda function, for `lambda`).
    pub embed: crate::embed::EmbedSettings,
    /// `CONVERSA_MEMORY` (`on`, `off`; default `off`): the few most relevant passages of the
    /// user's other conversations join each turn's context, labelled as memory.
    pub memory: bool,
    /// `CONVERSA_CONTEXT_TOKENS`: the chat model's context window; known for OpenAI models, else 8192.
    pub context_tokens: Option<u64>,
    /// `CONVERSA_FILE_CONTEXT_SHARE`: the share of the context window that file text may fill (0–1).
    pub file_context_share: f64,
    /// `CONVERSA_INLINE_MAX_BYTES`: larger uploads to `POST /api/files` are processed as jobs.
    pub inline_max_bytes: u64,
    /// `CONVERSA_INLINE_MAX_PAGES`: PDFs with more pages are processed as jobs.
    pub inline_max_pages: u32,
    /// `CONVERSA_JOB_CONCURRENCY`: extraction jobs running at once.
    pub job_concurrency: usize,
    /// `CONVERSA_DOWNLOAD_REDIRECT_BYTES`: when the blob store can sign URLs (S3), downloads of files
    /// at least this large answer `302` to a short-lived presigned URL instead of carrying the bytes
    /// (0, the default: every download). Smaller ones are served through the API.
    pub download_redirect_bytes: u64,
    /// `CONVERSA_ORIGIN_SECRET`: when set, requests must carry it in `x-conversa-origin-verify`
    /// (CloudFront adds it), and the client IP is taken from `x-conversa-client-ip`.
    pub origin_secret: Option<String>,
    /// `CONVERSA_TIERS`: the limits of each tier (`ledger::tiers`).
    pub tiers: crate::ledger::Tiers,
    /// `CONVERSA_PRICES`: prices beside the built-in ones (`llm::prices`).
    pub prices: crate::llm::PriceTable,
    /// `CONVERSA_METRICS_EMF`: each turn's figures as a CloudWatch EMF line on stdout (default:
    /// on Lambda).
    pub metrics_emf: bool,
    /// `CONVERSA_METRICS_NAMESPACE`: the CloudWatch namespace of those lines (default `Conversa`).
    pub metrics_namespace: String,
    /// `CONVERSA_METRICS_BIND`: an address where the local server also serves `GET /metrics`
    /// without sign-in (for a Prometheus scraper); `/metrics` on the main address is for admins.
    pub metrics_bind: Option<SocketAddr>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and
    /// `OTEL_SERVICE_NAME`: where OTLP traces go, when anywhere (`traces`).
    pub otlp: Option<crate::traces::OtlpSettings>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads from any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        fn parse<T: std::str::FromStr>(
            var: &'static str,
            v: Option<String>,
            default: T,
            what: &str,
        ) -> Result<T, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) => s.parse().map_err(|_| ConfigError {
                    var,
                    message: format!("{s:?} is not {what}"),
                }),
            }
        }
        fn choice<T: Copy>(
            var: &'static str,
            v: Option<String>,
            default: T,
            options: &[(&str, T)],
        ) -> Result<T, ConfigError> {
            let Some(s) = v else { return Ok(default) };
            options
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&s))
                .map(|(_, t)| *t)
                .ok_or_else(|| ConfigError {
                    var,
                    message: format!(
                        "{s:?} is not one of {}",
                        options
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
        }

        let bind = parse(
            "CONVERSA_BIND",
            get("CONVERSA_BIND"),
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "an address like 127.0.0.1:8080",
        )?;
        let max_upload_bytes: u64 = parse(
            "CONVERSA_MAX_UPLOAD_BYTES",
            get("CONVERSA_MAX_UPLOAD_BYTES"),
            10_485_760,
            "a number of bytes",
        )?;
        if max_upload_bytes == 0 {
            return Err(ConfigError {
                var: "CONVERSA_MAX_UPLOAD_BYTES",
                message: "must be greater than 0".into(),
            });
        }
        let history_messages = parse(
            "CONVERSA_HISTORY_MESSAGES",
            get("CONVERSA_HISTORY_MESSAGES"),
            20u32,
            "a whole number",
        )?;
        let rate_limit_per_minute = parse(
            "CONVERSA_RATE_LIMIT_PER_MINUTE",
            get("CONVERSA_RATE_LIMIT_PER_MINUTE"),
            30u32,
            "a whole number",
        )?;
        let max_answer_tokens = match get("CONVERSA_MAX_ANSWER_TOKENS") {
            None => None,
            Some(s) => Some(parse(
                "CONVERSA_MAX_ANSWER_TOKENS",
                Some(s),
                0u32,
                "a whole number",
            )?),
        };
        let timeout_secs: u64 = parse(
            "CONVERSA_MODEL_TIMEOUT_SECS",
            get("CONVERSA_MODEL_TIMEOUT_SECS"),
            120,
            "a number of seconds",
        )?;
        if timeout_secs == 0 {
            return Err(ConfigError {
                var: "CONVERSA_MODEL_TIMEOUT_SECS",
                message: "must be greater than 0".into(),
            });
        }
        let first_token_secs: u64 = parse(
            "CONVERSA_FIRST_TOKEN_TIMEOUT_SECS",
            get("CONVERSA_FIRST_TOKEN_TIMEOUT_SECS"),
            30,
            "a number of seconds",
        )?;
        if first_token_secs == 0 {
            return Err(ConfigError {
                var: "CONVERSA_FIRST_TOKEN_TIMEOUT_SECS",
                message: "must be greater than 0".into(),
            });
        }
        let auth = crate::auth::config::from_lookup(&get)?;
        let tiers = crate::ledger::Tiers::parse(get("CONVERSA_TIERS").as_deref())?;
        if !tiers.contains(&auth.default_tier) {
            return Err(ConfigError {
                var: "CONVERSA_DEFAULT_TIER",
                message: format!(
                    "{:?} is not a tier; CONVERSA_TIERS defines {}",
                    auth.default_tier,
                    tiers.names().join(", ")
                ),
            });
        }
        let prices = crate::llm::PriceTable::parse(get("CONVERSA_PRICES").as_deref())?;
        let metrics_emf = crate::metrics::enabled_from(&get).map_err(|message| ConfigError {
            var: "CONVERSA_METRICS_EMF",
            message,
        })?;
        let metrics_namespace =
            crate::metrics::namespace_from(&get).map_err(|message| ConfigError {
                var: "CONVERSA_METRICS_NAMESPACE",
                message,
            })?;
        let otlp = crate::traces::OtlpSettings::from_lookup(&get)?;
        let data_dir = PathBuf::from(get("CONVERSA_DATA_DIR").unwrap_or_else(|| "./data".into()));
        Ok(Self {
            bind,
            data_dir,
            frontend_dir: PathBuf::from(
                get("CONVERSA_FRONTEND_DIR").unwrap_or_else(|| "frontend/dist".into()),
            ),
            openai_api_key: get("OPENAI_API_KEY"),
            openai_api_key_parameter: get("OPENAI_API_KEY_PARAMETER"),
            openai_base_url: get("OPENAI_BASE_URL").map(|u| u.trim_end_matches('/').to_owned()),
            chat_model: get("CONVERSA_CHAT_MODEL").unwrap_or_else(|| "gpt-4o".into()),
            title_model: get("CONVERSA_TITLE_MODEL").unwrap_or_else(|| "gpt-4o-mini".into()),
            chat_model_set: get("CONVERSA_CHAT_MODEL"),
            title_model_set: get("CONVERSA_TITLE_MODEL"),
            models_file: get("CONVERSA_MODELS_FILE").map(PathBuf::from),
            models_json: get("CONVERSA_MODELS"),
            first_token_timeout: Duration::from_secs(first_token_secs),
            history_messages,
            max_upload_bytes,
            rate_limit_per_minute,
            system_prompt: get("CONVERSA_SYSTEM_PROMPT")
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.into()),
            max_answer_tokens,
            model_timeout: Duration::from_secs(timeout_secs),
            auth,
            store: choice(
                "CONVERSA_STORE",
                get("CONVERSA_STORE"),
                StoreKind::Sqlite,
                &[
                    ("sqlite", StoreKind::Sqlite),
                    ("dynamodb", StoreKind::DynamoDb),
                    ("mongodb", StoreKind::MongoDb),
                ],
            )?,
            blobs: choice(
                "CONVERSA_BLOBS",
                get("CONVERSA_BLOBS"),
                BlobsKind::Local,
                &[("local", BlobsKind::Local), ("s3", BlobsKind::S3)],
            )?,
            limiter: choice(
                "CONVERSA_LIMITER",
                get("CONVERSA_LIMITER"),
                LimiterKind::Memory,
                &[
                    ("memory", LimiterKind::Memory),
                    ("dynamodb", LimiterKind::DynamoDb),
                    ("redis", LimiterKind::Redis),
                ],
            )?,
            dynamodb_table: get("CONVERSA_DYNAMODB_TABLE").unwrap_or_else(|| "conversa".into()),
            s3_bucket: get("CONVERSA_S3_BUCKET"),
            mongodb_uri: get("MONGODB_URI"),
            mongodb_db: get("CONVERSA_MONGODB_DB").unwrap_or_else(|| "conversa".into()),
            redis_url: get("REDIS_URL"),
            jobs_queue_url: get("CONVERSA_JOBS_QUEUE_URL"),
            local_model: get("CONVERSA_LOCAL_MODEL").map(PathBuf::from),
            embed: crate::embed::EmbedSettings {
                kind: {
                    use crate::embed::EmbedderKind;
                    let built = if cfg!(feature = "embedder") {
                        EmbedderKind::Auto
                    } else {
                        EmbedderKind::Off
                    };
                    choice(
                        "CONVERSA_EMBEDDER",
                        get("CONVERSA_EMBEDDER"),
                        built,
                        &[
                            ("minilm", EmbedderKind::MiniLm),
                            ("lambda", EmbedderKind::Lambda),
                            ("off", EmbedderKind::Off),
                        ],
                    )?
                },
                model_dir: get("CONVERSA_EMBED_MODEL").map(PathBuf::from),
                lazy: false,
                function: get("CONVERSA_EMBED_FUNCTION"),
            },
            memory: choice(
                "CONVERSA_MEMORY",
                get("CONVERSA_MEMORY"),
                false,
                &[("on", true), ("off", false)],
            )?,
            context_tokens: match get("CONVERSA_CONTEXT_TOKENS") {
                None => None,
                Some(s) => Some(parse(
                    "CONVERSA_CONTEXT_TOKENS",
                    Some(s),
                    0u64,
                    "a number of tokens",
                )?)
                .filter(|n| *n > 0),
            },
            file_context_share: {
                let share: f64 = parse(
                    "CONVERSA_FILE_CONTEXT_SHARE",
                    get("CONVERSA_FILE_CONTEXT_SHARE"),
                    0.5,
                    "a number between 0 and 1",
                )?;
                if !(share > 0.0 && share <= 1.0) {
                    return Err(ConfigError {
                        var: "CONVERSA_FILE_CONTEXT_SHARE",
                        message: format!("{share} is not between 0 and 1"),
                    });
                }
                share
            },
            inline_max_bytes: parse(
                "CONVERSA_INLINE_MAX_BYTES",
                get("CONVERSA_INLINE_MAX_BYTES"),
                2 * 1024 * 1024,
                "a number of bytes",
            )?,
            inline_max_pages: parse(
                "CONVERSA_INLINE_MAX_PAGES",
                get("CONVERSA_INLINE_MAX_PAGES"),
                50,
                "a whole number",
            )?,
            download_redirect_bytes: parse(
                "CONVERSA_DOWNLOAD_REDIRECT_BYTES",
                get("CONVERSA_DOWNLOAD_REDIRECT_BYTES"),
                0,
                "a number of bytes",
            )?,
            job_concurrency: {
                let n: usize = parse(
                    "CONVERSA_JOB_CONCURRENCY",
                    get("CONVERSA_JOB_CONCURRENCY"),
                    2,
                    "a whole number",
                )?;
                if n == 0 {
                    return Err(ConfigError {
                        var: "CONVERSA_JOB_CONCURRENCY",
                        message: "must be at least 1".into(),
                    });
                }
                n
            },
            origin_secret: get("CONVERSA_ORIGIN_SECRET"),
            tiers,
            prices,
            metrics_emf,
            metrics_namespace,
            metrics_bind: match get("CONVERSA_METRICS_BIND") {
                None => None,
                Some(s) => Some(parse(
                    "CONVERSA_METRICS_BIND",
                    Some(s),
                    SocketAddr::from(([127, 0, 0, 1], 9090)),
                    "an address like 127.0.0.1:9090",
                )?),
            },
            otlp,
        })
    }

    /// Whether a remote OpenAI-compatible provider is configured (a key, a key's parameter or an
    /// endpoint).
    pub fn uses_remote_model(&self) -> bool {
        self.openai_api_key.is_some()
            || self.openai_api_key_parameter.is_some()
            || self.openai_base_url.is_some()
    }
}

/// The system prompt unless `CONVERSA_SYSTEM_PROMPT` says otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are Conversa, a helpful assistant. Answer clearly and concisely in Markdown. \
When the user attaches files, their text is given to you between <file> tags: base your answer on it, quote it when useful, \
and cite the file name and page or sheet you used.";

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.chat_model, "gpt-4o");
        assert_eq!(c.title_model, "gpt-4o-mini");
        assert_eq!(c.history_messages, 20);
        assert_eq!(c.max_upload_bytes, 10_485_760);
        assert_eq!(c.rate_limit_per_minute, 30);
        assert!(!c.uses_remote_model());
        assert_eq!(c.store, StoreKind::Sqlite);
        assert_eq!(c.download_redirect_bytes, 0);
        assert!(!c.memory, "memory is off by default");
        assert!(cfg(&[("CONVERSA_MEMORY", "on")]).unwrap().memory);
        assert!(!cfg(&[("CONVERSA_MEMORY", "off")]).unwrap().memory);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, val) in [
            ("CONVERSA_BIND", "nope"),
            ("CONVERSA_MAX_UPLOAD_BYTES", "ten"),
            ("CONVERSA_HISTORY_MESSAGES", "-1"),
            ("CONVERSA_RATE_LIMIT_PER_MINUTE", "x"),
            ("CONVERSA_STORE", "oracle"),
            ("CONVERSA_AUTH_TOKENS", "alice"),
            ("CONVERSA_FILE_CONTEXT_SHARE", "1.5"),
            ("CONVERSA_CONTEXT_TOKENS", "lots"),
            ("CONVERSA_DOWNLOAD_REDIRECT_BYTES", "-5"),
            ("CONVERSA_FIRST_TOKEN_TIMEOUT_SECS", "0"),
            ("CONVERSA_METRICS_EMF", "sometimes"),
            ("CONVERSA_METRICS_BIND", "port 9090"),
            ("CONVERSA_MEMORY", "yes"),
        ] {
            let e = cfg(&[(var, val)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().starts_with(var), "{e}");
        }
    }

    #[test]
    fn an_unknown_default_tier_stops_the_start() {
        let e = cfg(&[("CONVERSA_DEFAULT_TIER", "gold")]).unwrap_err();
        assert_eq!(e.var, "CONVERSA_DEFAULT_TIER");
        let e = cfg(&[
            ("CONVERSA_TIERS", r#"{"free": {"tokens_per_day": 10}}"#),
            ("CONVERSA_DEFAULT_TIER", "pro"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "CONVERSA_DEFAULT_TIER");
        assert!(e.message.contains("default, free"), "{e}");
        let c = cfg(&[
            ("CONVERSA_TIERS", r#"{"free": {"tokens_per_day": 10}}"#),
            ("CONVERSA_DEFAULT_TIER", "free"),
        ])
        .unwrap();
        assert_eq!(c.auth.default_tier, "free");
        assert_eq!(c.tiers.limits("free", "default").tokens_per_day, Some(10));
    }

    #[test]
    fn tiers_and_prices_that_do_not_parse_stop_the_start() {
        for (var, val) in [
            ("CONVERSA_TIERS", r#"{"free": {"tokens_per_day": -1}}"#),
            ("CONVERSA_TIERS", r#"{"free": {"tokens_per_day": "many"}}"#),
            ("CONVERSA_PRICES", r#"{"gpt-4o": 2.5}"#),
            ("CONVERSA_PRICES", "{"),
        ] {
            let e = cfg(&[(var, val)]).unwrap_err();
            assert_eq!(e.var, var, "{val}");
        }
    }

    #[test]
    fn auth_tokens_map_token_to_user() {
        let c = cfg(&[(
            "CONVERSA_AUTH_TOKENS",
            "alice:0123456789abcdef0123, bob:fedcba98765432100000",
        )])
        .unwrap();
        assert_eq!(c.auth.mode, crate::auth::AuthMode::Tokens);
        let map = c.auth.tokens;
        assert_eq!(
            map.get("0123456789abcdef0123").map(String::as_str),
            Some("alice")
        );
        assert_eq!(map.len(), 2);
    }
}

//! The models on offer, by id: each with its adapter, provider, the provider's name for it, whether
//! it reads images, its context window, its price and its fallbacks.
//!
//! Models come from `CONVERSA_MODELS_FILE`, a JSON list:
//!
//! ```json
//! [{"id": "sonnet", "provider": "anthropic", "model": "claude-sonnet-4-5", "vision": true,
//!   "context_tokens": 200000, "price": {"input": 3, "output": 15}, "fallbacks": ["nova"],
//!   "default": true, "name": "Claude Sonnet"},
//!  {"id": "nova", "provider": "bedrock", "model": "amazon.nova-pro-v1:0", "region": "us-east-1"}]
//! ```
//!
//! or, without it, from the single-model variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
//! `CONVERSA_CHAT_MODEL`, `CONVERSA_TITLE_MODEL`). Where the offline model is built in, it is listed
//! as `local` whenever its file is there (loaded on first use), and it is the default when nothing
//! else is configured. Every mistake stops the start with the entry named.
//!
//! [`Registry::stream`] answers with a model and, when it fails before its first token (it could
//! not be reached, timed out, was rate limited or failed on its side: [`LlmError::may_fall_back`]),
//! with each of its fallbacks in turn, a fallback's own fallbacks after it. Never after the first
//! token: an answer comes from one model.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{without_images, ApiKey, ChatEvent, ChatModel, ChatRequest, ChatStream, LlmError};
use crate::config::Config;
use crate::traces::{ModelCall, TurnTrace};

/// The variable the models file is named by.
const FILE_VAR: &str = "CONVERSA_MODELS_FILE";
/// The variable that holds the list itself (where shipping a file is awkward, as on Lambda).
const INLINE_VAR: &str = "CONVERSA_MODELS";
/// The id the offline model is listed under when the configuration does not name it.
pub const LOCAL_ID: &str = "local";
/// The context window assumed for a model nobody gave one for.
const FALLBACK_CONTEXT_TOKENS: u64 = 8_192;
/// The offline model's file text per request, in tokens: one passage of a long file (the one
/// retrieval ranks best; a passage holds about `retrieval::CHUNK_TOKENS`, 350), so that its prompt
/// stays within a few seconds of reading (about 480 tokens in all: a first token in ~4.5 s).
pub const OFFLINE_FILE_TOKENS: u64 = 360;

/// Who serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Any OpenAI-compatible endpoint (OpenAI, Azure-compatible proxies, Ollama, vLLM, Gemini's
    /// compatible endpoint).
    OpenAi,
    /// The Anthropic Messages API.
    Anthropic,
    /// Amazon Bedrock ConverseStream (IAM credentials, no key).
    Bedrock,
    /// The offline model, in this process.
    Local,
}

impl Provider {
    /// Its name in the models file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Bedrock => "bedrock",
            Provider::Local => "local",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Provider::OpenAi,
            Provider::Anthropic,
            Provider::Bedrock,
            Provider::Local,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    pub input: f64,
    /// Per million answer tokens.
    pub output: f64,
}

/// One model on offer.
pub struct ModelEntry {
    /// What requests call it (`model` in a chat request).
    pub id: String,
    /// What people see.
    pub name: String,
    /// Who serves it.
    pub provider: Provider,
    /// The provider's name for it (for the offline model, its file name without `.gguf`).
    pub model: String,
    /// Whether it reads images (images sent to a model that does not are replaced by a sentence
    /// naming them).
    pub vision: bool,
    /// Its context window, in tokens.
    pub context_tokens: u64,
    /// The most file text one request to it carries, in tokens; `None`: its window's file share
    /// (`CONVERSA_FILE_CONTEXT_SHARE`). A small model reads a long prompt slowly and gains little
    /// from it, so the offline model takes [`OFFLINE_FILE_TOKENS`] unless told otherwise.
    pub file_tokens: Option<u64>,
    /// Its price, when known.
    pub price: Option<Price>,
    /// The ids tried, in order, when it fails before its first token.
    pub fallbacks: Vec<String>,
    /// Whether it answers requests that name no model.
    pub default: bool,
    /// The answer cap when the request sets none.
    pub max_tokens: Option<u32>,
    /// The adapter.
    pub chat: Arc<dyn ChatModel>,
}

impl std::fmt::Debug for ModelEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelEntry")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("vision", &self.vision)
            .field("context_tokens", &self.context_tokens)
            .field("file_tokens", &self.file_tokens)
            .field("fallbacks", &self.fallbacks)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl ModelEntry {
    /// An entry for `chat` under `id` (the provider's name `model`), with no fallbacks, no price,
    /// no vision and the context window known for `model` (else 8192): adjust the fields as needed.
    pub fn new(id: &str, provider: Provider, model: &str, chat: Arc<dyn ChatModel>) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            provider,
            model: model.to_owned(),
            vision: false,
            context_tokens: crate::tokens::known_context_window(model)
                .unwrap_or(FALLBACK_CONTEXT_TOKENS),
            file_tokens: None,
            price: None,
            fallbacks: Vec::new(),
            default: false,
            max_tokens: None,
            chat,
        }
    }

    /// `provider model`, for `/health` and logs: never an address or a key.
    pub fn describe(&self) -> String {
        format!("{} {}", self.provider, self.model)
    }

    /// The request as this model gets it: its own name for itself, its answer cap when the request
    /// has none, and no images when it cannot read them.
    fn prepare(&self, request: &ChatRequest) -> ChatRequest {
        ChatRequest {
            model: self.model.clone(),
            messages: if self.vision {
                request.messages.clone()
            } else {
                without_images(&request.messages)
            },
            max_tokens: request.max_tokens.or(self.max_tokens),
            temperature: request.temperature,
        }
    }
}

/// A configuration of models that cannot be used; the start stops with it.
#[derive(Debug, Clone)]
pub struct RegistryError {
    /// The variable whose value is wrong (`CONVERSA_MODELS_FILE`, `CONVERSA_CHAT_MODEL`, …).
    pub var: &'static str,
    /// The id of the entry at fault, when one is.
    pub entry: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.entry {
            Some(id) => write!(f, "{}: model {id:?}: {}", self.var, self.message),
            None => write!(f, "{}: {}", self.var, self.message),
        }
    }
}

impl std::error::Error for RegistryError {}

impl RegistryError {
    fn of(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            entry: None,
            message: message.into(),
        }
    }

    fn entry(entry: &str, message: impl Into<String>) -> Self {
        Self {
            var: FILE_VAR,
            entry: Some(entry.to_owned()),
            message: message.into(),
        }
    }
}

/// A `model` no entry has: the request is refused naming the ones there are.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown model {requested:?}; available: {}", available.join(", "))]
pub struct UnknownModel {
    /// What was asked for.
    pub requested: String,
    /// Every id, in the registry's order.
    pub available: Vec<String>,
}

/// A stream and the model that gives it.
pub struct Answering {
    /// The model that answers (the one asked for, or the fallback that took over).
    pub model: Arc<ModelEntry>,
    /// Its answer, from the first token (or `Done`) on.
    pub stream: ChatStream,
}

/// The models on offer, by id.
pub struct Registry {
    entries: Vec<Arc<ModelEntry>>,
    by_id: HashMap<String, usize>,
    /// Per entry, the entries tried in order: itself, then its fallbacks (depth first, once each).
    chains: Vec<Vec<usize>>,
    default: usize,
    title: usize,
    first_token_timeout: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("entries", &self.entries)
            .field("default", &self.entries[self.default].id)
            .field("title", &self.entries[self.title].id)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The models the configuration names (keys from the process environment, AWS credentials
    /// from the standard chain).
    pub async fn from_config(config: &Config) -> Result<Self, RegistryError> {
        Self::builder(config).build().await
    }

    /// A builder, for other sources of keys and AWS settings (tests).
    pub fn builder(config: &Config) -> RegistryBuilder<'_> {
        RegistryBuilder {
            config,
            env: Box::new(|k| std::env::var(k).ok()),
            #[cfg(feature = "bedrock")]
            aws: None,
        }
    }

    /// A registry of ready entries: `default_id` answers requests that name no model and
    /// `title_id` writes titles (both default to the first entry). Fallbacks must name entries and
    /// form no cycle.
    pub fn from_entries(
        entries: Vec<ModelEntry>,
        default_id: Option<&str>,
        title_id: Option<&str>,
        first_token_timeout: Duration,
    ) -> Result<Self, RegistryError> {
        if entries.is_empty() {
            return Err(RegistryError::of(FILE_VAR, "no models are configured"));
        }
        let mut by_id = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if by_id.insert(e.id.clone(), i).is_some() {
                return Err(RegistryError::entry(&e.id, "the id is used twice"));
            }
        }
        let graph: Vec<(String, Vec<String>)> = entries
            .iter()
            .map(|e| (e.id.clone(), e.fallbacks.clone()))
            .collect();
        check_fallbacks(&graph)?;
        let pick = |var: &'static str, id: Option<&str>| match id {
            None => Ok(0),
            Some(id) => by_id.get(id).copied().ok_or_else(|| {
                RegistryError::of(
                    var,
                    format!(
                        "{id:?} is not a configured model; available: {}",
                        graph
                            .iter()
                            .map(|(id, _)| id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }),
        };
        let default = pick("CONVERSA_CHAT_MODEL", default_id)?;
        let title = pick("CONVERSA_TITLE_MODEL", title_id)?;
        let chains = (0..entries.len())
            .map(|i| {
                let mut chain = Vec::new();
                walk(i, &entries, &by_id, &mut chain);
                chain
            })
            .collect();
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.default = i == default;
                Arc::new(e)
            })
            .collect();
        Ok(Self {
            entries,
            by_id,
            chains,
            default,
            title,
            first_token_timeout,
        })
    }

    /// One model under `id`, the default and the title model (tests, custom deployments).
    pub fn single(id: &str, provider: Provider, chat: Arc<dyn ChatModel>) -> Self {
        let mut entry = ModelEntry::new(id, provider, id, chat);
        entry.default = true;
        Self {
            entries: vec![Arc::new(entry)],
            by_id: HashMap::from([(id.to_owned(), 0)]),
            chains: vec![vec![0]],
            default: 0,
            title: 0,
            first_token_timeout: Duration::from_secs(30),
        }
    }

    /// The model with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<ModelEntry>> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// The model that answers requests naming none.
    pub fn default(&self) -> &Arc<ModelEntry> {
        &self.entries[self.default]
    }

    /// The model that writes titles.
    pub fn title_model(&self) -> &Arc<ModelEntry> {
        &self.entries[self.title]
    }

    /// Every model, in the configuration's order.
    pub fn list(&self) -> &[Arc<ModelEntry>] {
        &self.entries
    }

    /// Every id, in order.
    pub fn ids(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.id.clone()).collect()
    }

    /// The model a request asks for (`None`: the default).
    pub fn resolve(&self, requested: Option<&str>) -> Result<&Arc<ModelEntry>, UnknownModel> {
        match requested {
            None => Ok(self.default()),
            Some(id) => self.get(id).ok_or_else(|| UnknownModel {
                requested: id.to_owned(),
                available: self.ids(),
            }),
        }
    }

    /// The default model, as `/health` shows it: provider and model name only.
    pub fn describe(&self) -> String {
        self.default().describe()
    }

    /// How long a model with fallbacks may take to its first token.
    pub fn first_token_timeout(&self) -> Duration {
        self.first_token_timeout
    }

    /// The models tried for `id`, in order: itself, then its fallbacks.
    pub fn chain(&self, id: &str) -> Vec<&Arc<ModelEntry>> {
        match self.by_id.get(id) {
            Some(&i) => self.chains[i].iter().map(|&j| &self.entries[j]).collect(),
            None => Vec::new(),
        }
    }

    /// Streams an answer from model `id`, or from its fallbacks when it fails before its first
    /// token (see [`LlmError::may_fall_back`]; a model that has a next one to try gets
    /// [`first_token_timeout`](Self::first_token_timeout) to start). Each fallback is logged with
    /// its reason. The error is the last model's when none could answer.
    pub async fn stream(&self, id: &str, request: ChatRequest) -> Result<Answering, LlmError> {
        self.stream_in(id, request, &TurnTrace::none()).await
    }

    /// [`stream`](Self::stream), each model tried recorded as a `chat {model}` span under
    /// `trace` (ended when its answer ends, fails, or is dropped).
    pub async fn stream_in(
        &self,
        id: &str,
        request: ChatRequest,
        trace: &TurnTrace,
    ) -> Result<Answering, LlmError> {
        let mut chain = self.chain(id).into_iter().peekable();
        while let Some(entry) = chain.next() {
            let next = chain.peek();
            let prepared = entry.prepare(&request);
            let mut call = trace.model_call(entry, &prepared);
            let attempt = first_item(entry, prepared);
            let result = match next {
                Some(_) => tokio::time::timeout(self.first_token_timeout, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(LlmError::Unreachable(format!(
                            "no answer within {} s",
                            self.first_token_timeout.as_secs_f32()
                        )))
                    }),
                None => attempt.await,
            };
            match (result, next) {
                (Ok((first, rest)), _) => {
                    return Ok(Answering {
                        model: Arc::clone(entry),
                        stream: traced(call, first, rest),
                    })
                }
                (Err(e), Some(next)) if e.may_fall_back() => {
                    call.failed(&e);
                    tracing::warn!(
                        model = %entry.id,
                        fell_back_to = %next.id,
                        reason = %e,
                        "the model failed before its first token; trying the next"
                    );
                }
                (Err(e), _) => {
                    call.failed(&e);
                    return Err(e);
                }
            }
        }
        Err(LlmError::Invalid(
            UnknownModel {
                requested: id.to_owned(),
                available: self.ids(),
            }
            .to_string(),
        ))
    }

    /// A whole answer from model `id` (or a fallback), the model that gave it, and the usage the
    /// provider reported (titles).
    pub async fn complete(
        &self,
        id: &str,
        request: ChatRequest,
    ) -> Result<(Arc<ModelEntry>, String, Option<super::Usage>), LlmError> {
        self.complete_in(id, request, &TurnTrace::none()).await
    }

    /// [`complete`](Self::complete), its model calls recorded under `trace`.
    pub async fn complete_in(
        &self,
        id: &str,
        request: ChatRequest,
        trace: &TurnTrace,
    ) -> Result<(Arc<ModelEntry>, String, Option<super::Usage>), LlmError> {
        let answering = self.stream_in(id, request, trace).await?;
        let mut stream = answering.stream;
        let mut out = String::new();
        let mut usage = None;
        while let Some(event) = stream.next().await {
            match event? {
                ChatEvent::Delta(t) => out.push_str(&t),
                ChatEvent::Queued(_) => {}
                ChatEvent::Done { usage: u, .. } => {
                    usage = u;
                    break;
                }
            }
        }
        Ok((answering.model, out, usage))
    }
}

/// Starts `entry` on `request` (prepared for it) and waits for its first event: a failure before
/// it is an error.
async fn first_item(
    entry: &ModelEntry,
    request: ChatRequest,
) -> Result<(ChatEvent, ChatStream), LlmError> {
    let mut stream = entry.chat.stream(request).await?;
    match stream.next().await {
        Some(Ok(first)) => Ok((first, stream)),
        Some(Err(e)) => Err(e),
        None => Err(LlmError::Unreachable(
            "the answer ended before it began".into(),
        )),
    }
}

/// The answer from its first event on, told to `call` as it goes: the first piece, the end, a
/// failure (or, dropped before its end, a cancellation).
fn traced(call: ModelCall, first: ChatEvent, rest: ChatStream) -> ChatStream {
    futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .scan(call, |call, item| {
            match &item {
                Ok(ChatEvent::Delta(_)) => call.first_chunk(),
                Ok(ChatEvent::Done {
                    finish_reason,
                    usage,
                }) => call.finished(finish_reason, *usage),
                Ok(ChatEvent::Queued(_)) => {}
                Err(e) => call.failed(e),
            }
            futures::future::ready(Some(item))
        })
        .boxed()
}

/// Depth first through the fallbacks, each entry once.
fn walk(i: usize, entries: &[ModelEntry], by_id: &HashMap<String, usize>, out: &mut Vec<usize>) {
    if out.contains(&i) {
        return;
    }
    out.push(i);
    for f in &entries[i].fallbacks {
        if let Some(&j) = by_id.get(f) {
            walk(j, entries, by_id, out);
        }
    }
}

/// Every fallback names an entry, and no chain of fallbacks comes back to where it started.
fn check_fallbacks(graph: &[(String, Vec<String>)]) -> Result<(), RegistryError> {
    let index: HashMap<&str, usize> = graph
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    for (id, fallbacks) in graph {
        for f in fallbacks {
            if !index.contains_key(f.as_str()) {
                return Err(RegistryError::entry(
                    id,
                    format!("fallback {f:?} is not a configured model"),
                ));
            }
        }
    }
    // 0 unseen, 1 on the current path, 2 done.
    let mut state = vec![0u8; graph.len()];
    fn visit(
        i: usize,
        graph: &[(String, Vec<String>)],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Result<(), RegistryError> {
        state[i] = 1;
        path.push(i);
        for f in &graph[i].1 {
            let j = index[f.as_str()];
            match state[j] {
                1 => {
                    let start = path.iter().position(|&p| p == j).unwrap_or(0);
                    let mut names: Vec<&str> =
                        path[start..].iter().map(|&p| graph[p].0.as_str()).collect();
                    names.push(graph[j].0.as_str());
                    return Err(RegistryError::entry(
                        &graph[j].0,
                        format!("the fallbacks form a cycle: {}", names.join(" → ")),
                    ));
                }
                0 => visit(j, graph, index, state, path)?,
                _ => {}
            }
        }
        path.pop();
        state[i] = 2;
        Ok(())
    }
    for i in 0..graph.len() {
        if state[i] == 0 {
            visit(i, graph, &index, &mut state, &mut Vec::new())?;
        }
    }
    Ok(())
}

/// Whether a model is known to read images (an entry's `vision` says so when set).
pub fn known_vision(provider: Provider, model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    let claude = m.contains("claude") && !m.contains("claude-2") && !m.contains("claude-instant");
    match provider {
        Provider::OpenAi => {
            [
                "gpt-4o",
                "gpt-4.1",
                "gpt-4.5",
                "gpt-5",
                "o4",
                "chatgpt-4o",
                "gpt-4-turbo",
            ]
            .iter()
            .any(|p| m.starts_with(p))
                || ((m.starts_with("o1") || m.starts_with("o3")) && !m.contains("mini"))
                || claude
        }
        Provider::Anthropic => claude,
        Provider::Bedrock => {
            claude
                || [
                    "amazon.nova-lite",
                    "amazon.nova-pro",
                    "amazon.nova-premier",
                    "llama3-2-11b",
                    "llama3-2-90b",
                    "llama4",
                    "pixtral",
                ]
                .iter()
                .any(|p| m.contains(p))
        }
        Provider::Local => false,
    }
}

/// Where key variables are read.
type Env<'a> = Box<dyn Fn(&str) -> Option<String> + Send + Sync + 'a>;

/// The entries of a configuration, with the ids of its default and title models when it names them.
type Listed = (Vec<Checked>, Option<String>, Option<String>);

/// Builds a [`Registry`] from a configuration.
pub struct RegistryBuilder<'a> {
    config: &'a Config,
    env: Env<'a>,
    #[cfg(feature = "bedrock")]
    aws: Option<aws_config::SdkConfig>,
}

/// One entry of the models file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    id: String,
    provider: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    vision: Option<bool>,
    #[serde(default)]
    context_tokens: Option<u64>,
    #[serde(default)]
    file_tokens: Option<u64>,
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_concurrent: Option<usize>,
}

/// An entry checked and ready to get its adapter.
#[derive(Debug)]
struct Checked {
    id: String,
    name: Option<String>,
    provider: Provider,
    model: String,
    base_url: Option<String>,
    region: Option<String>,
    key: ApiKey,
    /// The key variable and the SSM parameter that holds its key, whose read starts before the
    /// adapters are built.
    key_parameter: Option<(String, String)>,
    vision: Option<bool>,
    context_tokens: Option<u64>,
    file_tokens: Option<u64>,
    price: Option<Price>,
    fallbacks: Vec<String>,
    default: bool,
    max_tokens: Option<u32>,
    max_concurrent: Option<usize>,
    /// The offline model's file.
    #[cfg_attr(not(feature = "local-model"), allow(dead_code))]
    path: Option<PathBuf>,
    /// Load the offline model now (it is the only model) rather than on first use.
    #[cfg_attr(not(feature = "local-model"), allow(dead_code))]
    eager: bool,
}

impl Checked {
    fn new(id: &str, provider: Provider, model: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: None,
            provider,
            model: model.to_owned(),
            base_url: None,
            region: None,
            key: ApiKey::none(),
            key_parameter: None,
            vision: None,
            context_tokens: None,
            file_tokens: None,
            price: None,
            fallbacks: Vec::new(),
            default: false,
            max_tokens: None,
            max_concurrent: None,
            path: None,
            eager: false,
        }
    }
}

impl<'a> RegistryBuilder<'a> {
    /// Where key variables (`api_key_env`) are read (default: the process environment).
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'a) -> Self {
        self.env = Box::new(env);
        self
    }

    /// The AWS settings Bedrock clients start from (default: the standard chain, loaded once).
    #[cfg(feature = "bedrock")]
    pub fn aws_config(mut self, sdk: aws_config::SdkConfig) -> Self {
        self.aws = Some(sdk);
        self
    }

    /// Checks every entry, then builds the adapters.
    pub async fn build(self) -> Result<Registry, RegistryError> {
        // Mistakes in the list are named after the variable it came from.
        let source = if self.config.models_json.is_some() {
            INLINE_VAR
        } else {
            FILE_VAR
        };
        self.build_from().await.map_err(|mut e| {
            if e.var == FILE_VAR {
                e.var = source;
            }
            e
        })
    }

    async fn build_from(self) -> Result<Registry, RegistryError> {
        let config = self.config;
        let listed = match (&config.models_file, &config.models_json) {
            (Some(_), Some(_)) => {
                return Err(RegistryError::of(
                    INLINE_VAR,
                    "set CONVERSA_MODELS or CONVERSA_MODELS_FILE, not both",
                ))
            }
            (Some(path), None) => Some(read_file(path)?),
            (None, Some(json)) => Some(parse_list(json, "the list")?),
            (None, None) => None,
        };
        let (mut checked, default_id, title_id) = match listed {
            Some(specs) => {
                let checked = specs
                    .into_iter()
                    .map(|s| self.check(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let flagged: Vec<&str> = checked
                    .iter()
                    .filter(|c| c.default)
                    .map(|c| c.id.as_str())
                    .collect();
                if flagged.len() > 1 {
                    return Err(RegistryError::of(
                        FILE_VAR,
                        format!("more than one model is the default: {}", flagged.join(", ")),
                    ));
                }
                // The variable wins over the file's flag, so a deployment can pick its default.
                let default_id = config
                    .chat_model_set
                    .clone()
                    .or_else(|| flagged.first().map(|s| (*s).to_owned()));
                (checked, default_id, config.title_model_set.clone())
            }
            None => self.single_model_variables()?,
        };
        // Keys kept in SSM parameters: each parameter's read starts once, here, and the models'
        // first calls wait for it.
        let mut read: HashMap<String, ApiKey> = HashMap::new();
        for c in &mut checked {
            if let Some((var, name)) = c.key_parameter.take() {
                let key = match read.get(&name) {
                    Some(k) => k.clone(),
                    None => {
                        let k = ApiKey::parameter(&name).map_err(|m| {
                            RegistryError::entry(&c.id, format!("{var}_PARAMETER: {m}"))
                        })?;
                        read.insert(name, k.clone());
                        k
                    }
                };
                c.key = key;
            }
        }
        let mut ids = HashSet::new();
        for c in &checked {
            if !ids.insert(c.id.as_str()) {
                return Err(RegistryError::entry(&c.id, "the id is used twice"));
            }
        }
        let graph: Vec<(String, Vec<String>)> = checked
            .iter()
            .map(|c| (c.id.clone(), c.fallbacks.clone()))
            .collect();
        check_fallbacks(&graph)?;
        if !checked.iter().any(|c| c.provider == Provider::Local) {
            if let Some(local) = offline_extra(config, &ids) {
                checked.push(local);
            }
        }
        let mut entries = Vec::with_capacity(checked.len());
        let mut adapters = Adapters::default();
        for c in checked {
            entries.push(self.adapt(c, &mut adapters).await?);
        }
        Registry::from_entries(
            entries,
            default_id.as_deref(),
            title_id.as_deref(),
            config.first_token_timeout,
        )
    }

    /// The single-model variables: the OpenAI-compatible provider when a key or an endpoint is set
    /// (the chat model and, when another, the title model), else the offline model where built in.
    fn single_model_variables(&self) -> Result<Listed, RegistryError> {
        let config = self.config;
        if let Some(url) = &config.openai_base_url {
            check_url(url).map_err(|m| RegistryError::of("OPENAI_BASE_URL", m))?;
        }
        // Images go to a model these variables name unless it is an OpenAI model known not to
        // read them (a models file says `vision` per model).
        let vision = |name: &str| {
            known_vision(Provider::OpenAi, name)
                || crate::tokens::known_context_window(name).is_none()
        };
        // OPENAI_API_KEY, or the SSM parameter OPENAI_API_KEY_PARAMETER names.
        let openai_key = config
            .openai_api_key
            .as_deref()
            .map_or_else(ApiKey::none, ApiKey::value);
        let openai_key_parameter = match (&config.openai_api_key, &config.openai_api_key_parameter)
        {
            (None, Some(name)) => Some(("OPENAI_API_KEY".to_owned(), name.clone())),
            _ => None,
        };
        let remote = || {
            let mut chat = Checked::new(&config.chat_model, Provider::OpenAi, &config.chat_model);
            chat.base_url = config.openai_base_url.clone();
            chat.key = openai_key.clone();
            chat.key_parameter = openai_key_parameter.clone();
            chat.vision = Some(vision(&config.chat_model));
            // CONVERSA_CONTEXT_TOKENS is the chat model's window.
            chat.context_tokens = config.context_tokens;
            let mut entries = vec![chat];
            if config.title_model != config.chat_model {
                let mut title =
                    Checked::new(&config.title_model, Provider::OpenAi, &config.title_model);
                title.base_url = config.openai_base_url.clone();
                title.key = openai_key.clone();
                title.key_parameter = openai_key_parameter.clone();
                title.vision = Some(vision(&config.title_model));
                entries.push(title);
            }
            (
                entries,
                Some(config.chat_model.clone()),
                Some(config.title_model.clone()),
            )
        };
        if config.uses_remote_model() {
            return Ok(remote());
        }
        #[cfg(feature = "local-model")]
        {
            use crate::llm::local::{DEFAULT_MODEL_PATH, FETCH_SCRIPT};
            let path = config
                .local_model
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_PATH));
            if !path.is_file() {
                let (var, what) = match &config.local_model {
                    Some(_) => (
                        "CONVERSA_LOCAL_MODEL",
                        format!("{} does not exist", path.display()),
                    ),
                    None => (
                        FILE_VAR,
                        format!(
                            "no model: the default local model {} is missing and \
                             CONVERSA_LOCAL_MODEL is not set",
                            path.display()
                        ),
                    ),
                };
                return Err(RegistryError::of(
                    var,
                    format!(
                        "{what}. Run {FETCH_SCRIPT} to fetch SmolLM2-135M-Instruct (98 MB), point \
                         CONVERSA_LOCAL_MODEL at a GGUF chat model, set OPENAI_API_KEY or \
                         OPENAI_BASE_URL to use a remote provider, or list models in \
                         CONVERSA_MODELS_FILE."
                    ),
                ));
            }
            let mut local = Checked::new(LOCAL_ID, Provider::Local, "");
            local.path = Some(path);
            local.eager = true;
            Ok((vec![local], None, None))
        }
        #[cfg(not(feature = "local-model"))]
        {
            tracing::warn!(
                "no model configured: set OPENAI_API_KEY, OPENAI_BASE_URL or CONVERSA_MODELS_FILE"
            );
            Ok(remote())
        }
    }

    /// One entry of the file, checked (everything but its links to the others).
    fn check(&self, s: Spec) -> Result<Checked, RegistryError> {
        let id = s.id.clone();
        let bad = |m: String| RegistryError::entry(&id, m);
        if id.trim().is_empty()
            || id != id.trim()
            || id.chars().count() > 100
            || id.chars().any(char::is_control)
        {
            return Err(bad(
                "an id is 1 to 100 characters, with no space at either end".into(),
            ));
        }
        let provider = Provider::parse(&s.provider).ok_or_else(|| {
            bad(format!(
                "unknown provider {:?} (one of openai, anthropic, bedrock, local)",
                s.provider
            ))
        })?;
        if provider == Provider::Bedrock && !cfg!(feature = "bedrock") {
            return Err(bad(
                "the bedrock provider is not built into this binary (feature `bedrock`)".into(),
            ));
        }
        if provider == Provider::Local && !cfg!(feature = "local-model") {
            return Err(bad(
                "the offline model is not built into this binary (feature `local-model`)".into(),
            ));
        }
        if let Some(url) = &s.base_url {
            check_url(url).map_err(|m| bad(format!("base_url: {m}")))?;
        }
        if s.region.is_some() && provider != Provider::Bedrock {
            return Err(bad("region applies to bedrock models only".into()));
        }
        if s.context_tokens == Some(0) {
            return Err(bad("context_tokens must be greater than 0".into()));
        }
        if s.file_tokens == Some(0) {
            return Err(bad("file_tokens must be greater than 0".into()));
        }
        if s.max_tokens == Some(0) {
            return Err(bad("max_tokens must be greater than 0".into()));
        }
        if s.max_concurrent == Some(0) {
            return Err(bad("max_concurrent must be greater than 0".into()));
        }
        if let Some(p) = &s.price {
            if !(p.input.is_finite() && p.output.is_finite() && p.input >= 0.0 && p.output >= 0.0) {
                return Err(bad(
                    "price: input and output are USD per million tokens, 0 or more".into(),
                ));
            }
        }
        // A key variable holds the key, or `<VAR>_PARAMETER` names an SSM SecureString holding it.
        let lookup = |var: &str| -> Result<Key, RegistryError> {
            let get = |k: &str| {
                (self.env)(k)
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
            };
            match (get(var), get(&format!("{var}_PARAMETER"))) {
                (Some(key), _) => Ok(Key::Value(key)),
                (None, Some(name)) => Ok(Key::Parameter(var.to_owned(), name)),
                (None, None) => Err(bad(format!("api_key_env: {var} is not set"))),
            }
        };
        let key = match (provider, &s.api_key_env) {
            (Provider::Bedrock, Some(_)) => {
                return Err(bad(
                    "bedrock models use AWS credentials (IAM), not api_key_env".into(),
                ))
            }
            (Provider::Local, Some(_)) => return Err(bad("the offline model takes no key".into())),
            (_, Some(var)) => Some(lookup(var)?),
            (Provider::Anthropic, None) => Some(lookup("ANTHROPIC_API_KEY").map_err(|mut e| {
                e.message
                    .push_str(" (or name the variable that holds the key with api_key_env)");
                e
            })?),
            (Provider::OpenAi, None) => {
                // OpenAI's own endpoint needs a key; a local server (Ollama, vLLM) usually none.
                let config = self.config;
                match (&config.openai_api_key, &config.openai_api_key_parameter) {
                    (Some(key), _) => Some(Key::Value(key.clone())),
                    (None, Some(name)) => Some(Key::Parameter("OPENAI_API_KEY".into(), name.clone())),
                    (None, None) if s.base_url.is_none() => return Err(bad(
                        "the OpenAI endpoint needs a key: set OPENAI_API_KEY or name the variable with api_key_env"
                            .into(),
                    )),
                    (None, None) => None,
                }
            }
            (_, None) => None,
        };
        if provider == Provider::Local && s.base_url.is_some() {
            return Err(bad("the offline model has no base_url".into()));
        }
        let mut c = Checked::new(&id, provider, s.model.as_deref().unwrap_or(&id));
        if provider == Provider::Local {
            // `model` is the GGUF file; by default the one the server would load.
            let path = match &s.model {
                Some(p) => PathBuf::from(p),
                None => offline_path(self.config),
            };
            if !path.is_file() {
                return Err(bad(format!(
                    "the offline model's file {} does not exist",
                    path.display()
                )));
            }
            c.path = Some(path);
        }
        c.name = s.name.filter(|n| !n.trim().is_empty());
        c.base_url = s.base_url;
        c.region = s.region;
        match key {
            Some(Key::Value(k)) => c.key = ApiKey::value(&k),
            Some(Key::Parameter(var, name)) => c.key_parameter = Some((var, name)),
            None => {}
        }
        c.vision = s.vision;
        c.context_tokens = s.context_tokens;
        c.file_tokens = s.file_tokens;
        c.price = s.price;
        c.fallbacks = s.fallbacks;
        c.default = s.default;
        c.max_tokens = s.max_tokens;
        c.max_concurrent = s.max_concurrent;
        Ok(c)
    }

    /// The adapter of a checked entry.
    async fn adapt(
        &self,
        c: Checked,
        adapters: &mut Adapters,
    ) -> Result<ModelEntry, RegistryError> {
        let bad = |m: String| RegistryError::entry(&c.id, m);
        let (chat, model, context): (Arc<dyn ChatModel>, String, Option<u64>) = match c.provider {
            Provider::OpenAi => {
                let shared_key = (c.key.identity(), c.base_url.clone());
                let chat = match adapters.openai.get(&shared_key) {
                    Some(a) => Arc::clone(a),
                    None => {
                        let a: Arc<dyn ChatModel> = Arc::new(
                            super::openai::OpenAiModel::keyed(
                                c.key.clone(),
                                c.base_url.as_deref(),
                                &c.model,
                            )
                            .map_err(|e| bad(e.to_string()))?,
                        );
                        adapters.openai.insert(shared_key, Arc::clone(&a));
                        a
                    }
                };
                (chat, c.model.clone(), None)
            }
            Provider::Anthropic => {
                let chat = super::anthropic::AnthropicModel::keyed(
                    c.key.clone(),
                    c.base_url.as_deref(),
                    &c.model,
                    c.max_tokens,
                )
                .map_err(|e| bad(e.to_string()))?;
                (Arc::new(chat), c.model.clone(), None)
            }
            #[cfg(feature = "bedrock")]
            Provider::Bedrock => {
                let sdk = match &self.aws {
                    Some(sdk) => sdk,
                    None => crate::aws::sdk_config().await,
                };
                if c.region.is_none() && sdk.region().is_none() {
                    return Err(bad(
                        "no region: set region on the entry, or AWS_REGION".into()
                    ));
                }
                let key = (c.region.clone(), c.base_url.clone());
                let client = adapters
                    .bedrock
                    .entry(key)
                    .or_insert_with(|| {
                        super::bedrock::client(sdk, c.region.as_deref(), c.base_url.as_deref())
                    })
                    .clone();
                (
                    Arc::new(super::bedrock::BedrockModel::new(client, &c.model)),
                    c.model.clone(),
                    None,
                )
            }
            #[cfg(feature = "local-model")]
            Provider::Local => {
                let path = c.path.clone().unwrap_or_else(|| offline_path(self.config));
                let offline = offline::Offline::new(path, c.eager)
                    .await
                    .map_err(|e| bad(e.to_string()))?;
                let (name, window) = (offline.name().to_owned(), offline.context_window());
                (Arc::new(offline), name, Some(window as u64))
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(bad(format!(
                    "the {other} provider is not built into this binary"
                )))
            }
        };
        // The offline model serves a few answers at once; any model may be given a limit. The
        // answers past it wait in line, told their place.
        let slots = match c.provider {
            #[cfg(feature = "local-model")]
            Provider::Local => Some(c.max_concurrent.unwrap_or(super::local::DEFAULT_SLOTS)),
            _ => c.max_concurrent,
        };
        let chat: Arc<dyn ChatModel> = match slots {
            Some(n) => Arc::new(super::queue::QueuedModel::new(chat, n)),
            None => chat,
        };
        let vision = c.vision.unwrap_or_else(|| known_vision(c.provider, &model));
        let name = c.name.clone().unwrap_or_else(|| match c.provider {
            Provider::Local => format!("{model} (offline)"),
            _ => c.id.clone(),
        });
        // The entry's own price, else the price table's; the offline model costs nothing.
        let price = c.price.or_else(|| match c.provider {
            Provider::Local => Some(Price {
                input: 0.0,
                output: 0.0,
            }),
            _ => self.config.prices.lookup(&c.id, &model),
        });
        Ok(ModelEntry {
            id: c.id,
            name,
            provider: c.provider,
            context_tokens: c
                .context_tokens
                .or(context)
                .or_else(|| crate::tokens::known_context_window(&model))
                .unwrap_or(FALLBACK_CONTEXT_TOKENS),
            file_tokens: c.file_tokens.or(match c.provider {
                Provider::Local => Some(OFFLINE_FILE_TOKENS),
                _ => None,
            }),
            model,
            vision,
            price,
            fallbacks: c.fallbacks,
            default: c.default,
            max_tokens: c.max_tokens,
            chat,
        })
    }
}

/// Clients shared by the entries that can share them.
#[derive(Default)]
struct Adapters {
    openai: HashMap<(Option<String>, Option<String>), Arc<dyn ChatModel>>,
    #[cfg(feature = "bedrock")]
    bedrock: HashMap<(Option<String>, Option<String>), aws_sdk_bedrockruntime::Client>,
}

/// A key as configured.
enum Key {
    /// The key itself.
    Value(String),
    /// The key variable, and the SSM parameter that holds the key.
    Parameter(String, String),
}

/// The models file, parsed: each entry's mistakes are reported with its id (or its position).
fn read_file(path: &Path) -> Result<Vec<Spec>, RegistryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RegistryError::of(FILE_VAR, format!("cannot read {}: {e}", path.display())))?;
    parse_list(&text, &path.display().to_string())
}

/// A JSON list of models (`what` names it in errors).
fn parse_list(text: &str, what: &str) -> Result<Vec<Spec>, RegistryError> {
    let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        RegistryError::of(
            FILE_VAR,
            format!("{what} is not a JSON list of models: {e}"),
        )
    })?;
    if items.is_empty() {
        return Err(RegistryError::of(
            FILE_VAR,
            format!("{what} lists no models"),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let id = item
                .get("id")
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("#{}", i + 1), str::to_owned);
            serde_json::from_value::<Spec>(item)
                .map_err(|e| RegistryError::entry(&id, e.to_string()))
        })
        .collect()
}

/// An endpoint address: http or https, with a host.
fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        // The address is not repeated: it could hold a credential.
        Ok(_) => Err("not an http or https address".into()),
        Err(e) => Err(format!("not a valid address ({e})")),
    }
}

/// The offline model's file: `CONVERSA_LOCAL_MODEL`, else the default.
fn offline_path(config: &Config) -> PathBuf {
    #[cfg(feature = "local-model")]
    let default = crate::llm::local::DEFAULT_MODEL_PATH;
    #[cfg(not(feature = "local-model"))]
    let default = "";
    config
        .local_model
        .clone()
        .unwrap_or_else(|| PathBuf::from(default))
}

/// The offline model as an extra entry (loaded on first use) when it is built in, its file is
/// there and its id is free.
fn offline_extra(config: &Config, ids: &HashSet<&str>) -> Option<Checked> {
    if !cfg!(feature = "local-model") || ids.contains(LOCAL_ID) {
        return None;
    }
    let path = offline_path(config);
    if !path.is_file() {
        return None;
    }
    let mut local = Checked::new(LOCAL_ID, Provider::Local, "");
    local.path = Some(path);
    Some(local)
}

#[cfg(feature = "local-model")]
mod offline {
    //! The offline model behind the registry: loaded at start when it is the only model, else on
    //! first use (a server that answers with a remote model does not pay its memory until then).

    use std::path::PathBuf;
    use std::sync::Arc;

    use async_trait::async_trait;
    use tokio::sync::OnceCell;

    use crate::llm::local::LocalModel;
    use crate::llm::{ChatModel, ChatRequest, ChatStream, LlmError};

    pub(super) struct Offline {
        path: PathBuf,
        name: String,
        context_window: usize,
        loaded: OnceCell<Arc<LocalModel>>,
    }

    impl Offline {
        pub(super) async fn new(path: PathBuf, eager: bool) -> Result<Self, LlmError> {
            let loaded = OnceCell::new();
            let (name, context_window) = if eager {
                let model = LocalModel::load_async(path.clone()).await?;
                tracing::info!(
                    model = model.name(),
                    path = %model.path().display(),
                    load_ms = model.load_time().as_millis() as u64,
                    context_window = model.context_window(),
                    "local model loaded"
                );
                let found = (model.name().to_owned(), model.context_window());
                let _ = loaded.set(Arc::new(model));
                found
            } else {
                let p = path.clone();
                tokio::task::spawn_blocking(move || LocalModel::peek(&p))
                    .await
                    .map_err(|e| {
                        LlmError::Invalid(format!("reading the local model stopped: {e}"))
                    })??
            };
            Ok(Self {
                path,
                name,
                context_window,
                loaded,
            })
        }

        pub(super) fn name(&self) -> &str {
            &self.name
        }

        pub(super) fn context_window(&self) -> usize {
            self.context_window
        }
    }

    #[async_trait]
    impl ChatModel for Offline {
        fn describe(&self) -> String {
            format!("local {}", self.name)
        }

        async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
            let model = self
                .loaded
                .get_or_try_init(|| async {
                    let model = LocalModel::load_async(self.path.clone()).await?;
                    tracing::info!(
                        model = model.name(),
                        load_ms = model.load_time().as_millis() as u64,
                        "local model loaded on first use"
                    );
                    Ok::<_, LlmError>(Arc::new(model))
                })
                .await?;
            model.stream(request).await
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;

    use super::*;

    /// A configuration from `vars`, with the offline model's file pointed nowhere (so it is not
    /// listed unless a test gives one).
    fn config(vars: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = HashMap::from([(
            "CONVERSA_LOCAL_MODEL".to_owned(),
            "/nonexistent/model.gguf".to_owned(),
        )]);
        for (k, v) in vars {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_lookup(|k| map.get(k).cloned()).unwrap()
    }

    /// A models file with `text`, and the configuration naming it.
    fn with_file(text: &str, vars: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.json");
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        let mut vars = vars.to_vec();
        vars.push(("CONVERSA_MODELS_FILE", &path));
        let c = config(&vars);
        (dir, c)
    }

    async fn build(config: &Config, env: &[(&str, &str)]) -> Result<Registry, RegistryError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let builder = Registry::builder(config).env(move |k| env.get(k).cloned());
        #[cfg(feature = "bedrock")]
        let builder = builder.aws_config(crate::testing::bedrock::sdk_config("us-east-1"));
        builder.build().await
    }

    async fn mistake(text: &str, env: &[(&str, &str)]) -> RegistryError {
        let (_dir, c) = with_file(text, &[]);
        build(&c, env).await.unwrap_err()
    }

    #[tokio::test]
    async fn the_single_model_variables_give_the_chat_and_the_title_model() {
        let c = config(&[("OPENAI_API_KEY", "sk-test")]);
        let r = build(&c, &[]).await.unwrap();
        assert_eq!(r.ids(), ["gpt-4o", "gpt-4o-mini"]);
        let chat = r.default();
        assert_eq!(
            (chat.id.as_str(), chat.provider),
            ("gpt-4o", Provider::OpenAi)
        );
        assert!(chat.default && chat.vision);
        assert_eq!(chat.context_tokens, 128_000);
        assert_eq!(r.title_model().id, "gpt-4o-mini");
        assert!(!r.title_model().default);
        assert_eq!(r.describe(), "openai gpt-4o");
    }

    #[tokio::test]
    async fn prices_come_from_the_entry_then_the_table_then_the_built_in_list() {
        let c = config(&[("OPENAI_API_KEY", "sk-test")]);
        let r = build(&c, &[]).await.unwrap();
        let price = |r: &Registry, id: &str| r.get(id).unwrap().price;
        assert_eq!(
            price(&r, "gpt-4o"),
            Some(Price {
                input: 2.5,
                output: 10.0
            }),
            "built in"
        );
        let c = config(&[
            ("OPENAI_API_KEY", "sk-test"),
            (
                "CONVERSA_PRICES",
                r#"{"gpt-4o-mini": {"input": 0.1, "output": 0.5}}"#,
            ),
        ]);
        let r = build(&c, &[]).await.unwrap();
        assert_eq!(
            price(&r, "gpt-4o-mini"),
            Some(Price {
                input: 0.1,
                output: 0.5
            }),
            "CONVERSA_PRICES overrides"
        );
        let (_dir, c) = with_file(
            r#"[{"id": "mine", "provider": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:1/v1",
                 "price": {"input": 1, "output": 2}},
                {"id": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:1/v1"},
                {"id": "ollama", "provider": "openai", "model": "llama3.2", "base_url": "http://127.0.0.1:1/v1"}]"#,
            &[],
        );
        let r = build(&c, &[]).await.unwrap();
        assert_eq!(
            price(&r, "mine"),
            Some(Price {
                input: 1.0,
                output: 2.0
            }),
            "the entry's own price wins"
        );
        assert_eq!(price(&r, "gpt").map(|p| p.input), Some(2.5));
        assert_eq!(price(&r, "ollama"), None, "no price known: cost_usd null");
    }

    #[tokio::test]
    async fn one_name_for_chat_and_titles_is_one_model() {
        let c = config(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("CONVERSA_CHAT_MODEL", "llama3.2"),
            ("CONVERSA_TITLE_MODEL", "llama3.2"),
            ("CONVERSA_CONTEXT_TOKENS", "32768"),
        ]);
        let r = build(&c, &[]).await.unwrap();
        assert_eq!(r.ids(), ["llama3.2"]);
        assert_eq!(r.title_model().id, "llama3.2");
        assert_eq!(r.default().context_tokens, 32_768);
        assert!(
            r.default().vision,
            "images go to a model these variables name"
        );
        let c = config(&[
            ("OPENAI_API_KEY", "k"),
            ("CONVERSA_CHAT_MODEL", "gpt-3.5-turbo"),
        ]);
        assert!(
            !build(&c, &[]).await.unwrap().default().vision,
            "known not to read them"
        );
    }

    #[tokio::test]
    async fn a_bad_openai_base_url_is_named() {
        let c = config(&[("OPENAI_BASE_URL", "localhost:11434")]);
        let e = build(&c, &[]).await.unwrap_err();
        assert_eq!(e.var, "OPENAI_BASE_URL");
    }

    const GOOD: &str = r#"[
        {"id": "sonnet", "provider": "anthropic", "model": "claude-sonnet-4-5", "name": "Claude Sonnet",
         "context_tokens": 200000, "price": {"input": 3, "output": 15}, "fallbacks": ["gpt", "llama"],
         "max_tokens": 2048},
        {"id": "gpt", "provider": "openai", "model": "gpt-4.1", "api_key_env": "MY_OPENAI_KEY", "default": true},
        {"id": "llama", "provider": "openai", "base_url": "http://127.0.0.1:11434/v1", "vision": true,
         "file_tokens": 1500}
    ]"#;

    #[tokio::test]
    async fn a_models_file_lists_its_models_in_order() {
        let (_dir, c) = with_file(GOOD, &[("CONVERSA_TITLE_MODEL", "llama")]);
        let r = build(
            &c,
            &[
                ("ANTHROPIC_API_KEY", "sk-ant"),
                ("MY_OPENAI_KEY", "sk-openai"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(r.ids(), ["sonnet", "gpt", "llama"]);
        assert_eq!(r.default().id, "gpt");
        assert_eq!(r.title_model().id, "llama");
        let sonnet = r.get("sonnet").unwrap();
        assert_eq!(sonnet.name, "Claude Sonnet");
        assert_eq!(sonnet.provider, Provider::Anthropic);
        assert_eq!(sonnet.model, "claude-sonnet-4-5");
        assert!(sonnet.vision, "known for Claude");
        assert_eq!(sonnet.context_tokens, 200_000);
        assert_eq!(
            sonnet.price,
            Some(Price {
                input: 3.0,
                output: 15.0
            })
        );
        assert_eq!(sonnet.max_tokens, Some(2048));
        assert!(!sonnet.default);
        let llama = r.get("llama").unwrap();
        assert_eq!(
            (llama.model.as_str(), llama.name.as_str()),
            ("llama", "llama")
        );
        assert!(llama.vision, "the file says so");
        assert_eq!(llama.context_tokens, 8_192);
        assert_eq!(llama.file_tokens, Some(1500));
        assert_eq!(sonnet.file_tokens, None, "its window's share");
        assert_eq!(
            r.chain("sonnet")
                .iter()
                .map(|e| e.id.as_str())
                .collect::<Vec<_>>(),
            ["sonnet", "gpt", "llama"]
        );
        assert!(r.list().iter().all(|e| !e.describe().contains("://")));
    }

    #[tokio::test]
    async fn the_chat_model_variable_picks_the_default_among_the_files_models() {
        let (_dir, c) = with_file(GOOD, &[("CONVERSA_CHAT_MODEL", "sonnet")]);
        let r = build(
            &c,
            &[
                ("ANTHROPIC_API_KEY", "sk-ant"),
                ("MY_OPENAI_KEY", "sk-openai"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(r.default().id, "sonnet");
        assert!(r.get("sonnet").unwrap().default);
        assert!(!r.get("gpt").unwrap().default);
        assert_eq!(r.title_model().id, "sonnet", "titles follow the default");
    }

    #[tokio::test]
    async fn the_list_can_be_the_variables_value_and_its_mistakes_name_it() {
        let list = r#"[{"id": "a", "provider": "openai", "base_url": "http://127.0.0.1:1/v1"}]"#;
        let r = build(&config(&[("CONVERSA_MODELS", list)]), &[])
            .await
            .unwrap();
        assert_eq!(r.ids(), ["a"]);
        let e = build(
            &config(&[("CONVERSA_MODELS", r#"[{"id": "a", "provider": "gpt"}]"#)]),
            &[],
        )
        .await
        .unwrap_err();
        assert_eq!((e.var, e.entry.as_deref()), ("CONVERSA_MODELS", Some("a")));
        let e = build(&config(&[("CONVERSA_MODELS", "{")]), &[])
            .await
            .unwrap_err();
        assert_eq!(e.var, "CONVERSA_MODELS");
        let (_dir, c) = with_file(list, &[("CONVERSA_MODELS", list)]);
        let e = build(&c, &[]).await.unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
    }

    #[tokio::test]
    async fn a_key_variable_may_name_its_parameter_instead() {
        // The parameter is read after every entry is checked: a mistake elsewhere still comes first.
        let e = mistake(
            r#"[{"id": "claude", "provider": "anthropic"}, {"id": "x", "provider": "azure"}]"#,
            &[("ANTHROPIC_API_KEY_PARAMETER", "/conversa/anthropic-key")],
        )
        .await;
        assert_eq!(e.entry.as_deref(), Some("x"));
    }

    #[tokio::test]
    async fn a_file_that_does_not_parse_stops_the_start() {
        let e = mistake(r#"[{"id": "a", "provider": "openai""#, &[]).await;
        assert_eq!((e.var, e.entry.as_deref()), (FILE_VAR, None));
        assert!(e.message.contains("not a JSON list of models"), "{e}");
        assert!(e.message.contains("line"), "{e}");
    }

    #[tokio::test]
    async fn a_misspelt_field_names_its_entry() {
        let e = mistake(
            r#"[{"id": "a", "provider": "openai", "bse_url": "http://x"}]"#,
            &[],
        )
        .await;
        assert_eq!(e.entry.as_deref(), Some("a"));
        assert!(e.message.contains("bse_url"), "{e}");
    }

    #[tokio::test]
    async fn an_unknown_provider_names_its_entry() {
        let e = mistake(r#"[{"id": "az", "provider": "azure"}]"#, &[]).await;
        assert_eq!(e.entry.as_deref(), Some("az"));
        assert!(e.message.contains("unknown provider \"azure\""), "{e}");
        assert_eq!(
            e.to_string(),
            "CONVERSA_MODELS_FILE: model \"az\": unknown provider \"azure\" (one of openai, anthropic, bedrock, local)"
        );
    }

    #[tokio::test]
    async fn a_duplicate_id_names_it() {
        let e = mistake(
            r#"[{"id": "m", "provider": "openai", "base_url": "http://127.0.0.1:1/v1"},
                {"id": "m", "provider": "openai", "base_url": "http://127.0.0.1:2/v1"}]"#,
            &[],
        )
        .await;
        assert_eq!(e.entry.as_deref(), Some("m"));
        assert!(e.message.contains("used twice"), "{e}");
    }

    #[tokio::test]
    async fn an_unknown_fallback_names_its_entry() {
        let e = mistake(
            r#"[{"id": "m", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "fallbacks": ["n"]}]"#,
            &[],
        )
        .await;
        assert_eq!(e.entry.as_deref(), Some("m"));
        assert!(e.message.contains("fallback \"n\""), "{e}");
    }

    #[tokio::test]
    async fn a_fallback_cycle_is_named() {
        let e = mistake(
            r#"[{"id": "a", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "fallbacks": ["b"]},
                {"id": "b", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "fallbacks": ["c"]},
                {"id": "c", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "fallbacks": ["a"]}]"#,
            &[],
        )
        .await;
        assert_eq!(e.entry.as_deref(), Some("a"));
        assert!(e.message.contains("a → b → c → a"), "{e}");
        let e = mistake(
            r#"[{"id": "self", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "fallbacks": ["self"]}]"#,
            &[],
        )
        .await;
        assert!(e.message.contains("self → self"), "{e}");
    }

    #[tokio::test]
    async fn an_unset_key_variable_is_named() {
        let e = mistake(
            r#"[{"id": "gpt", "provider": "openai", "api_key_env": "TEAM_OPENAI_KEY"}]"#,
            &[],
        )
        .await;
        assert_eq!(e.entry.as_deref(), Some("gpt"));
        assert!(e.message.contains("TEAM_OPENAI_KEY is not set"), "{e}");
    }

    #[tokio::test]
    async fn an_anthropic_model_needs_its_key() {
        let e = mistake(r#"[{"id": "claude", "provider": "anthropic"}]"#, &[]).await;
        assert_eq!(e.entry.as_deref(), Some("claude"));
        assert!(e.message.contains("ANTHROPIC_API_KEY is not set"), "{e}");
    }

    #[tokio::test]
    async fn openais_own_endpoint_needs_a_key() {
        let e = mistake(r#"[{"id": "gpt", "provider": "openai"}]"#, &[]).await;
        assert_eq!(e.entry.as_deref(), Some("gpt"));
        assert!(e.message.contains("needs a key"), "{e}");
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_without_repeating_it() {
        let e = mistake(
            r#"[{"id": "gw", "provider": "openai", "base_url": "ftp://user:secret@gw.internal/v1"}]"#,
            &[],
        )
        .await;
        assert_eq!(e.entry.as_deref(), Some("gw"));
        assert!(e.message.contains("base_url"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = mistake(
            r#"[{"id": "gw", "provider": "anthropic", "base_url": "not a url"}]"#,
            &[("ANTHROPIC_API_KEY", "k")],
        )
        .await;
        assert!(e.message.contains("base_url: not a valid address"), "{e}");
    }

    #[tokio::test]
    async fn two_defaults_are_refused() {
        let e = mistake(
            r#"[{"id": "a", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "default": true},
                {"id": "b", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "default": true}]"#,
            &[],
        )
        .await;
        assert!(
            e.message
                .contains("more than one model is the default: a, b"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_chat_and_title_variables_must_name_listed_models() {
        let file = r#"[{"id": "a", "provider": "openai", "base_url": "http://127.0.0.1:1/v1"}]"#;
        let (_dir, c) = with_file(file, &[("CONVERSA_CHAT_MODEL", "gpt-4o")]);
        let e = build(&c, &[]).await.unwrap_err();
        assert_eq!(e.var, "CONVERSA_CHAT_MODEL");
        assert!(e.message.contains("available: a"), "{e}");
        let (_dir, c) = with_file(file, &[("CONVERSA_TITLE_MODEL", "gpt-4o-mini")]);
        assert_eq!(
            build(&c, &[]).await.unwrap_err().var,
            "CONVERSA_TITLE_MODEL"
        );
    }

    #[tokio::test]
    async fn a_missing_or_empty_file_stops_the_start() {
        let c = config(&[("CONVERSA_MODELS_FILE", "/nonexistent/models.json")]);
        let e = build(&c, &[]).await.unwrap_err();
        assert!(e.message.starts_with("cannot read"), "{e}");
        let e = mistake("[]", &[]).await;
        assert!(e.message.contains("lists no models"), "{e}");
    }

    #[tokio::test]
    async fn settings_that_do_not_fit_the_provider_are_refused() {
        for (file, says) in [
            (
                r#"[{"id": "b", "provider": "bedrock", "api_key_env": "K"}]"#,
                "IAM",
            ),
            (
                r#"[{"id": "o", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "region": "us-east-1"}]"#,
                "region applies to bedrock",
            ),
            (
                r#"[{"id": "o", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "context_tokens": 0}]"#,
                "context_tokens",
            ),
            (
                r#"[{"id": "o", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "file_tokens": 0}]"#,
                "file_tokens",
            ),
            (
                r#"[{"id": "o", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "price": {"input": -1, "output": 1}}]"#,
                "price",
            ),
        ] {
            let e = mistake(file, &[("K", "v")]).await;
            assert!(e.entry.is_some(), "{e}");
            assert!(e.message.contains(says), "{file}: {e}");
        }
    }

    #[cfg(feature = "bedrock")]
    #[tokio::test]
    async fn a_bedrock_model_needs_a_region() {
        let (_dir, c) = with_file(
            r#"[{"id": "nova", "provider": "bedrock", "model": "amazon.nova-pro-v1:0"}]"#,
            &[],
        );
        let no_region = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let e = Registry::builder(&c)
            .env(|_| None)
            .aws_config(no_region.clone())
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.entry.as_deref(), Some("nova"));
        assert!(e.message.contains("no region"), "{e}");

        let (_dir, c) = with_file(
            r#"[{"id": "nova", "provider": "bedrock", "model": "amazon.nova-pro-v1:0", "region": "eu-west-1"}]"#,
            &[],
        );
        let r = Registry::builder(&c)
            .env(|_| None)
            .aws_config(no_region)
            .build()
            .await
            .unwrap();
        let nova = r.default();
        assert_eq!(
            (nova.provider, nova.model.as_str()),
            (Provider::Bedrock, "amazon.nova-pro-v1:0")
        );
        assert!(nova.vision);
        assert_eq!(r.describe(), "bedrock amazon.nova-pro-v1:0");
    }

    #[cfg(feature = "local-model")]
    #[tokio::test]
    async fn the_offline_model_is_listed_when_its_file_is_there() {
        use candle_core::quantized::gguf_file;
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("Tiny-Chat.gguf");
        let mut f = std::fs::File::create(&gguf).unwrap();
        gguf_file::write(
            &mut f,
            &[
                (
                    "general.architecture",
                    &gguf_file::Value::String("llama".into()),
                ),
                ("llama.context_length", &gguf_file::Value::U32(2048)),
            ],
            &[],
        )
        .unwrap();
        drop(f);
        let gguf = gguf.display().to_string();
        let (_d, c) = with_file(
            r#"[{"id": "gpt", "provider": "openai", "base_url": "http://127.0.0.1:1/v1"}]"#,
            &[("CONVERSA_LOCAL_MODEL", &gguf)],
        );
        let r = build(&c, &[]).await.unwrap();
        assert_eq!(r.ids(), ["gpt", "local"]);
        let local = r.get("local").unwrap();
        assert_eq!(local.provider, Provider::Local);
        assert_eq!(local.model, "Tiny-Chat");
        assert_eq!(local.name, "Tiny-Chat (offline)");
        assert_eq!(local.context_tokens, 2048);
        assert_eq!(local.file_tokens, Some(OFFLINE_FILE_TOKENS));
        assert_eq!(r.get("gpt").unwrap().file_tokens, None);
        assert!(!local.vision && !local.default);
        assert_eq!(r.default().id, "gpt");

        // Without its file it is simply not there.
        let (_d, c) = with_file(
            r#"[{"id": "gpt", "provider": "openai", "base_url": "http://127.0.0.1:1/v1"}]"#,
            &[],
        );
        assert_eq!(build(&c, &[]).await.unwrap().ids(), ["gpt"]);
    }

    #[test]
    fn vision_is_known_for_the_common_families() {
        assert!(known_vision(Provider::OpenAi, "gpt-4o-mini"));
        assert!(!known_vision(Provider::OpenAi, "o3-mini"));
        assert!(!known_vision(Provider::OpenAi, "llama3.2"));
        assert!(known_vision(Provider::Anthropic, "claude-3-5-haiku-latest"));
        assert!(known_vision(
            Provider::Bedrock,
            "us.anthropic.claude-sonnet-4-20250514-v1:0"
        ));
        assert!(!known_vision(Provider::Bedrock, "amazon.nova-micro-v1:0"));
        assert!(!known_vision(Provider::Local, "SmolLM2"));
    }
}

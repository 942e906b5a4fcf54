//! `ChatModel` on a GGUF model run in-process with candle: the offline default of the local server
//! (SmolLM2-135M-Instruct unless `CONVERSA_LOCAL_MODEL` names another llama-architecture GGUF chat model).
//!
//! The weights are loaded once and shared; each answer clones the model handle (the quantized weights are
//! reference-counted, only the attention cache is per answer) and runs on a blocking thread, never on the
//! async workers. Answers stream token by token and stop at the end-of-turn token, at the answer cap or at
//! the end of the context window. Dropping the stream cancels the generation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use futures::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::{ChatEvent, ChatModel, ChatRequest, ChatStream, LlmError, Usage};

pub mod llama;
pub mod requant;
pub mod template;
pub mod tokenizer;

use llama::{Llama, MAX_SEQ_LEN};
use template::ChatTemplate;
use tokenizer::{GgufTokenizer, StreamDecoder};

/// Where the default model lives, relative to the working directory.
pub const DEFAULT_MODEL_PATH: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The script that fetches the default model.
pub const FETCH_SCRIPT: &str = "scripts/fetch-model.sh";

/// Answer cap when the request sets none.
pub const DEFAULT_MAX_ANSWER_TOKENS: usize = 1024;
/// Temperature when the request sets none (SmolLM2's recommended setting).
pub const DEFAULT_TEMPERATURE: f64 = 0.2;
/// Nucleus sampling mass when sampling (ignored when greedy).
pub const TOP_P: f64 = 0.9;
/// Penalty on tokens the answer already used (1.0 = none); keeps a small model out of loops.
pub const REPEAT_PENALTY: f32 = 1.1;
/// How many of the answer's latest tokens the penalty looks at.
pub const REPEAT_LAST_N: usize = 64;
/// Prompt tokens fed per forward pass: bounds the attention scratch memory and lets a cancelled
/// request stop between chunks.
pub const PREFILL_CHUNK: usize = 128;
/// Answers generated at once. Two cores gain nothing from more; further requests wait their turn.
pub const MAX_CONCURRENT: usize = 2;
/// Answers the server has the offline model generate at once unless the models file says
/// otherwise (`max_concurrent`). One: each answer uses every core (candle's threads), so two at
/// once each take longer than twice one; the next waits in line, told its place (`queued`).
pub const DEFAULT_SLOTS: usize = 1;

/// How the weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// As stored in the file.
    AsStored,
    /// Q4_1 tensors re-encoded as Q8_0 at load (see `requant`), other types as stored: the default,
    /// because candle has run-time-dispatched SIMD kernels for Q8_0 and only a scalar loop for Q4_1
    /// (measured 3× faster decode and 6× faster prompt reading in a portable build, for about 55 MB
    /// more memory with SmolLM2-135M).
    #[default]
    Q4_1AsQ8_0,
}

/// The model, loaded once.
struct Shared {
    weights: Llama,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    context_window: usize,
    name: String,
}

/// A GGUF chat model running in this process.
pub struct LocalModel {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    path: PathBuf,
    load_time: Duration,
    seed: AtomicU64,
}

/// Sampling settings of one answer.
#[derive(Debug, Clone, Copy)]
struct Params {
    max_new: usize,
    temperature: f64,
    seed: u64,
}

/// The context length a GGUF file's model was trained with (2,048 when the header does not say).
fn trained_context(content: &gguf_file::Content) -> usize {
    content
        .metadata
        .get("llama.context_length")
        .and_then(|v| v.to_u32().ok())
        .map_or(2048, |n| n as usize)
}

/// What a model file is called: its name without the extension.
fn model_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "local model".into())
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> LlmError {
    LlmError::Invalid(format!(
        "CONVERSA_LOCAL_MODEL: {} cannot be used: {what}",
        path.display()
    ))
}

fn failed(e: impl std::fmt::Display) -> LlmError {
    LlmError::Upstream {
        status: None,
        message: format!("the local model failed: {e}"),
    }
}

impl LocalModel {
    /// Loads a GGUF file (blocking: call it from a blocking context). Supported: llama-architecture
    /// models with a byte-level BPE tokenizer and a ChatML or Llama 3 chat template.
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        Self::load_with(path, WeightFormat::default())
    }

    /// Loads with the weights held in `format`.
    pub fn load_with(path: &Path, format: WeightFormat) -> Result<Self, LlmError> {
        let started = Instant::now();
        let file = std::fs::File::open(path).map_err(|e| invalid(path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let mut content = gguf_file::Content::read(&mut reader).map_err(|e| invalid(path, e))?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" {
            return Err(invalid(
                path,
                format!("its architecture is `{arch}`; only `llama` GGUF models are supported"),
            ));
        }
        let tokenizer = GgufTokenizer::from_gguf(&content).map_err(|e| invalid(path, e))?;
        let chat_template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let template = ChatTemplate::detect(chat_template.as_deref(), |n| tokenizer.token_id(n))
            .map_err(|e| invalid(path, e))?;
        let trained = trained_context(&content);
        // The rotary tables cover MAX_SEQ_LEN positions.
        let context_window = trained.clamp(16, MAX_SEQ_LEN);
        let weights = match format {
            WeightFormat::AsStored => Llama::from_gguf(content, &mut reader, &Device::Cpu),
            WeightFormat::Q4_1AsQ8_0 => {
                let (mut virtual_file, _) = requant::requantize_q4_1(&mut content, reader);
                Llama::from_gguf(content, &mut virtual_file, &Device::Cpu)
            }
        }
        .map_err(|e| invalid(path, e))?;
        let name = model_name(path);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Self {
            shared: Arc::new(Shared {
                weights,
                tokenizer,
                template,
                context_window,
                name,
            }),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            path: path.to_owned(),
            load_time: started.elapsed(),
            seed: AtomicU64::new(seed),
        })
    }

    /// The name and context window of a GGUF file without loading its weights (only the header is
    /// read; blocking).
    pub fn peek(path: &Path) -> Result<(String, usize), LlmError> {
        let file = std::fs::File::open(path).map_err(|e| invalid(path, e))?;
        let content = gguf_file::Content::read(&mut std::io::BufReader::new(file))
            .map_err(|e| invalid(path, e))?;
        Ok((
            model_name(path),
            trained_context(&content).clamp(16, MAX_SEQ_LEN),
        ))
    }

    /// Loads on a blocking thread (for async callers).
    pub async fn load_async(path: PathBuf) -> Result<Self, LlmError> {
        tokio::task::spawn_blocking(move || Self::load(&path))
            .await
            .map_err(|e| LlmError::Invalid(format!("loading the local model stopped: {e}")))?
    }

    /// The model's name (its file name without `.gguf`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long loading took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Tokens of prompt and answer together that the model can attend to.
    pub fn context_window(&self) -> usize {
        self.shared.context_window
    }

    /// Answers being generated right now.
    pub fn busy(&self) -> usize {
        MAX_CONCURRENT.saturating_sub(self.permits.available_permits())
    }

    /// The prompt the model would see for these messages, as text (special tokens by name).
    pub fn render_prompt(&self, messages: &[super::ChatMessage]) -> String {
        self.shared.template.render_text(messages)
    }

    /// Token count of a text (plain text, as message content is encoded).
    pub fn count_tokens(&self, text: &str) -> Result<usize, LlmError> {
        self.shared
            .tokenizer
            .encode(text)
            .map(|v| v.len())
            .map_err(LlmError::Invalid)
    }

    fn params(&self, request: &ChatRequest) -> Params {
        let window = self.shared.context_window;
        let asked = request
            .max_tokens
            .map_or(DEFAULT_MAX_ANSWER_TOKENS, |n| n as usize);
        Params {
            // Leave at least half the window to the prompt.
            max_new: asked.clamp(1, (window / 2).max(1)),
            temperature: request
                .temperature
                .map_or(DEFAULT_TEMPERATURE, |t| f64::from(t.max(0.0))),
            seed: self
                .seed
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
        }
    }
}

/// Sets the flag when the stream is dropped, so the generating thread stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

type Sink = mpsc::Sender<Result<ChatEvent, LlmError>>;

/// Runs one answer on the current (blocking) thread. Returns early, silently, when cancelled.
fn generate(
    shared: &Shared,
    request: &ChatRequest,
    params: Params,
    tx: &Sink,
    cancel: &AtomicBool,
) -> Result<(), LlmError> {
    let tok = &shared.tokenizer;
    let budget = shared.context_window.saturating_sub(params.max_new);
    let prompt = shared
        .template
        .build(&request.messages, budget, &|t: &str| tok.encode(t))
        .map_err(LlmError::Invalid)?;
    if prompt.dropped_messages > 0 || prompt.truncated {
        tracing::info!(
            dropped_messages = prompt.dropped_messages,
            truncated = prompt.truncated,
            prompt_tokens = prompt.ids.len(),
            "the conversation was trimmed to the local model's context window"
        );
    }
    let stops = shared.template.stop_ids();
    let mut model = shared.weights.clone();
    let device = Device::Cpu;
    let forward = |model: &mut Llama, ids: &[u32], pos: usize| -> Result<Vec<f32>, LlmError> {
        let input = Tensor::new(ids, &device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(failed)?;
        model
            .forward(&input, pos)
            .and_then(|l| l.squeeze(0))
            .and_then(|l| l.to_dtype(candle_core::DType::F32))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(failed)
    };

    let mut pos = 0usize;
    let mut logits = Vec::new();
    for chunk in prompt.ids.chunks(PREFILL_CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        logits = forward(&mut model, chunk, pos)?;
        pos += chunk.len();
    }

    let temperature = (params.temperature > 0.0).then_some(params.temperature);
    let mut sampler = LogitsProcessor::new(params.seed, temperature, temperature.map(|_| TOP_P));
    let mut decoder = StreamDecoder::default();
    let mut answer: Vec<u32> = Vec::new();
    let finish_reason = loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let recent = &answer[answer.len().saturating_sub(REPEAT_LAST_N)..];
        apply_repeat_penalty(&mut logits, REPEAT_PENALTY, recent);
        let n = logits.len();
        let next = Tensor::from_vec(std::mem::take(&mut logits), n, &device)
            .and_then(|t| sampler.sample(&t))
            .map_err(failed)?;
        // End of turn; any other control token (a new turn starting, …) ends the answer too.
        if stops.contains(&next) || tok.is_control(next) {
            break "stop";
        }
        answer.push(next);
        let text = decoder.push(tok.token_bytes(next));
        if !text.is_empty() && tx.blocking_send(Ok(ChatEvent::Delta(text))).is_err() {
            return Ok(());
        }
        if answer.len() >= params.max_new || pos >= shared.context_window {
            break "length";
        }
        logits = forward(&mut model, &[next], pos)?;
        pos += 1;
    };
    let rest = decoder.finish();
    if !rest.is_empty() && tx.blocking_send(Ok(ChatEvent::Delta(rest))).is_err() {
        return Ok(());
    }
    let _ = tx.blocking_send(Ok(ChatEvent::Done {
        finish_reason: finish_reason.into(),
        usage: Some(Usage {
            prompt_tokens: prompt.ids.len() as u64,
            completion_tokens: answer.len() as u64,
        }),
    }));
    Ok(())
}

/// Divides positive logits (multiplies negative ones) of tokens already used by `penalty`.
fn apply_repeat_penalty(logits: &mut [f32], penalty: f32, recent: &[u32]) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(recent.len());
    for &id in recent {
        if !seen.insert(id) {
            continue;
        }
        if let Some(l) = logits.get_mut(id as usize) {
            if *l >= 0.0 {
                *l /= penalty;
            } else {
                *l *= penalty;
            }
        }
    }
}

#[async_trait]
impl ChatModel for LocalModel {
    fn describe(&self) -> String {
        format!("{} (local, in-process)", self.shared.name)
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let permit: OwnedSemaphorePermit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LlmError::Unreachable("the local model is shutting down".into()))?;
        let params = self.params(&request);
        let shared = self.shared.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(64);
        let flag = cancel.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if let Err(e) = generate(&shared, &request, params, &tx, &flag) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let guard = CancelOnDrop(cancel);
        let stream = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|item| (item, (rx, guard)))
        });
        Ok(stream.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_penalty_lowers_used_tokens_once() {
        let mut logits = vec![2.0, -2.0, 1.0];
        apply_repeat_penalty(&mut logits, 2.0, &[0, 1, 0]);
        assert_eq!(logits, vec![1.0, -4.0, 1.0]);
        apply_repeat_penalty(&mut logits, 1.0, &[2]);
        assert_eq!(logits[2], 1.0);
    }
}

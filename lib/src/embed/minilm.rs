//! [`Embedder`] on a BERT sentence-embedding model run in this process with candle: by default
//! all-MiniLM-L6-v2 (sentence-transformers; Apache-2.0; 22.7 M parameters, 384 dimensions),
//! fetched by `scripts/fetch-embedder.sh`.
//!
//! As sentence-transformers does: word pieces from the model's `tokenizer.json` (its own
//! truncation and padding switched off), `[CLS] … [SEP]` around at most [`MAX_TOKENS`], the
//! encoder in f32 (its attention mask turns to NaN in f16), the mean of the token states over the
//! real tokens, then L2 normalisation. Inputs are sorted by length and batched within bounds on
//! tokens and attention size, so that memory stays small and little is padded.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

use super::{EmbedError, Embedder};

/// The longest input in word pieces, `[CLS]` and `[SEP]` included (the model's own limit).
pub const MAX_TOKENS: usize = 256;
/// Text beyond this many characters is never tokenised: far more than [`MAX_TOKENS`] pieces.
pub const MAX_CHARS: usize = super::MAX_CHARS;
/// Tokens in one batch (batch × length), at most.
const MAX_BATCH_TOKENS: usize = 2_048;
/// batch × length², at most: bounds the attention scores (× 12 heads × 4 bytes).
const MAX_BATCH_ATTENTION: usize = 131_072;

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(e.to_string())
    }
}

/// A BERT sentence-embedding model, loaded.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
    dim: usize,
    id: String,
    device: Device,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").field("id", &self.id).finish()
    }
}

/// Reads one of the model's files, or says which is missing.
fn read(dir: &Path, name: &str) -> Result<Vec<u8>, EmbedError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            EmbedError::Missing(format!("{} does not exist", path.display()))
        }
        _ => EmbedError::Missing(format!("{} cannot be read ({e})", path.display())),
    })
}

impl MiniLm {
    /// Loads `model.safetensors`, `tokenizer.json` and `config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let device = Device::Cpu;
        let config: Config = serde_json::from_slice(&read(dir, "config.json")?)
            .map_err(|e| EmbedError::Model(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read(dir, "tokenizer.json")?)
            .map_err(|e| EmbedError::Model(format!("tokenizer.json: {e}")))?;
        // The file asks for truncation and fixed padding at 128; inputs are cut and padded here.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| EmbedError::Model(format!("tokenizer.json: {e}")))?;
        let special = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| EmbedError::Model(format!("tokenizer.json has no {t} token")))
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let weights = read(dir, "model.safetensors")?;
        // The weights' checksum names the model: vectors stored by another model are not reused.
        let id = format!(
            "bert/{:08x}/mean-l2/p{MAX_TOKENS}",
            crc32fast::hash(&weights)
        );
        let model = {
            // The file's buffer is dropped with the builder, once the tensors are copied out.
            let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
            BertModel::load(vb, &config)?
        };
        Ok(Self {
            model,
            tokenizer,
            cls,
            sep,
            dim: config.hidden_size,
            id,
            device,
        })
    }

    /// The word pieces the model reads for `text`: `[CLS]`, at most [`MAX_TOKENS`] − 2 pieces of
    /// its beginning, `[SEP]`.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        self.token_ids_within(text, MAX_TOKENS)
    }

    /// As [`MiniLm::token_ids`], with at most `max` pieces in all (`[CLS]` and `[SEP]` included;
    /// at most [`MAX_TOKENS`]). Only the text those pieces can come from is tokenised.
    pub fn token_ids_within(&self, text: &str, max: usize) -> Result<Vec<u32>, EmbedError> {
        let max = max.clamp(3, MAX_TOKENS);
        // [`MAX_CHARS`] in proportion (about 31 characters a piece, far more than pieces take):
        // the tokeniser never reads far past what is kept.
        let chars = MAX_CHARS * max / MAX_TOKENS;
        let encoding = self
            .tokenizer
            .encode(super::prefix(text, chars), false)
            .map_err(|e| EmbedError::Model(format!("tokenizer: {e}")))?;
        let body = encoding.get_ids();
        let body = &body[..body.len().min(max - 2)];
        let mut ids = Vec::with_capacity(body.len() + 2);
        ids.push(self.cls);
        ids.extend_from_slice(body);
        ids.push(self.sep);
        Ok(ids)
    }

    /// Embeds one batch of sequences, padded to the longest.
    fn batch(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let b = seqs.len();
        let s = seqs.iter().map(|q| q.len()).max().unwrap_or(0);
        let mut ids = vec![0u32; b * s];
        let mut mask = vec![0u32; b * s];
        for (r, seq) in seqs.iter().enumerate() {
            ids[r * s..r * s + seq.len()].copy_from_slice(seq);
            mask[r * s..r * s + seq.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (b, s), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, s), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (b, s, dim)
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, s, 1)
        let sum = hidden.broadcast_mul(&m)?.sum(1)?; // (b, dim)
        let count = m.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
        let mean = sum.broadcast_div(&count)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

impl Embedder for MiniLm {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_prefix(texts, MAX_TOKENS)
    }

    fn embed_prefix(&self, texts: &[&str], pieces: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let seqs = texts
            .iter()
            .map(|t| self.token_ids_within(t, pieces))
            .collect::<Result<Vec<_>, _>>()?;
        // Shortest first, so that each batch pads little; then back in the callers' order.
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].len());
        let mut out = vec![Vec::new(); seqs.len()];
        let mut at = 0;
        while at < order.len() {
            let mut end = at + 1;
            while end < order.len() {
                let (b, s) = (end + 1 - at, seqs[order[end]].len());
                if b * s > MAX_BATCH_TOKENS || b * s * s > MAX_BATCH_ATTENTION {
                    break;
                }
                end += 1;
            }
            let batch: Vec<&[u32]> = order[at..end].iter().map(|&i| &seqs[i][..]).collect();
            for (&i, v) in order[at..end].iter().zip(self.batch(&batch)?) {
                out[i] = v;
            }
            at = end;
        }
        Ok(out)
    }
}

/// A [`MiniLm`] that loads its weights on first use, once, for all callers; until then only its
/// files are checked and its `config.json` read (a few hundred bytes). The Lambda functions run
/// it: their init stays short, and an invocation that never embeds never reads the 91 MB of
/// weights. The first call to [`Embedder::embed`] or [`Embedder::id`] (the id is a checksum of
/// the weights) pays the load and blocks its thread meanwhile; callers embed off the async
/// workers, and a Lambda function serves one invocation at a time.
pub struct LazyMiniLm {
    dir: std::path::PathBuf,
    dim: usize,
    model: std::sync::OnceLock<Result<MiniLm, String>>,
}

impl std::fmt::Debug for LazyMiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyMiniLm")
            .field("dir", &self.dir)
            .field("loaded", &self.model.get().is_some())
            .finish()
    }
}

/// What [`LazyMiniLm::id`] says when the model failed to load: no stored vectors match it.
const NOT_LOADED: &str = "bert/not-loaded";

impl LazyMiniLm {
    /// Checks that `dir` holds the model's three files and reads its dimension; loads nothing
    /// else.
    pub fn new(dir: &Path) -> Result<Self, EmbedError> {
        #[derive(serde::Deserialize)]
        struct Dim {
            hidden_size: usize,
        }
        // In the order the load reads them, so that a missing model is named as it would be.
        let config: Dim = serde_json::from_slice(&read(dir, "config.json")?)
            .map_err(|e| EmbedError::Model(format!("config.json: {e}")))?;
        for name in ["tokenizer.json", "model.safetensors"] {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(EmbedError::Missing(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            dim: config.hidden_size,
            model: std::sync::OnceLock::new(),
        })
    }

    /// The model, loaded by the first caller (the others wait for it).
    pub fn model(&self) -> Result<&MiniLm, EmbedError> {
        self.model
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let loaded = MiniLm::load(&self.dir).map_err(|e| e.to_string());
                match &loaded {
                    Ok(model) => tracing::info!(
                        model = model.id(),
                        dir = %self.dir.display(),
                        ms = started.elapsed().as_millis() as u64,
                        "embedding model loaded on first use"
                    ),
                    Err(e) => tracing::error!(dir = %self.dir.display(), error = %e, "embedding model failed to load"),
                }
                loaded
            })
            .as_ref()
            .map_err(|e| EmbedError::Model(e.clone()))
    }

    /// Whether the weights have been loaded.
    pub fn loaded(&self) -> bool {
        self.model.get().is_some_and(Result::is_ok)
    }
}

impl Embedder for LazyMiniLm {
    fn id(&self) -> &str {
        self.model().map_or(NOT_LOADED, Embedder::id)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.model()?.embed(texts)
    }

    fn embed_prefix(&self, texts: &[&str], pieces: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.model()?.embed_prefix(texts, pieces)
    }
}

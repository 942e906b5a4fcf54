//! The llama decoder of the local model, on candle's quantized CPU kernels.
//!
//! It follows candle-transformers' `quantized_llama` (MIT/Apache-2.0), with one difference that matters
//! on a small machine: the token-embedding table stays quantized, rows are decoded only for the tokens
//! looked up, and a model that ties its output projection to the embeddings (SmolLM2 does) shares one
//! copy of the table between the two. candle's version keeps a dequantized f32 copy of the table beside
//! the quantized one: 113 MB of 280 MB for SmolLM2-135M. Dense models only (no mixture of experts).

use std::sync::Arc;

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::{build_causal_mask, repeat_kv};

/// Positions covered by the rotary tables: the longest context the model is used with.
pub const MAX_SEQ_LEN: usize = 4096;

#[derive(Debug, Clone)]
struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    attention_norm: RmsNorm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    ffn_norm: RmsNorm,
    /// Keys and values of the positions seen so far, `(batch, kv_heads, positions, head_dim)`.
    cache: Option<(Tensor, Tensor)>,
}

/// A llama-architecture model. Cloning is cheap (the weights are reference-counted); each clone has its
/// own attention cache, so one clone serves one answer.
#[derive(Debug, Clone)]
pub struct Llama {
    embeddings: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    cos: Tensor,
    sin: Tensor,
    neg_inf: Tensor,
}

fn rotary_tables(head_dim: usize, freq_base: f32, device: &Device) -> Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / freq_base.powf(i as f32 / head_dim as f32))
        .collect();
    let n = theta.len();
    let theta = Tensor::from_vec(theta, (1, n), device)?;
    let positions = Tensor::arange(0, MAX_SEQ_LEN as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((MAX_SEQ_LEN, 1))?;
    let angles = positions.matmul(&theta)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl Llama {
    /// Builds the model from a GGUF file's header and a reader over its tensor data.
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        content: gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let meta = |key: &str| match content.metadata.get(key) {
            Some(v) => Ok(v),
            None => candle_core::bail!("the file has no `{key}`"),
        };
        let experts = meta("llama.expert_count")
            .and_then(|v| v.to_u32())
            .unwrap_or(0);
        if experts > 1 {
            candle_core::bail!("mixture-of-experts models ({experts} experts) are not supported");
        }
        let heads = meta("llama.attention.head_count")?.to_u32()? as usize;
        let kv_heads = meta("llama.attention.head_count_kv")?.to_u32()? as usize;
        let blocks = meta("llama.block_count")?.to_u32()? as usize;
        let hidden = meta("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = meta("llama.rope.dimension_count")?.to_u32()? as usize;
        let eps = f64::from(meta("llama.attention.layer_norm_rms_epsilon")?.to_f32()?);
        let freq_base = meta("llama.rope.freq_base")
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            candle_core::bail!(
                "inconsistent attention shape: {heads} heads, {kv_heads} key/value heads, width {hidden}"
            );
        }

        let mut tensor = |name: &str| content.tensor(reader, name, device);
        let embeddings = Arc::new(tensor("token_embd.weight")?);
        let norm = RmsNorm::from_qtensor(tensor("output_norm.weight")?, eps)?;
        let output = match tensor("output.weight") {
            Ok(t) => QMatMul::from_qtensor(t)?,
            // Tied weights: the output projection is the embedding table.
            Err(_) => QMatMul::from_arc(embeddings.clone())?,
        };
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut weight = |part: &str| tensor(&format!("blk.{i}.{part}.weight"));
            layers.push(Layer {
                wq: QMatMul::from_qtensor(weight("attn_q")?)?,
                wk: QMatMul::from_qtensor(weight("attn_k")?)?,
                wv: QMatMul::from_qtensor(weight("attn_v")?)?,
                wo: QMatMul::from_qtensor(weight("attn_output")?)?,
                attention_norm: RmsNorm::from_qtensor(weight("attn_norm")?, eps)?,
                gate: QMatMul::from_qtensor(weight("ffn_gate")?)?,
                up: QMatMul::from_qtensor(weight("ffn_up")?)?,
                down: QMatMul::from_qtensor(weight("ffn_down")?)?,
                ffn_norm: RmsNorm::from_qtensor(weight("ffn_norm")?, eps)?,
                cache: None,
            });
        }
        let (cos, sin) = rotary_tables(rope_dim, freq_base, device)?;
        Ok(Self {
            embeddings,
            layers,
            norm,
            output,
            heads,
            kv_heads,
            head_dim: hidden / heads,
            cos,
            sin,
            neg_inf: Tensor::new(f32::NEG_INFINITY, device)?,
        })
    }

    /// Feeds `ids` (shape `(1, n)`) at positions `pos..pos + n` and returns the logits of the last one.
    pub fn forward(&mut self, ids: &Tensor, pos: usize) -> Result<Tensor> {
        let (_, n) = ids.dims2()?;
        if pos + n > MAX_SEQ_LEN {
            candle_core::bail!(
                "position {} is past the {MAX_SEQ_LEN}-token window",
                pos + n
            );
        }
        let mask = if n > 1 {
            Some(build_causal_mask(n, pos, ids.device())?)
        } else {
            None
        };
        let mut x = self.embeddings.embedding(ids)?;
        let (cos, sin) = (self.cos.narrow(0, pos, n)?, self.sin.narrow(0, pos, n)?);
        let shape = Shape {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        };
        for layer in &mut self.layers {
            let attn = layer.attention(
                &layer.attention_norm.forward(&x)?,
                shape,
                (&cos, &sin),
                mask.as_ref(),
                &self.neg_inf,
            )?;
            let x1 = (attn + &x)?;
            let h = layer.ffn_norm.forward(&x1)?;
            let mlp = (candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?;
            x = (layer.down.forward(&mlp)? + x1)?;
        }
        let last = self.norm.forward(&x)?.i((.., n - 1, ..))?;
        self.output.forward(&last)
    }
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Layer {
    fn attention(
        &mut self,
        x: &Tensor,
        s: Shape,
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        neg_inf: &Tensor,
    ) -> Result<Tensor> {
        let (b, n, width) = x.dims3()?;
        let split = |t: Tensor, heads: usize| {
            t.reshape((b, n, heads, s.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.wq.forward(x)?, s.heads)?;
        let k = split(self.wk.forward(x)?, s.kv_heads)?;
        let v = split(self.wv.forward(x)?, s.kv_heads)?;
        // GGUF llama weights are permuted for the interleaved rotary layout.
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        let (k, v) = match self.cache.take() {
            Some((kc, vc)) => (Tensor::cat(&[&kc, &k], 2)?, Tensor::cat(&[&vc, &v], 2)?),
            None => (k, v),
        };
        self.cache = Some((k.clone(), v.clone()));

        let k = repeat_kv(k, s.heads / s.kv_heads)?;
        let v = repeat_kv(v, s.heads / s.kv_heads)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? / (s.head_dim as f64).sqrt())?;
        let scores = match mask {
            Some(m) => m
                .broadcast_as(scores.shape())?
                .where_cond(&neg_inf.broadcast_as(scores.shape())?, &scores)?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, n, width))?;
        self.wo.forward(&y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_tables_start_at_angle_zero_and_turn_per_position() {
        let (cos, sin) = rotary_tables(4, 10_000.0, &Device::Cpu).unwrap();
        assert_eq!(cos.dims(), [MAX_SEQ_LEN, 2]);
        let c: Vec<Vec<f32>> = cos.to_vec2().unwrap();
        let s: Vec<Vec<f32>> = sin.to_vec2().unwrap();
        assert_eq!(c[0], [1.0, 1.0]);
        assert_eq!(s[0], [0.0, 0.0]);
        // Position 1, frequency 0 turns by one radian; frequency 1 by 1/100.
        assert!((s[1][0] - 1f32.sin()).abs() < 1e-6);
        assert!((s[1][1] - 0.01f32.sin()).abs() < 1e-6);
    }

    /// The default model file, when present (CI fetches it; elsewhere the test says it skipped).
    fn default_model() -> Option<std::path::PathBuf> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(super::super::DEFAULT_MODEL_PATH);
        if path.is_file() {
            return Some(path);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing",
            path.display()
        );
        eprintln!(
            "SKIPPED: {} is missing (scripts/fetch-model.sh)",
            path.display()
        );
        None
    }

    fn logits(t: Tensor) -> Vec<f32> {
        t.squeeze(0).unwrap().to_vec1().unwrap()
    }

    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Same logits as candle's own quantized llama on the real model: the prompt at once, the prompt in
    /// chunks and the next token; and the table shared with the output projection is not copied.
    #[test]
    fn matches_candles_llama_on_the_real_model() {
        use candle_transformers::models::quantized_llama::ModelWeights;
        let Some(path) = default_model() else { return };
        let open = || {
            let mut reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
            let content = gguf_file::Content::read(&mut reader).unwrap();
            (content, reader)
        };
        let ours = || {
            let (content, mut reader) = open();
            Llama::from_gguf(content, &mut reader, &Device::Cpu).unwrap()
        };
        let reference = || {
            let (content, mut reader) = open();
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap()
        };
        let input = |ids: &[u32]| {
            Tensor::new(ids, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
        };
        let ids: Vec<u32> = (0..40u32).map(|i| 1 + i * 997 % 40_000).collect();
        let close = |what: &str, a: Vec<f32>, b: Vec<f32>| {
            assert!(a.len() > 40_000, "one logit per vocabulary entry");
            let diff = max_difference(&a, &b);
            assert!(
                diff < 1e-3,
                "{what}: logits differ from the reference by {diff}"
            );
        };

        let (mut o, mut r) = (ours(), reference());
        close(
            "prompt at once",
            logits(r.forward(&input(&ids), 0).unwrap()),
            logits(o.forward(&input(&ids), 0).unwrap()),
        );
        close(
            "next token",
            logits(r.forward(&input(&ids[3..4]), 40).unwrap()),
            logits(o.forward(&input(&ids[3..4]), 40).unwrap()),
        );

        let (mut o, mut r) = (ours(), reference());
        r.forward(&input(&ids[..25]), 0).unwrap();
        o.forward(&input(&ids[..25]), 0).unwrap();
        close(
            "prompt in two chunks",
            logits(r.forward(&input(&ids[25..]), 25).unwrap()),
            logits(o.forward(&input(&ids[25..]), 25).unwrap()),
        );

        // One token after a cached prefix is the same as the whole prefix at once.
        let mut o = ours();
        o.forward(&input(&ids[..25]), 0).unwrap();
        close(
            "cached prefix",
            logits(ours().forward(&input(&ids[..26]), 0).unwrap()),
            logits(o.forward(&input(&ids[25..26]), 25).unwrap()),
        );

        // Tied output: the projection holds the same table as the embeddings.
        match &o.output {
            QMatMul::QTensor(t) => assert!(Arc::ptr_eq(t, &o.embeddings)),
            other => panic!("the output projection is a copy: {other:?}"),
        }
    }
}

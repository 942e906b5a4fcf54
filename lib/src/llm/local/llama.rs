//! The llama decoder of the local model, on candle's quantized CPU kernels.
//!
//! It follows candle-transformers' `quantized_llama` (MIT/Apache-2.0), with one difference that matters
//! on a small machine: the token-embedding table stays quantized, rows are decoded only for the tokens
//! looked up, and a model that ties its output projection to the embeddings (SmolLM2 does) shares one
//! copy of the table between the two. candle's version keeps a dequantized f32 copy of the table beside
//! the quantized one: 113 MB of 280 MB for SmolLM2-135M. Dense models only (no mixture of experts).
//!
//! A second difference is speed on prompts: a chunk of prompt tokens is multiplied with an f32 copy of
//! each weight, decoded for that one product and dropped (see [`Linear`]), so the product runs on the
//! `gemm` crate's f32 kernels instead of one quantized dot product per row and column. On two cores that
//! reads a prompt 1.4–1.7× as fast, for a few megabytes held at a time. One token at a time (the
//! answer) stays on the quantized kernels, which read four to eight times fewer bytes per weight.
//! The causal mask and the softmax of a prompt chunk's attention are one pass over its scores
//! ([`CausalSoftmax`]) rather than a mask written over every score and a softmax after it.

use std::sync::Arc;

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Device, IndexOp, Layout, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::build_causal_mask;
use rayon::prelude::*;

/// Positions covered by the rotary tables: the longest context the model is used with.
pub const MAX_SEQ_LEN: usize = 4096;

/// Rows (tokens) from which a product is done on a decoded f32 copy of the weight rather than on the
/// quantized kernels. Decoding writes four bytes per weight where one row's quantized product reads
/// one, so a single row (each token of an answer) stays quantized; prompt chunks (128 rows) are far
/// above it. `bench-local-model --decoder conversa-dense` measures where the two paths cross.
pub const DENSE_FROM_ROWS: usize = 16;

/// A weight matrix, held quantized.
#[derive(Debug, Clone)]
struct Linear {
    weight: QMatMul,
    /// See [`DENSE_FROM_ROWS`]; a field so that tests can pin one path.
    dense_from_rows: usize,
}

impl Linear {
    fn new(weight: QTensor) -> Result<Self> {
        Ok(Self {
            weight: QMatMul::from_qtensor(weight)?,
            dense_from_rows: DENSE_FROM_ROWS,
        })
    }

    /// `x` (`(…, rows, in)`) times the weight's transpose.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
        match &self.weight {
            QMatMul::QTensor(w) if rows >= self.dense_from_rows => {
                QMatMul::Tensor(w.dequantize(x.device())?).forward(x)
            }
            w => w.forward(x),
        }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attention_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
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
    /// Whether a prompt chunk's mask and softmax are one pass ([`CausalSoftmax`], the default) or a
    /// mask written over the scores and candle's softmax after it (its arithmetic, bit for bit).
    fused_softmax: bool,
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
                wq: Linear::new(weight("attn_q")?)?,
                wk: Linear::new(weight("attn_k")?)?,
                wv: Linear::new(weight("attn_v")?)?,
                wo: Linear::new(weight("attn_output")?)?,
                attention_norm: RmsNorm::from_qtensor(weight("attn_norm")?, eps)?,
                gate: Linear::new(weight("ffn_gate")?)?,
                up: Linear::new(weight("ffn_up")?)?,
                down: Linear::new(weight("ffn_down")?)?,
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
            fused_softmax: true,
        })
    }

    /// Sets whether a prompt chunk's causal mask and softmax are one pass (the default) or two, as
    /// candle's own llama does them.
    pub fn set_fused_softmax(&mut self, fused: bool) {
        self.fused_softmax = fused;
    }

    /// Sets the rows from which weight products use decoded f32 weights ([`DENSE_FROM_ROWS`] by
    /// default; `usize::MAX` keeps every product on the quantized kernels).
    pub fn set_dense_from_rows(&mut self, rows: usize) {
        for l in &mut self.layers {
            for w in [
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.gate,
                &mut l.up,
                &mut l.down,
            ] {
                w.dense_from_rows = rows;
            }
        }
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
        // A chunk's tokens see the cache and the tokens before them in the chunk; one token sees all.
        let causal = match n {
            1 => None,
            _ if self.fused_softmax => Some(Causal::Fused(CausalSoftmax {
                rows: n,
                offset: pos,
            })),
            _ => Some(Causal::Masked(build_causal_mask(n, pos, ids.device())?)),
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
                causal.as_ref(),
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

/// How a prompt chunk's tokens are kept from seeing the ones after them.
enum Causal {
    /// One pass over the scores.
    Fused(CausalSoftmax),
    /// A mask (1 where a key is after the query) written over the scores before the softmax.
    Masked(Tensor),
}

/// The causal softmax of a prompt chunk's attention scores, in one pass: in each block of `rows`
/// score rows (one block per query head), row `i` is query `offset + i` and sees keys
/// `0..=offset + i`; the keys after it get weight 0, the others the softmax of their scores.
#[derive(Debug, Clone, Copy)]
struct CausalSoftmax {
    rows: usize,
    offset: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> Result<(CpuStorage, candle_core::Shape)> {
        let CpuStorage::F32(src) = storage else {
            candle_core::bail!("causal-softmax: f32 scores only")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal-softmax: the scores must be contiguous")
        };
        let src = &src[start..end];
        let keys = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let rows = self.rows.max(1);
        let mut dst = vec![0f32; src.len()];
        src.par_chunks(keys)
            .zip(dst.par_chunks_mut(keys))
            .enumerate()
            .for_each(|(row, (src, dst))| {
                let seen = (self.offset + row % rows + 1).min(keys);
                let (src, dst) = (&src[..seen], &mut dst[..seen]);
                let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = (*s - max).exp();
                    sum += *d;
                }
                let inverse = 1.0 / sum;
                for d in dst.iter_mut() {
                    *d *= inverse;
                }
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
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
        causal: Option<&Causal>,
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

        // Each key/value head serves `groups` consecutive query heads. Their rows are stacked so that
        // one product per key/value head covers them all, instead of copying the keys and values
        // (the whole cache) once per query head; the scale goes on the queries, the small side.
        let groups = s.heads / s.kv_heads;
        let seen = k.dim(2)?;
        let q = (q * (1.0 / (s.head_dim as f64).sqrt()))?.reshape((
            b,
            s.kv_heads,
            groups * n,
            s.head_dim,
        ))?;
        let scores = q.matmul(&k.t()?)?;
        let weights = match causal {
            Some(Causal::Fused(op)) => scores.apply_op1_no_bwd(op)?,
            Some(Causal::Masked(mask)) => {
                let per_head = scores.reshape((b, s.kv_heads, groups, n, seen))?;
                let hidden = Tensor::new(f32::NEG_INFINITY, x.device())?;
                let masked = mask
                    .broadcast_as(per_head.shape())?
                    .where_cond(&hidden.broadcast_as(per_head.shape())?, &per_head)?
                    .reshape((b, s.kv_heads, groups * n, seen))?;
                candle_nn::ops::softmax_last_dim(&masked)?
            }
            None => candle_nn::ops::softmax_last_dim(&scores)?,
        };
        let y = weights
            .matmul(&v.contiguous()?)?
            .reshape((b, s.heads, n, s.head_dim))?
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

    #[test]
    fn causal_softmax_is_the_masked_softmax_in_one_pass() {
        // Two key/value heads of three query heads each, a chunk of 4 rows after 5 cached positions.
        let (kv_heads, groups, rows, offset) = (2, 3, 4, 5);
        let keys = offset + rows;
        let scores =
            Tensor::randn(0f32, 3.0, (1, kv_heads, groups * rows, keys), &Device::Cpu).unwrap();
        let fused = scores
            .apply_op1_no_bwd(&CausalSoftmax { rows, offset })
            .unwrap();
        // As the mask and the softmax were done before: -inf written over the hidden keys.
        let mask = build_causal_mask(rows, offset, &Device::Cpu).unwrap();
        let per_head = scores.reshape((1, kv_heads, groups, rows, keys)).unwrap();
        let hidden = Tensor::new(f32::NEG_INFINITY, &Device::Cpu)
            .unwrap()
            .broadcast_as(per_head.shape())
            .unwrap();
        let masked = mask
            .broadcast_as(per_head.shape())
            .unwrap()
            .where_cond(&hidden, &per_head)
            .unwrap()
            .reshape((1, kv_heads, groups * rows, keys))
            .unwrap();
        let reference = candle_nn::ops::softmax_last_dim(&masked).unwrap();
        let difference: f32 = (fused.clone() - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(difference < 1e-6, "{difference}");
        // Row 0 of each head sees the cache and itself only; the last row sees every key.
        let w: Vec<Vec<f32>> = fused.flatten_to(2).unwrap().to_vec2().unwrap();
        assert!(w[0][offset + 1..].iter().all(|&x| x == 0.0));
        assert!(w[rows - 1].iter().all(|&x| x > 0.0));
        assert!(w.iter().all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-5));
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

    /// The model in `path`, its weights as stored.
    fn load(path: &std::path::Path) -> Llama {
        let mut reader = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let content = gguf_file::Content::read(&mut reader).unwrap();
        Llama::from_gguf(content, &mut reader, &Device::Cpu).unwrap()
    }

    /// Token ids as the model's input, shape `(1, n)`.
    fn input(ids: &[u32]) -> Tensor {
        Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
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
        // On the quantized kernels, as candle's model runs: the same arithmetic, so the same logits.
        let ours = || {
            let mut m = load(&path);
            m.set_dense_from_rows(usize::MAX);
            m.set_fused_softmax(false);
            m
        };
        let reference = || {
            let (content, mut reader) = open();
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap()
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

    /// A product of enough rows is done on the decoded weight, exactly; fewer rows on the quantized
    /// kernels, which round the input to 8 bits too, so they are only close.
    #[test]
    fn many_rows_multiply_the_decoded_weight_and_few_the_quantized_one() {
        use candle_core::quantized::GgmlDType;
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (96, 64), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let decoded = q.dequantize(&dev).unwrap();
        let linear = Linear::new(q).unwrap();
        assert_eq!(linear.dense_from_rows, DENSE_FROM_ROWS);
        let exact = |x: &Tensor| x.broadcast_matmul(&decoded.t().unwrap()).unwrap();
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };

        let many = Tensor::randn(0f32, 1.0, (1, DENSE_FROM_ROWS, 64), &dev).unwrap();
        let out = linear.forward(&many).unwrap();
        assert_eq!(out.dims(), [1, DENSE_FROM_ROWS, 96]);
        assert!(
            diff(&out, &exact(&many)) < 1e-4,
            "the decoded product is exact"
        );

        let one = many.narrow(1, 0, 1).unwrap();
        let out = linear.forward(&one).unwrap();
        let d = diff(&out, &exact(&one));
        assert!(
            d > 0.0,
            "one row takes the quantized kernels, which round the input"
        );
        assert!(d < 0.5, "and stay close to the exact product: {d}");

        // Pinned to the quantized kernels, many rows round too.
        let mut pinned = linear.clone();
        pinned.dense_from_rows = usize::MAX;
        assert!(diff(&pinned.forward(&many).unwrap(), &exact(&many)) > 0.0);
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// The prompt read with the one-pass causal softmax gives the logits of candle's mask and softmax
    /// (bit for bit against candle's model in `matches_candles_llama_on_the_real_model`), within the
    /// rounding of a sum taken in another order; in chunks too, past a cache.
    #[test]
    fn the_one_pass_causal_softmax_keeps_the_logits() {
        let Some(path) = default_model() else { return };
        let ids: Vec<u32> = (0..48u32).map(|i| 1 + i * 7_919 % 40_000).collect();
        let (mut fused, mut masked) = (load(&path), load(&path));
        masked.set_fused_softmax(false);
        for (what, ids, pos) in [
            ("prompt", &ids[..40], 0),
            ("chunk after it", &ids[40..], 40),
        ] {
            let a = logits(fused.forward(&input(ids), pos).unwrap());
            let b = logits(masked.forward(&input(ids), pos).unwrap());
            let cos = cosine(&a, &b);
            eprintln!(
                "{what}: logits differ by at most {}, cosine {cos}",
                max_difference(&a, &b)
            );
            assert!(cos > 0.9999, "{what}: cosine {cos}");
            let top = |v: &[f32]| {
                v.iter()
                    .enumerate()
                    .max_by(|x, y| x.1.total_cmp(y.1))
                    .map(|(i, _)| i)
            };
            assert_eq!(top(&a), top(&b), "{what}: the same next token");
        }
    }

    /// The prompt read on decoded weights gives the logits read on the quantized kernels, within the
    /// rounding of the quantized kernels (which round the input to 8 bits as well as the weights).
    #[test]
    fn prompts_on_decoded_weights_match_the_quantized_kernels() {
        let Some(path) = default_model() else { return };
        let ids: Vec<u32> = (0..60u32).map(|i| 1 + i * 7_919 % 40_000).collect();
        let (mut dense, mut quantized) = (load(&path), load(&path));
        quantized.set_dense_from_rows(usize::MAX);
        for (what, ids, pos) in [("prompt", &ids[..], 0), ("next token", &ids[..1], 60)] {
            let a = logits(dense.forward(&input(ids), pos).unwrap());
            let b = logits(quantized.forward(&input(ids), pos).unwrap());
            let (diff, cos) = (max_difference(&a, &b), cosine(&a, &b));
            eprintln!("{what}: logits differ by at most {diff}, cosine {cos}");
            assert!(diff > 0.0, "{what}: the two paths are different arithmetic");
            assert!(cos > 0.9999, "{what}: cosine {cos}");
        }
    }
}

//! `bench-local-model`: load time, time to first token (short and long prompt), decode tokens/s and peak
//! memory of the in-process local model, through the same `ChatModel` port the server uses.
//!
//! `bench-local-model [--model PATH] [--tokens N] [--runs R] [--weights as-stored|q8_0]`; prints a
//! Markdown table.
//!
//! `bench-local-model --decoder conversa|candle [--model PATH] [--tokens N]` measures the bare decoder
//! instead (no tokenizer, no chat template, greedy): Conversa's own (`llm::local::llama`) or
//! candle-transformers' `quantized_llama` as the baseline, on the same re-encoded weights. Run each in
//! its own process: the peak memory is the process's.
//!
//! `bench-local-model --prefill 1000,3000 [--runs R] [--model PATH]` measures prompt processing alone
//! with Conversa's decoder: for each length, the median time to feed that many tokens into a fresh
//! attention cache in the server's chunks ([`PREFILL_CHUNK`], or `--chunk N`), as tokens per second.
//! `--decoder candle` runs candle-transformers' `quantized_llama` instead, `--decoder
//! conversa-quantized` Conversa's decoder with every product on the quantized kernels, `--decoder
//! conversa-dense` with every product of two rows or more on decoded weights.
//! `scripts/bench-prefill.sh` runs it beside llama.cpp on the same GGUF.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use conversa::config::DEFAULT_SYSTEM_PROMPT;
use conversa::llm::local::{LocalModel, WeightFormat, DEFAULT_MODEL_PATH, PREFILL_CHUNK};
use conversa::llm::{ChatEvent, ChatMessage, ChatModel, ChatRequest, ChatRole};
use futures::StreamExt;

/// A field of `/proc/self/status` in MB (Linux only).
fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time this process has used (user + system), from `/proc/self/stat` (Linux; 100 ticks a second).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

struct Run {
    ttft: Duration,
    decode_tps: f64,
    /// Decoded tokens per second of CPU time: what one core does when the machine is shared.
    decode_per_cpu_sec: f64,
    prompt_tokens: u64,
    completion_tokens: u64,
    finish: String,
}

async fn run(
    model: &LocalModel,
    user: &str,
    max_tokens: u32,
    temperature: f32,
) -> Result<Run, Box<dyn Error>> {
    let request = ChatRequest {
        model: String::new(),
        messages: vec![
            ChatMessage::text(ChatRole::System, DEFAULT_SYSTEM_PROMPT),
            ChatMessage::text(ChatRole::User, user),
        ],
        max_tokens: Some(max_tokens),
        temperature: Some(temperature),
    };
    let started = Instant::now();
    let mut stream = model.stream(request).await?;
    let mut first = None;
    let mut deltas = 0u64;
    let mut cpu_first = 0.0;
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Queued(_) => {}
            ChatEvent::Delta(_) => {
                deltas += 1;
                if first.is_none() {
                    first = Some(Instant::now());
                    cpu_first = cpu_secs();
                }
            }
            ChatEvent::Done {
                finish_reason,
                usage,
            } => {
                let done = Instant::now();
                let first = first.unwrap_or(done);
                let usage = usage.unwrap_or_default();
                let decoded = usage.completion_tokens.saturating_sub(1);
                let secs = done.duration_since(first).as_secs_f64();
                let cpu = cpu_secs() - cpu_first;
                return Ok(Run {
                    ttft: first.duration_since(started),
                    decode_tps: if secs > 0.0 {
                        decoded as f64 / secs
                    } else {
                        0.0
                    },
                    decode_per_cpu_sec: if cpu > 0.0 { decoded as f64 / cpu } else { 0.0 },
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens.max(deltas),
                    finish: finish_reason,
                });
            }
        }
    }
    Err("the stream ended without a result".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Either decoder, behind one `forward`.
#[derive(Clone)]
enum Decoder {
    Conversa(conversa::llm::local::llama::Llama),
    Candle(candle_transformers::models::quantized_llama::ModelWeights),
}

impl Decoder {
    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<u32, Box<dyn Error>> {
        let input = candle_core::Tensor::new(ids, &candle_core::Device::Cpu)?.unsqueeze(0)?;
        let logits = match self {
            Self::Conversa(m) => m.forward(&input, pos)?,
            Self::Candle(m) => m.forward(&input, pos)?,
        };
        Ok(logits
            .squeeze(0)?
            .argmax(candle_core::D::Minus1)?
            .to_scalar::<u32>()?)
    }
}

/// Loads one of the two decoders on the weights the server uses (Q4_1 re-encoded as Q8_0).
fn load_decoder(path: &std::path::Path, which: &str) -> Result<Decoder, Box<dyn Error>> {
    use candle_core::quantized::gguf_file;
    use conversa::llm::local::requant::requantize_q4_1;

    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut content = gguf_file::Content::read(&mut reader)?;
    let (mut file, _) = requantize_q4_1(&mut content, reader);
    let device = candle_core::Device::Cpu;
    let model = match which {
        "conversa" => Decoder::Conversa(conversa::llm::local::llama::Llama::from_gguf(
            content, &mut file, &device,
        )?),
        // Conversa's decoder with every product on candle's quantized kernels (as before prompts
        // were multiplied with decoded f32 weights): the baseline of `--prefill`.
        "conversa-quantized" => {
            let mut m = conversa::llm::local::llama::Llama::from_gguf(content, &mut file, &device)?;
            m.set_dense_from_rows(usize::MAX);
            Decoder::Conversa(m)
        }
        // Every product of two rows or more on decoded weights: where the two paths cross.
        "conversa-dense" => {
            let mut m = conversa::llm::local::llama::Llama::from_gguf(content, &mut file, &device)?;
            m.set_dense_from_rows(2);
            Decoder::Conversa(m)
        }
        "candle" => Decoder::Candle(
            candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
                content, &mut file, &device,
            )?,
        ),
        other => return Err(format!("unknown decoder {other}").into()),
    };
    Ok(model)
}

/// A synthetic prompt of `n` token ids (prefill does not depend on which tokens they are).
fn prompt_ids(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| 1 + (i * 7_919) % 40_000).collect()
}

/// Prompt processing alone: for each length, `runs` times, a fresh cache fed the prompt in the
/// server's chunks; prints one JSON line per length (median time and tokens per second).
fn prefill(
    path: &std::path::Path,
    which: &str,
    lengths: &[usize],
    runs: usize,
    chunk: usize,
) -> Result<(), Box<dyn Error>> {
    let model = load_decoder(path, which)?;
    // Warm-up: first-touch page faults and the thread pool.
    model.clone().forward(&prompt_ids(16), 0)?;
    for &n in lengths {
        let ids = prompt_ids(n);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let mut fresh = model.clone();
            let started = Instant::now();
            let mut pos = 0;
            for part in ids.chunks(chunk.max(1)) {
                fresh.forward(part, pos)?;
                pos += part.len();
            }
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let runs_ms: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        let ms = median(times);
        println!(
            "{{\"engine\":\"conversa-{which}\",\"chunk\":{chunk},\"tokens\":{n},\"ms_median\":{ms:.1},\"tokens_per_s\":{:.1},\"runs\":[{}]}}",
            n as f64 / ms * 1e3,
            runs_ms.join(",")
        );
    }
    Ok(())
}

/// The bare decoder: load, a 954-token prompt in 128-token chunks (as the server feeds it), then
/// `tokens` greedy tokens.
fn bare(path: &std::path::Path, which: &str, tokens: usize) -> Result<(), Box<dyn Error>> {
    let rss_before = status_mb("VmRSS:").unwrap_or(0.0);
    let started = Instant::now();
    let mut model = load_decoder(path, which)?;
    let load = started.elapsed();
    let rss_loaded = status_mb("VmRSS:").unwrap_or(0.0);

    let prompt = prompt_ids(954);
    let started = Instant::now();
    let mut pos = 0;
    let mut next = 0;
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        next = model.forward(chunk, pos)?;
        pos += chunk.len();
    }
    let prefill = started.elapsed();
    let started = Instant::now();
    for _ in 0..tokens {
        next = model.forward(&[next], pos)?;
        pos += 1;
    }
    let decode = started.elapsed();
    let peak = status_mb("VmHWM:").unwrap_or(0.0);
    println!(
        "| {which} | {} ms | {rss_before:.0} / {rss_loaded:.0} / {peak:.0} MB | {} ms | {:.1} tokens/s |",
        load.as_millis(),
        prefill.as_millis(),
        tokens as f64 / decode.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut path = PathBuf::from(DEFAULT_MODEL_PATH);
    let mut tokens = 128u32;
    let mut runs = 3usize;
    let mut weights = WeightFormat::default();
    let mut decoder = None;
    let mut lengths: Option<Vec<usize>> = None;
    let mut chunk = PREFILL_CHUNK;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--model" => path = PathBuf::from(value),
            "--tokens" => tokens = value.parse()?,
            "--runs" => runs = value.parse()?,
            "--decoder" => decoder = Some(value),
            "--chunk" => chunk = value.parse()?,
            "--prefill" => {
                lengths = Some(value.split(',').map(str::parse).collect::<Result<_, _>>()?)
            }
            "--weights" => {
                weights = match value.as_str() {
                    "as-stored" => WeightFormat::AsStored,
                    "q8_0" => WeightFormat::Q4_1AsQ8_0,
                    other => return Err(format!("unknown weight format {other}").into()),
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    if let Some(lengths) = lengths {
        let which = decoder.unwrap_or_else(|| "conversa".into());
        return tokio::task::spawn_blocking(move || {
            prefill(&path, &which, &lengths, runs, chunk).map_err(|e| e.to_string())
        })
        .await?
        .map_err(Into::into);
    }

    if let Some(which) = decoder {
        return tokio::task::spawn_blocking(move || {
            bare(&path, &which, tokens as usize).map_err(|e| e.to_string())
        })
        .await?
        .map_err(Into::into);
    }

    let rss_before = status_mb("VmRSS:").unwrap_or(0.0);
    let started = Instant::now();
    let load_path = path.clone();
    let model =
        tokio::task::spawn_blocking(move || LocalModel::load_with(&load_path, weights)).await??;
    let load = started.elapsed();
    let rss_loaded = status_mb("VmRSS:").unwrap_or(0.0);
    let peak_loading = status_mb("VmHWM:").unwrap_or(0.0);

    let short = "Write a short story about a lighthouse keeper who finds a message in a bottle.";
    let paragraph = "The quarterly report shows revenue growth in every region, with the strongest \
        gains in online sales and a slight decline in wholesale. Costs rose with the new warehouse. ";
    let long = format!(
        "{}\n\nSummarise the text above in three bullet points.",
        paragraph.repeat(28)
    );

    // Warm-up (first-touch page faults, thread pool start).
    run(&model, "Hi", 8, 0.0).await?;

    let mut short_runs = Vec::new();
    let mut long_runs = Vec::new();
    for _ in 0..runs {
        short_runs.push(run(&model, short, tokens, 0.7).await?);
        long_runs.push(run(&model, &long, 32, 0.0).await?);
    }
    let peak = status_mb("VmHWM:").unwrap_or(0.0);

    let features: Vec<&str> = [
        ("avx2", cfg!(target_feature = "avx2")),
        ("fma", cfg!(target_feature = "fma")),
        ("avx512f", cfg!(target_feature = "avx512f")),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    println!(
        "model: {} ({}), context window {} tokens, weights {weights:?}",
        model.name(),
        path.display(),
        model.context_window()
    );
    println!(
        "build: compile-time target features: {}",
        if features.is_empty() {
            "baseline x86-64 (runtime dispatch only)".to_owned()
        } else {
            features.join(", ")
        }
    );
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| load (open, parse, weights) | {} ms |", load.as_millis());
    println!(
        "| RSS before load / after load / peak while loading / peak | {rss_before:.0} / {rss_loaded:.0} / {peak_loading:.0} / {peak:.0} MB |"
    );
    let s_prompt = short_runs.first().map_or(0, |r| r.prompt_tokens);
    let l_prompt = long_runs.first().map_or(0, |r| r.prompt_tokens);
    println!(
        "| time to first token, {s_prompt}-token prompt (median of {runs}) | {:.0} ms |",
        median(
            short_runs
                .iter()
                .map(|r| r.ttft.as_secs_f64() * 1e3)
                .collect()
        )
    );
    println!(
        "| time to first token, {l_prompt}-token prompt (median of {runs}) | {:.0} ms |",
        median(
            long_runs
                .iter()
                .map(|r| r.ttft.as_secs_f64() * 1e3)
                .collect()
        )
    );
    println!(
        "| decode, up to {tokens} tokens at temperature 0.7 (median of {runs}) | {:.1} tokens/s |",
        median(short_runs.iter().map(|r| r.decode_tps).collect())
    );
    println!(
        "| decode per CPU-second (one core's worth; median of {runs}) | {:.1} tokens/s |",
        median(short_runs.iter().map(|r| r.decode_per_cpu_sec).collect())
    );
    println!(
        "| threads (RAYON_NUM_THREADS, else all cores) | {} |",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
    );
    for (i, r) in short_runs.iter().enumerate() {
        println!(
            "| run {}: answer tokens, finish | {}, {} |",
            i + 1,
            r.completion_tokens,
            r.finish
        );
    }
    Ok(())
}

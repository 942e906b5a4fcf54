//! A fast OpenAI-compatible model for benchmarks: `POST /v1/chat/completions` answers with a stream of
//! pre-serialized `chat.completion.chunk` events, a usage chunk and `[DONE]`.
//!
//! The shape of each answer is written into the last user message by the client, as
//! `[bench n=200 gap=0-2000 seed=7]`: `n` tokens, a gap drawn uniformly from `gap` microseconds before
//! each token after the first, from a generator seeded with `seed` (so the same seed gives the same
//! schedule whichever way the request came). The first token goes out as soon as the response starts.
//!
//! Each token's text is the moment it was written, in nanoseconds since the benchmark's epoch, in
//! hex, followed by a space. The client reads it back to measure each token's delivery latency, with
//! the one clock that the model and the client share (they run in the same process).
//!
//! Requests for the title model get a three-word answer at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use serde_json::Value;

/// The model name that marks a title request.
pub const TITLE_MODEL: &str = "bench-title";

const PREFIX: &[u8] = br#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1767225600,"model":"bench","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":{"content":""#;
const SUFFIX: &[u8] = b"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
const FINISH: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1767225600,"model":"bench","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

"#;
const TITLE: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1767225600,"model":"bench","choices":[{"index":0,"delta":{"content":"Quarterly report summary"},"finish_reason":null}]}

"#;

/// The shape of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Tokens in the answer.
    pub tokens: u32,
    /// Shortest gap before a token, in microseconds.
    pub gap_min_us: u64,
    /// Longest gap before a token, in microseconds.
    pub gap_max_us: u64,
    /// Seeds the gaps.
    pub seed: u64,
}

impl Plan {
    /// The marker that carries this plan inside a user message.
    pub fn marker(&self) -> String {
        format!(
            "[bench n={} gap={}-{} seed={}]",
            self.tokens, self.gap_min_us, self.gap_max_us, self.seed
        )
    }

    /// Reads a marker back from a message.
    pub fn parse(text: &str) -> Option<Self> {
        let start = text.find("[bench ")?;
        let rest = &text[start + "[bench ".len()..];
        let body = &rest[..rest.find(']')?];
        let mut plan = Plan {
            tokens: 0,
            gap_min_us: 0,
            gap_max_us: 0,
            seed: 0,
        };
        for field in body.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "n" => plan.tokens = value.parse().ok()?,
                "gap" => {
                    let (lo, hi) = value.split_once('-')?;
                    plan.gap_min_us = lo.parse().ok()?;
                    plan.gap_max_us = hi.parse().ok()?;
                }
                "seed" => plan.seed = value.parse().ok()?,
                _ => return None,
            }
        }
        (plan.gap_min_us <= plan.gap_max_us).then_some(plan)
    }

    /// The gap before each token after the first, in microseconds.
    pub fn gaps(&self) -> impl Iterator<Item = u64> {
        let mut rng = Rng::new(self.seed);
        let span = self.gap_max_us - self.gap_min_us + 1;
        let lo = self.gap_min_us;
        std::iter::repeat_with(move || lo + rng.next() % span)
    }
}

/// xorshift64*: enough randomness for gaps, the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Requests seen by the fake model.
#[derive(Debug, Default)]
pub struct Counters {
    /// Chat requests answered with a stream.
    pub chat: AtomicU64,
    /// Title requests.
    pub title: AtomicU64,
    /// Requests without a plan (answered 400).
    pub refused: AtomicU64,
}

#[derive(Clone)]
struct Shared {
    epoch: Instant,
    counters: Arc<Counters>,
}

/// The fake model, serving in the background.
pub struct FakeModel {
    /// `http://ADDR/v1`.
    pub base_url: String,
    /// What it answered so far.
    pub counters: Arc<Counters>,
}

/// Starts the fake model on `bind` (port 0 picks a free one); token times count from `epoch`.
pub async fn start(bind: SocketAddr, epoch: Instant) -> anyhow::Result<FakeModel> {
    let counters = Arc::new(Counters::default());
    let shared = Shared {
        epoch,
        counters: Arc::clone(&counters),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    // Like a real provider's edge, and like the server under test: no Nagle delay on small chunks.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("fake model stopped: {e}");
        }
    });
    Ok(FakeModel {
        base_url: format!("http://{addr}/v1"),
        counters,
    })
}

fn last_user_text(body: &Value) -> &str {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
}

fn event_stream(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}

async fn completions(State(shared): State<Shared>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    if body["model"] == TITLE_MODEL {
        shared.counters.title.fetch_add(1, Ordering::Relaxed);
        let text = format!("{TITLE}{FINISH}{}data: [DONE]\n\n", usage(30, 3));
        return event_stream(Body::from(text));
    }
    let Some(plan) = Plan::parse(last_user_text(&body)) else {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, "no [bench …] marker").into_response();
    };
    shared.counters.chat.fetch_add(1, Ordering::Relaxed);
    event_stream(Body::from_stream(tokens(plan, shared.epoch)))
}

fn usage(prompt: u64, completion: u64) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"bench\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\"total_tokens\":{}}}}}\n\n",
        prompt + completion
    )
}

/// One chunk per token on the plan's schedule, then the finish chunk, usage and `[DONE]` together.
fn tokens(
    plan: Plan,
    epoch: Instant,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    struct Gen<G> {
        plan: Plan,
        sent: u32,
        gaps: G,
        next_at: tokio::time::Instant,
        finished: bool,
    }
    let state = Gen {
        plan,
        sent: 0,
        gaps: plan.gaps(),
        next_at: tokio::time::Instant::now(),
        finished: false,
    };
    futures::stream::unfold(state, move |mut g| async move {
        if g.sent < g.plan.tokens {
            if g.sent > 0 {
                let gap = g.gaps.next().unwrap_or(0);
                g.next_at += Duration::from_micros(gap);
                if g.next_at > tokio::time::Instant::now() {
                    tokio::time::sleep_until(g.next_at).await;
                }
            }
            let written = epoch.elapsed().as_nanos() as u64;
            let mut chunk = Vec::with_capacity(PREFIX.len() + 20 + SUFFIX.len());
            chunk.extend_from_slice(PREFIX);
            chunk.extend_from_slice(format!("{written:x} ").as_bytes());
            chunk.extend_from_slice(SUFFIX);
            g.sent += 1;
            return Some((Ok(Bytes::from(chunk)), g));
        }
        if g.finished {
            return None;
        }
        g.finished = true;
        let tail = format!(
            "{FINISH}{}data: [DONE]\n\n",
            usage(60, u64::from(g.plan.tokens))
        );
        Some((Ok(Bytes::from(tail)), g))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip() {
        let plan = Plan {
            tokens: 200,
            gap_min_us: 0,
            gap_max_us: 2000,
            seed: 7,
        };
        let text = format!("Summarise the report. {}", plan.marker());
        assert_eq!(Plan::parse(&text), Some(plan));
        assert_eq!(Plan::parse("no marker"), None);
        assert_eq!(Plan::parse("[bench n=1 gap=5-1 seed=1]"), None);
    }

    #[test]
    fn gaps_are_in_range_and_repeatable() {
        let plan = Plan {
            tokens: 10,
            gap_min_us: 100,
            gap_max_us: 200,
            seed: 3,
        };
        let a: Vec<u64> = plan.gaps().take(1000).collect();
        let b: Vec<u64> = plan.gaps().take(1000).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|g| (100..=200).contains(g)));
        assert!(a.iter().any(|g| *g < 120) && a.iter().any(|g| *g > 180));
    }
}

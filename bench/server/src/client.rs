//! The measuring client: sends one chat turn, reads the SSE stream as it arrives and records the
//! time to the first token and each token's delivery latency (arrival minus the moment the model
//! wrote it, read from the token's own text).
//!
//! Two protocols: the model's own (`POST /v1/chat/completions`, OpenAI chunks), spoken to the model
//! directly or to a proxy in front of it, and Conversa's (`POST /api/chat/send`, `token` events).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake::Plan;

/// The wire protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI chat completions, streamed.
    OpenAi,
    /// Conversa's `POST /api/chat/send`.
    Conversa,
}

/// Where a stream is sent.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in the report.
    pub name: String,
    /// The full URL of the streaming route.
    pub url: String,
    /// How to talk to it.
    pub protocol: Protocol,
    /// The `model` an OpenAI-protocol request names (gateways have their own naming schemes).
    pub model: String,
}

/// The model name clients ask for.
pub const CHAT_MODEL: &str = "gpt-4o";

/// The API key sent on the model's protocol (a proxy in front of the fake model checks it; the
/// fake ignores it). `scripts/bench-server.sh` gives the same key to the proxy it starts.
pub const API_KEY: &str = "sk-bench-5f0c2a9e7d1b4c3a8e6f0d2b9a7c5e31";

/// A system prompt of the size a product sends.
const SYSTEM: &str = "You are a helpful assistant. Answer clearly and concisely. When files are \
attached, their text appears in <file> blocks; cite file names and pages when you use them.";

/// What one stream gave.
#[derive(Debug, Default)]
pub struct StreamResult {
    /// Request sent to first token received.
    pub ttft_ns: Option<u64>,
    /// Request sent to Conversa's `meta` event received (everything the server does before it
    /// calls the model).
    pub meta_ns: Option<u64>,
    /// Each token's arrival minus its writing by the model.
    pub token_latency_ns: Vec<u64>,
    /// Tokens received.
    pub tokens: u32,
    /// Request sent to end of stream.
    pub total_ns: u64,
    /// Whether the stream ended properly (`done` or `[DONE]`).
    pub done: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl StreamResult {
    /// Whether the stream delivered every planned token and ended properly.
    pub fn ok(&self, plan: &Plan) -> bool {
        self.error.is_none() && self.done && self.tokens == plan.tokens
    }
}

/// The user message that carries `plan`.
pub fn message(plan: &Plan) -> String {
    format!(
        "Summarise the quarterly report in three short bullet points. {}",
        plan.marker()
    )
}

fn body(target: &Target, plan: &Plan) -> Value {
    match target.protocol {
        Protocol::OpenAi => json!({
            "model": target.model,
            "stream": true,
            "stream_options": { "include_usage": true },
            "messages": [
                { "role": "system", "content": SYSTEM },
                { "role": "user", "content": message(plan) },
            ],
        }),
        Protocol::Conversa => json!({ "message": message(plan) }),
    }
}

/// An HTTP client as a browser or SDK would use it: keep-alive, no Nagle delay.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(30))
        .build()?)
}

/// Runs one stream against `target`; token times count from `epoch`; gives up after `limit`.
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    plan: &Plan,
    epoch: Instant,
    limit: Duration,
) -> StreamResult {
    let mut result = StreamResult::default();
    let start = epoch.elapsed().as_nanos() as u64;
    let outcome =
        tokio::time::timeout(limit, read(client, target, plan, epoch, start, &mut result))
            .await
            .unwrap_or_else(|_| Err(format!("no end after {} s", limit.as_secs())));
    if let Err(e) = outcome {
        result.error = Some(e);
    }
    result.total_ns = (epoch.elapsed().as_nanos() as u64).saturating_sub(start);
    result
}

async fn read(
    client: &reqwest::Client,
    target: &Target,
    plan: &Plan,
    epoch: Instant,
    start: u64,
    result: &mut StreamResult,
) -> Result<(), String> {
    let mut request = client
        .post(&target.url)
        .header("accept", "text/event-stream")
        .json(&body(target, plan));
    if target.protocol == Protocol::OpenAi {
        request = request.bearer_auth(API_KEY);
    }
    let mut response = request.send().await.map_err(|e| format!("request: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(format!("status {status}: {}", text.trim()));
    }
    let mut buffer: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        let chunk = response.chunk().await.map_err(|e| format!("stream: {e}"))?;
        let Some(chunk) = chunk else { break };
        let now = epoch.elapsed().as_nanos() as u64;
        buffer.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = find_event_end(&buffer[consumed..]) {
            let block = &buffer[consumed..consumed + end.0];
            consumed += end.1;
            handle_event(target.protocol, block, now, start, result)?;
        }
        buffer.drain(..consumed);
    }
    Ok(())
}

/// The end of the first complete event in `bytes`: (length of the block, length including its blank
/// line).
fn find_event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn handle_event(
    protocol: Protocol,
    block: &[u8],
    now: u64,
    start: u64,
    result: &mut StreamResult,
) -> Result<(), String> {
    let text = std::str::from_utf8(block).map_err(|_| "an event is not UTF-8".to_owned())?;
    let mut event = "";
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    match protocol {
        Protocol::OpenAi => {
            if data.is_empty() {
                return Ok(());
            }
            if data == "[DONE]" {
                result.done = true;
                return Ok(());
            }
            let v: Value = serde_json::from_str(&data).map_err(|e| format!("chunk: {e}"))?;
            if let Some(e) = v.get("error") {
                return Err(format!("error in stream: {e}"));
            }
            if let Some(t) = v
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                tokens(t, now, start, result)?;
            }
        }
        Protocol::Conversa => match event {
            "token" => {
                let v: Value = serde_json::from_str(&data).map_err(|e| format!("token: {e}"))?;
                let t = v["text"].as_str().unwrap_or("");
                tokens(t, now, start, result)?;
            }
            "meta" => result.meta_ns = Some(now.saturating_sub(start)),
            "done" => result.done = true,
            "error" => return Err(format!("error event: {data}")),
            _ => {}
        },
    }
    Ok(())
}

/// Each whitespace-separated word of a token's text is a write time in hex.
fn tokens(text: &str, now: u64, start: u64, result: &mut StreamResult) -> Result<(), String> {
    for word in text.split_whitespace() {
        let written = u64::from_str_radix(word, 16)
            .map_err(|_| format!("a token that is not a time: {word:?}"))?;
        if result.ttft_ns.is_none() {
            result.ttft_ns = Some(now.saturating_sub(start));
        }
        result.token_latency_ns.push(now.saturating_sub(written));
        result.tokens += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_protocols() {
        let mut r = StreamResult::default();
        let chunk = br#"data: {"choices":[{"index":0,"delta":{"content":"64 "}}]}"#;
        handle_event(Protocol::OpenAi, chunk, 300, 10, &mut r).unwrap();
        handle_event(Protocol::OpenAi, b"data: [DONE]", 310, 10, &mut r).unwrap();
        assert_eq!(r.ttft_ns, Some(290));
        assert_eq!(r.token_latency_ns, vec![200]);
        assert!(r.done);

        let mut r = StreamResult::default();
        let meta = b"event: meta\ndata: {\"conversation_id\":\"c\"}";
        handle_event(Protocol::Conversa, meta, 100, 0, &mut r).unwrap();
        let token = b"event: token\ndata: {\"text\":\"a \"}";
        handle_event(Protocol::Conversa, token, 110, 0, &mut r).unwrap();
        handle_event(Protocol::Conversa, b"event: done\ndata: {}", 120, 0, &mut r).unwrap();
        assert_eq!((r.ttft_ns, r.tokens, r.done), (Some(110), 1, true));
        assert_eq!(r.meta_ns, Some(100));
        assert!(handle_event(Protocol::Conversa, b"event: error\ndata: {}", 1, 0, &mut r).is_err());
    }

    #[test]
    fn finds_event_ends() {
        assert_eq!(find_event_end(b"data: x\n\ndata: y"), Some((7, 9)));
        assert_eq!(find_event_end(b"data: x\r\n\r\n"), Some((7, 11)));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }
}

//! Test support (feature `test-support`): fake model servers (OpenAI-compatible here, Anthropic in
//! [`anthropic`], Amazon Bedrock in [`bedrock`]), an SSE reader, small document builders, a
//! ready-made application on embedded adapters, and the one way tests wait for something that
//! happens in the background ([`Patience`], [`eventually`]).
//!
//! The fake stands at the one edge tests cannot run for real, the paid model API. It speaks the
//! wire protocol (`POST /v1/chat/completions`, streamed `chat.completion.chunk` events, a usage
//! chunk, `[DONE]`) and behaves by magic words in the last user message:
//!
//! | word | behaviour |
//! |---|---|
//! | (none) | echoes `Echo: <last user text>` word by word, then usage |
//! | `[[status:N]]` | answers HTTP N with an OpenAI error body, before any chunk |
//! | `[[drop]]` | sends three words, then cuts the connection |
//! | `[[stream-error]]` | sends two words, then an error object inside the stream |
//! | `[[slow]]` | 40 words, 50 ms apart |
//! | `[[slower]]` | 40 words, 250 ms apart |
//! | `[[no-usage]]` | no usage chunk |
//! | `[[cite:WORD]]` | finds WORD in the file passages of the request and answers `WORD is stated there [n].`, citing the number of the passage that holds it (read from the prompt, as a model would) |
//!
//! Requests with the title model's name (`title-model` in [`test_config`]) get `Fake Title For <first
//! three words>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is its job

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::app::App;
use crate::config::Config;

pub mod anthropic;
#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod receipts;

pub use anthropic::FakeAnthropic;
#[cfg(feature = "bedrock")]
pub use bedrock::FakeBedrock;

/// A running fake model server.
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    keys: Arc<Mutex<Vec<Option<String>>>>,
    aborted: Arc<std::sync::atomic::AtomicUsize>,
}

/// What the fake's handler shares.
#[derive(Clone)]
struct FakeState {
    requests: Arc<Mutex<Vec<Value>>>,
    keys: Arc<Mutex<Vec<Option<String>>>>,
    aborted: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeOpenAi {
    /// Starts one on a free port, for the rest of the test's runtime.
    pub async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let keys = Arc::new(Mutex::new(Vec::new()));
        let aborted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(FakeState {
                requests: Arc::clone(&requests),
                keys: Arc::clone(&keys),
                aborted: Arc::clone(&aborted),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            requests,
            keys,
            aborted,
        }
    }

    /// Streamed answers whose client went away before the end (their request was aborted).
    pub fn aborted(&self) -> usize {
        self.aborted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The bearer key of every request received so far (`None` when it sent no key).
    pub fn keys(&self) -> Vec<Option<String>> {
        self.keys.lock().unwrap().clone()
    }

    /// The requests for the chat model (not titles).
    pub fn chat_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["model"] != "title-model")
            .collect()
    }
}

/// The text of a message (text parts joined by a blank line).
fn content_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => String::new(),
    }
}

/// The text of each message of a request, in order.
pub fn message_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|messages| messages.iter().map(content_text).collect())
        .unwrap_or_default()
}

/// The text of the last user message of a request (text parts joined).
pub fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .map(content_text)
        .unwrap_or_default()
}

fn chunk(text: Option<&str>, finish: Option<&str>) -> String {
    let delta = match text {
        Some(t) => json!({ "content": t }),
        None => json!({}),
    };
    let v = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
    });
    format!("data: {v}\n\n")
}

fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if ch == ' ' {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

async fn completions(
    State(state): State<FakeState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(body.clone());
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    state.keys.lock().unwrap().push(key);
    let aborted = state.aborted.clone();
    let user = last_user_text(&body);
    let is_title = body["model"] == "title-model";

    if let Some(rest) = user.split("[[status:").nth(1) {
        if !is_title {
            let code: u16 = rest
                .split("]]")
                .next()
                .unwrap_or("500")
                .parse()
                .unwrap_or(500);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let err = json!({ "error": { "message": format!("fake provider says {code}"), "type": "fake_error", "param": null, "code": null } });
            return (status, axum::Json(err)).into_response();
        }
    }
    let answer = if is_title {
        let first: Vec<&str> = user
            .trim_start_matches("Message: ")
            .split_whitespace()
            .take(3)
            .collect();
        format!("Fake Title For {}", first.join(" "))
    } else if let Some(word) = user
        .split("[[cite:")
        .nth(1)
        .and_then(|rest| rest.split("]]").next())
    {
        match passage_number_of(&body, word) {
            Some(n) => format!("{word} is stated there [{n}]."),
            None => format!("No passage holds {word}."),
        }
    } else {
        format!("Echo: {user}")
    };
    let slower = user.contains("[[slower]]") && !is_title;
    let slow = (user.contains("[[slow]]") || slower) && !is_title;
    let gap = Duration::from_millis(if slower { 250 } else { 50 });
    let parts: Vec<String> = if slow {
        (0..40).map(|i| format!("w{i} ")).collect()
    } else {
        words(&answer)
    };
    let drop_midway = user.contains("[[drop]]") && !is_title;
    let stream_error = user.contains("[[stream-error]]") && !is_title;
    let usage = !user.contains("[[no-usage]]");
    let completion_tokens = parts.len();

    let stream = async_stream(move |tx| async move {
        let send = |s: String| tx.send(Ok::<_, std::io::Error>(Bytes::from(s)));
        for (i, p) in parts.iter().enumerate() {
            if drop_midway && i == 3 {
                // Let what was sent reach the client before the connection is cut.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = tx.send(Err(std::io::Error::other("connection cut")));
                return;
            }
            if stream_error && i == 2 {
                let _ = send(format!(
                    "data: {}\n\n",
                    json!({ "error": { "message": "fake provider overloaded mid-stream", "type": "server_error" } })
                ));
                return;
            }
            if slow {
                tokio::time::sleep(gap).await;
            }
            if send(chunk(Some(p), None)).is_err() {
                aborted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        }
        let _ = send(chunk(None, Some("stop")));
        if usage {
            let u = json!({ "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": [],
                "usage": { "prompt_tokens": 42, "completion_tokens": completion_tokens, "total_tokens": 42 + completion_tokens } });
            let _ = send(format!("data: {u}\n\n"));
        }
        let _ = send("data: [DONE]\n\n".into());
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A stream fed by a task through a channel.
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(f(tx));
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
}

/// A configuration for tests: the fake model, a temp data dir, titles from `title-model`.
pub fn test_config(
    model_base_url: &str,
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> Config {
    let mut map: HashMap<String, String> = HashMap::from([
        ("OPENAI_API_KEY".into(), "test-key".into()),
        ("OPENAI_BASE_URL".into(), model_base_url.into()),
        ("CONVERSA_DATA_DIR".into(), data_dir.display().to_string()),
        ("CONVERSA_CHAT_MODEL".into(), "chat-model".into()),
        ("CONVERSA_TITLE_MODEL".into(), "title-model".into()),
        ("CONVERSA_RATE_LIMIT_PER_MINUTE".into(), "0".into()),
        ("CONVERSA_MODEL_TIMEOUT_SECS".into(), "10".into()),
        // Ranking by meaning needs the embedding model; the tests that use it turn it on.
        ("CONVERSA_EMBEDDER".into(), "off".into()),
    ]);
    for (k, v) in extra {
        map.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|k| map.get(k).cloned()).unwrap()
}

/// An application on SQLite and local disk under `data_dir`, answering with the fake model, its
/// job workers started as the local server starts them.
pub async fn test_app(
    fake: &FakeOpenAi,
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> App {
    let app = App::from_config(test_config(&fake.base_url, data_dir, extra))
        .await
        .unwrap();
    app.start_workers();
    app
}

/// How often [`Patience`] looks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A child process, killed and reaped when this is dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `cargo lambda` runs here (`bash scripts/tools.sh install` provides it).
pub fn cargo_lambda_available() -> bool {
    std::process::Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Points the Lambda Invoke API at `http://127.0.0.1:{port}` (the Lambda endpoint alone: the other
/// services' emulators, when set, stay as they are) and gives the AWS clients a region and test
/// credentials unless the environment already has them. For test binaries: it sets process variables.
pub fn point_lambda_at(port: u16) {
    std::env::set_var(
        "AWS_ENDPOINT_URL_LAMBDA",
        format!("http://127.0.0.1:{port}"),
    );
    for (name, value) in [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}

/// cargo-lambda's emulator (`cargo lambda watch --only-lambda-apis`) on a free local port: its
/// Runtime API for function processes, its function URLs (`/lambda-url/_/…`) and its Invoke API.
/// Stopped when dropped.
pub struct LambdaEmulator {
    /// The port it listens on, at 127.0.0.1.
    pub port: u16,
    _process: KillOnDrop,
}

impl LambdaEmulator {
    /// Starts the emulator and waits (at most a minute) until it accepts connections.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = KillOnDrop(
            std::process::Command::new("cargo")
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "--invoke-address",
                    "127.0.0.1",
                    "--invoke-port",
                    &port.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let patience = Patience::new(Duration::from_secs(60), "the Lambda emulator to start");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            patience.wait().await;
        }
        Self {
            port,
            _process: process,
        }
    }

    /// One instance of a function: the binary at `bin` polling the emulator's Runtime API with
    /// `env` added to Lambda's own variables. Stopped when the result is dropped.
    pub fn instance<K, V>(&self, bin: &str, env: impl IntoIterator<Item = (K, V)>) -> KillOnDrop
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        KillOnDrop(
            std::process::Command::new(bin)
                .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
                .env("AWS_LAMBDA_FUNCTION_NAME", "_")
                .env(
                    "AWS_LAMBDA_RUNTIME_API",
                    format!("http://127.0.0.1:{}/.rt", self.port),
                )
                .envs(env)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

/// A deadline for something that happens in the background: look, and if it has not happened,
/// [`Patience::wait`] before looking again; past the deadline the test fails saying what it waited
/// for. Tests never sleep for ordering; they wait through this.
pub struct Patience {
    deadline: tokio::time::Instant,
    within: Duration,
    what: String,
}

impl Patience {
    /// Waiting at most `within` for `what`.
    pub fn new(within: Duration, what: impl Into<String>) -> Self {
        Self {
            deadline: tokio::time::Instant::now() + within,
            within,
            what: what.into(),
        }
    }

    /// Fails the test when the deadline has passed; otherwise waits a moment.
    pub async fn wait(&self) {
        assert!(
            tokio::time::Instant::now() < self.deadline,
            "waited {:?} for {}",
            self.within,
            self.what
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Looks with `check` until it gives a value, at most `within` (then the test fails, naming
/// `what`).
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let patience = Patience::new(within, what);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        patience.wait().await;
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// `id:` as a number (`None` when absent or not a number).
    pub id: Option<u64>,
    /// `event:` (empty when absent).
    pub event: String,
    /// `data:` lines joined by newlines, parsed as JSON (`Null` when not JSON).
    pub data: Value,
}

/// Parses a whole SSE body (comments skipped).
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in text.replace("\r\n", "\n").split("\n\n") {
        let mut event = String::new();
        let mut data = Vec::new();
        let mut id = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
            }
        }
        if !event.is_empty() || !data.is_empty() {
            out.push(SseEvent {
                id,
                event,
                data: serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null),
            });
        }
    }
    out
}

/// Reads server-sent events from a body as they arrive.
pub struct SseReader<S> {
    body: S,
    buffer: String,
    ready: std::collections::VecDeque<SseEvent>,
}

impl<S, E> SseReader<S>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    /// Reads `body` (a response's data stream).
    pub fn new(body: S) -> Self {
        Self {
            body,
            buffer: String::new(),
            ready: Default::default(),
        }
    }

    /// The next event (comments skipped), or `None` at the end of the body.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            let chunk = self.body.next().await?.unwrap();
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                self.ready.extend(parse_sse(&block));
            }
        }
    }

    /// Every event up to the end of the body.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// The concatenated `token` texts of a parsed stream.
pub fn streamed_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .filter_map(|e| e.data["text"].as_str())
        .collect()
}

/// The number of the passage holding `word` in a request: the `[n] …` header line nearest before
/// its first occurrence outside a `[[cite:…]]` request.
pub fn passage_number_of(body: &Value, word: &str) -> Option<u32> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let texts = messages.iter().flat_map(|m| match &m["content"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    });
    for text in texts {
        for (at, _) in text.match_indices(word) {
            if text[..at].ends_with("[[cite:") {
                continue;
            }
            let header = text[..at].lines().rev().find_map(|line| {
                let rest = line.strip_prefix('[')?;
                let (n, _) = rest.split_once(']')?;
                n.parse::<u32>().ok()
            });
            if header.is_some() {
                return header;
            }
        }
    }
    None
}

/// A valid PDF with one page per string (Helvetica text, a correct xref table).
pub fn pdf_with_pages(pages: &[&str]) -> Vec<u8> {
    let n = pages.len();
    // Objects: 1 catalog, 2 pages, 3 font, then per page: page object and content stream.
    let mut objects: Vec<String> = Vec::new();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {n} >>",
        kids.join(" ")
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    );
    for (i, text) in pages.iter().enumerate() {
        let content_id = 5 + 2 * i;
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
        ));
        let escaped = text
            .replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)");
        let stream = format!("BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{obj}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A small PNG (RGB gradient).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// One part of a multipart body: `(name, filename, content_type, bytes)`; text fields have no filename.
pub type FormPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart/form-data body and its content type.
pub fn multipart(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    let boundary = "conversa-test-boundary-7d4a";
    let mut body = Vec::new();
    for (name, filename, ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n")
                    .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n").as_bytes(),
            ),
        }
        if let Some(ct) = ct {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Reads a response body whole, as text.
pub async fn body_text(response: Response) -> String {
    let mut stream = response.into_body().into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

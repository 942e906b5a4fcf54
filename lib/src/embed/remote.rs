//! [`Embedder`] on the embedding Lambda function (`functions/embed`, `CONVERSA_EMBEDDER=lambda`):
//! the texts go to the function named by `CONVERSA_EMBED_FUNCTION` through the Lambda Invoke API
//! and its vectors come back. The model's code (candle, tokenizers: 3.6 MB zipped) then lives in
//! that one function, and the chat, conversations and files functions stay under their 10 MB.
//!
//! The wire format is [`EmbedRequest`] and [`EmbedResponse`] as JSON. The id and the dimension are
//! the model's own (the checksum of its weights), learnt from the first answer, so vectors made by
//! the function and by an in-process model (the extraction container) are interchangeable.
//!
//! The trait is blocking and is called both on the blocking pool and on async workers (the id,
//! when vectors are checked). The calls therefore run on a runtime of their own, on its own
//! thread: the caller waits on a channel, which never needs the caller's runtime.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{EmbedError, EmbedRequest, EmbedResponse, Embedder, MAX_CHARS};

/// Texts in one invocation: their vectors as JSON (about 4.3 kB each) stay far below Lambda's
/// 6 MB response limit, and the texts (at most [`MAX_CHARS`] each) below its request limit.
pub const TEXTS_PER_INVOKE: usize = 64;

/// What [`LambdaEmbedder::id`] says while the function has not answered: no stored vectors match.
const NOT_REACHED: &str = "bert/not-reached";

/// Connecting to the Invoke API; the whole call may take as long as the function's timeout (60 s)
/// and a little more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(65);

/// Attempts of one invocation when the service is busy (429, 5xx) or cannot be connected to, and
/// the pause before the first retry (doubled each time). Embedding the same texts twice is
/// harmless; a call that timed out is not tried again (it already took the function's timeout).
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Credentials are fetched again this long before they expire.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);

/// The characters kept as they are in the function's name in the path (RFC 3986 unreserved);
/// the `:` of an ARN and everything else is percent-encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where and as whom the function is invoked.
struct Target {
    /// `https://lambda.{region}.amazonaws.com`, or the configured endpoint (an emulator).
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

/// The embedding Lambda function, called through the Invoke API: a POST signed with SigV4.
pub struct LambdaEmbedder {
    function: String,
    /// `{endpoint}/2015-03-31/functions/{function}/invocations`.
    url: String,
    target: Target,
    http: reqwest::Client,
    /// The last credentials, reused until shortly before they expire.
    credentials: Mutex<Option<Credentials>>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The model's id and dimension, from the function's first answer.
    model: OnceLock<(String, usize)>,
}

impl std::fmt::Debug for LambdaEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaEmbedder")
            .field("function", &self.function)
            .field("url", &self.url)
            .field("model", &self.model.get())
            .finish()
    }
}

impl Drop for LambdaEmbedder {
    fn drop(&mut self) {
        // Dropped anywhere, even on an async worker: nothing waits for the runtime's threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A configured endpoint of the Lambda API: `AWS_ENDPOINT_URL_LAMBDA`, else the one of every
/// service (`AWS_ENDPOINT_URL`, or the SDK configuration's).
fn configured_endpoint(config: &aws_config::SdkConfig) -> Option<String> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    env("AWS_ENDPOINT_URL_LAMBDA")
        .or_else(|| config.endpoint_url().map(str::to_owned))
        .or_else(|| env("AWS_ENDPOINT_URL"))
}

impl LambdaEmbedder {
    /// A client of `function` (a name or an ARN) from the process's AWS configuration
    /// (`AWS_REGION`, credentials; `AWS_ENDPOINT_URL_LAMBDA` or `AWS_ENDPOINT_URL` for an
    /// emulator). Calls nothing yet: the model's id is asked for on first use.
    pub fn new(function: &str) -> Result<Self, EmbedError> {
        let runtime = runtime()?;
        let config = wait(&runtime, crate::aws::sdk_config())?;
        let region = config
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| {
                EmbedError::Model(format!("invoking {function}: no AWS region (AWS_REGION)"))
            })?;
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| EmbedError::Model(format!("invoking {function}: no AWS credentials")))?;
        let endpoint = configured_endpoint(config)
            .unwrap_or_else(|| format!("https://lambda.{region}.amazonaws.com"));
        let target = Target {
            endpoint,
            region,
            credentials,
        };
        Self::with_target(function, target, CALL_TIMEOUT, runtime)
    }

    fn with_target(
        function: &str,
        target: Target,
        timeout: Duration,
        runtime: tokio::runtime::Runtime,
    ) -> Result<Self, EmbedError> {
        let http = {
            let _in_runtime = runtime.enter();
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(timeout)
                .build()
                .map_err(|e| EmbedError::Model(format!("embedding client: {e}")))?
        };
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            target.endpoint.trim_end_matches('/'),
            utf8_percent_encode(function, PATH_SEGMENT)
        );
        Ok(Self {
            function: function.to_owned(),
            url,
            target,
            http,
            credentials: Mutex::new(None),
            runtime: Some(runtime),
            model: OnceLock::new(),
        })
    }

    /// The function's name, as configured.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// Credentials to sign with: the last ones while they are valid, else the provider's.
    fn credentials(&self, runtime: &tokio::runtime::Runtime) -> Result<Credentials, EmbedError> {
        let fresh = |c: &Credentials| {
            c.expiry().is_none_or(|expiry| {
                expiry
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > CREDENTIALS_MARGIN)
            })
        };
        if let Ok(cached) = self.credentials.lock() {
            if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
                return Ok(c.clone());
            }
        }
        let provider = self.target.credentials.clone();
        let credentials = wait(runtime, async move { provider.provide_credentials().await })?
            .map_err(|e| {
                EmbedError::Model(format!(
                    "invoking {}: no AWS credentials: {e}",
                    self.function
                ))
            })?;
        if let Ok(mut cached) = self.credentials.lock() {
            *cached = Some(credentials.clone());
        }
        Ok(credentials)
    }

    /// The Invoke request of `payload`, signed with `credentials` at `time`.
    fn signed_request(
        &self,
        payload: Vec<u8>,
        credentials: Credentials,
        time: SystemTime,
    ) -> Result<reqwest::Request, EmbedError> {
        let failed = |e: &dyn std::fmt::Display| {
            EmbedError::Model(format!("signing the call of {}: {e}", self.function))
        };
        let headers = [
            ("content-type", "application/json"),
            ("x-amz-invocation-type", "RequestResponse"),
        ];
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.target.region)
            .name("lambda")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&payload),
        )
        .map_err(|e| failed(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| failed(&e))?
            .into_parts();
        let mut request = self.http.post(&self.url);
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        request.body(payload).build().map_err(|e| failed(&e))
    }

    /// One call of the Invoke API, retried while the service is busy or unreachable; the status,
    /// the function's error kind (`X-Amz-Function-Error`) and the body.
    fn call(&self, payload: Vec<u8>) -> Result<(u16, Option<String>, Vec<u8>), EmbedError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| EmbedError::Model("embedding client stopped".into()))?;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let credentials = self.credentials(runtime)?;
            let request = self.signed_request(payload.clone(), credentials, SystemTime::now())?;
            let http = self.http.clone();
            let answer = wait(runtime, async move {
                let response = http.execute(request).await?;
                let status = response.status().as_u16();
                let function_error = response
                    .headers()
                    .get("x-amz-function-error")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, function_error, body.to_vec()))
            })?;
            let retry = match &answer {
                Ok((status, _, _)) => *status == 429 || (500..600).contains(status),
                Err(e) => e.is_connect(),
            };
            if !retry || attempt >= ATTEMPTS {
                return answer.map_err(|e| {
                    EmbedError::Model(format!("invoking {}: {}", self.function, describe(&e)))
                });
            }
            tracing::debug!(function = %self.function, attempt, "retrying the embedding function");
            std::thread::sleep(backoff);
            backoff *= 2;
            attempt += 1;
        }
    }

    /// One invocation: `texts` (at most [`TEXTS_PER_INVOKE`]) to their vectors.
    fn invoke(&self, texts: &[&str], pieces: Option<usize>) -> Result<EmbedResponse, EmbedError> {
        let request = EmbedRequest {
            texts: texts
                .iter()
                .map(|t| super::prefix(t, MAX_CHARS).to_owned())
                .collect(),
            pieces,
        };
        let payload = serde_json::to_vec(&request)
            .map_err(|e| EmbedError::Model(format!("embedding request: {e}")))?;
        let (status, function_error, body) = self.call(payload)?;
        if !(200..300).contains(&status) {
            // The service's error document: {"Type", "message"} (or "Message").
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    let m = v.get("message").or_else(|| v.get("Message"))?;
                    m.as_str().map(str::to_owned)
                })
                .unwrap_or_else(|| super::prefix(&String::from_utf8_lossy(&body), 200).to_owned());
            return Err(EmbedError::Model(format!(
                "invoking {}: HTTP {status}: {message}",
                self.function
            )));
        }
        if let Some(kind) = function_error {
            // The function's error document: {"errorType", "errorMessage"}.
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("errorMessage")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(EmbedError::Model(format!(
                "{} failed ({kind}): {message}",
                self.function
            )));
        }
        let answer: EmbedResponse = serde_json::from_slice(&body).map_err(|e| {
            EmbedError::Model(format!("{} answered unreadably: {e}", self.function))
        })?;
        if answer.vectors.len() != texts.len()
            || answer.vectors.iter().any(|v| v.len() != answer.dim)
        {
            return Err(EmbedError::Model(format!(
                "{} answered {} vectors for {} texts (or of another length than {})",
                self.function,
                answer.vectors.len(),
                texts.len(),
                answer.dim
            )));
        }
        let _ = self.model.set((answer.model.clone(), answer.dim));
        if self.model.get().is_some_and(|(id, _)| *id != answer.model) {
            return Err(EmbedError::Model(format!(
                "{} now runs another model ({}): vectors would not compare",
                self.function, answer.model
            )));
        }
        Ok(answer)
    }

    /// The model's id and dimension: from an earlier answer, else asked for now (an invocation
    /// with no texts).
    fn model(&self) -> Result<&(String, usize), EmbedError> {
        if let Some(model) = self.model.get() {
            return Ok(model);
        }
        self.invoke(&[], None)?;
        self.model
            .get()
            .ok_or_else(|| EmbedError::Model("the embedding function named no model".into()))
    }

    fn embed_all(
        &self,
        texts: &[&str],
        pieces: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(TEXTS_PER_INVOKE) {
            out.extend(self.invoke(batch, pieces)?.vectors);
        }
        Ok(out)
    }
}

/// The runtime the calls run on: one thread of its own.
fn runtime() -> Result<tokio::runtime::Runtime, EmbedError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("embed-invoke")
        .enable_all()
        .build()
        .map_err(|e| EmbedError::Model(format!("embedding client: {e}")))
}

/// A transport error with its causes (connection refused, timed out); it names the URL, never a
/// header's value.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `future` on `runtime` and waits for it on this thread, whatever runtime this thread may
/// be in.
fn wait<F>(runtime: &tokio::runtime::Runtime, future: F) -> Result<F::Output, EmbedError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| EmbedError::Model("embedding client stopped".into()))
}

impl Embedder for LambdaEmbedder {
    fn id(&self) -> &str {
        match self.model() {
            Ok((id, _)) => id,
            Err(e) => {
                tracing::warn!(function = %self.function, error = %e, "embedding function unreachable");
                NOT_REACHED
            }
        }
    }

    fn dim(&self) -> usize {
        self.model().map_or(0, |(_, dim)| *dim)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_all(texts, None)
    }

    fn embed_prefix(&self, texts: &[&str], pieces: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_all(texts, Some(pieces))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    use super::*;

    /// What the listener saw of one request.
    #[derive(Clone, Debug)]
    struct Seen {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    }

    /// A listener on a free local port answering every request with `answer` (status, extra
    /// headers, body) and keeping what it received.
    async fn listener(
        answer: (StatusCode, Vec<(&'static str, &'static str)>, String),
    ) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let kept = kept.clone();
                let (status, extra, text) = answer.clone();
                async move {
                    kept.lock().unwrap().push(Seen {
                        method,
                        uri,
                        headers,
                        body,
                    });
                    let mut response = (status, text).into_response();
                    for (name, value) in extra {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            },
        );
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(socket, app).await.unwrap() });
        (format!("http://{address}"), seen)
    }

    fn client(function: &str, endpoint: &str) -> Arc<LambdaEmbedder> {
        client_with_timeout(function, endpoint, CALL_TIMEOUT)
    }

    fn client_with_timeout(
        function: &str,
        endpoint: &str,
        timeout: Duration,
    ) -> Arc<LambdaEmbedder> {
        let target = Target {
            endpoint: endpoint.to_owned(),
            region: "eu-west-3".into(),
            credentials: SharedCredentialsProvider::new(Credentials::new(
                "AKIDCONVERSATEST",
                "a-secret-that-never-travels",
                Some("a-session-token".into()),
                None,
                "test",
            )),
        };
        Arc::new(
            LambdaEmbedder::with_target(function, target, timeout, runtime().unwrap()).unwrap(),
        )
    }

    /// `texts` through the client, on the blocking pool as the services call it.
    async fn embed(
        client: &Arc<LambdaEmbedder>,
        texts: Vec<&'static str>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let client = client.clone();
        tokio::task::spawn_blocking(move || client.embed(&texts))
            .await
            .unwrap()
    }

    fn answer_of(n: usize) -> String {
        serde_json::to_string(&EmbedResponse {
            model: "bert/abc123".into(),
            dim: 3,
            vectors: (0..n).map(|i| vec![i as f32, 0.5, -1.0]).collect(),
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_invocation_is_a_signed_post_naming_the_function_in_its_path() {
        let (endpoint, seen) = listener((StatusCode::OK, vec![], answer_of(2))).await;
        let arn = "arn:aws:lambda:eu-west-3:123456789012:function:conversa-embed";
        let remote = client(arn, &endpoint);

        let vectors = embed(&remote, vec!["first text", "second"]).await.unwrap();
        assert_eq!(vectors, vec![vec![0.0, 0.5, -1.0], vec![1.0, 0.5, -1.0]]);
        assert_eq!(remote.id(), "bert/abc123");
        assert_eq!(remote.dim(), 3);

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "the model was learnt from the answer");
        let request = &seen[0];
        assert_eq!(request.method, Method::POST);
        assert_eq!(
            request.uri.path(),
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-3%3A123456789012%3Afunction%3Aconversa-embed/invocations"
        );
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("x-amz-invocation-type"), "RequestResponse");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("x-amz-security-token"), "a-session-token");
        let date = header("x-amz-date");
        assert_eq!(date.len(), 16, "{date}");
        let authorization = header("authorization");
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDCONVERSATEST/{}/eu-west-3/lambda/aws4_request, ",
            &date[..8]
        );
        assert!(authorization.starts_with(&scope), "{authorization}");
        let signed = authorization
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap();
        for name in [
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-invocation-type",
        ] {
            assert!(signed.split(';').any(|h| h == name), "{name} in {signed}");
        }
        assert!(!authorization.contains("a-secret-that-never-travels"));
        let sent: EmbedRequest = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(sent.texts, ["first text", "second"]);
        assert_eq!(sent.pieces, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_texts_than_one_invocation_holds_go_in_several() {
        let (endpoint, seen) =
            listener((StatusCode::OK, vec![], answer_of(TEXTS_PER_INVOKE))).await;
        let remote = client("conversa-embed", &endpoint);
        let texts = vec!["same text"; 2 * TEXTS_PER_INVOKE];
        let vectors = embed(&remote, texts).await.unwrap();
        assert_eq!(vectors.len(), 2 * TEXTS_PER_INVOKE);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_function_error_is_a_clear_error_naming_the_function() {
        let (endpoint, _) = listener((
            StatusCode::OK,
            vec![("x-amz-function-error", "Unhandled")],
            r#"{"errorType":"ModelError","errorMessage":"no weights in /opt/all-MiniLM-L6-v2"}"#
                .into(),
        ))
        .await;
        let remote = client("conversa-embed", &endpoint);
        let err = embed(&remote, vec!["hello"]).await.unwrap_err().to_string();
        assert!(err.contains("conversa-embed failed (Unhandled)"), "{err}");
        assert!(err.contains("no weights in /opt/all-MiniLM-L6-v2"), "{err}");
        assert_eq!(remote.id(), NOT_REACHED);
        assert_eq!(remote.dim(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_call_is_a_clear_error_and_is_not_retried() {
        let (endpoint, seen) = listener((
            StatusCode::NOT_FOUND,
            vec![("x-amzn-errortype", "ResourceNotFoundException")],
            r#"{"Type":"User","message":"Function not found: conversa-embed"}"#.into(),
        ))
        .await;
        let remote = client("conversa-embed", &endpoint);
        let err = embed(&remote, vec!["hello"]).await.unwrap_err().to_string();
        assert!(err.contains("invoking conversa-embed: HTTP 404"), "{err}");
        assert!(err.contains("Function not found"), "{err}");
        assert!(!err.contains("a-secret-that-never-travels"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_service_is_tried_again_then_reported() {
        let (endpoint, seen) = listener((
            StatusCode::TOO_MANY_REQUESTS,
            vec![],
            r#"{"Type":"User","message":"Rate exceeded"}"#.into(),
        ))
        .await;
        let remote = client("conversa-embed", &endpoint);
        let err = embed(&remote, vec!["hello"]).await.unwrap_err().to_string();
        assert!(err.contains("HTTP 429: Rate exceeded"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), ATTEMPTS as usize);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_or_short_answer_is_an_error() {
        let (endpoint, _) = listener((StatusCode::OK, vec![], "{not json".into())).await;
        let remote = client("conversa-embed", &endpoint);
        let err = embed(&remote, vec!["hello"]).await.unwrap_err().to_string();
        assert!(err.contains("conversa-embed answered unreadably"), "{err}");

        let (endpoint, _) = listener((StatusCode::OK, vec![], answer_of(1))).await;
        let remote = client("conversa-embed", &endpoint);
        let err = embed(&remote, vec!["a", "b"])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("answered 1 vectors for 2 texts"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_function_that_does_not_answer_in_time_is_a_clear_error_tried_once() {
        // Accepts connections and reads requests, never answers.
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let (accepted, mut accepts) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = socket.accept().await {
                let _ = accepted.send(());
                held.push(stream);
            }
        });
        let remote = client_with_timeout(
            "conversa-embed",
            &format!("http://{address}"),
            Duration::from_millis(300),
        );
        let err = embed(&remote, vec!["hello"]).await.unwrap_err().to_string();
        assert!(err.contains("invoking conversa-embed"), "{err}");
        assert!(err.contains("timed out"), "{err}");
        assert!(accepts.recv().await.is_some());
        assert!(
            accepts.try_recv().is_err(),
            "a timed-out call is not sent again"
        );
    }
}

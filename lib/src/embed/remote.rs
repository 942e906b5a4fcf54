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
use std::sync::OnceLock;

use aws_sdk_lambda::primitives::Blob;

use super::{EmbedError, EmbedRequest, EmbedResponse, Embedder, MAX_CHARS};

/// Texts in one invocation: their vectors as JSON (about 4.3 kB each) stay far below Lambda's
/// 6 MB response limit, and the texts (at most [`MAX_CHARS`] each) below its request limit.
pub const TEXTS_PER_INVOKE: usize = 64;

/// What [`LambdaEmbedder::id`] says while the function has not answered: no stored vectors match.
const NOT_REACHED: &str = "bert/not-reached";

/// The embedding Lambda function, called through the Invoke API.
pub struct LambdaEmbedder {
    function: String,
    client: aws_sdk_lambda::Client,
    runtime: Option<tokio::runtime::Runtime>,
    /// The model's id and dimension, from the function's first answer.
    model: OnceLock<(String, usize)>,
}

impl std::fmt::Debug for LambdaEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaEmbedder")
            .field("function", &self.function)
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

impl LambdaEmbedder {
    /// A client of `function` (a name or an ARN) from the process's AWS configuration
    /// (`AWS_REGION`, credentials; `AWS_ENDPOINT_URL` for an emulator). Calls nothing yet: the
    /// model's id is asked for on first use.
    pub fn new(function: &str) -> Result<Self, EmbedError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("embed-invoke")
            .enable_all()
            .build()
            .map_err(|e| EmbedError::Model(format!("embedding client: {e}")))?;
        let config = wait(
            &runtime,
            aws_config::defaults(aws_config::BehaviorVersion::latest()).load(),
        )?;
        Ok(Self {
            function: function.to_owned(),
            client: aws_sdk_lambda::Client::new(&config),
            runtime: Some(runtime),
            model: OnceLock::new(),
        })
    }

    /// The function's name, as configured.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// One invocation: `texts` (at most [`TEXTS_PER_INVOKE`]) to their vectors.
    fn invoke(&self, texts: &[&str], pieces: Option<usize>) -> Result<EmbedResponse, EmbedError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| EmbedError::Model("embedding client stopped".into()))?;
        let request = EmbedRequest {
            texts: texts
                .iter()
                .map(|t| super::prefix(t, MAX_CHARS).to_owned())
                .collect(),
            pieces,
        };
        let payload = serde_json::to_vec(&request)
            .map_err(|e| EmbedError::Model(format!("embedding request: {e}")))?;
        let call = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload))
            .send();
        let out = wait(runtime, call)?.map_err(|e| {
            EmbedError::Model(format!(
                "invoking {}: {}",
                self.function,
                crate::aws::describe(&e)
            ))
        })?;
        let body = out.payload().map(Blob::as_ref).unwrap_or_default();
        if let Some(kind) = out.function_error() {
            // The function's error document: {"errorType", "errorMessage"}.
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("errorMessage")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(EmbedError::Model(format!(
                "{} failed ({kind}): {message}",
                self.function
            )));
        }
        let answer: EmbedResponse = serde_json::from_slice(body).map_err(|e| {
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

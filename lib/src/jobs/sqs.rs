//! Extraction jobs on SQS: the files function sends `{"file_id", "owner"}` for a file too heavy to
//! extract inline, and the extractor worker (`conversa-extractor`, a long-running container) receives
//! it, processes the file from the blob store and updates its record. A message is deleted once the
//! file is settled (`ready` or `failed`); when a dependency is down it is left to come back after the
//! queue's visibility timeout (the queue's redrive policy moves repeated failures aside).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Handled, Job, JobError, JobHandler, JobQueue};
use aws_sdk_sqs::Client;

/// What can go wrong with the queue.
#[derive(Debug, thiserror::Error)]
#[error("job queue unavailable: {0}")]
pub struct QueueError(pub String);

fn unavailable<E>(e: E) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error,
{
    QueueError(crate::aws::describe(&e))
}

/// A client from the process's AWS configuration.
pub async fn client() -> Client {
    Client::new(crate::aws::sdk_config().await)
}

/// Sends one job.
pub async fn enqueue(client: &Client, queue_url: &str, job: &Job) -> Result<(), QueueError> {
    let body = serde_json::to_string(job).map_err(|e| QueueError(e.to_string()))?;
    client
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// The SQS queue as the product's job queue (the files function sends, the extractor receives).
pub struct SqsJobs {
    client: Client,
    queue_url: String,
}

impl SqsJobs {
    /// A queue at `queue_url`, with a client from the process's AWS configuration.
    pub async fn from_env(queue_url: String) -> Self {
        Self {
            client: client().await,
            queue_url,
        }
    }
}

#[async_trait::async_trait]
impl JobQueue for SqsJobs {
    async fn enqueue(&self, job: Job) -> Result<(), JobError> {
        enqueue(&self.client, &self.queue_url, &job)
            .await
            .map_err(|e| JobError::Unavailable(e.0))
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file is settled (`ready` or `failed`), or gone: the message is done.
    Done,
    /// The message is not a job: it is dropped.
    Malformed,
    /// A dependency failed: the message comes back later.
    Retry,
}

/// Handles one message body.
pub async fn handle(handler: &dyn JobHandler, body: &str) -> Outcome {
    let Ok(job) = serde_json::from_str::<Job>(body) else {
        tracing::warn!(
            body_len = body.len(),
            "dropping a message that is not an extraction job"
        );
        return Outcome::Malformed;
    };
    match handler.handle(&job).await {
        Handled::Done => Outcome::Done,
        Handled::Retry => Outcome::Retry,
    }
}

/// Receives jobs and hands each to `handler` until `shutdown` completes (long polling, up to ten at
/// a time, one after the other: extraction is CPU-bound and the container is sized for one file).
pub async fn run_worker(
    handler: Arc<dyn JobHandler>,
    client: Client,
    queue_url: String,
    shutdown: impl Future<Output = ()>,
) -> Result<(), QueueError> {
    tokio::pin!(shutdown);
    let mut failures = 0u32;
    loop {
        let received = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = client
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(20)
                .send() => r,
        };
        let messages = match received {
            Ok(out) => {
                failures = 0;
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                failures += 1;
                let e = unavailable(e);
                if failures >= 10 {
                    return Err(e);
                }
                tracing::warn!(error = %e, failures, "cannot receive jobs; backing off");
                tokio::time::sleep(Duration::from_secs(u64::from(failures.min(6)) * 5)).await;
                continue;
            }
        };
        for m in messages {
            let outcome = handle(handler.as_ref(), m.body().unwrap_or_default()).await;
            if outcome != Outcome::Retry {
                if let Some(handle) = m.receipt_handle() {
                    client
                        .delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
    }
}

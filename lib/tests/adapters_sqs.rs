//! The extraction job queue against a real SQS API (moto locally, `AWS_ENDPOINT_URL`): the `JobQueue`
//! contract (each check on a queue of its own), and a job sent for an uploaded file received by the
//! worker, the file processed from S3 and the message deleted; with an embedding model, the file's
//! vectors stored in S3 before its message is deleted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(all(feature = "sqs", feature = "s3", feature = "sqlite"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use conversa::blobs::keys;
use conversa::blobs::s3::{ensure_bucket, S3Blobs};
use conversa::contract::Subject;
use conversa::domain::*;
use conversa::jobs::contract::{Delivery, JobReceiver};
use conversa::jobs::sqs::SqsJobs;
use conversa::jobs::{sqs as jobs, Job as ExtractionJob, JobError, JobQueue};
use conversa::App;

/// The SQS adapter with the receiving end its worker uses (receive, delete, visibility).
struct SqsQueue {
    jobs: SqsJobs,
    client: aws_sdk_sqs::Client,
    url: String,
}

fn unavailable(e: impl std::fmt::Display) -> JobError {
    JobError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, job: ExtractionJob) -> Result<(), JobError> {
        self.jobs.enqueue(job).await
    }
}

#[async_trait::async_trait]
impl JobReceiver for SqsQueue {
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, JobError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20).min(20))
            .send()
            .await
            .map_err(unavailable)?;
        let Some(m) = out.messages.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(Delivery {
            job: serde_json::from_str(m.body().unwrap_or_default()).map_err(unavailable)?,
            receipt: m.receipt_handle().unwrap_or_default().to_owned(),
        }))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), JobError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&delivery.receipt)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn give_back(&self, delivery: &Delivery) -> Result<(), JobError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// A fresh queue, deleted after the check.
async fn queue() -> Option<Subject<SqsQueue>> {
    common::service("AWS_ENDPOINT_URL", "SQS")?;
    let client = aws_sdk_sqs::Client::new(conversa::aws::sdk_config().await);
    let url = client
        .create_queue()
        .queue_name(common::unique("q"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let teardown = {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client.delete_queue().queue_url(url).send().await.unwrap();
        }
    };
    let jobs = SqsJobs::from_env(url.clone()).await;
    Some(Subject::new(SqsQueue { jobs, client, url }).with_teardown(teardown))
}

conversa::job_queue_contract_tests!(contract, queue());

#[tokio::test]
async fn the_worker_processes_queued_files() {
    if common::service("AWS_ENDPOINT_URL", "SQS").is_none() {
        return;
    }
    let sdk = conversa::aws::sdk_config().await;
    let s3 = conversa::blobs::s3::client(sdk);
    let bucket = common::unique("jobs");
    ensure_bucket(&s3, &bucket).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = sqs
        .create_queue()
        .queue_name(common::unique("q"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&[("CONVERSA_DATA_DIR", dir.path().to_str().unwrap())]);
    let blobs = S3Blobs::new(s3.clone(), &bucket);
    let state = App::new(
        config,
        conversa::store::sqlite::SqliteStore::in_memory()
            .unwrap()
            .with_turn_log(),
        Arc::new(blobs.clone()),
        Arc::new(conversa::limits::memory::MemoryLimiter::new()),
        Arc::new(conversa::llm::Registry::single(
            "m",
            conversa::llm::Provider::OpenAi,
            Arc::new(
                conversa::llm::openai::OpenAiModel::new(
                    Some("unused"),
                    Some("http://127.0.0.1:9"),
                    "m",
                )
                .unwrap(),
            ),
        )),
    )
    .unwrap();
    let owner = Owner::new("worker@example.com");
    let meta = FileMeta::new(
        "data.csv".into(),
        "text/csv".into(),
        12,
        FileType::Csv,
        FileStatus::Processing,
    );
    state.store.put_file(&owner, &meta).await.unwrap();
    use conversa::blobs::BlobStore;
    blobs
        .put(
            &keys::original(&owner, &meta.id),
            Bytes::from_static(b"a,b\n1,2\n3,4\n"),
            "text/csv",
        )
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&queue)
        .message_body("not a job")
        .send()
        .await
        .unwrap();
    jobs::enqueue(
        &sqs,
        &queue,
        &ExtractionJob {
            file_id: meta.id.clone(),
            owner: owner.as_str().to_owned(),
        },
    )
    .await
    .unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(jobs::run_worker(
        state.state.files.clone(),
        sqs.clone(),
        queue.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let done = common::eventually("the file is processed", Duration::from_secs(30), || async {
        let got = state.store.get_file(&owner, &meta.id).await.unwrap()?;
        (got.status != FileStatus::Processing).then_some(got)
    })
    .await;
    assert_eq!(done.status, FileStatus::Ready, "{done:?}");
    assert_eq!(done.file_type, FileType::Csv);
    assert!(done.char_count.unwrap() > 0);
    // Both messages (the job and the malformed one) are gone once handled.
    common::eventually(
        "every message is deleted",
        Duration::from_secs(30),
        || async {
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(&queue)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .unwrap();
            let count = |name: QueueAttributeName| -> u64 {
                attrs
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let left = count(QueueAttributeName::ApproximateNumberOfMessages)
                + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
            (left == 0).then_some(())
        },
    )
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops when asked")
        .unwrap()
        .unwrap();
    sqs.delete_queue().queue_url(&queue).send().await.unwrap();
    blobs.delete_prefix("worker_example_com/").await.unwrap();
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
}

/// The extraction container embeds at extraction: by the time the worker deletes a job's message,
/// the file's vectors are in S3, made by the container's model for the file's stored text (the
/// container may be stopped between two jobs, so nothing is left to a background task).
#[cfg(feature = "embedder")]
#[tokio::test]
async fn the_worker_stores_a_files_vectors_before_deleting_its_job() {
    use conversa::blobs::BlobStore;
    use conversa::embed::Embedder;
    if common::service("AWS_ENDPOINT_URL", "SQS").is_none() {
        return;
    }
    let Some(model) = common::embed_model_dir() else {
        return;
    };
    let embedder: Arc<dyn Embedder> =
        Arc::new(conversa::embed::minilm::MiniLm::load(&model).unwrap());
    let sdk = conversa::aws::sdk_config().await;
    let s3 = conversa::blobs::s3::client(sdk);
    let bucket = common::unique("vectors");
    ensure_bucket(&s3, &bucket).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = sqs
        .create_queue()
        .queue_name(common::unique("q"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(&[("CONVERSA_DATA_DIR", dir.path().to_str().unwrap())]);
    let blobs = S3Blobs::new(s3.clone(), &bucket);
    let state = App::new(
        config,
        conversa::store::sqlite::SqliteStore::in_memory()
            .unwrap()
            .with_turn_log(),
        Arc::new(blobs.clone()),
        Arc::new(conversa::limits::memory::MemoryLimiter::new()),
        Arc::new(conversa::llm::Registry::single(
            "m",
            conversa::llm::Provider::OpenAi,
            Arc::new(
                conversa::llm::openai::OpenAiModel::new(
                    Some("unused"),
                    Some("http://127.0.0.1:9"),
                    "m",
                )
                .unwrap(),
            ),
        )),
    )
    .unwrap()
    .with_embedder(Some(embedder.clone()))
    .unwrap();
    let owner = Owner::new("embedder@example.com");
    // Enough rows for several chunks.
    let mut csv = String::from("city,river,note\n");
    for i in 0..400 {
        csv.push_str(&format!(
            "Town {i},River {},the ferry crosses at dawn and the market opens on day {}\n",
            i % 17,
            i % 7
        ));
    }
    let meta = FileMeta::new(
        "towns.csv".into(),
        "text/csv".into(),
        csv.len() as u64,
        FileType::Csv,
        FileStatus::Processing,
    );
    state.store.put_file(&owner, &meta).await.unwrap();
    blobs
        .put(
            &keys::original(&owner, &meta.id),
            Bytes::from(csv),
            "text/csv",
        )
        .await
        .unwrap();
    jobs::enqueue(
        &sqs,
        &queue,
        &ExtractionJob {
            file_id: meta.id.clone(),
            owner: owner.as_str().to_owned(),
        },
    )
    .await
    .unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(jobs::run_worker(
        state.state.files.clone(),
        sqs.clone(),
        queue.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    common::eventually(
        "the job's message is deleted",
        Duration::from_secs(60),
        || async {
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(&queue)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .unwrap();
            let count = |name: QueueAttributeName| -> u64 {
                attrs
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let left = count(QueueAttributeName::ApproximateNumberOfMessages)
                + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
            (left == 0).then_some(())
        },
    )
    .await;
    // Read at once, not waited for: they must already be there.
    let stored = blobs
        .get(&keys::vectors(&owner, &meta.id))
        .await
        .unwrap()
        .expect("the vectors are in S3 when the job's message is deleted");
    let done = state
        .store
        .get_file(&owner, &meta.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, FileStatus::Ready, "{done:?}");
    let text = String::from_utf8(
        blobs
            .get(&keys::text(&owner, &meta.id))
            .await
            .unwrap()
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let chunks = conversa::service::retrieval::chunk(&[conversa::service::retrieval::Doc {
        name: String::new(),
        text: text.clone(),
    }]);
    assert!(chunks.len() > 1, "the file makes several chunks");
    let expect = conversa::embed::vectors::Expect {
        model: embedder.id(),
        chunker: conversa::service::retrieval::CHUNKER_ID,
        text: &text,
        dim: embedder.dim(),
    };
    let vectors = conversa::embed::vectors::decode(&stored, &expect).unwrap();
    assert_eq!(vectors.len(), chunks.len(), "one vector per chunk");
    // The stored vector of a chunk is the model's vector of that chunk.
    let again = embedder.embed(&[chunks[1].text.as_str()]).unwrap();
    assert!(conversa::embed::cosine(&vectors[1], &again[0]) > 0.99);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops when asked")
        .unwrap()
        .unwrap();
    sqs.delete_queue().queue_url(&queue).send().await.unwrap();
    blobs.delete_prefix("embedder_example_com/").await.unwrap();
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
}

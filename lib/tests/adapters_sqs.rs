//! The extraction job queue against a real SQS API (moto locally, `AWS_ENDPOINT_URL`): a job sent for
//! an uploaded file is received by the worker, the file is processed from S3 and the message deleted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is their job
#![cfg(all(feature = "sqs", feature = "s3", feature = "sqlite"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conversa::blobs::keys;
use conversa::blobs::s3::{ensure_bucket, S3Blobs};
use conversa::domain::*;
use conversa::jobs::{sqs as jobs, Job as ExtractionJob};
use conversa::App;

#[tokio::test]
async fn the_worker_processes_queued_files() {
    if common::service("AWS_ENDPOINT_URL", "sqs extraction jobs").is_none() {
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
        Arc::new(conversa::store::sqlite::SqliteStore::in_memory().unwrap()),
        Arc::new(blobs.clone()),
        Arc::new(conversa::limits::memory::MemoryLimiter::new()),
        Arc::new(
            conversa::llm::openai::OpenAiModel::new(
                Some("unused"),
                Some("http://127.0.0.1:9"),
                "m",
            )
            .unwrap(),
        ),
    );
    let owner = Owner::new("worker@example.com");
    let meta = FileMeta {
        id: FileId::generate(),
        conversation_id: None,
        filename: "data.csv".into(),
        content_type: "text/csv".into(),
        size: 12,
        file_type: FileType::Csv,
        status: FileStatus::Processing,
        char_count: None,
        token_count: None,
        pages: None,
        error: None,
        note: None,
        progress: None,
        created_at: Timestamp::now(),
    };
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let got = state
            .store
            .get_file(&owner, &meta.id)
            .await
            .unwrap()
            .unwrap();
        if got.status != FileStatus::Processing || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done.status, FileStatus::Ready, "{done:?}");
    assert_eq!(done.file_type, FileType::Csv);
    assert!(done.char_count.unwrap() > 0);
    // Both messages (the job and the malformed one) are gone once handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let left = count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} messages left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

//! The `JobQueue` port: extraction of large files in the background.
//!
//! `POST /api/files` answers `202` with `status: "processing"` for files above the inline
//! thresholds and enqueues a job; a worker extracts the text, reporting `progress`, and marks the
//! file `ready` or `failed`. The job code ([`run`]) is the same wherever it runs: in-process
//! workers locally ([`local::LocalJobs`]), the extraction container in AWS.

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::blobs::keys;
use crate::domain::{FileId, FileStatus, Owner};
use crate::AppState;

pub mod local;

/// One file to extract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The file's owner.
    pub owner: String,
    /// The file.
    pub file_id: FileId,
}

/// What can go wrong when enqueueing.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The queue cannot take the job.
    #[error("job queue unavailable: {0}")]
    Unavailable(String),
}

/// Somewhere jobs wait for a worker.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job; it runs once a worker is free (also after a restart).
    async fn enqueue(&self, job: Job) -> Result<(), JobError>;
}

impl From<JobError> for crate::api::ApiError {
    fn from(e: JobError) -> Self {
        tracing::error!(error = %e, "job queue unavailable");
        crate::api::ApiError::Unavailable(
            "Background processing is unavailable right now. Please try again shortly.".into(),
        )
    }
}

/// Extracts one queued file and records the outcome on its record. Errors are recorded on the
/// file (status `failed` with a reason), never returned: a job always ends.
pub async fn run(state: &AppState, job: &Job) {
    let owner = Owner::new(job.owner.clone());
    let Ok(Some(mut meta)) = state.store.get_file(&owner, &job.file_id).await else {
        tracing::warn!(file = %job.file_id, "job for a file that no longer exists");
        return;
    };
    if meta.status != FileStatus::Processing {
        return;
    }
    let original: Bytes = match state.blobs.get(&keys::original(&owner, &job.file_id)).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            meta.status = FileStatus::Failed;
            meta.error = Some("the uploaded bytes are missing".into());
            meta.progress = None;
            let _ = state.store.put_file(&owner, &meta).await;
            return;
        }
        Err(e) => {
            // Leave it processing: the job is retried after a restart.
            tracing::error!(error = %e, "job could not read the file");
            return;
        }
    };
    meta.progress = Some(1);
    let _ = state.store.put_file(&owner, &meta).await;

    // Progress from the extractor goes to the record at most every 5 points.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
    let progress_state = state.clone();
    let progress_owner = owner.clone();
    let progress_id = job.file_id.clone();
    let reporter = tokio::spawn(async move {
        let mut last = 0u8;
        while let Some(p) = rx.recv().await {
            if p >= last.saturating_add(5) && p < 100 {
                last = p;
                if let Ok(Some(mut m)) = progress_state
                    .store
                    .get_file(&progress_owner, &progress_id)
                    .await
                {
                    if m.status == FileStatus::Processing {
                        m.progress = Some(p);
                        let _ = progress_state.store.put_file(&progress_owner, &m).await;
                    }
                }
            }
        }
    });
    let outcome = crate::service::files::extract_bytes(
        state,
        &meta.filename,
        Some(&meta.content_type),
        original,
        Some(tx),
    )
    .await;
    let _ = reporter.await;
    // Re-read: the user may have deleted the file meanwhile.
    let Ok(Some(mut meta)) = state.store.get_file(&owner, &job.file_id).await else {
        return;
    };
    match outcome {
        Ok((_, extracted)) => {
            if let Err(e) =
                crate::service::files::store_extracted(state, &owner, &mut meta, extracted).await
            {
                tracing::error!(error = %e, "job could not store the text");
                return;
            }
        }
        Err(e) => {
            meta.status = FileStatus::Failed;
            meta.error = Some(e.public_message());
            meta.progress = None;
        }
    }
    if let Err(e) = state.store.put_file(&owner, &meta).await {
        tracing::error!(error = %e, "job could not record its outcome");
    }
}

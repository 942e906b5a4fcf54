//! The `JobQueue` port: extraction of large files in the background.
//!
//! `POST /api/files` answers `202` with `status: "processing"` for files above the inline
//! thresholds and enqueues a job; a worker extracts the text, reporting `progress`, and marks the
//! file `ready` or `failed`. The job code ([`run`]) is the same wherever it runs: in-process
//! workers locally ([`local::LocalJobs`]), the extraction container in AWS.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::domain::{FileId, FileStatus, Owner};
use crate::AppState;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
pub mod local;
#[cfg(feature = "sqs")]
pub mod sqs;

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

/// Extracts one queued file and records the outcome on its record (`ready`, or `failed` with the
/// reason), reporting `progress` as it goes. Returns an error only when a dependency is down, so the
/// job can be tried again later.
pub async fn run(state: &AppState, job: &Job) -> Result<(), ApiError> {
    let owner = Owner::new(job.owner.clone());
    // Progress from the extractor goes to the record at most every 5 points.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
    let (progress_state, progress_owner, progress_id) =
        (state.clone(), owner.clone(), job.file_id.clone());
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
    let result = crate::service::files::process_upload(state, &owner, &job.file_id, Some(tx)).await;
    let _ = reporter.await;
    match result {
        Ok(meta) => {
            tracing::info!(file = %meta.id, status = meta.status.as_str(), "file processed");
            Ok(())
        }
        // Deleted meanwhile, or the bytes never arrived: nothing to retry.
        Err(ApiError::NotFound(_)) | Err(ApiError::BadRequest(_)) => Ok(()),
        Err(e) => {
            tracing::error!(file = %job.file_id, error = %e, "extraction job failed; it will be tried again");
            Err(e)
        }
    }
}

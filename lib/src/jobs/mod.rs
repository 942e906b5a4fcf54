//! The `JobQueue` port: extraction of large files in the background.
//!
//! `POST /api/files` answers `202` with `status: "processing"` for files above the inline
//! thresholds and enqueues a [`Job`]; a worker hands each job to a [`JobHandler`] (the files
//! service's extraction worker), which extracts the text, reports `progress` and marks the file
//! `ready` or `failed`. The queue only carries jobs: in-process workers locally
//! ([`local::LocalJobs`]), SQS and the extraction container in AWS ([`sqs`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::FileId;

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

/// What became of a job a handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Settled, or nothing left to do: the queue forgets the job.
    Done,
    /// A dependency failed: the job runs again later.
    Retry,
}

/// Runs jobs a worker received.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Runs one job to its end and says whether it should run again.
    async fn handle(&self, job: &Job) -> Handled;
}

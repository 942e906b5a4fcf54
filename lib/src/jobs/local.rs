//! In-process job workers for the local server. Each job is also written as a small file under
//! `{data_dir}/jobs/` until it finishes, so jobs interrupted by a restart run again at start.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};

use super::{Job, JobError, JobQueue};
use crate::AppState;

/// A queue in memory, backed by files.
pub struct LocalJobs {
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Job>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

impl LocalJobs {
    /// A queue keeping its pending jobs under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            dir,
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    fn path(&self, job: &Job) -> PathBuf {
        let safe: String = job
            .file_id
            .as_str()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// Starts the workers (at most `concurrency` jobs at once) and re-queues the jobs a previous run
    /// left unfinished. Calling it twice does nothing.
    pub fn start(self: &Arc<Self>, state: AppState, concurrency: usize) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if let Some(job) = std::fs::read(entry.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Job>(&b).ok())
                {
                    tracing::info!(file = %job.file_id, "resuming an unfinished extraction");
                    let _ = self.tx.send(job);
                }
            }
        }
        let this = Arc::clone(self);
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let (state, this) = (state.clone(), Arc::clone(&this));
                tokio::spawn(async move {
                    super::run(&state, &job).await;
                    let _ = tokio::fs::remove_file(this.path(&job)).await;
                    drop(permit);
                });
            }
        });
    }
}

#[async_trait]
impl JobQueue for LocalJobs {
    async fn enqueue(&self, job: Job) -> Result<(), JobError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| JobError::Unavailable(e.to_string()))?;
        let body = serde_json::to_vec(&job).map_err(|e| JobError::Unavailable(e.to_string()))?;
        tokio::fs::write(self.path(&job), body)
            .await
            .map_err(|e| JobError::Unavailable(e.to_string()))?;
        self.tx
            .send(job)
            .map_err(|_| JobError::Unavailable("the workers have stopped".into()))
    }
}

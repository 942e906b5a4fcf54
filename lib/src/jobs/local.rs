//! In-process job workers for the local server. Each job is also written as a small file under
//! `{data_dir}/jobs/` until it finishes, so jobs interrupted by a restart run again at start.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};

use super::{Handled, Job, JobError, JobHandler, JobQueue};

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

    /// Starts the workers (at most `concurrency` jobs at once, each run by `handler`) and re-queues
    /// the jobs a previous run left unfinished. Calling it twice does nothing.
    pub fn start(self: &Arc<Self>, handler: Arc<dyn JobHandler>, concurrency: usize) {
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
                let (handler, this) = (Arc::clone(&handler), Arc::clone(&this));
                tokio::spawn(async move {
                    // A job that failed for want of a dependency keeps its file: it runs again
                    // at the next start.
                    if handler.handle(&job).await == Handled::Done {
                        let _ = tokio::fs::remove_file(this.path(&job)).await;
                    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::FileId;

    /// Answers each job with `answer` and reports it on a channel.
    struct Recorder {
        answer: Handled,
        seen: mpsc::UnboundedSender<Job>,
    }

    #[async_trait]
    impl JobHandler for Recorder {
        async fn handle(&self, job: &Job) -> Handled {
            let _ = self.seen.send(job.clone());
            self.answer
        }
    }

    fn job() -> Job {
        Job {
            owner: "local".into(),
            file_id: FileId::generate(),
        }
    }

    fn start(
        dir: &std::path::Path,
        answer: Handled,
    ) -> (Arc<LocalJobs>, mpsc::UnboundedReceiver<Job>) {
        let queue = Arc::new(LocalJobs::new(dir.to_path_buf()));
        let (seen, rx) = mpsc::unbounded_channel();
        queue.start(Arc::new(Recorder { answer, seen }), 2);
        (queue, rx)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Job>) -> Job {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the handler ran")
            .expect("the queue is running")
    }

    #[tokio::test]
    async fn a_queued_job_reaches_the_handler_and_is_forgotten_once_done() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, mut seen) = start(dir.path(), Handled::Done);
        let j = job();
        queue.enqueue(j.clone()).await.unwrap();
        assert_eq!(next(&mut seen).await, j);
        let path = queue.path(&j);
        crate::testing::eventually(Duration::from_secs(10), "the job file to go", || async {
            (!path.exists()).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn a_job_to_retry_stays_and_runs_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let j = job();
        {
            let (queue, mut seen) = start(dir.path(), Handled::Retry);
            queue.enqueue(j.clone()).await.unwrap();
            assert_eq!(next(&mut seen).await, j);
            assert!(queue.path(&j).exists(), "kept for the next start");
        }
        let (_queue, mut seen) = start(dir.path(), Handled::Done);
        assert_eq!(next(&mut seen).await, j, "resumed at start");
    }

    #[tokio::test]
    async fn a_queue_not_started_keeps_its_jobs_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let queue = LocalJobs::new(dir.path().to_path_buf());
        let j = job();
        queue.enqueue(j.clone()).await.unwrap();
        let kept: Job = serde_json::from_slice(&std::fs::read(queue.path(&j)).unwrap()).unwrap();
        assert_eq!(kept, j);
    }
}

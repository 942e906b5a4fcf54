//! In-process job workers for the local server. Each job is also written as a small file under
//! `{data_dir}/jobs/` until it is done, so jobs interrupted by a restart run again.
//!
//! The queue's receiving end ([`LocalJobs::receive`], [`LocalJobs::ack`],
//! [`LocalJobs::give_back`]) is what the workers use, and what the `JobQueue` contract suite
//! checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Mutex, Semaphore};

use super::{Handled, Job, JobError, JobHandler, JobQueue};

/// How long a job whose handler asked to retry (a dependency was down) waits before it is
/// delivered again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// A queue in memory, backed by files.
pub struct LocalJobs {
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Job>,
    rx: Mutex<mpsc::UnboundedReceiver<Job>>,
    started: AtomicBool,
}

fn unavailable(e: impl std::fmt::Display) -> JobError {
    JobError::Unavailable(e.to_string())
}

impl LocalJobs {
    /// A queue keeping its pending jobs under `dir`; the jobs an earlier run left there are
    /// delivered first.
    pub fn new(dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        for job in left_in(&dir) {
            tracing::info!(file = %job.file_id, "resuming an unfinished extraction");
            let _ = tx.send(job);
        }
        Self {
            dir,
            tx,
            rx: Mutex::new(rx),
            started: AtomicBool::new(false),
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

    /// The next job (enqueued, given back, or left by an earlier run), waiting up to `wait`;
    /// `None` when none came.
    pub async fn receive(&self, wait: Duration) -> Option<Job> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }

    /// The next job, however long it takes; `None` once the queue is gone.
    async fn next(&self) -> Option<Job> {
        self.rx.lock().await.recv().await
    }

    /// The job is done: its file goes, and it does not run again.
    pub async fn ack(&self, job: &Job) -> Result<(), JobError> {
        match tokio::fs::remove_file(self.path(job)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(unavailable(e)),
            _ => Ok(()),
        }
    }

    /// The job could not be done for now: it keeps its file and is delivered again.
    pub async fn give_back(&self, job: &Job) -> Result<(), JobError> {
        self.tx
            .send(job.clone())
            .map_err(|_| unavailable("the queue has stopped"))
    }

    /// Starts the workers: at most `concurrency` jobs at once, each run by `handler`, received
    /// through [`LocalJobs::receive`]; a job done is acknowledged, one to retry is given back
    /// after [`RETRY_AFTER`]. Calling it twice does nothing.
    pub fn start(self: &Arc<Self>, handler: Arc<dyn JobHandler>, concurrency: usize) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let Some(job) = this.next().await else {
                    return;
                };
                let (handler, this) = (Arc::clone(&handler), Arc::clone(&this));
                tokio::spawn(async move {
                    let handled = handler.handle(&job).await;
                    drop(permit);
                    let settled = match handled {
                        Handled::Done => this.ack(&job).await,
                        Handled::Retry => {
                            tokio::time::sleep(RETRY_AFTER).await;
                            this.give_back(&job).await
                        }
                    };
                    if let Err(e) = settled {
                        // The file stays: the job runs again at the next start.
                        tracing::warn!(file = %job.file_id, error = %e, "a job could not be settled");
                    }
                });
            }
        });
    }
}

/// The jobs whose files are under `dir`.
fn left_in(dir: &Path) -> Vec<Job> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<Job>(&bytes).ok())
        .collect()
}

#[async_trait]
impl JobQueue for LocalJobs {
    async fn enqueue(&self, job: Job) -> Result<(), JobError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(unavailable)?;
        let body = serde_json::to_vec(&job).map_err(unavailable)?;
        tokio::fs::write(self.path(&job), body)
            .await
            .map_err(unavailable)?;
        self.tx
            .send(job)
            .map_err(|_| unavailable("the workers have stopped"))
    }
}

/// The contract suite reads the queue through its receiving end; a delivery's receipt is the job's
/// file id.
#[cfg(any(test, feature = "test-support"))]
#[async_trait]
impl super::contract::JobReceiver for LocalJobs {
    async fn receive(&self, wait: Duration) -> Result<Option<super::contract::Delivery>, JobError> {
        Ok(LocalJobs::receive(self, wait)
            .await
            .map(|job| super::contract::Delivery {
                receipt: job.file_id.to_string(),
                job,
            }))
    }

    async fn ack(&self, delivery: &super::contract::Delivery) -> Result<(), JobError> {
        LocalJobs::ack(self, &delivery.job).await
    }

    async fn give_back(&self, delivery: &super::contract::Delivery) -> Result<(), JobError> {
        LocalJobs::give_back(self, &delivery.job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Subject;
    use crate::domain::FileId;

    crate::job_queue_contract_tests!(contract, async {
        let dir = tempfile::tempdir().unwrap();
        let queue = LocalJobs::new(dir.path().join("jobs"));
        Some(Subject::new(queue).with_teardown(async move { drop(dir) }))
    });

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
    async fn the_receiving_end_keeps_a_job_on_disk_until_it_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let queue = LocalJobs::new(dir.path().to_path_buf());
        let j = job();
        queue.enqueue(j.clone()).await.unwrap();
        let got = queue.receive(Duration::from_secs(10)).await.unwrap();
        queue.give_back(&got).await.unwrap();
        assert!(queue.path(&j).exists(), "a job given back keeps its file");
        let again = queue.receive(Duration::from_secs(10)).await.unwrap();
        assert_eq!(again, j);
        queue.ack(&again).await.unwrap();
        assert!(
            !queue.path(&j).exists(),
            "an acknowledged job loses its file"
        );
    }

    #[tokio::test]
    async fn jobs_an_earlier_run_left_are_received_first() {
        let dir = tempfile::tempdir().unwrap();
        let left = job();
        LocalJobs::new(dir.path().to_path_buf())
            .enqueue(left.clone())
            .await
            .unwrap();
        let queue = LocalJobs::new(dir.path().to_path_buf());
        let fresh = job();
        queue.enqueue(fresh.clone()).await.unwrap();
        assert_eq!(queue.receive(Duration::from_secs(10)).await, Some(left));
        assert_eq!(queue.receive(Duration::from_secs(10)).await, Some(fresh));
        assert_eq!(queue.receive(Duration::from_millis(50)).await, None);
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

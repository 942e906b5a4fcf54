//! The extraction worker: runs one queued job with the files service (wherever the queue delivers
//! it: the local server's in-process workers, the extraction container in AWS), recording progress
//! on the file's record as it goes.

use async_trait::async_trait;

use super::FileService;
use crate::domain::{FileStatus, Owner};
use crate::jobs::{Handled, Job, JobHandler};
use crate::service::Error;

/// Progress is written to the record at most every this many points.
const PROGRESS_STEP: u8 = 5;

impl FileService {
    /// Extracts one queued file and records the outcome on its record (`ready`, or `failed` with
    /// the reason), reporting `progress` as it goes. An error means the job did not settle: a
    /// permanent one (the file was deleted, its bytes never arrived) leaves nothing to retry.
    /// A file that became ready has its vectors made and stored (and is added to the search log)
    /// before this returns: the extraction container may be stopped between two jobs, and a job is
    /// acknowledged only once its work is kept. Vectors that could not be made are logged; a turn
    /// that needs them makes them again.
    pub async fn run_job(&self, job: &Job) -> Result<(), Error> {
        let owner = Owner::new(job.owner.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let (store, progress_owner, id) = (self.store.clone(), owner.clone(), job.file_id.clone());
        let reporter = tokio::spawn(async move {
            let mut last = 0u8;
            while let Some(p) = rx.recv().await {
                if p >= last.saturating_add(PROGRESS_STEP) && p < 100 {
                    last = p;
                    if let Ok(Some(mut m)) = store.get_file(&progress_owner, &id).await {
                        if m.status == FileStatus::Processing {
                            m.progress = Some(p);
                            let _ = store.put_file(&progress_owner, &m).await;
                        }
                    }
                }
            }
        });
        let result = self
            .process_upload_then(&owner, &job.file_id, Some(tx))
            .await;
        let _ = reporter.await;
        let (meta, vectors) = result?;
        if let Some(vectors) = vectors {
            let _ = vectors.await;
        }
        tracing::info!(file = %meta.id, status = meta.status.as_str(), "file processed");
        Ok(())
    }
}

#[async_trait]
impl JobHandler for FileService {
    async fn handle(&self, job: &Job) -> Handled {
        match self.run_job(job).await {
            Ok(()) => Handled::Done,
            // Deleted meanwhile, or the bytes never arrived: nothing to retry.
            Err(e) if e.is_permanent() => {
                tracing::info!(file = %job.file_id, error = %e, "extraction job dropped");
                Handled::Done
            }
            Err(e) => {
                tracing::error!(file = %job.file_id, error = %e, "extraction job failed; it will be tried again");
                Handled::Retry
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;
    use crate::blobs::keys;
    use crate::domain::{FileId, FileMeta, FileType};
    use crate::jobs::JobHandler;

    fn processing(name: &str, file_type: FileType) -> FileMeta {
        let mut meta = crate::domain::FileMeta::new(
            name.into(),
            "text/plain".into(),
            0,
            file_type,
            FileStatus::Processing,
        );
        meta.progress = Some(0);
        meta
    }

    #[tokio::test]
    async fn a_job_settles_its_file_as_ready_or_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (files, store, _) = super::super::tests::service(dir.path());
        let owner = Owner::local();
        let good = processing("notes.txt", FileType::Text);
        let bad = processing("broken.pdf", FileType::Pdf);
        for (meta, bytes) in [
            (&good, &b"hello from a job"[..]),
            (&bad, &b"%PDF-1.4\nnot really"[..]),
        ] {
            store.put_file(&owner, meta).await.unwrap();
            files
                .blobs
                .put(
                    &keys::original(&owner, &meta.id),
                    bytes::Bytes::copy_from_slice(bytes),
                    "x",
                )
                .await
                .unwrap();
            let job = Job {
                owner: owner.as_str().into(),
                file_id: meta.id.clone(),
            };
            assert_eq!(files.handle(&job).await, Handled::Done);
        }
        let good = files.get(&owner, &good.id).await.unwrap();
        assert_eq!(good.status, FileStatus::Ready);
        assert_eq!(good.progress, None);
        assert_eq!(
            files.text(&owner, &good.id).await.unwrap(),
            "hello from a job"
        );
        let bad = files.get(&owner, &bad.id).await.unwrap();
        assert_eq!(bad.status, FileStatus::Failed);
        assert!(bad.error.unwrap().contains("broken.pdf"));
    }

    #[tokio::test]
    async fn a_job_with_nothing_to_do_is_done_and_a_dependency_down_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (files, store, _) = super::super::tests::service(dir.path());
        let owner = Owner::local();
        // Deleted before the worker ran it.
        let gone = Job {
            owner: owner.as_str().into(),
            file_id: FileId::generate(),
        };
        assert_eq!(files.handle(&gone).await, Handled::Done);
        // Its bytes never arrived.
        let waiting = processing("late.txt", FileType::Text);
        store.put_file(&owner, &waiting).await.unwrap();
        let job = Job {
            owner: owner.as_str().into(),
            file_id: waiting.id.clone(),
        };
        assert_eq!(files.handle(&job).await, Handled::Done);
        // The blob store is down: the job must run again.
        let stuck = processing("stuck.txt", FileType::Text);
        store.put_file(&owner, &stuck).await.unwrap();
        std::fs::remove_dir_all(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("blobs"), b"not a directory").unwrap();
        let job = Job {
            owner: owner.as_str().into(),
            file_id: stuck.id.clone(),
        };
        assert_eq!(files.handle(&job).await, Handled::Retry);
    }
}

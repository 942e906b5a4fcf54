//! The contract every `JobQueue` adapter passes, one test per check through
//! [`job_queue_contract_tests!`](crate::job_queue_contract_tests): what is enqueued reaches a worker
//! intact, once it is acknowledged it does not come back, and a job given back (a dependency was
//! down) comes back.
//!
//! The port itself only sends; a queue's receiving end is what its worker uses, so the suite reads
//! through [`JobReceiver`], which the test of each adapter implements on that adapter's receiving
//! end. Each check wants a queue of its own (the setup makes a fresh one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Job, JobError, JobQueue};
use crate::domain::FileId;

/// One `#[tokio::test]` per check of the `JobQueue` contract, in `mod $name`, against the queue the
/// setup (an `async` block giving `Option<Subject<_>>` of a [`JobReceiver`]) builds.
#[macro_export]
macro_rules! job_queue_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(jobs; $name, $setup;
            an_enqueued_job_reaches_a_worker_intact,
            an_acknowledged_job_does_not_come_back,
            a_job_given_back_comes_back,
            every_job_is_delivered,
        );
    };
}

/// How long a check waits for a job it expects.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// How long a check waits to be sure nothing more comes.
pub const QUIET_WAIT: Duration = Duration::from_secs(1);

/// One job as a worker receives it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// What the receiving end needs to acknowledge or give back this delivery.
    pub receipt: String,
}

/// A queue with its receiving end, as its worker uses it.
#[async_trait]
pub trait JobReceiver: JobQueue {
    /// The next job, waiting up to `wait`; `None` when none came.
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, JobError>;
    /// The job is done: it is not delivered again.
    async fn ack(&self, delivery: &Delivery) -> Result<(), JobError>;
    /// The job could not be done for now: it is delivered again.
    async fn give_back(&self, delivery: &Delivery) -> Result<(), JobError>;
}

fn job(tag: &str) -> Job {
    Job {
        owner: format!("{tag}-{}@example.com", uuid::Uuid::now_v7().simple()),
        file_id: FileId::generate(),
    }
}

/// Waits for the next delivery, failing the check when none comes in time.
async fn next(queue: &dyn JobReceiver) -> Delivery {
    queue
        .receive(DELIVERY_WAIT)
        .await
        .unwrap()
        .expect("a job was enqueued but none was delivered")
}

/// The job a worker receives is the job that was enqueued.
pub async fn an_enqueued_job_reaches_a_worker_intact(queue: Arc<dyn JobReceiver>) {
    let sent = job("intact");
    queue.enqueue(sent.clone()).await.unwrap();
    let got = next(&*queue).await;
    assert_eq!(got.job, sent);
    queue.ack(&got).await.unwrap();
}

/// Once acknowledged, a job is not delivered again.
pub async fn an_acknowledged_job_does_not_come_back(queue: Arc<dyn JobReceiver>) {
    queue.enqueue(job("acked")).await.unwrap();
    let got = next(&*queue).await;
    queue.ack(&got).await.unwrap();
    let again = queue.receive(QUIET_WAIT).await.unwrap();
    assert!(again.is_none(), "delivered again: {again:?}");
}

/// A job given back is delivered again, unchanged.
pub async fn a_job_given_back_comes_back(queue: Arc<dyn JobReceiver>) {
    let sent = job("retried");
    queue.enqueue(sent.clone()).await.unwrap();
    let first = next(&*queue).await;
    queue.give_back(&first).await.unwrap();
    let second = next(&*queue).await;
    assert_eq!(second.job, sent);
    queue.ack(&second).await.unwrap();
}

/// Several jobs enqueued together are each delivered (in any order).
pub async fn every_job_is_delivered(queue: Arc<dyn JobReceiver>) {
    let sent: Vec<Job> = (0..5).map(|_| job("many")).collect();
    for j in &sent {
        queue.enqueue(j.clone()).await.unwrap();
    }
    let mut got = BTreeSet::new();
    while got.len() < sent.len() {
        let d = next(&*queue).await;
        queue.ack(&d).await.unwrap();
        assert!(got.insert(d.job.file_id.clone()), "{:?} came twice", d.job);
    }
    let want: BTreeSet<FileId> = sent.into_iter().map(|j| j.file_id).collect();
    assert_eq!(got, want);
}

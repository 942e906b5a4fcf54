//! The contract every `TurnLog` adapter passes, one test per check through
//! [`turn_log_contract_tests!`](crate::turn_log_contract_tests). Each check gets two adapter objects
//! on the same backing store: `here` (the instance that generates) and `elsewhere` (another
//! instance, with its own in-process broadcast), so what must work across instances is checked
//! across them. Checks use unique owners and turns, so a shared server is fine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;
use std::time::Duration;

use super::{LoggedEvent, StopOutcome, TurnLog, MAX_POLL};
use crate::domain::{ConversationId, MessageId, Owner, Timestamp};

/// Two adapter objects on one backing store.
pub struct Instances {
    /// The instance that generates.
    pub here: Arc<dyn TurnLog>,
    /// Another instance.
    pub elsewhere: Arc<dyn TurnLog>,
}

/// One `#[tokio::test]` per check of the `TurnLog` contract, in `mod $name`, against the adapters
/// the setup (an `async` block giving `Option<Subject<Instances>>`) builds.
#[macro_export]
macro_rules! turn_log_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(turns; $name, $setup;
            events_read_back_after_any_id,
            an_unknown_or_anothers_turn_is_absent,
            a_turn_is_begun_once,
            a_reader_in_the_same_process_is_woken_by_an_append,
            a_reader_elsewhere_sees_appends_within_its_polls,
            long_logs_read_back_whole,
            a_stop_asked_anywhere_reaches_the_generating_instance,
            a_turn_that_ended_cannot_be_stopped,
            a_heartbeat_moves_the_last_write,
        );
    };
}

/// How long a check waits for what another instance does (many poll intervals).
const PATIENCE: Duration = Duration::from_secs(10);

fn unique_owner(tag: &str) -> Owner {
    Owner::new(format!("{tag}-{}", uuid::Uuid::now_v7().simple()))
}

fn event(id: u64, name: &str, text: &str) -> LoggedEvent {
    LoggedEvent {
        id,
        name: name.into(),
        data: serde_json::json!({ "text": text }).to_string(),
    }
}

/// Events `from..=to` as tokens `t{id}`.
fn tokens(from: u64, to: u64) -> Vec<LoggedEvent> {
    (from..=to)
        .map(|i| event(i, "token", &format!("t{i} ")))
        .collect()
}

/// A begun turn of a new owner.
async fn begun(log: &dyn TurnLog, tag: &str) -> (Owner, MessageId, ConversationId) {
    let (owner, turn, conv) = (
        unique_owner(tag),
        MessageId::generate(),
        ConversationId::generate(),
    );
    log.begin(&owner, &turn, &conv, Timestamp::now())
        .await
        .unwrap();
    (owner, turn, conv)
}

fn ids(events: &[LoggedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

/// Batches read back in order after any id, at a batch's edge or inside one, from either
/// instance; the last batch ends the turn.
pub async fn events_read_back_after_any_id(logs: Arc<Instances>) {
    let log = &*logs.here;
    let (owner, turn, conv) = begun(log, "reader").await;
    let fresh = log.read(&owner, &turn, 0).await.unwrap().unwrap();
    assert_eq!(fresh.conversation_id, conv);
    assert!(fresh.events.is_empty() && !fresh.ended && !fresh.stop_requested);
    let mut all = vec![event(1, "meta", "{}")];
    all.extend(tokens(2, 4));
    log.append(&owner, &turn, &all, false, Timestamp::now())
        .await
        .unwrap();
    let more = tokens(5, 9);
    log.append(&owner, &turn, &more, false, Timestamp::now())
        .await
        .unwrap();
    all.extend(more);
    let read = logs
        .elsewhere
        .read(&owner, &turn, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.events, all);
    assert!(!read.ended);
    for after in [1, 4, 6, 9] {
        let read = log.read(&owner, &turn, after).await.unwrap().unwrap();
        assert_eq!(
            ids(&read.events),
            ((after + 1)..=9).collect::<Vec<_>>(),
            "after {after}"
        );
    }
    let last = vec![event(10, "done", "{}")];
    log.append(&owner, &turn, &last, true, Timestamp::now())
        .await
        .unwrap();
    let read = logs
        .elsewhere
        .read(&owner, &turn, 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.events, last);
    assert!(read.ended);
    let beyond = log.read(&owner, &turn, 50).await.unwrap().unwrap();
    assert!(beyond.events.is_empty() && beyond.ended);
    assert!(
        Timestamp::now().millis() - read.last_write.millis() < 60_000,
        "the last write is recent"
    );
}

/// An unknown turn, and a turn of another owner, read as absent and cannot be stopped.
pub async fn an_unknown_or_anothers_turn_is_absent(logs: Arc<Instances>) {
    let log = &*logs.here;
    let (owner, turn, _) = begun(log, "private").await;
    let other = unique_owner("other");
    assert_eq!(log.read(&other, &turn, 0).await.unwrap(), None);
    assert_eq!(
        log.read(&owner, &MessageId::generate(), 0).await.unwrap(),
        None
    );
    assert_eq!(
        log.request_stop(&other, &turn).await.unwrap(),
        StopOutcome::Unknown
    );
    assert!(!log.stop_requested(&owner, &turn).await.unwrap());
    assert!(!log
        .stop_requested(&owner, &MessageId::generate())
        .await
        .unwrap());
}

/// Beginning a turn that has a log is refused and leaves the log as it was.
pub async fn a_turn_is_begun_once(logs: Arc<Instances>) {
    let log = &*logs.here;
    let (owner, turn, conv) = begun(log, "once").await;
    log.append(&owner, &turn, &tokens(1, 2), false, Timestamp::now())
        .await
        .unwrap();
    assert!(logs
        .elsewhere
        .begin(&owner, &turn, &conv, Timestamp::now())
        .await
        .is_err());
    let read = log.read(&owner, &turn, 0).await.unwrap().unwrap();
    assert_eq!(ids(&read.events), [1, 2]);
}

/// A reader of this process that listened before its read is woken by the next append, however
/// long it was prepared to wait.
pub async fn a_reader_in_the_same_process_is_woken_by_an_append(logs: Arc<Instances>) {
    let log = logs.here.clone();
    let (owner, turn, _) = begun(&*log, "woken").await;
    let listener = log.listen(&turn);
    assert!(log
        .read(&owner, &turn, 0)
        .await
        .unwrap()
        .unwrap()
        .events
        .is_empty());
    let writer = {
        let (log, owner, turn) = (log.clone(), owner.clone(), turn.clone());
        tokio::spawn(async move {
            log.append(&owner, &turn, &tokens(1, 1), false, Timestamp::now())
                .await
                .unwrap();
        })
    };
    assert!(
        listener.wait(Duration::from_secs(3600)).await,
        "woken by the append, not by the hour passing"
    );
    writer.await.unwrap();
    let read = log.read(&owner, &turn, 0).await.unwrap().unwrap();
    assert_eq!(ids(&read.events), [1]);
}

/// Another instance following the turn sees each append within its polls, in order, to the end.
pub async fn a_reader_elsewhere_sees_appends_within_its_polls(logs: Arc<Instances>) {
    assert!(logs.here.poll_interval() <= MAX_POLL);
    assert!(logs.elsewhere.poll_interval() <= MAX_POLL);
    let (owner, turn, _) = begun(&*logs.here, "follower").await;
    let reader = {
        let (elsewhere, owner, turn) = (logs.elsewhere.clone(), owner.clone(), turn.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                assert!(tokio::time::Instant::now() < deadline, "saw only {seen:?}");
                let after = seen.last().copied().unwrap_or(0);
                let read = elsewhere
                    .follow(&owner, &turn, after, MAX_POLL * 4)
                    .await
                    .unwrap()
                    .unwrap();
                seen.extend(ids(&read.events));
                if read.ended {
                    return seen;
                }
            }
        })
    };
    for batch in 0..5u64 {
        let events = tokens(batch * 3 + 1, batch * 3 + 3);
        logs.here
            .append(&owner, &turn, &events, batch == 4, Timestamp::now())
            .await
            .unwrap();
    }
    let seen = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, (1..=15).collect::<Vec<_>>());
}

/// A long answer (many batches, a megabyte and more) reads back whole and in order.
pub async fn long_logs_read_back_whole(logs: Arc<Instances>) {
    let log = &*logs.here;
    let (owner, turn, _) = begun(log, "long").await;
    let text = "x".repeat(2_000);
    let mut id = 0;
    for _ in 0..70 {
        let batch: Vec<LoggedEvent> = (0..10)
            .map(|_| {
                id += 1;
                event(id, "token", &text)
            })
            .collect();
        log.append(&owner, &turn, &batch, false, Timestamp::now())
            .await
            .unwrap();
    }
    let read = logs
        .elsewhere
        .read(&owner, &turn, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&read.events), (1..=700).collect::<Vec<_>>());
    let tail = log.read(&owner, &turn, 695).await.unwrap().unwrap();
    assert_eq!(ids(&tail.events), [696, 697, 698, 699, 700]);
}

/// A stop asked from another instance is seen by the generating one; a stop asked in this process
/// wakes its stop listeners at once. Asked again while the turn runs, it says it was asked.
pub async fn a_stop_asked_anywhere_reaches_the_generating_instance(logs: Arc<Instances>) {
    let (owner, turn, _) = begun(&*logs.here, "stopper").await;
    assert_eq!(
        logs.elsewhere.request_stop(&owner, &turn).await.unwrap(),
        StopOutcome::Stopping
    );
    assert!(logs.here.stop_requested(&owner, &turn).await.unwrap());
    assert!(
        logs.here
            .read(&owner, &turn, 0)
            .await
            .unwrap()
            .unwrap()
            .stop_requested
    );
    assert_eq!(
        logs.here.request_stop(&owner, &turn).await.unwrap(),
        StopOutcome::AlreadyAsked
    );

    let (owner, turn, _) = begun(&*logs.here, "stopper-local").await;
    let listener = logs.here.listen_stop(&turn);
    let asker = {
        let (here, owner, turn) = (logs.here.clone(), owner.clone(), turn.clone());
        tokio::spawn(async move { here.request_stop(&owner, &turn).await.unwrap() })
    };
    assert!(listener.wait(Duration::from_secs(3600)).await);
    assert_eq!(asker.await.unwrap(), StopOutcome::Stopping);
}

/// Once the last batch is in, a stop is refused as `Ended`, and the flag stays down.
pub async fn a_turn_that_ended_cannot_be_stopped(logs: Arc<Instances>) {
    let (owner, turn, _) = begun(&*logs.here, "ended").await;
    logs.here
        .append(&owner, &turn, &tokens(1, 3), true, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        logs.elsewhere.request_stop(&owner, &turn).await.unwrap(),
        StopOutcome::Ended
    );
    assert!(!logs.here.stop_requested(&owner, &turn).await.unwrap());
}

/// An append without events is a heartbeat: the last write moves, nothing else.
pub async fn a_heartbeat_moves_the_last_write(logs: Arc<Instances>) {
    let (owner, turn, conv) = (
        unique_owner("heartbeat"),
        MessageId::generate(),
        ConversationId::generate(),
    );
    let long_ago = Timestamp::from_millis(Timestamp::now().millis() - 600_000);
    logs.here
        .begin(&owner, &turn, &conv, long_ago)
        .await
        .unwrap();
    logs.here
        .append(&owner, &turn, &tokens(1, 2), false, long_ago)
        .await
        .unwrap();
    let before = logs
        .elsewhere
        .read(&owner, &turn, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(Timestamp::now().millis() - before.last_write.millis() >= 600_000);
    logs.here
        .append(&owner, &turn, &[], false, Timestamp::now())
        .await
        .unwrap();
    let after = logs
        .elsewhere
        .read(&owner, &turn, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(Timestamp::now().millis() - after.last_write.millis() < 60_000);
    assert_eq!(after.events, before.events);
    assert!(!after.ended);
}

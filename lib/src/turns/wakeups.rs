//! The in-process broadcast of the turn log: an append (or a stop) wakes the readers of that turn
//! in this process at once, so a turn generated and followed on one instance is never polled.
//! Readers on other instances poll the store instead.
//!
//! A channel exists only while someone listens: the last listener to go removes it, so turns
//! followed from another instance leave nothing behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::MessageId;

type Channels = Arc<Mutex<HashMap<MessageId, watch::Sender<u64>>>>;

/// Wakes the listeners of a turn.
#[derive(Clone, Default)]
pub struct Wakeups {
    channels: Channels,
}

/// One listener, taken before a read: a wake after it was taken is not missed.
pub struct Listener {
    turn: MessageId,
    rx: Option<watch::Receiver<u64>>,
    channels: Channels,
}

impl Wakeups {
    /// A broadcast with no listener.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens for wakes of `turn` from now on.
    pub fn listen(&self, turn: &MessageId) -> Listener {
        let rx = match self.channels.lock() {
            Ok(mut map) => Some(
                map.entry(turn.clone())
                    .or_insert_with(|| watch::channel(0).0)
                    .subscribe(),
            ),
            // A poisoned map: listeners fall back to polling.
            Err(_) => None,
        };
        Listener {
            turn: turn.clone(),
            rx,
            channels: Arc::clone(&self.channels),
        }
    }

    /// Wakes every listener of `turn` in this process.
    pub fn wake(&self, turn: &MessageId) {
        if let Ok(map) = self.channels.lock() {
            if let Some(tx) = map.get(turn) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Turns with listeners now (tests: nothing is left behind).
    pub fn listened(&self) -> usize {
        self.channels.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Listener {
    /// Waits for a wake, at most `within`; returns whether it was woken.
    pub async fn wait(mut self, within: Duration) -> bool {
        match self.rx.as_mut() {
            Some(rx) => matches!(tokio::time::timeout(within, rx.changed()).await, Ok(Ok(()))),
            None => {
                tokio::time::sleep(within).await;
                false
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Ok(mut map) = self.channels.lock() {
            if map
                .get(&self.turn)
                .is_some_and(|tx| tx.receiver_count() == 0)
            {
                map.remove(&self.turn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wake_after_listening_is_not_missed_and_nothing_is_left() {
        let w = Wakeups::new();
        let turn = MessageId::from("t");
        let listener = w.listen(&turn);
        w.wake(&turn);
        assert!(listener.wait(Duration::from_secs(3600)).await);
        assert_eq!(w.listened(), 0, "the last listener removes the channel");
        // Without a wake, the wait ends after `within`.
        assert!(!w.listen(&turn).wait(Duration::from_millis(250)).await);
        // A wake of another turn wakes nobody here.
        let listener = w.listen(&turn);
        w.wake(&MessageId::from("other"));
        assert!(!listener.wait(Duration::from_millis(250)).await);
        assert_eq!(w.listened(), 0);
    }
}

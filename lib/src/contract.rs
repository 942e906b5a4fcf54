//! What the port contract suites share: the adapter under test with its clean-up ([`Subject`]), and
//! the macro behind `store_contract_tests!`, `blob_contract_tests!`, `limiter_contract_tests!`,
//! `job_queue_contract_tests!` and `chat_model_contract_tests!`, which expands one `#[tokio::test]`
//! per contract check, so one failing check does not hide the others.
//!
//! ```ignore
//! conversa::store_contract_tests!(sqlite, async {
//!     Some(Subject::new(SqliteStore::in_memory().unwrap()))
//! });
//! ```
//!
//! The setup is an `async` block run afresh by every test; it returns `None` when the service it
//! needs is missing (after saying so), and the test returns without checking anything.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

/// An adapter under test and what to tidy away after each check (a table, a bucket, a queue).
pub struct Subject<T: ?Sized> {
    /// The adapter.
    pub port: Arc<T>,
    teardown: Option<BoxFuture<'static, ()>>,
}

impl<T> Subject<T> {
    /// An adapter with nothing to tidy away.
    pub fn new(port: T) -> Self {
        Self::shared(Arc::new(port))
    }
}

impl<T: ?Sized> Subject<T> {
    /// An adapter already behind an `Arc`.
    pub fn shared(port: Arc<T>) -> Self {
        Self {
            port,
            teardown: None,
        }
    }

    /// Runs `teardown` after each check, whether the check passed or not.
    pub fn with_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(teardown.boxed());
        self
    }

    /// Runs one check on the adapter, then the teardown; a failed check fails after the teardown.
    pub async fn check<F, Fut>(self, check: F)
    where
        F: FnOnce(Arc<T>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let outcome = AssertUnwindSafe(check(Arc::clone(&self.port)))
            .catch_unwind()
            .await;
        drop(self.port);
        if let Some(teardown) = self.teardown {
            teardown.await;
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Expands `mod $name { one #[tokio::test] per check of crate::$port::contract }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    ($port:ident; $name:ident, $setup:expr; $($check:ident),+ $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test]
                async fn $check() {
                    if let Some(subject) = ($setup).await {
                        subject
                            .check(|port| $crate::$port::contract::$check(port))
                            .await;
                    }
                }
            )+
        }
    };
}

//! Step 1 of a turn, admit: count the request against the client's rate limit. It runs before the
//! request is read, so malformed and refused requests count too.

use super::ChatService;
use crate::limits::Decision;
use crate::service::Error;

impl ChatService {
    /// Counts one chat request for `client_key` (the user when authenticated, else the client's
    /// address) and refuses it when over the limit per minute, saying when to try again.
    pub async fn admit(&self, client_key: &str) -> Result<(), Error> {
        let limit = self.settings.rate_limit_per_minute;
        match self.limiter.check(client_key, limit).await? {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after_secs } => Err(Error::RateLimited {
                retry_after_secs,
                message: format!(
                    "Too many messages: the limit is {limit} per minute. Try again in {retry_after_secs} s."
                ),
            }),
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use crate::service::chat::fixture::Fixture;
    use crate::service::Error;

    #[tokio::test]
    async fn over_the_limit_a_client_is_told_when_to_retry() {
        // The fixture's clock stands 20 s into a minute: one request passes, the next two are
        // refused with the 40 s left in that minute.
        let f = Fixture::with(|s| s.rate_limit_per_minute = 1);
        f.chat.admit("ip:192.0.2.1").await.unwrap();
        for _ in 0..2 {
            match f.chat.admit("ip:192.0.2.1").await {
                Err(Error::RateLimited {
                    retry_after_secs,
                    message,
                }) => {
                    assert_eq!(retry_after_secs, 40);
                    assert!(message.contains("1 per minute"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Another client has its own count.
        f.chat.admit("ip:192.0.2.2").await.unwrap();
    }

    #[tokio::test]
    async fn a_limit_of_zero_admits_everyone() {
        let f = Fixture::with(|s| s.rate_limit_per_minute = 0);
        for _ in 0..100 {
            f.chat.admit("ip:192.0.2.1").await.unwrap();
        }
    }
}

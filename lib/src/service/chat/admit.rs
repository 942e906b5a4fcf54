//! Step 1 of a turn, admit: count the request against the client's rate limit — the turns per
//! minute of the caller's tier, else the global limit. It runs before the request is read, so
//! malformed and refused requests count too. (The budget is held once the turn's worst case is
//! known, before anything is stored: [`ChatService::start`].)

use super::ChatService;
use crate::auth::Principal;
use crate::limits::Decision;
use crate::service::Error;

impl ChatService {
    /// Counts one chat request of `who` under `client_key` (the user when authenticated, else the
    /// client's address) and refuses it when over the limit per minute of their tier
    /// (`turns_per_minute`, else `CONVERSA_RATE_LIMIT_PER_MINUTE`), saying when to try again.
    pub async fn admit(&self, who: &Principal, client_key: &str) -> Result<(), Error> {
        let limit = self
            .budgets
            .turns_per_minute(&who.tier, self.settings.rate_limit_per_minute);
        match self.limiter.check(client_key, limit).await? {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after_secs } => {
                self.refused("rate_limited", who);
                Err(Error::RateLimited {
                retry_after_secs,
                message: format!(
                    "Too many messages: the limit is {limit} per minute. Try again in {retry_after_secs} s."
                ),
            })
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use crate::auth::Principal;
    use crate::service::chat::fixture::{Fixture, TIERS};
    use crate::service::Error;

    fn anyone() -> Principal {
        Principal::local("default")
    }

    #[tokio::test]
    async fn a_tier_with_turns_per_minute_replaces_the_global_limit() {
        let f = Fixture::with_tiers(TIERS, |s| s.rate_limit_per_minute = 1);
        let mut free = anyone();
        free.tier = "free".into();
        // `free` allows 2 a minute; the global limit (1) still applies to the default tier.
        f.chat.admit(&free, "user:ann").await.unwrap();
        f.chat.admit(&free, "user:ann").await.unwrap();
        assert!(matches!(
            f.chat.admit(&free, "user:ann").await,
            Err(Error::RateLimited { .. })
        ));
        f.chat.admit(&anyone(), "user:bob").await.unwrap();
        assert!(matches!(
            f.chat.admit(&anyone(), "user:bob").await,
            Err(Error::RateLimited { .. })
        ));
    }

    #[tokio::test]
    async fn over_the_limit_a_client_is_told_when_to_retry() {
        // The fixture's clock stands 20 s into a minute: one request passes, the next two are
        // refused with the 40 s left in that minute.
        let f = Fixture::with(|s| s.rate_limit_per_minute = 1);
        f.chat.admit(&anyone(), "ip:192.0.2.1").await.unwrap();
        for _ in 0..2 {
            match f.chat.admit(&anyone(), "ip:192.0.2.1").await {
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
        f.chat.admit(&anyone(), "ip:192.0.2.2").await.unwrap();
    }

    #[tokio::test]
    async fn a_limit_of_zero_admits_everyone() {
        let f = Fixture::with(|s| s.rate_limit_per_minute = 0);
        for _ in 0..100 {
            f.chat.admit(&anyone(), "ip:192.0.2.1").await.unwrap();
        }
    }
}

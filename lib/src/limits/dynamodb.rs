//! DynamoDB rate limiter: one item per key and minute in the store's table (`pk=RL#{key}`,
//! `sk=W#{window}`), counted with an atomic `UpdateItem ADD` that returns the new count, and given a
//! `ttl` so DynamoDB removes past windows by itself. Needs no VPC, unlike Redis.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::{window, Decision, LimiterError, RateLimiter};

/// Seconds a window's item is kept after its minute ends (TTL deletion is lazy anyway).
const KEEP_SECS: i64 = 120;

/// Counters shared by every instance through DynamoDB.
#[derive(Clone)]
pub struct DynamoLimiter {
    client: Client,
    table: String,
}

fn unavailable<E>(e: E) -> LimiterError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error,
{
    LimiterError::Unavailable(crate::aws::describe(&e))
}

impl DynamoLimiter {
    /// Uses an SDK client and a table with `pk`/`sk` string keys and TTL on `ttl`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A client from the process's AWS configuration.
    pub async fn from_env(table: impl Into<String>) -> Self {
        Self::new(Client::new(crate::aws::sdk_config().await), table)
    }

    /// Counts a hit at a given time (milliseconds since the epoch).
    pub async fn hit_at(
        &self,
        key: &str,
        limit: u32,
        now_millis: i64,
    ) -> Result<Decision, LimiterError> {
        let (win, left) = window(now_millis);
        let expires = (win + 1) * 60 + KEEP_SECS;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("RL#{key}")))
            .key("sk", AttributeValue::S(format!("W#{win}")))
            .update_expression("ADD #n :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#n", "hits")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":ttl", AttributeValue::N(expires.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        let count: u64 = match out.attributes().and_then(|a| a.get("hits")) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| {
                LimiterError::Unavailable(format!("the counter is not a number: {v}"))
            })?,
            _ => {
                return Err(LimiterError::Unavailable(
                    "DynamoDB did not return the new count".into(),
                ))
            }
        };
        Ok(if count > u64::from(limit) {
            Decision::Limited {
                retry_after_secs: left,
            }
        } else {
            Decision::Allowed
        })
    }
}

#[async_trait]
impl RateLimiter for DynamoLimiter {
    async fn health(&self) -> Result<(), LimiterError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S("HEALTH".into()))
            .key("sk", AttributeValue::S("HEALTH".into()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn hit(&self, key: &str, limit_per_minute: u32) -> Result<Decision, LimiterError> {
        self.hit_at(key, limit_per_minute, chrono::Utc::now().timestamp_millis())
            .await
    }
}

#[cfg(any(test, feature = "test-support"))]
#[async_trait]
impl super::contract::ClockedLimiter for DynamoLimiter {
    async fn hit_at(
        &self,
        key: &str,
        limit_per_minute: u32,
        now_millis: i64,
    ) -> Result<Decision, LimiterError> {
        DynamoLimiter::hit_at(self, key, limit_per_minute, now_millis).await
    }
}

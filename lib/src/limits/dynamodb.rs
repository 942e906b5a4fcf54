//! DynamoDB counters: one item per key and window in the store's table (`pk=RL#{key}`,
//! `sk=W#{length}:{index}`), counted with an atomic `UpdateItem ADD` that returns the new count, and given a
//! `ttl` so DynamoDB removes past windows by itself. Needs no VPC, unlike Redis.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{LimiterError, RateLimiter, Window};
use crate::store::dynamodb::Table;

/// Counters shared by every instance through DynamoDB.
#[derive(Clone)]
pub struct DynamoLimiter {
    table: Table,
}

impl DynamoLimiter {
    /// Counts in `table` (`pk`/`sk` string keys, TTL on `ttl`).
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    /// A client from the process's AWS configuration.
    pub async fn from_env(table: impl Into<String>) -> Self {
        Self::new(Table::from_env(table).await)
    }
}

#[async_trait]
impl RateLimiter for DynamoLimiter {
    async fn health(&self) -> Result<(), LimiterError> {
        self.table
            .health()
            .await
            .map_err(|e| LimiterError::Unavailable(e.to_string()))
    }

    async fn increment(&self, key: &str, window: &Window) -> Result<u64, LimiterError> {
        let out = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", AttributeValue::S(format!("RL#{key}")))
            .key("sk", AttributeValue::S(format!("W#{}", window.slot())))
            .update_expression("ADD #n :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#n", "hits")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":ttl",
                AttributeValue::N(window.expires_at_secs.to_string()),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| LimiterError::Unavailable(crate::aws::describe(&e)))?;
        match out.attributes().and_then(|a| a.get("hits")) {
            Some(AttributeValue::N(v)) => hits(v),
            _ => Err(LimiterError::Unavailable(
                "DynamoDB did not return the new count".into(),
            )),
        }
    }

    async fn count(&self, key: &str, window: &Window) -> Result<u64, LimiterError> {
        let out = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", AttributeValue::S(format!("RL#{key}")))
            .key("sk", AttributeValue::S(format!("W#{}", window.slot())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LimiterError::Unavailable(crate::aws::describe(&e)))?;
        match out.item().and_then(|i| i.get("hits")) {
            Some(AttributeValue::N(v)) => hits(v),
            _ => Ok(0),
        }
    }
}

fn hits(v: &str) -> Result<u64, LimiterError> {
    v.parse()
        .map_err(|_| LimiterError::Unavailable(format!("the counter is not a number: {v}")))
}

//! Conversa: chat with your files.
//!
//! One library behind every deployable: the HTTP routers (`api`), the use cases (`service`), and
//! the ports with their adapters (`store`, `blobs`, `limits`, `llm`), plus document extraction
//! (`extract`). Handlers call services; services talk to ports; adapters talk to the world.

pub mod accounts;
pub mod api;
pub mod app;
pub mod auth;
#[cfg(any(
    feature = "dynamodb",
    feature = "s3",
    feature = "ssm",
    feature = "sqs",
    feature = "bedrock",
    feature = "embed-lambda"
))]
pub mod aws;
pub mod blobs;
pub mod config;
#[cfg(any(test, feature = "test-support"))]
pub mod contract;
pub mod domain;
pub mod embed;
pub mod extract;
pub mod jobs;
pub mod ledger;
pub mod limits;
pub mod llm;
pub mod local;
pub mod metrics;
pub mod search;
pub mod service;
pub mod store;
pub mod tokens;
pub mod traces;
pub mod turns;

#[cfg(feature = "test-support")]
pub mod testing;

#[cfg(feature = "lambda")]
pub mod lambda;

pub use app::{App, AppState};
pub use config::Config;

/// The version reported by `/health` and `/api`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

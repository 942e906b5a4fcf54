//! Shared AWS SDK setup for the cloud adapters: one `SdkConfig` per process, loaded once at cold start
//! from the standard environment (`AWS_REGION`, credentials, and `AWS_ENDPOINT_URL` for emulators).

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::OnceCell;

static SDK: OnceCell<SdkConfig> = OnceCell::const_new();

/// The process's SDK configuration, loaded on first use and shared by every client.
pub async fn sdk_config() -> &'static SdkConfig {
    SDK.get_or_init(|| async { aws_config::defaults(BehaviorVersion::latest()).load().await })
        .await
}

/// Whether the SDK talks to a custom endpoint (`AWS_ENDPOINT_URL`: an emulator such as moto), where
/// S3 needs path-style addressing.
pub fn custom_endpoint() -> bool {
    std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.trim().is_empty())
}

/// The message of an SDK error: the service's code and message when it answered, else the whole
/// chain of causes (never credentials).
pub fn describe<E>(e: &E) -> String
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => DisplayErrorContext(e).to_string(),
    }
}

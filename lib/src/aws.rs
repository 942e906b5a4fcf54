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

/// The value of an SSM SecureString (a key), read once at cold start; the error names what failed
/// (never the value).
#[cfg(feature = "ssm")]
pub async fn read_secure_parameter(name: &str) -> Result<String, String> {
    let client = aws_sdk_ssm::Client::new(sdk_config().await);
    let out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| format!("cannot read {name}: {}", describe(&e)))?;
    out.parameter()
        .and_then(|p| p.value())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("{name} is empty"))
}

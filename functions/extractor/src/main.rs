//! `conversa-extractor`: receives extraction jobs from SQS and processes each file from S3 until stopped.

use std::process::ExitCode;

use conversa::{jobs, local, AppState, Config};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = conversa::extract::child_main() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    local::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conversa-extractor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let queue = config
        .jobs_queue_url
        .clone()
        .ok_or("CONVERSA_JOBS_QUEUE_URL: required by the extractor")?;
    let state = AppState::from_config(config).await?;
    jobs::sqs::run_worker(
        state,
        jobs::sqs::client().await,
        queue,
        local::shutdown_signal(),
    )
    .await?;
    Ok(())
}

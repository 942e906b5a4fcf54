//! `conversa-extractor`: receives extraction jobs from SQS and processes each file from S3 until stopped.

use std::process::ExitCode;

use conversa::{jobs, local, AppState, Config};

#[tokio::main]
async fn main() -> ExitCode {
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
    jobs::sqs::run_worker(state, jobs::sqs::client().await, queue, stopped()).await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM (how a container is asked to stop).
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

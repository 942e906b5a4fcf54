//! `conversa-extractor`: receives extraction jobs from SQS and processes each file from S3 until stopped.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    conversa::local::main("conversa-extractor", conversa::local::run_extractor).await
}

//! The conversations Lambda function: the conversations routes of the API.

use conversa::{lambda, AppState, Config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    if let Some(code) = conversa::extract::child_main() {
        std::process::exit(code);
    }
    lambda::init_tracing();
    let state = AppState::from_config(Config::from_env()?).await?;
    lambda::run_buffered(conversa::api::conversations::router(state)).await
}

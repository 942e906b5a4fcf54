//! The embedding Lambda function: text to sentence vectors for the other functions.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    conversa::lambda::run_embed().await
}

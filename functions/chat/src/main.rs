//! The chat Lambda function: the chat routes of the API.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    conversa::lambda::run(conversa::lambda::Function::Chat).await
}

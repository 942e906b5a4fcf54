//! The conversations Lambda function: the conversations routes of the API.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    conversa::lambda::run(conversa::lambda::Function::Conversations).await
}

//! The files Lambda function: the files routes of the API.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    conversa::lambda::run(conversa::lambda::Function::Files).await
}

//! `conversa-local`: the whole product in one process on embedded defaults.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    conversa::local::main("conversa-local", conversa::local::run).await
}

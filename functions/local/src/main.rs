//! `conversa-local`: the whole product in one process on embedded defaults.

use std::process::ExitCode;

use conversa::{local, AppState, Config};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = conversa::extract::child_main() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    local::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conversa-local: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("CONVERSA_BIND: cannot listen on {}: {e}", config.bind))?;
    let addr = listener.local_addr()?;
    let frontend = local::has_frontend(&config.frontend_dir);
    let state = AppState::from_config(config).await?;
    println!("Model: {}", state.model.describe());
    if frontend {
        println!("Conversa is running at http://{addr}/");
    } else {
        println!("Conversa API is running at http://{addr}/api (no frontend build found; run `npm run build` in frontend/)");
    }
    local::serve(listener, local::app(state), local::shutdown_signal()).await?;
    Ok(())
}

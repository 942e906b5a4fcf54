//! `conversa-local`: the whole product in one process on embedded defaults.

fn main() -> std::process::ExitCode {
    conversa::local::start("conversa-local", conversa::local::run)
}

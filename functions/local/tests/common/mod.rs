//! What the process tests share: `conversa-local` started as a user starts it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly; each test binary uses its part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use conversa::testing::FakeOpenAi;

/// A running `conversa-local`, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary on a free port with the fake model, data in `data` and the site in
    /// `frontend` (and `env` on top), and waits until it says where it runs.
    pub fn start(fake: &FakeOpenAi, data: &Path, frontend: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_conversa-local"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CONVERSA_BIND", "127.0.0.1:0")
            .env("CONVERSA_DATA_DIR", data)
            .env("CONVERSA_FRONTEND_DIR", frontend)
            .env("OPENAI_API_KEY", "test-key")
            .env("OPENAI_BASE_URL", &fake.base_url)
            .env("CONVERSA_TITLE_MODEL", "title-model")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server printed its address")
                .unwrap();
            if let Some(rest) = line
                .strip_prefix("Conversa")
                .and_then(|l| l.split("http://").nth(1))
            {
                let addr = rest.split('/').next().unwrap();
                break format!("http://{addr}");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }
}

/// The one rule for a tool or service a test needs and cannot find: under
/// `CONVERSA_REQUIRE_SERVICES=1` (as in CI) the test fails, else it says it is skipped.
pub fn missing(what: &str, why: &str) {
    if std::env::var("CONVERSA_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what} not found ({why}), and CONVERSA_REQUIRE_SERVICES=1 requires it");
    }
    eprintln!("skipped: {what} not found ({why})");
}

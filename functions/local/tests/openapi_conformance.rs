//! The API does what its OpenAPI document says: Schemathesis (`st`, installed by
//! `scripts/tools.sh`) reads `/api/openapi.json` from a running `conversa-local` on the fake
//! model, generates requests for every operation the document lists, and checks every answer
//! against it: all checks (every check is on unless `schemathesis.toml` narrows one for an
//! operation; `--checks` on the command line would override those), every phase, a fixed seed and
//! a time budget. A route joins the run by being in the document.
//!
//! `schemathesis.toml` beside this file says which statuses two checks also accept, and why;
//! `schemathesis_hooks.py` works around a flaw of the pinned version.
//! `CONVERSA_SCHEMATHESIS_SECONDS` changes the budget (default 120 s), `CONVERSA_SCHEMATHESIS_SEED`
//! the seed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use conversa::testing::FakeOpenAi;

/// The seed of the generated requests: the same seed draws the same requests.
const SEED: &str = "20261201";

/// `st` on `PATH`, else in the tool venv of `scripts/tools.sh`.
fn schemathesis() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("st"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let tools = std::env::var_os("CONVERSA_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/conversa-tools")))
        .map(|d| d.join("venv/bin/st"));
    on_path.into_iter().chain(tools).find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_does_what_its_openapi_document_says() {
    let Some(st) = schemathesis() else {
        common::missing("schemathesis (st)", "run `bash scripts/tools.sh install`");
        return;
    };
    let seconds = std::env::var("CONVERSA_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "120".into());
    let seed = std::env::var("CONVERSA_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let fake = FakeOpenAi::start().await;
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // No rate limit: the run sends thousands of chat requests in a few minutes.
    let server = Server::start(
        &fake,
        data.path(),
        &data.path().join("no-frontend"),
        &[
            ("CONVERSA_RATE_LIMIT_PER_MINUTE", "0"),
            ("RUST_LOG", "error"),
        ],
    );
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    // Every request and answer of the last run, for reading a failure.
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    let mut command = Command::new(&st);
    command
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", here.join("schemathesis_hooks.py"))
        .arg("--config-file")
        .arg(here.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/api/openapi.json", server.base))
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", &seed])
        .args(["--max-time", &seconds])
        .args(["--report", "har", "--report-dir"])
        .arg(&report);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Schemathesis found places where the API and its document disagree (requests and answers: {}):\n{stdout}\n{stderr}",
        report.display()
    );
    // The warnings and the summary: operations, phases, how many requests, the time.
    let tail = stdout
        .find("== WARNINGS ==")
        .or_else(|| stdout.find("== SUMMARY =="))
        .map_or(&*stdout, |at| &stdout[at..]);
    println!("{tail}");
    assert!(
        stdout.contains("generated") && !stdout.contains("Tested: 0"),
        "the run tested nothing:\n{stdout}"
    );
    drop(server);
}

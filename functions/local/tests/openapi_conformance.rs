//! The API does what its OpenAPI document says: Schemathesis (`st`, installed by
//! `scripts/tools.sh`) reads `/api/openapi.json` from a running `conversa-local` on the fake
//! model, generates requests for every operation the document lists, and checks every answer
//! against it: all checks (every check is on unless `schemathesis.toml` narrows one for an
//! operation; `--checks` on the command line would override those), every phase, a fixed seed and
//! a time budget. A route joins the run by being in the document.
//!
//! `schemathesis.toml` beside this file says which statuses two checks also accept, and why;
//! `schemathesis_hooks.py` works around a flaw of the pinned version.
//! Two runs: mode `none` (the local default), and mode `tokens` with the token sent, where the
//! `ignored_auth` check also proves every route the document secures refuses a request without it.
//! `CONVERSA_SCHEMATHESIS_SECONDS` changes each budget (default 120 s), `CONVERSA_SCHEMATHESIS_SEED`
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

/// A token of `CONVERSA_AUTH_TOKENS` for the run where people sign in.
const TOKEN: &str = "schemathesis-token-0123456789";

/// Runs Schemathesis against a `conversa-local` started with `env`, sending `headers` with every
/// request; the HAR report of the run goes to `CARGO_TARGET_TMPDIR/<report>`.
async fn conformance(env: &[(&str, &str)], headers: &[String], report: &str) {
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
    let mut all_env = vec![
        ("CONVERSA_RATE_LIMIT_PER_MINUTE", "0"),
        ("RUST_LOG", "error"),
    ];
    all_env.extend_from_slice(env);
    let server = Server::start(
        &fake,
        data.path(),
        &data.path().join("no-frontend"),
        &all_env,
    );
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    // Every request and answer of the last run, for reading a failure.
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join(report);
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
    for header in headers {
        command.arg("--header").arg(header);
    }
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

/// Mode `none` (the local default): one user, no token.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_does_what_its_openapi_document_says() {
    conformance(&[], &[], "schemathesis").await;
}

/// A mode where people sign in: the document asks for the bearer token on every route but the
/// public ones, and Schemathesis sends it; its `ignored_auth` check also sends each of those
/// requests without the token and with a wrong one, which must be refused as documented (401).
#[tokio::test(flavor = "multi_thread")]
async fn the_api_does_what_its_openapi_document_says_when_people_sign_in() {
    let tokens = format!("ada:{TOKEN}");
    conformance(
        &[
            ("CONVERSA_AUTH_TOKENS", &tokens),
            ("CONVERSA_ADMINS", "ada"),
        ],
        &[format!("Authorization: Bearer {TOKEN}")],
        "schemathesis-sign-in",
    )
    .await;
}

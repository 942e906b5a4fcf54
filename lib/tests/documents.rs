//! Large files as background jobs, and context that fits: a 300-page PDF, a long DOCX and a large
//! XLSX are processed with visible progress, and a question about page 250 gets that page into the
//! model's context.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod extract_support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use conversa::testing::{
    body_text, eventually, last_user_text, multipart, parse_sse, pdf_with_pages, streamed_text,
    test_app, test_config, FakeOpenAi, Patience,
};
use serde_json::{json, Value};
use tower::ServiceExt;

fn manual_pages() -> Vec<String> {
    (1..=300)
        .map(|p| {
            if p == 250 {
                "The secret ingredient of the house soup is saffron from La Mancha.".to_owned()
            } else {
                format!(
                    "Page {p} covers quarterly logistics, shipping routes and warehouse capacity."
                )
            }
        })
        .collect()
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let r = app.clone().oneshot(req).await.unwrap();
    let s = r.status();
    (s, body_text(r).await)
}

/// Uploads `bytes` as a background job (202) and polls the record until it is no longer
/// processing: its id, the final record and every `progress` value seen meanwhile.
async fn run_job(app: &axum::Router, name: &str, bytes: &[u8]) -> (String, Value, Vec<u64>) {
    let (ct, body) = multipart(&[("file", Some(name), None, bytes)]);
    let (s, b) = send(
        app,
        Request::post("/api/files")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let meta: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(meta["status"], "processing");
    assert_eq!(meta["progress"], 0);
    let id = meta["id"].as_str().unwrap().to_owned();

    let mut seen_progress = Vec::new();
    let patience = Patience::new(Duration::from_secs(120), format!("{name} to be processed"));
    loop {
        let (_, b) = send(
            app,
            Request::get(format!("/api/files/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let v: Value = serde_json::from_str(&b).unwrap();
        if v["status"] == "processing" {
            seen_progress.push(v["progress"].as_u64().unwrap());
        } else {
            return (id, v, seen_progress);
        }
        patience.wait().await;
    }
}

#[tokio::test]
async fn a_300_page_pdf_is_a_job_with_progress_and_page_250_reaches_the_context() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let built = test_app(&fake, dir.path(), &[("CONVERSA_CONTEXT_TOKENS", "4000")]).await;
    let app = conversa::api::router(built.state.clone());
    let pages = manual_pages();
    let pdf = pdf_with_pages(&pages.iter().map(String::as_str).collect::<Vec<_>>());

    let (id, ready, seen_progress) = run_job(&app, "manual.pdf", &pdf).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["pages"], 300);
    assert!(ready["progress"].is_null());
    assert!(ready["token_count"].as_u64().unwrap() > 3000, "{ready}");
    assert!(!seen_progress.is_empty() && seen_progress.iter().all(|p| *p < 100));
    assert!(
        seen_progress.iter().any(|p| (5..100).contains(p)),
        "progress moves page by page while the job runs: {seen_progress:?}"
    );

    // The whole manual does not fit in a 4,000-token window: the page that answers does.
    let (s, b) = send(
        &app,
        Request::post("/api/chat/send")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "message": "What is the secret ingredient of the soup?", "file_ids": [id] }).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(parse_sse(&b).last().unwrap().event, "done");
    let sent = last_user_text(&fake.chat_requests().pop().unwrap());
    assert!(sent.contains("saffron from La Mancha"), "{sent}");
    assert!(
        sent.contains("] page 250\nThe secret ingredient"),
        "chunks are numbered passages labelled with their page"
    );
    assert!(
        sent.contains("manual.pdf is too long to send whole"),
        "the model is told what was left out"
    );
    assert!(
        conversa::tokens::estimate(&sent) < 2500,
        "file text stays within its share of the window"
    );
}

/// Every value seen while processing is below 100, never goes down, and at least one is strictly
/// between 0 and 100.
fn assert_intermediate_progress(name: &str, seen: &[u64]) {
    assert!(seen.iter().all(|p| *p < 100), "{name}: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "{name}: progress never goes back: {seen:?}"
    );
    assert!(
        seen.iter().any(|p| (1..100).contains(p)),
        "{name}: progress moves while the job runs: {seen:?}"
    );
}

#[tokio::test]
async fn a_long_docx_and_a_large_xlsx_report_progress_as_jobs() {
    use extract_support as doc;
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let built = test_app(&fake, dir.path(), &[("CONVERSA_INLINE_MAX_BYTES", "1000")]).await;
    let app = conversa::api::router(built.state);

    // 30,000 paragraphs (about 3 MB of document.xml).
    let mut body = String::new();
    for i in 0..30_000 {
        if i % 500 == 0 {
            body.push_str(&doc::p_styled(
                "Heading1",
                &format!("Chapter {}", i / 500 + 1),
            ));
        }
        body.push_str(&doc::p(&format!(
            "Paragraph {i} of the handbook: shipping routes, warehouse capacity and staff rotas."
        )));
    }
    let docx = doc::docx(&body);
    let (_, ready, seen) = run_job(&app, "handbook.docx", &docx).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["progress"].is_null());
    assert_intermediate_progress("docx", &seen);

    // 3 sheets of 12,000 rows × 4 columns.
    let sheets: Vec<(String, Vec<Vec<String>>)> = (1..=3)
        .map(|s| {
            let rows = (0..12_000)
                .map(|r| {
                    vec![
                        doc::s(&format!("item {s}-{r}")),
                        doc::n(f64::from(r)),
                        doc::date(40_000 + r),
                        doc::n(f64::from(r) * 1.5),
                    ]
                })
                .collect();
            (format!("Sheet{s}"), rows)
        })
        .collect();
    let named: Vec<(&str, Vec<Vec<String>>)> = sheets
        .iter()
        .map(|(n, rows)| (n.as_str(), rows.clone()))
        .collect();
    let xlsx = doc::xlsx(&named);
    let (_, ready, seen) = run_job(&app, "ledger.xlsx", &xlsx).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["pages"], 3);
    assert_intermediate_progress("xlsx", &seen);
}

#[tokio::test]
async fn small_files_are_read_before_the_answer_and_whole() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let built = test_app(&fake, dir.path(), &[]).await;
    let app = conversa::api::router(built.state);
    let pdf = pdf_with_pages(&["First page.", "Second page."]);
    let (ct, body) = multipart(&[
        ("message", None, None, b"read it"),
        ("files", Some("two.pdf"), None, &pdf),
    ]);
    let (s, b) = send(
        &app,
        Request::post("/api/chat/send")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let answer = streamed_text(&parse_sse(&b));
    assert!(
        answer.contains("[1] page 1\nFirst page.") && answer.contains("[2] page 2\nSecond page."),
        "{answer}"
    );
    assert!(!answer.contains("too long to send whole"));
}

#[tokio::test]
async fn unfinished_jobs_resume_after_a_restart() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let owner = conversa::domain::Owner::local();
    let id;
    {
        // A server that stored and queued a file, then stopped before its workers ran it.
        let state = conversa::App::from_config(test_config(
            &fake.base_url,
            dir.path(),
            &[("CONVERSA_INLINE_MAX_BYTES", "10")],
        ))
        .await
        .unwrap();
        let mut meta = conversa::domain::FileMeta::new(
            "notes.txt".into(),
            "text/plain".into(),
            20,
            conversa::domain::FileType::Text,
            conversa::domain::FileStatus::Processing,
        );
        meta.progress = Some(0);
        id = meta.id.clone();
        state
            .blobs
            .put(
                &conversa::blobs::keys::original(&owner, &id),
                "resume me please, ok".into(),
                "text/plain",
            )
            .await
            .unwrap();
        meta.size = 20;
        state.store.put_file(&owner, &meta).await.unwrap();
        let job = conversa::jobs::Job {
            owner: owner.as_str().into(),
            file_id: id.clone(),
        };
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        std::fs::write(
            dir.path().join("jobs").join(format!("{id}.json")),
            serde_json::to_vec(&job).unwrap(),
        )
        .unwrap();
    }
    let state = test_app(&fake, dir.path(), &[]).await;
    let status = eventually(Duration::from_secs(10), "the job to resume", || async {
        let m = state.store.get_file(&owner, &id).await.unwrap().unwrap();
        (m.status.as_str() != "processing").then(|| m.status.as_str().to_owned())
    })
    .await;
    assert_eq!(status, "ready");
    let text = state.state.files.text(&owner, &id).await.unwrap();
    assert_eq!(text, "resume me please, ok");
    assert!(
        !dir.path().join("jobs").join(format!("{id}.json")).exists(),
        "a finished job is forgotten"
    );
}

#[tokio::test]
async fn a_job_that_fails_says_why_and_the_chat_refuses_the_file() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let built = test_app(&fake, dir.path(), &[("CONVERSA_INLINE_MAX_BYTES", "100")]).await;
    let app = conversa::api::router(built.state);
    let mut broken = b"%PDF-1.4\n".to_vec();
    broken.extend(std::iter::repeat_n(b'x', 500));
    let (ct, body) = multipart(&[("file", Some("broken.pdf"), None, &broken)]);
    let (s, b) = send(
        &app,
        Request::post("/api/files")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = serde_json::from_str::<Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = send(
        &app,
        Request::post("/api/chat/send")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({ "message": "summarise", "file_ids": [id] }).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.contains("broken.pdf"));
    let (_, b) = send(
        &app,
        Request::get(format!("/api/files/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["status"], "failed");
    assert!(v["error"].as_str().unwrap().contains("broken.pdf"), "{v}");
}

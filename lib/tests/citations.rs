//! Grounded answers through the real routers: a 14-page PDF with a canary fact on page 7 goes to
//! the model as numbered passages; the fake model (the real OpenAI adapter talks to it) finds the
//! number the prompt gave the canary's passage and cites it, as a model would. `done`, the stored
//! answer, the messages API and the replay of the finished turn all point at page 7 of that file,
//! with a snippet that holds the canary — whether the file went whole or was cut to fit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use conversa::testing::{
    body_text, multipart, parse_sse, passage_number_of, pdf_with_pages, test_app, FakeOpenAi,
    SseEvent,
};
use serde_json::Value;
use tower::ServiceExt;

const CANARY: &str = "ZEBRA-7731";

/// Fourteen pages; page 7 holds the canary. With `filler`, every page is long enough that the
/// whole file does not fit a small window.
fn pages(filler: usize) -> Vec<String> {
    (1..=14)
        .map(|p| {
            let more = format!(" Shipping routes, warehouse capacity and staff rotas for week {p}.")
                .repeat(filler);
            if p == 7 {
                format!("Security notes. The launch code for the vault is {CANARY} and it changes yearly.{more}")
            } else {
                format!("Page {p} covers quarterly logistics and the budget.{more}")
            }
        })
        .collect()
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let r = app.clone().oneshot(req).await.unwrap();
    let s = r.status();
    (s, body_text(r).await)
}

/// Sends the PDF with a question whose answer cites the canary; the turn's events.
async fn ask(app: &axum::Router, pdf: &[u8]) -> Vec<SseEvent> {
    let question = format!("What is the launch code for the vault? [[cite:{CANARY}]]");
    let (ct, body) = multipart(&[
        ("message", None, None, question.as_bytes()),
        ("files", Some("canary.pdf"), Some("application/pdf"), pdf),
    ]);
    let (s, b) = call(
        app,
        Request::post("/api/chat/send")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    parse_sse(&b)
}

/// Runs the canary scenario in a window of `window` tokens with pages of `filler`; the text of
/// the file as the model received it.
async fn canary_is_cited_on_page_7(window: &str, filler: usize) -> String {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let built = test_app(&fake, dir.path(), &[("CONVERSA_CONTEXT_TOKENS", window)]).await;
    let app = conversa::api::router(built.state.clone());
    let pages = pages(filler);
    let pdf = pdf_with_pages(&pages.iter().map(String::as_str).collect::<Vec<_>>());

    let events = ask(&app, &pdf).await;
    let meta = &events[0].data;
    let file = &meta["files"][0];
    assert_eq!(file["pages"], 14, "{meta}");
    let done = events.last().unwrap();
    assert_eq!(done.event, "done", "{events:?}");

    // The number the prompt gave the canary's passage, read from what the model received.
    let request = fake.chat_requests().pop().unwrap();
    let n = passage_number_of(&request, CANARY).expect("the canary reached the model");
    let sent = request.to_string();
    assert!(
        sent.contains(&format!("[{n}] page 7\\n")),
        "the passage is numbered and labelled with its page"
    );
    assert!(
        sent.contains("cite it right after the statement"),
        "the model is asked to cite"
    );

    let answer: String = events
        .iter()
        .filter(|e| e.event == "token")
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    assert_eq!(answer, format!("{CANARY} is stated there [{n}]."));

    let citations = done.data["citations"].as_array().unwrap().clone();
    assert_eq!(citations.len(), 1, "only the passage cited: {citations:?}");
    let c = &citations[0];
    assert_eq!(c["n"], n);
    assert_eq!(c["file_id"], file["id"]);
    assert_eq!(c["filename"], "canary.pdf");
    assert_eq!(c["page"], 7);
    assert!(c["sheet"].is_null());
    let snippet = c["snippet"].as_str().unwrap();
    assert!(snippet.contains(CANARY), "{snippet}");
    assert!(snippet.chars().count() <= 300);

    // The stored answer carries the same citations, through the messages API.
    let conversation = meta["conversation_id"].as_str().unwrap();
    let answer_id = meta["assistant_message_id"].as_str().unwrap();
    let (s, b) = call(
        &app,
        Request::get(format!("/api/conversations/{conversation}/messages"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let messages: Value = serde_json::from_str(&b).unwrap();
    let stored = messages["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == answer_id)
        .unwrap();
    assert_eq!(stored["citations"], done.data["citations"]);
    let user = messages["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap();
    assert_eq!(
        user["citations"],
        serde_json::json!([]),
        "a question cites nothing"
    );

    // A replay of the finished turn ends with the same `done`.
    let (s, b) = call(
        &app,
        Request::get(format!("/api/chat/stream/{answer_id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let replay = parse_sse(&b);
    let last = replay.last().unwrap();
    assert_eq!(last.event, "done");
    assert_eq!(last.data["citations"], done.data["citations"]);
    conversa::testing::last_user_text(&request)
}

#[tokio::test]
async fn a_canary_on_page_7_of_a_14_page_pdf_sent_whole_is_cited_on_page_7() {
    let sent = canary_is_cited_on_page_7("8192", 0).await;
    for p in 1..=14 {
        assert!(
            sent.contains(&format!("] page {p}\n")),
            "every page is its own passage: {sent}"
        );
    }
}

#[tokio::test]
async fn a_canary_on_page_7_of_a_14_page_pdf_cut_to_fit_is_cited_on_page_7() {
    let sent = canary_is_cited_on_page_7("1500", 12).await;
    assert!(
        sent.contains("canary.pdf is too long to send whole"),
        "the file was cut: {sent}"
    );
}

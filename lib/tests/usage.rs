//! Usage and budgets through the real routers and the real SQLite store: receipts add up to
//! `/api/usage` and the admin totals, ranges are checked, and a turn over budget is
//! `429 quota_exceeded` with `Retry-After` and the numbers in words. (The same receipts check runs
//! on DynamoDB and MongoDB in their adapter suites.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use conversa::testing::{body_text, receipts, test_app, FakeOpenAi};
use serde_json::{json, Value};
use tower::ServiceExt;

const ANN: &str = "ann-token-0123456789ab";

async fn call(
    app: &conversa::App,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ANN}"));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = conversa::api::router(app.state.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let text = body_text(response).await;
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn receipts_add_up_on_sqlite() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(&fake, dir.path(), &receipts::env()).await;
    receipts::receipts_add_up(conversa::api::router(app.state.clone())).await;
}

#[tokio::test]
async fn usage_ranges_are_checked() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(&fake, dir.path(), &receipts::env()).await;
    for (uri, status, code) in [
        (
            "/api/usage?from=2026-12-02&to=2026-12-01",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/usage?from=last-week",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/usage?from=2025-01-01&to=2026-02-05",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "/api/admin/usage?from=2025-01-01&to=2026-02-05",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "/api/admin/usage?group_by=tier",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let (s, _, body) = call(&app, Method::GET, uri, None).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{uri}: {body}"
        );
    }
    // 400 days exactly, and a day given as a time.
    let (s, _, body) = call(
        &app,
        Method::GET,
        "/api/usage?from=2025-01-01&to=2026-02-04T10:00:00Z",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["from"].as_str(), body["to"].as_str()),
        (Some("2025-01-01"), Some("2026-02-04"))
    );
    // The default is this month, with an empty report and the default tier's (absent) limits.
    let (s, _, body) = call(&app, Method::GET, "/api/usage", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body["from"].as_str().unwrap().ends_with("-01"), "{body}");
    assert_eq!(
        body["totals"],
        json!({"turns": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0})
    );
    assert_eq!(body["budget"]["tier"], "default");
    assert_eq!(body["budget"]["limits"], json!({}));
}

#[tokio::test]
async fn over_budget_a_turn_is_429_quota_exceeded_with_the_numbers() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = receipts::env();
    env.extend([
        ("CONVERSA_TIERS", r#"{"small": {"tokens_per_day": 1050}}"#),
        ("CONVERSA_DEFAULT_TIER", "small"),
        ("CONVERSA_MAX_ANSWER_TOKENS", "1000"),
        ("CONVERSA_SYSTEM_PROMPT", "Be brief."),
    ]);
    let app = test_app(&fake, dir.path(), &env).await;
    // The first turn's worst case (its prompt and the 1,000-token cap) fits; it settles to far
    // less (a title that does not fit beside it comes from the message).
    let (s, _, first) = call(
        &app,
        Method::POST,
        "/api/chat/send-simple",
        Some(json!({"message": "hello"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (_, _, usage) = call(&app, Method::GET, "/api/usage", None).await;
    let used = usage["budget"]["used"]["tokens_per_day"].as_u64().unwrap();
    assert!(used > 0 && used < 200, "{usage}");
    assert_eq!(usage["budget"]["limits"], json!({"tokens_per_day": 1050}));
    // The second one's worst case does not fit any more.
    let (s, headers, refused) = call(
        &app,
        Method::POST,
        "/api/chat/send",
        Some(json!({"message": "and again", "conversation_id": first["conversation_id"]})),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_eq!(refused["error"]["code"], "quota_exceeded");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "You have used {used} of your 1,050 tokens today; the budget resets in "
        )),
        "{message}"
    );
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // Nothing was stored for it, and nothing was held.
    let (_, _, messages) = call(
        &app,
        Method::GET,
        &format!(
            "/api/conversations/{}/messages",
            first["conversation_id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(messages["items"].as_array().unwrap().len(), 2, "{messages}");
    let (_, _, after) = call(&app, Method::GET, "/api/usage", None).await;
    assert_eq!(
        after["budget"]["used"]["tokens_per_day"].as_u64(),
        Some(used)
    );
}

#[tokio::test]
async fn the_openapi_document_lists_the_usage_routes() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(&fake, dir.path(), &receipts::env()).await;
    let (s, _, doc) = call(&app, Method::GET, "/api/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    for path in ["/api/usage", "/api/admin/usage"] {
        let get = &doc["paths"][path]["get"];
        assert!(get.is_object(), "{path}");
        for status in ["200", "400", "403", "422"] {
            assert!(get["responses"][status].is_object(), "{path} {status}");
        }
        let names: Vec<&str> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"from") && names.contains(&"to"),
            "{path}: {names:?}"
        );
    }
    for schema in [
        "UsageReply",
        "UsageTotals",
        "AdminUsage",
        "UsageGroup",
        "TierLimits",
        "BudgetReply",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(
        doc["components"]["schemas"]["AdminUser"]["properties"]["usage_this_month"].is_object()
    );
}

/// `GET /metrics` on the local server: Prometheus text for admins, 403 for others.
#[cfg(feature = "prometheus")]
#[tokio::test]
async fn the_local_server_serves_prometheus_metrics_to_admins() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(&fake, dir.path(), &receipts::env()).await;
    let (s, _, _) = call(
        &app,
        Method::POST,
        "/api/chat/send-simple",
        Some(json!({"message": "count me"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let get = |token: &'static str| {
        let router = conversa::local::app(&app);
        async move {
            let response = router
                .oneshot(
                    Request::get("/metrics")
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let (status, headers) = (response.status(), response.headers().clone());
            (status, headers, body_text(response).await)
        }
    };
    let (s, headers, text) = get(ANN).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "# TYPE conversa_time_to_first_token_seconds histogram",
        "# TYPE conversa_turn_duration_seconds histogram",
        "# TYPE conversa_turns_total counter",
        "conversa_turns_total{model=\"chat-model\"}",
        "conversa_prompt_tokens_total{model=\"chat-model\"}",
        "conversa_completion_tokens_total{model=\"chat-model\"}",
        "conversa_cost_usd_total{model=\"chat-model\"}",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    let (s, _, _) = get("bob-token-0123456789ab").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins only");
}

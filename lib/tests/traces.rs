//! OTLP traces of chat turns, received by a real OTLP/HTTP receiver (`POST /v1/traces`, protobuf,
//! decoded with the OpenTelemetry protocol's own types): the spans of a turn follow the GenAI
//! semantic conventions, hang under the turn's span, carry the stored receipt's token counts and
//! no message text; without an endpoint nothing is built; an unreachable collector costs a turn
//! nothing and does not hold the way out; on Lambda a turn's spans are sent before its response
//! ends.

#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use conversa::testing::{body_text, test_app, FakeOpenAi, Patience};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// Generous: a debug build on a busy machine.
const WITHIN: Duration = Duration::from_secs(10);

/// An OTLP/HTTP receiver on a free port: every export request, decoded (or why it was not).
struct Receiver {
    /// `http://127.0.0.1:PORT` (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes).
    endpoint: String,
    received: mpsc::UnboundedReceiver<Result<ExportTraceServiceRequest, String>>,
    /// Spans received so far, with their resource's `service.name`.
    spans: Vec<(String, Span)>,
}

impl Receiver {
    async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let content_type = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let decoded = if content_type == "application/x-protobuf" {
                        ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
                    } else {
                        Err(format!("content type {content_type:?}"))
                    };
                    let _ = tx.send(decoded);
                    (
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            endpoint: format!("http://{addr}"),
            received: rx,
            spans: Vec::new(),
        }
    }

    /// Takes what has arrived, without waiting.
    fn take(&mut self) {
        while let Ok(request) = self.received.try_recv() {
            let request = request.unwrap_or_else(|e| panic!("not an OTLP export: {e}"));
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| string(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        self.spans.push((service.clone(), span));
                    }
                }
            }
        }
    }

    /// Waits (at most [`WITHIN`]) until `n` spans have arrived.
    async fn wait_for(&mut self, n: usize) {
        let patience = Patience::new(WITHIN, format!("{n} spans"));
        loop {
            self.take();
            if self.spans.len() >= n {
                return;
            }
            patience.wait().await;
        }
    }

    fn named(&self, name: &str) -> Vec<&Span> {
        self.spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    }

    fn one(&self, name: &str) -> &Span {
        let found = self.named(name);
        assert_eq!(found.len(), 1, "one {name:?} span in {:#?}", self.names());
        found[0]
    }

    fn names(&self) -> Vec<&str> {
        self.spans.iter().map(|(_, s)| s.name.as_str()).collect()
    }
}

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    match value(attributes, key)? {
        Any::StringValue(s) => Some(s.clone()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match value(attributes, key)? {
        Any::IntValue(n) => Some(*n),
        other => panic!("{key} is not an int: {other:?}"),
    }
}

fn strings(attributes: &[KeyValue], key: &str) -> Option<Vec<String>> {
    match value(attributes, key)? {
        Any::ArrayValue(a) => Some(
            a.values
                .iter()
                .map(|v| match &v.value {
                    Some(Any::StringValue(s)) => s.clone(),
                    other => panic!("{key} holds {other:?}"),
                })
                .collect(),
        ),
        other => panic!("{key} is not an array: {other:?}"),
    }
}

/// Every string an attribute of `span` (or of its events) holds.
fn all_strings(span: &Span) -> Vec<String> {
    let mut out = Vec::new();
    let lists = std::iter::once(&span.attributes).chain(span.events.iter().map(|e| &e.attributes));
    for list in lists {
        for kv in list {
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => out.push(s.clone()),
                Some(Any::ArrayValue(a)) => {
                    out.extend(a.values.iter().filter_map(|v| match &v.value {
                        Some(Any::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    }))
                }
                _ => {}
            }
        }
    }
    out
}

async fn send_simple(app: &conversa::App, message: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/chat/send-simple")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "message": message }).to_string()))
        .unwrap();
    let response = conversa::api::router(app.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let text = body_text(response).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_turn_is_a_server_span_with_a_chat_span_per_model_call() {
    let fake = FakeOpenAi::start().await;
    let mut receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(
        &fake,
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_SERVICE_NAME", "conversa-test"),
            ("CONVERSA_MAX_ANSWER_TOKENS", "500"),
        ],
    )
    .await;
    assert!(app.traces.enabled());

    let (status, reply) = send_simple(&app, "hello there").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let receipt = &reply["message"]["usage"];
    assert!(
        app.traces.flush(WITHIN).await,
        "the receiver took the spans"
    );
    receiver.wait_for(3).await;
    assert_eq!(receiver.spans.len(), 3, "{:?}", receiver.names());
    assert!(receiver.spans.iter().all(|(s, _)| s == "conversa-test"));

    let turn = receiver.one("chat turn");
    assert_eq!(turn.kind, SpanKind::Server as i32);
    assert!(turn.parent_span_id.is_empty(), "the turn is the root");
    let a = &turn.attributes;
    assert_eq!(
        string(a, "gen_ai.conversation.id").as_deref(),
        reply["conversation_id"].as_str()
    );
    assert_eq!(
        string(a, "conversa.message.id").as_deref(),
        reply["message"]["id"].as_str()
    );
    assert_eq!(
        string(a, "conversa.user_message.id").as_deref(),
        reply["message"]["parent_id"].as_str()
    );
    assert_eq!(
        string(a, "enduser.pseudo.id"),
        Some(conversa::traces::pseudonym("local"))
    );
    assert_eq!(string(a, "conversa.outcome").as_deref(), Some("complete"));
    assert_eq!(
        string(a, "conversa.answered_by").as_deref(),
        Some("chat-model")
    );
    assert_eq!(string(a, "error.type"), None);

    let chat = receiver.one("chat chat-model");
    assert_eq!(chat.kind, SpanKind::Client as i32);
    assert_eq!(chat.trace_id, turn.trace_id);
    assert_eq!(chat.parent_span_id, turn.span_id, "a child of the turn");
    assert!(chat.start_time_unix_nano >= turn.start_time_unix_nano);
    assert!(chat.end_time_unix_nano <= turn.end_time_unix_nano);
    let a = &chat.attributes;
    assert_eq!(string(a, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(string(a, "gen_ai.provider.name").as_deref(), Some("openai"));
    assert_eq!(
        string(a, "gen_ai.request.model").as_deref(),
        Some("chat-model")
    );
    assert_eq!(
        string(a, "gen_ai.response.model").as_deref(),
        Some("chat-model")
    );
    assert_eq!(int(a, "gen_ai.request.max_tokens"), Some(500));
    assert_eq!(
        strings(a, "gen_ai.response.finish_reasons"),
        Some(vec!["stop".to_owned()])
    );
    assert_eq!(
        int(a, "gen_ai.usage.input_tokens"),
        receipt["prompt_tokens"].as_i64(),
        "the stored receipt's counts"
    );
    assert_eq!(
        int(a, "gen_ai.usage.output_tokens"),
        receipt["completion_tokens"].as_i64()
    );
    assert!(receipt["prompt_tokens"].as_i64().is_some_and(|n| n > 0));
    assert_eq!(
        string(a, "gen_ai.conversation.id").as_deref(),
        reply["conversation_id"].as_str()
    );
    match value(a, "gen_ai.response.time_to_first_chunk") {
        Some(Any::DoubleValue(s)) => assert!(*s > 0.0 && *s < WITHIN.as_secs_f64()),
        other => panic!("time to first chunk: {other:?}"),
    }
    assert!(chat.events.iter().any(|e| e.name == "gen_ai.first_chunk"));
    assert_ne!(
        chat.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );

    let title = receiver.one("chat title-model");
    assert_eq!(title.kind, SpanKind::Client as i32);
    assert_eq!(
        title.parent_span_id, turn.span_id,
        "the title call is in the turn"
    );
    assert!(title.end_time_unix_nano <= turn.end_time_unix_nano);
    assert_eq!(
        string(&title.attributes, "gen_ai.request.model").as_deref(),
        Some("title-model")
    );
    assert_eq!(
        int(&title.attributes, "gen_ai.request.max_tokens"),
        Some(i64::from(conversa::service::title::TITLE_TOKENS))
    );
    assert!(int(&title.attributes, "gen_ai.usage.output_tokens").is_some_and(|n| n > 0));

    // Ids, models and counts; never what was said.
    for (_, span) in &receiver.spans {
        for s in all_strings(span) {
            assert!(
                !s.contains("hello") && !s.contains("Echo"),
                "{} carries text: {s:?}",
                span.name
            );
        }
    }
    assert!(app.traces.shutdown(WITHIN).await);
}

#[tokio::test]
async fn a_failed_model_call_says_its_error_type() {
    let fake = FakeOpenAi::start().await;
    let mut receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(
        &fake,
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)],
    )
    .await;
    let (status, reply) = send_simple(&app, "boom [[status:503]]").await;
    assert!(!status.is_success(), "{status} {reply}");
    assert!(app.traces.flush(WITHIN).await);
    // The turn, its failed call and the title's call.
    receiver.wait_for(3).await;
    assert!(receiver.spans.iter().all(|(s, _)| s == "conversa"));
    let chat = receiver.one("chat chat-model");
    assert_eq!(
        string(&chat.attributes, "error.type").as_deref(),
        Some("503")
    );
    assert_eq!(
        chat.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );
    assert_eq!(int(&chat.attributes, "gen_ai.usage.input_tokens"), None);
    let turn = receiver.one("chat turn");
    assert_eq!(chat.parent_span_id, turn.span_id);
    assert_eq!(
        string(&turn.attributes, "error.type").as_deref(),
        Some("503")
    );
    assert_eq!(
        string(&turn.attributes, "conversa.outcome").as_deref(),
        Some("error")
    );
    assert!(app.traces.shutdown(WITHIN).await);
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_built_or_sent() {
    let fake = FakeOpenAi::start().await;
    let mut receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The service name alone turns nothing on.
    let app = test_app(&fake, dir.path(), &[("OTEL_SERVICE_NAME", "conversa-test")]).await;
    assert!(app.config.otlp.is_none());
    assert!(!app.traces.enabled());
    let (status, reply) = send_simple(&app, "hello there").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["message"]["status"], "complete");
    assert!(app.traces.flush(WITHIN).await, "nothing to send");
    receiver.take();
    assert!(receiver.spans.is_empty());
}

#[tokio::test]
async fn an_unreachable_collector_costs_the_turn_nothing() {
    // A port that was free a moment ago: connections to it are refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{closed}");
    let app = test_app(
        &fake,
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    )
    .await;
    assert!(app.traces.enabled());
    for message in ["hello there", "and again"] {
        let (status, reply) = send_simple(&app, message).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["message"]["status"], "complete");
        assert_eq!(reply["message"]["content"], format!("Echo: {message}"));
    }
    assert!(
        !app.traces.flush(Duration::from_secs(2)).await,
        "the flush says it failed"
    );
    // The way out is bounded by what it is given, collector or not.
    let bound = Duration::from_secs(1);
    tokio::time::timeout(bound + Duration::from_secs(2), app.traces.shutdown(bound))
        .await
        .expect("the shutdown is bounded");
}

#[tokio::test]
async fn on_lambda_a_turn_sends_its_spans_before_its_response_ends() {
    let fake = FakeOpenAi::start().await;
    let mut receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(
        &fake,
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("AWS_LAMBDA_FUNCTION_NAME", "chat"),
        ],
    )
    .await;
    assert!(app.traces.flush_each_turn());
    let (status, reply) = send_simple(&app, "hello there").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // No flush here and no wait: the turn sent its spans before it answered.
    receiver.take();
    let mut names = receiver.names();
    names.sort_unstable();
    assert_eq!(names, ["chat chat-model", "chat title-model", "chat turn"]);
    assert!(app.traces.shutdown(WITHIN).await);
}

#[tokio::test]
async fn on_lambda_a_collector_that_never_answers_delays_a_turn_a_bounded_time() {
    // Connections are taken into the backlog and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = test_app(
        &fake,
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("AWS_LAMBDA_FUNCTION_NAME", "chat"),
        ],
    )
    .await;
    let (status, reply) = tokio::time::timeout(
        conversa::traces::TURN_FLUSH + WITHIN,
        send_simple(&app, "hello there"),
    )
    .await
    .expect("the turn is not held by the collector");
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["message"]["status"], "complete");
    app.traces.shutdown(Duration::from_millis(200)).await;
    drop(silent);
}

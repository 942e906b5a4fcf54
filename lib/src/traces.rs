//! OTLP traces of chat turns, after the OpenTelemetry GenAI semantic conventions: a `SERVER` span
//! per answered turn (`chat turn`), and under it a `CLIENT` span per model call (`chat {model}`:
//! each model a turn tries, fallbacks included, and the title model). Spans carry ids, models,
//! token counts, finish reasons and errors — never message text.
//!
//! On only when built with the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise every handle here is empty and every
//! call returns at once. Spans go to a batch processor: ending one is a push on a queue, and a
//! thread of the SDK posts the batches (HTTP/protobuf). A collector that is down or slow costs a
//! turn nothing; the queue drops what it cannot hold.
//!
//! On Lambda the sandbox is frozen as soon as a response ends, batch thread included, so each turn
//! flushes its spans before its response ends, for at most [`TURN_FLUSH`]
//! ([`OtlpSettings::flush_each_turn`]). Elsewhere batches leave every few seconds, and
//! [`Traces::shutdown`] sends the rest on the way out, for at most the time it is given.

use std::time::Duration;

use crate::config::ConfigError;

/// The longest a turn waits for its spans to be sent, when it flushes them (Lambda).
pub const TURN_FLUSH: Duration = Duration::from_secs(2);

/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "conversa";

/// Where and how traces are sent, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The URL spans are posted to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` followed by `/v1/traces`.
    pub traces_endpoint: String,
    /// `OTEL_SERVICE_NAME`, default `conversa`.
    pub service_name: String,
    /// Whether each turn sends its spans before its response ends (on Lambda, where
    /// `AWS_LAMBDA_FUNCTION_NAME` is set).
    pub flush_each_turn: bool,
}

impl OtlpSettings {
    /// The settings the standard variables give, or `None` when no endpoint is set (or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let (var, endpoint) = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            ),
            (None, None) => return Ok(None),
        };
        let uri: http::Uri = endpoint.parse().map_err(|e| ConfigError {
            var,
            message: format!("{endpoint:?} is not a URL: {e}"),
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ConfigError {
                var,
                message: format!("{endpoint:?} is not an http:// or https:// URL"),
            });
        }
        Ok(Some(Self {
            traces_endpoint: endpoint,
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| DEFAULT_SERVICE_NAME.into()),
            flush_each_turn: get("AWS_LAMBDA_FUNCTION_NAME").is_some(),
        }))
    }
}

/// The ids a turn's span carries.
#[derive(Debug, Clone, Copy)]
pub struct TurnIds<'a> {
    /// The user (sent as a SHA-256 pseudonym, `enduser.pseudo.id`).
    pub user: &'a str,
    /// The conversation (`gen_ai.conversation.id`).
    pub conversation_id: &'a str,
    /// The user message answered.
    pub user_message_id: &'a str,
    /// The answer's message id.
    pub message_id: &'a str,
    /// The id of the model asked for.
    pub model: &'a str,
}

/// How a turn ended, for its span.
#[derive(Debug, Clone, Copy)]
pub struct TurnEnd<'a> {
    /// `complete`, `incomplete` or `error`.
    pub outcome: &'a str,
    /// The model that answered, when one did.
    pub answered_by: Option<&'a str>,
    /// The error class, when the turn failed.
    pub error_type: Option<&'a str>,
}

/// The pseudonym of a user in traces: the first 16 bytes of the SHA-256 of the id, in hex.
pub fn pseudonym(user: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(user.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The error class of a model failure (`error.type`): the provider's HTTP status, or a word.
pub fn error_type(e: &crate::llm::LlmError) -> String {
    use crate::llm::LlmError;
    match e {
        LlmError::Upstream {
            status: Some(s), ..
        } => s.to_string(),
        LlmError::Upstream { status: None, .. } => "upstream".into(),
        LlmError::Unreachable(_) => "unreachable".into(),
        LlmError::Invalid(_) => "invalid_request".into(),
    }
}

/// The `gen_ai.provider.name` of a provider.
pub fn provider_name(p: crate::llm::Provider) -> &'static str {
    use crate::llm::Provider;
    match p {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Bedrock => "aws.bedrock",
        Provider::Local => "local",
    }
}

#[cfg(feature = "otel")]
mod otel {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use opentelemetry::trace::{
        Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use opentelemetry_sdk::Resource;

    use super::{provider_name, OtlpSettings, TurnEnd, TurnIds};
    use crate::llm::{ChatRequest, ModelEntry, Provider, Usage};

    pub(super) struct Exporting {
        pub(super) provider: SdkTracerProvider,
        pub(super) tracer: SdkTracer,
        pub(super) flush_each_turn: bool,
    }

    pub(super) fn start(settings: &OtlpSettings) -> Result<Exporting, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_endpoint.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("conversa");
        Ok(Exporting {
            provider,
            tracer,
            flush_each_turn: settings.flush_each_turn,
        })
    }

    /// A turn's span, as the context its model calls hang under.
    #[derive(Clone)]
    pub(super) struct Turn {
        pub(super) tracer: SdkTracer,
        pub(super) cx: Context,
        pub(super) conversation_id: Arc<str>,
    }

    pub(super) fn turn(exporting: &Exporting, ids: &TurnIds<'_>, began: SystemTime) -> Turn {
        let span = exporting
            .tracer
            .span_builder("chat turn")
            .with_kind(SpanKind::Server)
            .with_start_time(began)
            .with_attributes([
                KeyValue::new("gen_ai.conversation.id", ids.conversation_id.to_owned()),
                KeyValue::new("enduser.pseudo.id", super::pseudonym(ids.user)),
                KeyValue::new("conversa.message.id", ids.message_id.to_owned()),
                KeyValue::new("conversa.user_message.id", ids.user_message_id.to_owned()),
                KeyValue::new("conversa.model", ids.model.to_owned()),
            ])
            .start(&exporting.tracer);
        Turn {
            tracer: exporting.tracer.clone(),
            cx: Context::new().with_span(span),
            conversation_id: ids.conversation_id.into(),
        }
    }

    pub(super) fn end_turn(turn: &Turn, end: &TurnEnd<'_>) {
        let span = turn.cx.span();
        span.set_attribute(KeyValue::new("conversa.outcome", end.outcome.to_owned()));
        if let Some(m) = end.answered_by {
            span.set_attribute(KeyValue::new("conversa.answered_by", m.to_owned()));
        }
        if let Some(e) = end.error_type {
            span.set_attribute(KeyValue::new("error.type", e.to_owned()));
            span.set_status(Status::error(e.to_owned()));
        }
        span.end();
    }

    /// One model call's span.
    pub(super) struct Call {
        pub(super) span: opentelemetry_sdk::trace::Span,
        pub(super) started: Instant,
        pub(super) first_chunk: bool,
    }

    pub(super) fn call(turn: &Turn, entry: &ModelEntry, request: &ChatRequest) -> Call {
        let kind = if entry.provider == Provider::Local {
            SpanKind::Internal
        } else {
            SpanKind::Client
        };
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", provider_name(entry.provider)),
            KeyValue::new("gen_ai.request.model", request.model.clone()),
            KeyValue::new("gen_ai.request.stream", true),
            KeyValue::new("gen_ai.output.type", "text"),
            KeyValue::new("gen_ai.conversation.id", turn.conversation_id.to_string()),
            KeyValue::new("conversa.model", entry.id.clone()),
        ];
        if let Some(max) = request.max_tokens {
            attributes.push(KeyValue::new("gen_ai.request.max_tokens", i64::from(max)));
        }
        if let Some(t) = request.temperature {
            attributes.push(KeyValue::new("gen_ai.request.temperature", f64::from(t)));
        }
        let span = turn
            .tracer
            .span_builder(format!("chat {}", request.model))
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&turn.tracer, &turn.cx);
        Call {
            span,
            started: Instant::now(),
            first_chunk: false,
        }
    }

    impl Call {
        pub(super) fn first_chunk(&mut self) {
            if !self.first_chunk {
                self.first_chunk = true;
                let secs = self.started.elapsed().as_secs_f64();
                self.span
                    .set_attribute(KeyValue::new("gen_ai.response.time_to_first_chunk", secs));
                self.span.add_event("gen_ai.first_chunk", vec![]);
            }
        }

        pub(super) fn finished(
            &mut self,
            response_model: &str,
            finish_reason: &str,
            usage: Option<Usage>,
        ) {
            let span = &mut self.span;
            span.set_attribute(KeyValue::new(
                "gen_ai.response.model",
                response_model.to_owned(),
            ));
            span.set_attribute(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(vec![StringValue::from(
                    finish_reason.to_owned(),
                )])),
            ));
            if let Some(u) = usage {
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                span.set_attribute(KeyValue::new(
                    "gen_ai.usage.input_tokens",
                    n(u.prompt_tokens),
                ));
                span.set_attribute(KeyValue::new(
                    "gen_ai.usage.output_tokens",
                    n(u.completion_tokens),
                ));
            }
            span.end();
        }

        pub(super) fn failed(&mut self, error_type: &str, message: &str) {
            self.span
                .set_attribute(KeyValue::new("error.type", error_type.to_owned()));
            self.span.set_status(Status::error(message.to_owned()));
            self.span.end();
        }
    }

    pub(super) fn flush_blocking(provider: &SdkTracerProvider) -> bool {
        provider.force_flush().is_ok()
    }

    pub(super) fn shutdown_blocking(provider: &SdkTracerProvider, within: Duration) -> bool {
        provider.shutdown_with_timeout(within).is_ok()
    }
}

/// The process's trace exporter, or nothing. Cheap to clone.
#[derive(Clone, Default)]
pub struct Traces {
    #[cfg(feature = "otel")]
    exporting: Option<std::sync::Arc<otel::Exporting>>,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Traces {
    /// No traces.
    pub fn off() -> Self {
        Self::default()
    }

    /// An exporter for `settings` (nothing when `None`). Starts the SDK's batch thread; sends
    /// nothing until spans end. Built without the `otel` feature, an endpoint is reported in the
    /// log and ignored.
    pub fn start(settings: Option<&OtlpSettings>) -> Result<Self, String> {
        let Some(settings) = settings else {
            return Ok(Self::off());
        };
        #[cfg(feature = "otel")]
        {
            let exporting = otel::start(settings)?;
            tracing::info!(endpoint = %settings.traces_endpoint, service = %settings.service_name, "sending OTLP traces");
            Ok(Self {
                exporting: Some(std::sync::Arc::new(exporting)),
            })
        }
        #[cfg(not(feature = "otel"))]
        {
            tracing::warn!(
                endpoint = %settings.traces_endpoint,
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but this binary is built without OTLP traces (feature `otel`); no traces are sent"
            );
            Ok(Self::off())
        }
    }

    /// Whether spans are recorded and sent.
    pub fn enabled(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.exporting.is_some()
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }

    /// Starts the span of a turn that began at `began`.
    pub fn turn(&self, ids: &TurnIds<'_>, began: std::time::SystemTime) -> TurnTrace {
        #[cfg(feature = "otel")]
        {
            TurnTrace {
                inner: self.exporting.as_ref().map(|e| otel::turn(e, ids, began)),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (ids, began);
            TurnTrace::none()
        }
    }

    /// Whether each turn sends its spans before its response ends (Lambda).
    pub fn flush_each_turn(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.exporting.as_ref().is_some_and(|e| e.flush_each_turn)
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }

    /// Sends the spans that ended so far, waiting at most `within`: `true` when the collector took
    /// them (also when there is nothing to send), `false` when it failed or took too long.
    pub async fn flush(&self, within: Duration) -> bool {
        #[cfg(feature = "otel")]
        if let Some(e) = &self.exporting {
            let provider = e.provider.clone();
            let job = tokio::task::spawn_blocking(move || otel::flush_blocking(&provider));
            return matches!(tokio::time::timeout(within, job).await, Ok(Ok(true)));
        }
        let _ = within;
        true
    }

    /// Sends what is left and stops the exporter, waiting at most `within` (on the way out):
    /// `true` when it stopped in time.
    pub async fn shutdown(&self, within: Duration) -> bool {
        #[cfg(feature = "otel")]
        if let Some(e) = &self.exporting {
            let provider = e.provider.clone();
            let job =
                tokio::task::spawn_blocking(move || otel::shutdown_blocking(&provider, within));
            return matches!(tokio::time::timeout(within, job).await, Ok(Ok(true)));
        }
        let _ = within;
        true
    }
}

/// A turn's span (or nothing): the parent of its model calls. Cheap to clone.
#[derive(Clone, Default)]
pub struct TurnTrace {
    #[cfg(feature = "otel")]
    inner: Option<otel::Turn>,
}

impl TurnTrace {
    /// No span: model calls record nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Starts the span of a call to `entry` with the request as it is sent.
    pub fn model_call(
        &self,
        entry: &crate::llm::ModelEntry,
        request: &crate::llm::ChatRequest,
    ) -> ModelCall {
        #[cfg(feature = "otel")]
        {
            ModelCall {
                inner: self.inner.as_ref().map(|t| otel::call(t, entry, request)),
                response_model: entry.model.clone(),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (entry, request);
            ModelCall {}
        }
    }

    /// Ends the turn's span.
    pub fn end(&self, end: &TurnEnd<'_>) {
        #[cfg(feature = "otel")]
        if let Some(t) = &self.inner {
            otel::end_turn(t, end);
        }
        #[cfg(not(feature = "otel"))]
        let _ = end;
    }
}

/// One model call's span (or nothing). Ends once: on the answer's end, on a failure, or — when
/// the caller drops the answer before its end (a stop, a timeout) — as `cancelled`.
pub struct ModelCall {
    #[cfg(feature = "otel")]
    inner: Option<otel::Call>,
    #[cfg(feature = "otel")]
    response_model: String,
}

impl ModelCall {
    /// The first piece of the answer came.
    pub fn first_chunk(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(c) = &mut self.inner {
            c.first_chunk();
        }
    }

    /// The answer ended normally.
    pub fn finished(&mut self, finish_reason: &str, usage: Option<crate::llm::Usage>) {
        #[cfg(feature = "otel")]
        if let Some(mut c) = self.inner.take() {
            c.finished(&self.response_model, finish_reason, usage);
        }
        #[cfg(not(feature = "otel"))]
        let _ = (finish_reason, usage);
    }

    /// The call failed.
    pub fn failed(&mut self, e: &crate::llm::LlmError) {
        #[cfg(feature = "otel")]
        if let Some(mut c) = self.inner.take() {
            c.failed(&error_type(e), &e.to_string());
        }
        #[cfg(not(feature = "otel"))]
        let _ = e;
    }
}

impl Drop for ModelCall {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(mut c) = self.inner.take() {
            c.failed("cancelled", "the answer was dropped before its end");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<OtlpSettings>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtlpSettings::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn no_endpoint_no_traces() {
        assert_eq!(settings(&[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
    }

    #[test]
    fn the_endpoint_gets_the_traces_path_and_the_service_its_default() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(s.traces_endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.service_name, "conversa");
        assert!(!s.flush_each_turn);
    }

    #[test]
    fn the_traces_endpoint_is_taken_as_given_and_lambda_flushes_each_turn() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://c.example/otlp/traces",
            ),
            ("OTEL_SERVICE_NAME", "conversa-chat"),
            ("AWS_LAMBDA_FUNCTION_NAME", "chat"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.traces_endpoint, "https://c.example/otlp/traces");
        assert_eq!(s.service_name, "conversa-chat");
        assert!(s.flush_each_turn);
    }

    #[test]
    fn disabled_sdk_or_no_exporter_means_no_traces() {
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]).unwrap();
            assert_eq!(s, None, "{off:?}");
        }
    }

    #[test]
    fn a_bad_endpoint_names_its_variable() {
        let e = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert_eq!(e.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let e = settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url")]).unwrap_err();
        assert_eq!(e.var, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    }

    #[test]
    fn the_user_pseudonym_is_stable_and_not_the_id() {
        let p = pseudonym("ann");
        assert_eq!(p, pseudonym("ann"));
        assert_eq!(p.len(), 32);
        assert!(!p.contains("ann"));
        assert_ne!(p, pseudonym("bob"));
    }
}

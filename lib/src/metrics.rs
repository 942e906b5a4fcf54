//! The figures of each turn, as one JSON line in CloudWatch's embedded metric format (EMF): on
//! Lambda, a line like this on stdout becomes metrics with nothing running at rest (namespace
//! `CONVERSA_METRICS_NAMESPACE`, default `Conversa`; dimension `Model`: `TimeToFirstToken`, `TurnDuration`, `PromptTokens`,
//! `CompletionTokens`, `CostUSD`, `TurnErrors`; dimension `Reason`: `Refused`). The line also
//! carries the turn's ids and outcome — never message text.
//!
//! Written when `CONVERSA_METRICS_EMF` is `on` (the default on Lambda, where
//! `AWS_LAMBDA_FUNCTION_NAME` is set).

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every metric unless `CONVERSA_METRICS_NAMESPACE` names another.
pub const NAMESPACE: &str = "Conversa";

/// What one turn came to.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnFigures<'a> {
    /// The model that answered (or was asked, when none did).
    pub model: &'a str,
    /// Its provider, when a model answered.
    pub provider: Option<&'a str>,
    /// The user.
    pub user: &'a str,
    /// The conversation.
    pub conversation_id: &'a str,
    /// The answer's message id.
    pub message_id: &'a str,
    /// `complete`, `incomplete` or `error`.
    pub outcome: &'a str,
    /// Time to the first token, when one came.
    pub time_to_first_token_ms: Option<u64>,
    /// Duration of the model call, when one answered.
    pub duration_ms: Option<u64>,
    /// Prompt tokens, when a model answered.
    pub prompt_tokens: Option<u64>,
    /// Answer tokens, when a model answered.
    pub completion_tokens: Option<u64>,
    /// Cost, when the model has a price.
    pub cost_usd: Option<f64>,
}

fn document(
    namespace: &str,
    timestamp_ms: i64,
    dimension: &str,
    metrics: Vec<(&str, &str, Value)>,
    mut fields: Map<String, Value>,
) -> Value {
    let declared: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
        .collect();
    for (name, _, value) in metrics {
        fields.insert(name.to_owned(), value);
    }
    fields.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[dimension]],
                "Metrics": declared,
            }],
        }),
    );
    Value::Object(fields)
}

/// The EMF document of a turn at `timestamp_ms`. A figure that is absent (no first token, no
/// price) is left out, metric and value both.
pub fn turn(namespace: &str, f: &TurnFigures<'_>, timestamp_ms: i64) -> Value {
    let mut metrics: Vec<(&str, &str, Value)> = Vec::new();
    if let Some(v) = f.time_to_first_token_ms {
        metrics.push(("TimeToFirstToken", "Milliseconds", json!(v)));
    }
    if let Some(v) = f.duration_ms {
        metrics.push(("TurnDuration", "Milliseconds", json!(v)));
    }
    if let Some(v) = f.prompt_tokens {
        metrics.push(("PromptTokens", "Count", json!(v)));
    }
    if let Some(v) = f.completion_tokens {
        metrics.push(("CompletionTokens", "Count", json!(v)));
    }
    if let Some(v) = f.cost_usd {
        metrics.push(("CostUSD", "None", json!(v)));
    }
    metrics.push((
        "TurnErrors",
        "Count",
        json!(u8::from(f.outcome != "complete")),
    ));
    let mut fields = Map::new();
    fields.insert("Model".into(), json!(f.model));
    fields.insert("event".into(), json!("turn"));
    fields.insert("user".into(), json!(f.user));
    fields.insert("conversation_id".into(), json!(f.conversation_id));
    fields.insert("message_id".into(), json!(f.message_id));
    fields.insert("outcome".into(), json!(f.outcome));
    if let Some(p) = f.provider {
        fields.insert("provider".into(), json!(p));
    }
    document(namespace, timestamp_ms, "Model", metrics, fields)
}

/// The EMF document of a refused turn (`reason`: `rate_limited`, `quota_exceeded`).
pub fn refused(namespace: &str, reason: &str, user: &str, timestamp_ms: i64) -> Value {
    let mut fields = Map::new();
    fields.insert("Reason".into(), json!(reason));
    fields.insert("event".into(), json!("refused"));
    fields.insert("user".into(), json!(user));
    document(
        namespace,
        timestamp_ms,
        "Reason",
        vec![("Refused", "Count", json!(1))],
        fields,
    )
}

/// Whether EMF lines are written: `CONVERSA_METRICS_EMF` (`on`/`off`), else on Lambda.
pub fn enabled_from(get: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
    match get("CONVERSA_METRICS_EMF").as_deref().map(str::trim) {
        None | Some("") => Ok(get("AWS_LAMBDA_FUNCTION_NAME").is_some()),
        Some(v) if v.eq_ignore_ascii_case("on") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(false),
        Some(v) => Err(format!("{v:?} is not one of on, off")),
    }
}

/// The namespace of the EMF lines: `CONVERSA_METRICS_NAMESPACE`, else [`NAMESPACE`]. One stack
/// per environment in one account gives each its own (`Conversa/conversa-staging`), so that its
/// dashboard counts only its own turns. CloudWatch's rules: 1–255 letters, digits and `.-_/#: `,
/// not starting with `:` or `AWS/`.
pub fn namespace_from(get: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let Some(v) = get("CONVERSA_METRICS_NAMESPACE").filter(|v| !v.trim().is_empty()) else {
        return Ok(NAMESPACE.to_owned());
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if v.len() > 255 || !v.chars().all(allowed) || v.starts_with(':') || v.starts_with("AWS/") {
        return Err(format!(
            "{v:?} is not a CloudWatch namespace (1-255 letters, digits and .-_/#: and spaces, \
             not starting with ':' or 'AWS/')"
        ));
    }
    Ok(v)
}

/// Writes an EMF document as one line on stdout (where Lambda's log agent reads it).
pub fn emit(doc: &Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc}");
}

/// Records a turn in the process's Prometheus families (when built with them).
pub fn record_turn(f: &TurnFigures<'_>) {
    #[cfg(feature = "prometheus")]
    prom::turn(f);
    #[cfg(not(feature = "prometheus"))]
    let _ = f;
}

/// Records a refused turn in the process's Prometheus families (when built with them).
pub fn record_refused(reason: &str) {
    #[cfg(feature = "prometheus")]
    prom::refused(reason);
    #[cfg(not(feature = "prometheus"))]
    let _ = reason;
}

/// The same figures for Prometheus (`GET /metrics` on the local server): histograms of time to
/// first token and turn duration, counters of turns, tokens, cost, errors (by model) and refusals
/// (by reason), in this process since it started.
#[cfg(feature = "prometheus")]
pub mod prom {
    use std::sync::OnceLock;

    use prometheus::{
        CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
        TextEncoder,
    };

    use super::TurnFigures;

    struct Families {
        registry: Registry,
        first_token: HistogramVec,
        duration: HistogramVec,
        turns: IntCounterVec,
        prompt: IntCounterVec,
        completion: IntCounterVec,
        cost: CounterVec,
        errors: IntCounterVec,
        refused: IntCounterVec,
    }

    const SECONDS: &[f64] = &[
        0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0,
    ];

    fn families() -> Option<&'static Families> {
        static FAMILIES: OnceLock<Option<Families>> = OnceLock::new();
        FAMILIES
            .get_or_init(|| {
                let made = make();
                if let Err(e) = &made {
                    tracing::error!(error = %e, "the Prometheus metrics could not be made");
                }
                made.ok()
            })
            .as_ref()
    }

    fn make() -> prometheus::Result<Families> {
        let registry = Registry::new_custom(Some("conversa".into()), None)?;
        let histogram = |name: &str, help: &str| -> prometheus::Result<HistogramVec> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(SECONDS.to_vec()),
                &["model"],
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let counter = |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let cost = CounterVec::new(
            Opts::new(
                "cost_usd_total",
                "Cost of the answers in USD (priced models)",
            ),
            &["model"],
        )?;
        registry.register(Box::new(cost.clone()))?;
        Ok(Families {
            first_token: histogram(
                "time_to_first_token_seconds",
                "From the request to the model until its first token",
            )?,
            duration: histogram(
                "turn_duration_seconds",
                "From the request to the model until the answer ended",
            )?,
            turns: counter(
                "turns_total",
                "Answers, by the model that gave them",
                "model",
            )?,
            prompt: counter(
                "prompt_tokens_total",
                "Prompt tokens of the answers",
                "model",
            )?,
            completion: counter(
                "completion_tokens_total",
                "Answer tokens of the answers",
                "model",
            )?,
            errors: counter(
                "turn_errors_total",
                "Answers that ended incomplete or with an error",
                "model",
            )?,
            refused: counter(
                "refused_total",
                "Turns refused before the model: rate_limited, quota_exceeded",
                "reason",
            )?,
            cost,
            registry,
        })
    }

    pub(super) fn turn(f: &TurnFigures<'_>) {
        let Some(m) = families() else { return };
        let model = [f.model];
        m.turns.with_label_values(&model).inc();
        if let Some(ms) = f.time_to_first_token_ms {
            m.first_token
                .with_label_values(&model)
                .observe(ms as f64 / 1000.0);
        }
        if let Some(ms) = f.duration_ms {
            m.duration
                .with_label_values(&model)
                .observe(ms as f64 / 1000.0);
        }
        if let Some(n) = f.prompt_tokens {
            m.prompt.with_label_values(&model).inc_by(n);
        }
        if let Some(n) = f.completion_tokens {
            m.completion.with_label_values(&model).inc_by(n);
        }
        if let Some(c) = f.cost_usd.filter(|c| c.is_finite() && *c >= 0.0) {
            m.cost.with_label_values(&model).inc_by(c);
        }
        if f.outcome != "complete" {
            m.errors.with_label_values(&model).inc();
        }
    }

    pub(super) fn refused(reason: &str) {
        if let Some(m) = families() {
            m.refused.with_label_values(&[reason]).inc();
        }
    }

    /// Every family in Prometheus's text format.
    pub fn render() -> String {
        let Some(m) = families() else {
            return String::new();
        };
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The text format's media type.
    pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn figures() -> TurnFigures<'static> {
        TurnFigures {
            model: "gpt-4o",
            provider: Some("openai"),
            user: "ann",
            conversation_id: "c1",
            message_id: "m1",
            outcome: "complete",
            time_to_first_token_ms: Some(420),
            duration_ms: Some(3_100),
            prompt_tokens: Some(1_200),
            completion_tokens: Some(300),
            cost_usd: Some(0.006),
        }
    }

    #[test]
    fn a_turn_is_one_emf_document_with_every_figure() {
        let doc = turn(NAMESPACE, &figures(), 1_796_119_200_000);
        let aws = &doc["_aws"];
        assert_eq!(aws["Timestamp"], 1_796_119_200_000_i64);
        let m = &aws["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "Conversa");
        assert_eq!(m["Dimensions"], json!([["Model"]]));
        let names: Vec<&str> = m["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "TimeToFirstToken",
                "TurnDuration",
                "PromptTokens",
                "CompletionTokens",
                "CostUSD",
                "TurnErrors"
            ]
        );
        // Every declared metric has its value beside it, and the dimension too.
        for name in names {
            assert!(doc[name].is_number(), "{name}");
        }
        assert_eq!(doc["Model"], "gpt-4o");
        assert_eq!(doc["TurnErrors"], 0);
        assert_eq!(doc["message_id"], "m1");
        assert!(!doc.to_string().contains('\n'), "one line");
    }

    #[test]
    fn absent_figures_are_left_out_and_failures_count() {
        let mut f = figures();
        f.outcome = "error";
        f.time_to_first_token_ms = None;
        f.cost_usd = None;
        let doc = turn("Conversa/conversa-dev", &f, 0);
        assert!(doc.get("TimeToFirstToken").is_none() && doc.get("CostUSD").is_none());
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(!declared.contains("CostUSD") && !declared.contains("TimeToFirstToken"));
        assert_eq!(doc["TurnErrors"], 1);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Conversa/conversa-dev"
        );
    }

    #[test]
    fn refusals_count_by_reason() {
        let doc = refused(NAMESPACE, "quota_exceeded", "ann", 5);
        assert_eq!(doc["Reason"], "quota_exceeded");
        assert_eq!(doc["Refused"], 1);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Reason"]])
        );
    }

    #[test]
    fn on_by_default_on_lambda_only() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(!enabled_from(&env(&[])).unwrap());
        assert!(enabled_from(&env(&[("AWS_LAMBDA_FUNCTION_NAME", "chat")])).unwrap());
        assert!(!enabled_from(&env(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "chat"),
            ("CONVERSA_METRICS_EMF", "off")
        ]))
        .unwrap());
        assert!(enabled_from(&env(&[("CONVERSA_METRICS_EMF", "ON")])).unwrap());
        assert!(enabled_from(&env(&[("CONVERSA_METRICS_EMF", "yes")])).is_err());
    }

    #[test]
    fn the_namespace_is_the_default_or_a_valid_one() {
        let with = |v: &'static str| {
            move |k: &str| (k == "CONVERSA_METRICS_NAMESPACE").then(|| v.to_owned())
        };
        assert_eq!(namespace_from(&|_| None).unwrap(), "Conversa");
        assert_eq!(namespace_from(&with("  ")).unwrap(), "Conversa");
        assert_eq!(
            namespace_from(&with("Conversa/conversa-staging")).unwrap(),
            "Conversa/conversa-staging"
        );
        for bad in ["AWS/Lambda", ":x", "a\u{e9}", "tab\there"] {
            let e = namespace_from(&with(bad)).unwrap_err();
            assert!(e.contains("not a CloudWatch namespace"), "{bad}: {e}");
        }
        let long: &'static str = Box::leak("n".repeat(256).into_boxed_str());
        assert!(namespace_from(&with(long)).is_err());
    }
}

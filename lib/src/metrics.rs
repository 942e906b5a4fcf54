//! The figures of each turn, as one JSON line in CloudWatch's embedded metric format (EMF): on
//! Lambda, a line like this on stdout becomes metrics with nothing running at rest (namespace
//! `Conversa`, dimension `Model`: `TimeToFirstToken`, `TurnDuration`, `PromptTokens`,
//! `CompletionTokens`, `CostUSD`, `TurnErrors`; dimension `Reason`: `Refused`). The line also
//! carries the turn's ids and outcome — never message text.
//!
//! Written when `CONVERSA_METRICS_EMF` is `on` (the default on Lambda, where
//! `AWS_LAMBDA_FUNCTION_NAME` is set).

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every metric.
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
                "Namespace": NAMESPACE,
                "Dimensions": [[dimension]],
                "Metrics": declared,
            }],
        }),
    );
    Value::Object(fields)
}

/// The EMF document of a turn at `timestamp_ms`. A figure that is absent (no first token, no
/// price) is left out, metric and value both.
pub fn turn(f: &TurnFigures<'_>, timestamp_ms: i64) -> Value {
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
    document(timestamp_ms, "Model", metrics, fields)
}

/// The EMF document of a refused turn (`reason`: `rate_limited`, `quota_exceeded`).
pub fn refused(reason: &str, user: &str, timestamp_ms: i64) -> Value {
    let mut fields = Map::new();
    fields.insert("Reason".into(), json!(reason));
    fields.insert("event".into(), json!("refused"));
    fields.insert("user".into(), json!(user));
    document(
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

/// Writes an EMF document as one line on stdout (where Lambda's log agent reads it).
pub fn emit(doc: &Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc}");
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
        let doc = turn(&figures(), 1_796_119_200_000);
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
        let doc = turn(&f, 0);
        assert!(doc.get("TimeToFirstToken").is_none() && doc.get("CostUSD").is_none());
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(!declared.contains("CostUSD") && !declared.contains("TimeToFirstToken"));
        assert_eq!(doc["TurnErrors"], 1);
    }

    #[test]
    fn refusals_count_by_reason() {
        let doc = refused("quota_exceeded", "ann", 5);
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
}

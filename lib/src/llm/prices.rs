//! The price table: USD per million prompt and answer tokens, by model.
//!
//! Built in for the common hosted models (list prices of their providers, standard tier, without
//! caching or batch discounts), extended or overridden by `CONVERSA_PRICES`
//! (`{"model": {"input": 2.5, "output": 10}}`, keyed by a model's id or its provider's name for
//! it). A models-file entry's own `price` wins over both; the offline model costs 0; a model
//! found nowhere has no price (its receipts say `cost_usd: null`).
//!
//! Names match by their longest known prefix, after dropping a Bedrock region or vendor prefix:
//! `gpt-4o-mini-2024-07-18` is `gpt-4o-mini`, `us.anthropic.claude-sonnet-4-5-20250929-v1:0` is
//! `claude-sonnet-4-5`.

use std::collections::BTreeMap;

use super::registry::Price;
use crate::config::ConfigError;

/// The built-in list prices, USD per million tokens (input, output).
const BUILT_IN: &[(&str, f64, f64)] = &[
    // OpenAI
    ("gpt-5", 1.25, 10.0),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5-nano", 0.05, 0.4),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("gpt-4.1-nano", 0.1, 0.4),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("chatgpt-4o", 5.0, 15.0),
    ("gpt-4-turbo", 10.0, 30.0),
    ("gpt-3.5-turbo", 0.5, 1.5),
    ("o1", 15.0, 60.0),
    ("o1-mini", 1.1, 4.4),
    ("o3", 2.0, 8.0),
    ("o3-mini", 1.1, 4.4),
    ("o4-mini", 1.1, 4.4),
    // Anthropic (and on Bedrock)
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4-1", 15.0, 75.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4-5", 3.0, 15.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3-haiku", 0.25, 1.25),
    ("claude-3-opus", 15.0, 75.0),
    // Amazon Nova (Bedrock)
    ("amazon.nova-micro", 0.035, 0.14),
    ("amazon.nova-lite", 0.06, 0.24),
    ("amazon.nova-pro", 0.8, 3.2),
    ("amazon.nova-premier", 2.5, 12.5),
    // Google Gemini (OpenAI-compatible endpoint)
    ("gemini-2.5-pro", 1.25, 10.0),
    ("gemini-2.5-flash", 0.3, 2.5),
    ("gemini-2.5-flash-lite", 0.1, 0.4),
    ("gemini-2.0-flash", 0.1, 0.4),
    ("gemini-2.0-flash-lite", 0.075, 0.3),
];

/// Bedrock's cross-region inference prefixes.
const REGION_PREFIXES: &[&str] = &["us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au."];

/// Prices by model name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceTable {
    /// `CONVERSA_PRICES`, by exact name (id or provider name).
    configured: BTreeMap<String, Price>,
}

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: "CONVERSA_PRICES",
        message: message.into(),
    }
}

/// A name as the built-in table knows it: lowercase, without a Bedrock region prefix or an
/// `anthropic.` vendor prefix.
fn normalise(name: &str) -> String {
    let mut n = name.trim().to_ascii_lowercase();
    for p in REGION_PREFIXES {
        if let Some(rest) = n.strip_prefix(p) {
            n = rest.to_owned();
            break;
        }
    }
    if let Some(rest) = n.strip_prefix("anthropic.") {
        n = rest.to_owned();
    }
    n
}

/// The built-in price of `name`: its longest known prefix, ending at the name's end or before a
/// `-`, `:` or `@` (so `gpt-4o` does not price `gpt-4o-mini`, nor `o1` price `o1-pro`… only
/// `o1-2024-12-17`).
fn built_in(name: &str) -> Option<Price> {
    let n = normalise(name);
    BUILT_IN
        .iter()
        .filter(|(known, _, _)| {
            n.strip_prefix(known).is_some_and(|rest| {
                rest.is_empty()
                    || rest.starts_with(':')
                    || rest.starts_with('@')
                    || (rest.starts_with('-')
                        && rest[1..].starts_with(|c: char| c.is_ascii_digit() || c == 'v'))
                    || rest == "-latest"
            })
        })
        .max_by_key(|(known, _, _)| known.len())
        .map(|&(_, input, output)| Price { input, output })
}

impl PriceTable {
    /// Parses `CONVERSA_PRICES` (`None`: the built-in prices only). A table that does not parse,
    /// or a price that is not a number of 0 or more, stops the start.
    pub fn parse(json: Option<&str>) -> Result<Self, ConfigError> {
        let Some(json) = json else {
            return Ok(Self::default());
        };
        let configured: BTreeMap<String, Price> = serde_json::from_str(json).map_err(|e| {
            err(format!(
                "not a price table ({e}); expected {{\"model\": {{\"input\": 2.5, \"output\": 10}}}} in USD per million tokens"
            ))
        })?;
        for (model, p) in &configured {
            if model.trim().is_empty() {
                return Err(err("a model name is empty"));
            }
            if !(p.input.is_finite() && p.output.is_finite() && p.input >= 0.0 && p.output >= 0.0) {
                return Err(err(format!(
                    "{model:?}: input and output are USD per million tokens, 0 or more"
                )));
            }
        }
        Ok(Self { configured })
    }

    /// The price of a model known by `id` whose provider calls it `model`: `CONVERSA_PRICES` by id,
    /// then by the provider's name, then the built-in table.
    pub fn lookup(&self, id: &str, model: &str) -> Option<Price> {
        self.configured
            .get(id)
            .or_else(|| self.configured.get(model))
            .copied()
            .or_else(|| built_in(model))
            .or_else(|| built_in(id))
    }
}

/// What `prompt` and `completion` tokens cost at `price`, in whole nano-dollars.
pub fn cost_nanos(price: Price, prompt: u64, completion: u64) -> u64 {
    // USD per million tokens × tokens = micro-dollars; × 1000 = nano-dollars.
    let nanos = (prompt as f64 * price.input + completion as f64 * price.output) * 1000.0;
    if nanos.is_finite() && nanos > 0.0 {
        nanos.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn p(input: f64, output: f64) -> Option<Price> {
        Some(Price { input, output })
    }

    #[test]
    fn built_in_names_match_their_longest_prefix() {
        let t = PriceTable::default();
        assert_eq!(t.lookup("x", "gpt-4o"), p(2.5, 10.0));
        assert_eq!(t.lookup("x", "gpt-4o-2024-08-06"), p(2.5, 10.0));
        assert_eq!(t.lookup("x", "gpt-4o-mini"), p(0.15, 0.6));
        assert_eq!(t.lookup("x", "gpt-4o-mini-2024-07-18"), p(0.15, 0.6));
        assert_eq!(t.lookup("x", "claude-sonnet-4-5-20250929"), p(3.0, 15.0));
        assert_eq!(
            t.lookup("x", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            p(3.0, 15.0)
        );
        assert_eq!(t.lookup("x", "amazon.nova-pro-v1:0"), p(0.8, 3.2));
        assert_eq!(t.lookup("x", "claude-3-5-haiku-latest"), p(0.8, 4.0));
        assert_eq!(t.lookup("x", "o1-pro"), None, "no prefix of another model");
        assert_eq!(t.lookup("x", "llama3.2"), None);
        assert_eq!(
            t.lookup("gpt-4o", "my-proxy-name"),
            p(2.5, 10.0),
            "by id too"
        );
    }

    #[test]
    fn configured_prices_extend_and_override() {
        let t = PriceTable::parse(Some(
            r#"{"gpt-4o": {"input": 2, "output": 8}, "llama3.2": {"input": 0, "output": 0}, "fast": {"input": 1, "output": 1}}"#,
        ))
        .unwrap();
        assert_eq!(t.lookup("x", "gpt-4o"), p(2.0, 8.0));
        assert_eq!(t.lookup("x", "gpt-4o-mini"), p(0.15, 0.6));
        assert_eq!(t.lookup("x", "llama3.2"), p(0.0, 0.0));
        assert_eq!(t.lookup("fast", "gpt-4o"), p(1.0, 1.0), "the id first");
    }

    #[test]
    fn a_table_that_does_not_parse_stops_the_start() {
        for bad in [
            "not json",
            r#"["gpt-4o"]"#,
            r#"{"gpt-4o": {"input": "2.5", "output": 10}}"#,
            r#"{"gpt-4o": {"input": 2.5}}"#,
            r#"{"gpt-4o": {"input": 2.5, "output": 10, "cached": 1}}"#,
            r#"{"gpt-4o": {"input": -1, "output": 10}}"#,
        ] {
            let e = PriceTable::parse(Some(bad)).unwrap_err();
            assert_eq!(e.var, "CONVERSA_PRICES", "{bad}");
        }
    }

    #[test]
    fn costs_in_nano_dollars() {
        let price = Price {
            input: 2.5,
            output: 10.0,
        };
        // 1,000 × 2.5 / 1e6 + 200 × 10 / 1e6 = 0.0045 USD
        assert_eq!(cost_nanos(price, 1_000, 200), 4_500_000);
        assert_eq!(
            cost_nanos(
                Price {
                    input: 0.0,
                    output: 0.0
                },
                10,
                10
            ),
            0
        );
    }
}

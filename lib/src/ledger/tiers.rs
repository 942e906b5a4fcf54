//! Tiers: named sets of limits (`CONVERSA_TIERS`), one per user.
//!
//! ```json
//! {"free": {"turns_per_minute": 10, "tokens_per_day": 100000}, "pro": {"usd_per_month": 20}}
//! ```
//!
//! Any of `turns_per_minute`, `tokens_per_day`, `tokens_per_month` (whole numbers) and
//! `usd_per_day`, `usd_per_month` (dollars); an absent limit is no limit. The tier `default`
//! always exists (with no limits unless the variable gives it some), and `CONVERSA_DEFAULT_TIER`
//! must name a tier. Mistakes stop the start, naming the variable.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::{usd_to_nanos, Budget};
use crate::config::ConfigError;

/// The tier that always exists.
pub const DEFAULT: &str = "default";

/// The limits of one tier; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, ToSchema)]
pub struct TierLimits {
    /// Chat turns per minute (instead of `CONVERSA_RATE_LIMIT_PER_MINUTE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turns_per_minute: Option<u32>,
    /// Prompt and answer tokens per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Prompt and answer tokens per UTC month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<u64>,
    /// Dollars per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<f64>,
    /// Dollars per UTC month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_month: Option<f64>,
}

impl TierLimits {
    /// The budgets, in the ledger's units.
    pub fn budget(&self) -> Budget {
        Budget {
            tokens_per_day: self.tokens_per_day,
            tokens_per_month: self.tokens_per_month,
            usd_nanos_per_day: self.usd_per_day.map(usd_to_nanos),
            usd_nanos_per_month: self.usd_per_month.map(usd_to_nanos),
        }
    }
}

/// Every tier, by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tiers {
    tiers: BTreeMap<String, TierLimits>,
}

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: "CONVERSA_TIERS",
        message: message.into(),
    }
}

/// A whole number of at most `max`, 0 or more.
fn whole(tier: &str, key: &str, v: &serde_json::Value, max: u64) -> Result<u64, ConfigError> {
    v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
        err(format!(
            "tier {tier:?}: {key} must be a whole number, 0 or more (got {v})"
        ))
    })
}

/// Dollars, 0 or more.
fn dollars(tier: &str, key: &str, v: &serde_json::Value) -> Result<f64, ConfigError> {
    v.as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0 && *n < 1e9)
        .ok_or_else(|| {
            err(format!(
                "tier {tier:?}: {key} must be a number of dollars, 0 or more (got {v})"
            ))
        })
}

impl Tiers {
    /// Parses `CONVERSA_TIERS` (`None`: only the `default` tier, with no limits).
    pub fn parse(json: Option<&str>) -> Result<Self, ConfigError> {
        let mut tiers = BTreeMap::new();
        tiers.insert(DEFAULT.to_owned(), TierLimits::default());
        let Some(json) = json else {
            return Ok(Self { tiers });
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            err(format!(
                "not JSON ({e}); expected {{\"tier\": {{\"tokens_per_day\": 100000}}}}"
            ))
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(err(
                "expected an object of tiers, e.g. {\"free\": {\"tokens_per_day\": 100000}}",
            ));
        };
        for (name, limits) in map {
            if !crate::auth::config::valid_tier(&name) {
                return Err(err(format!(
                    "{name:?} is not a tier name (letters, digits, - _; up to 64)"
                )));
            }
            let serde_json::Value::Object(limits) = limits else {
                return Err(err(format!("tier {name:?}: expected an object of limits")));
            };
            let mut t = TierLimits::default();
            for (key, v) in &limits {
                match key.as_str() {
                    "turns_per_minute" => {
                        t.turns_per_minute = Some(whole(&name, key, v, u64::from(u32::MAX))? as u32)
                    }
                    "tokens_per_day" => t.tokens_per_day = Some(whole(&name, key, v, u64::MAX)?),
                    "tokens_per_month" => {
                        t.tokens_per_month = Some(whole(&name, key, v, u64::MAX)?)
                    }
                    "usd_per_day" => t.usd_per_day = Some(dollars(&name, key, v)?),
                    "usd_per_month" => t.usd_per_month = Some(dollars(&name, key, v)?),
                    other => {
                        return Err(err(format!(
                            "tier {name:?}: unknown limit {other:?} (one of turns_per_minute, \
                             tokens_per_day, tokens_per_month, usd_per_day, usd_per_month)"
                        )))
                    }
                }
            }
            tiers.insert(name, t);
        }
        Ok(Self { tiers })
    }

    /// Whether `name` is a tier.
    pub fn contains(&self, name: &str) -> bool {
        self.tiers.contains_key(name)
    }

    /// The limits of tier `name`; a tier that no longer exists has those of `fallback` (the
    /// default tier).
    pub fn limits(&self, name: &str, fallback: &str) -> TierLimits {
        self.tiers
            .get(name)
            .or_else(|| self.tiers.get(fallback))
            .copied()
            .unwrap_or_default()
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tiers.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tiers_parse_with_their_limits() {
        let t = Tiers::parse(Some(
            r#"{"free": {"turns_per_minute": 10, "tokens_per_day": 100000}, "pro": {"usd_per_month": 20.5}}"#,
        ))
        .unwrap();
        assert_eq!(t.names(), ["default", "free", "pro"]);
        let free = t.limits("free", DEFAULT);
        assert_eq!(free.turns_per_minute, Some(10));
        assert_eq!(free.tokens_per_day, Some(100_000));
        assert_eq!(free.usd_per_month, None);
        assert_eq!(
            t.limits("pro", DEFAULT).budget().usd_nanos_per_month,
            Some(20_500_000_000)
        );
        assert_eq!(t.limits("gone", "free"), free, "a removed tier falls back");
        assert!(Tiers::parse(None)
            .unwrap()
            .limits(DEFAULT, DEFAULT)
            .budget()
            .is_unlimited());
    }

    #[test]
    fn a_negative_limit_stops_the_start() {
        let e = Tiers::parse(Some(r#"{"free": {"tokens_per_day": -5}}"#)).unwrap_err();
        assert_eq!(e.var, "CONVERSA_TIERS");
        assert!(e.message.contains("tokens_per_day"), "{e}");
        let e = Tiers::parse(Some(r#"{"pro": {"usd_per_month": -0.01}}"#)).unwrap_err();
        assert!(e.message.contains("usd_per_month"), "{e}");
    }

    #[test]
    fn a_non_numeric_limit_stops_the_start() {
        for bad in [
            r#"{"free": {"tokens_per_day": "100000"}}"#,
            r#"{"free": {"turns_per_minute": 2.5}}"#,
            r#"{"free": {"usd_per_day": null}}"#,
            r#"{"free": {"usd_per_day": true}}"#,
        ] {
            let e = Tiers::parse(Some(bad)).unwrap_err();
            assert_eq!(e.var, "CONVERSA_TIERS", "{bad}");
        }
    }

    #[test]
    fn other_mistakes_stop_the_start() {
        for bad in [
            "not json",
            "[1, 2]",
            r#"{"free": 5}"#,
            r#"{"free": {"tokens_per_week": 5}}"#,
            r#"{"gold tier": {}}"#,
        ] {
            let e = Tiers::parse(Some(bad)).unwrap_err();
            assert_eq!(e.var, "CONVERSA_TIERS", "{bad}");
        }
    }
}

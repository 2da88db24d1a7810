//! Dialects: how one simulated provider account departs from what its protocol document says, so that a
//! campaign can prove the gateway's first law against providers that do not speak exactly as we read them.
//!
//! A dialect comes from a JSON file (`recharge-sim --dialect FILE`) or from a seeded perturbation of the
//! protocol's default (`--dialect random:SEED`, [`Dialect::random`]); [`Dialect::default`] is the documented
//! behaviour. `GET /_sim/dialect` shows the one in force.
//!
//! What a dialect can change today:
//! - late searchability: a recorded order is "not found" to queries for a while after it was recorded
//!   (`not_searchable_secs`, before the time scale), though it is delivered as planned meanwhile;
//! - in-band errors after recording at a rate (`inband_error_after_recording`, replacing the chaos rate);
//! - the code and message of a submit refusal (`submit_refusal`: suka-xml, wikeyun and openapi-rsa; ICE and
//!   sms-billing take the message only), e.g. a refusal code no gateway table lists;
//! - how many times a callback is retried after its first attempt (`callback_retries`).
//!
//! Rule of random dialects: success, acceptance and order-status values stay the documented ones (a dialect
//! whose every success is unknown would leave every order to an operator and prove nothing about deliveries);
//! everything else may move.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A code and its message, as a provider answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeText {
    /// The code (suka `resultno`, wikeyun `code`, openapi-rsa `status`; ignored by ICE and sms-billing).
    pub code: String,
    /// The message.
    pub message: String,
}

/// How one simulated account departs from its protocol's documented behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dialect {
    /// Where it came from: `default`, `random:SEED` or the file it was read from.
    pub name: String,
    /// A recorded order is not found by queries for this many seconds after it was recorded (before the time
    /// scale). 0: searchable at once.
    pub not_searchable_secs: f64,
    /// Probability that a recorded order's submit is answered an undocumented in-band error (replaces the chaos
    /// rate `inband_error` when set).
    pub inband_error_after_recording: Option<f64>,
    /// The submit refusal's code and message, instead of the documented ones.
    pub submit_refusal: Option<CodeText>,
    /// Callback retries after the first attempt, instead of the protocol's schedule length.
    pub callback_retries: Option<usize>,
    /// A broken provider: every success is booked as two deliveries. Never random; only for proving that a
    /// campaign reports a double delivery (with the order ids) and fails.
    pub planted_double_delivery: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            name: "default".into(),
            not_searchable_secs: 0.0,
            inband_error_after_recording: None,
            submit_refusal: None,
            callback_retries: None,
            planted_double_delivery: false,
        }
    }
}

/// Why a dialect could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DialectError {
    /// The file could not be read.
    #[error("cannot read dialect file {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The JSON does not have the dialect's shape.
    #[error("bad dialect JSON")]
    Json(#[source] serde_json::Error),
    /// `random:` without a number.
    #[error("bad dialect seed {0:?} (expected random:NUMBER)")]
    Seed(String),
    /// A rate outside 0..=1 or a negative duration.
    #[error("bad dialect value: {0}")]
    Value(String),
}

impl Dialect {
    /// `random:SEED` (perturbation of `protocol`'s default) or a JSON file.
    pub fn from_arg(arg: &str, protocol: crate::Protocol) -> Result<Dialect, DialectError> {
        if let Some(seed) = arg.strip_prefix("random:") {
            let seed = seed
                .parse::<u64>()
                .map_err(|_| DialectError::Seed(arg.to_owned()))?;
            return Ok(Dialect::random(protocol, seed));
        }
        let text = std::fs::read_to_string(arg).map_err(|source| DialectError::Read {
            path: arg.to_owned(),
            source,
        })?;
        let mut d = Dialect::from_json(&text)?;
        if d.name == "default" {
            d.name = arg.to_owned();
        }
        Ok(d)
    }

    /// Parses and checks a dialect's JSON.
    pub fn from_json(text: &str) -> Result<Dialect, DialectError> {
        let d: Dialect = serde_json::from_str(text).map_err(DialectError::Json)?;
        if !(d.not_searchable_secs.is_finite() && d.not_searchable_secs >= 0.0) {
            return Err(DialectError::Value(format!(
                "not_searchable_secs {}",
                d.not_searchable_secs
            )));
        }
        if let Some(r) = d.inband_error_after_recording
            && !(0.0..=1.0).contains(&r)
        {
            return Err(DialectError::Value(format!(
                "inband_error_after_recording {r}"
            )));
        }
        Ok(d)
    }

    /// A seeded perturbation of `protocol`'s default dialect: the same seed and protocol give the same
    /// dialect. Success, acceptance and order-status values are kept (module docs).
    pub fn random(protocol: crate::Protocol, seed: u64) -> Dialect {
        let mut rng =
            crate::script::SplitMix64::new(seed ^ crate::script::fnv1a(protocol.name().as_bytes()));
        let mut pick = |n: u64| rng.below(n);
        let not_searchable_secs = [0.0, 0.0, 30.0, 300.0, 1800.0][pick(5) as usize];
        let inband_error_after_recording = [None, Some(0.05), Some(0.15)][pick(3) as usize];
        let callback_retries = [None, Some(0), Some(1)][pick(3) as usize];
        let unlisted = pick(900);
        let submit_refusal = (pick(2) == 0).then(|| CodeText {
            // No document of ours lists these: a gateway must take them as Unknown, never as a refusal.
            code: match protocol {
                crate::Protocol::OpenapiRsa => format!("{}", 9_100 + unlisted),
                crate::Protocol::SukaXml
                | crate::Protocol::Wikeyun
                | crate::Protocol::IceMicroservice
                | crate::Protocol::SmsBilling => format!("{}", 8_100 + unlisted),
            },
            message: "渠道维护中".into(),
        });
        Dialect {
            name: format!("random:{seed}"),
            not_searchable_secs,
            inband_error_after_recording,
            submit_refusal,
            callback_retries,
            planted_double_delivery: false,
        }
    }

    /// How long a fresh order stays unsearchable at this time scale.
    pub fn hidden_for(&self, time_scale: f64) -> Duration {
        let secs = if time_scale.is_finite() && time_scale > 0.0 {
            self.not_searchable_secs / time_scale
        } else {
            self.not_searchable_secs
        };
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }

    /// One line for campaign tables: what moved.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.not_searchable_secs > 0.0 {
            parts.push(format!("unsearchable {} s", self.not_searchable_secs));
        }
        if let Some(r) = self.inband_error_after_recording {
            parts.push(format!("in-band errors {:.0}%", r * 100.0));
        }
        if let Some(c) = &self.submit_refusal {
            parts.push(format!("refusal code {}", c.code));
        }
        if let Some(n) = self.callback_retries {
            parts.push(format!("callback retries {n}"));
        }
        if self.planted_double_delivery {
            parts.push("PLANTED double delivery".into());
        }
        if parts.is_empty() {
            "as documented".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    #[test]
    fn the_default_dialect_is_the_documented_behaviour() {
        let d = Dialect::default();
        assert_eq!(d.hidden_for(600.0), Duration::ZERO);
        assert_eq!(d.summary(), "as documented");
        assert_eq!(Dialect::from_json("{}").expect("empty JSON"), d);
    }

    #[test]
    fn a_random_dialect_is_the_same_for_the_same_seed_and_differs_across_seeds() {
        let a = Dialect::random(Protocol::SukaXml, 7);
        assert_eq!(a, Dialect::random(Protocol::SukaXml, 7));
        let distinct: std::collections::BTreeSet<String> = (0..20)
            .map(|s| format!("{:?}", Dialect::random(Protocol::SukaXml, s)))
            .collect();
        assert!(distinct.len() > 5, "{distinct:?}");
    }

    #[test]
    fn a_dialect_file_is_checked() {
        let d = Dialect::from_json(
            r#"{"not_searchable_secs": 60, "submit_refusal": {"code": "8123", "message": "x"}}"#,
        )
        .expect("a good dialect");
        assert_eq!(d.hidden_for(60.0), Duration::from_secs(1));
        assert!(Dialect::from_json(r#"{"inband_error_after_recording": 2}"#).is_err());
        assert!(Dialect::from_json(r#"{"not_searchable_secs": -1}"#).is_err());
        assert!(Dialect::from_json(r#"{"no_such_field": 1}"#).is_err());
        assert!(Dialect::from_arg("random:x", Protocol::Wikeyun).is_err());
    }
}

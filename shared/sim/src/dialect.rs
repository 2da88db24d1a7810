//! Dialects: how one simulated provider account departs from what its protocol document says, so that a
//! campaign can prove the gateway's first law against providers that do not speak exactly as we read them.
//!
//! A dialect comes from a JSON file (`recharge-sim --dialect FILE`) or from a seeded perturbation of the
//! protocol's default (`--dialect random:SEED`, [`Dialect::random`]); [`Dialect::default`] is the documented
//! behaviour. `GET /_sim/dialect` shows the one in force. docs/simulators.md §7 has the field table.
//!
//! What a dialect can change (every field left out keeps the documented behaviour):
//! - late searchability: a recorded order is "not found" to queries for a while after it was recorded
//!   (`not_searchable_secs`, before the time scale), though it is delivered as planned meanwhile;
//! - in-band errors after recording at a rate (`inband_error_after_recording`, replacing the chaos rate);
//! - the code and message of a submit refusal (`submit_refusal`);
//! - per phase (`submit`, `query`, `balance`), the code and message of success, acceptance, not found,
//!   duplicate and busy ([`PhaseCodes`]); a failure is an order status (`statuses.failed`);
//! - the order-status values of queries and callbacks ([`Statuses`]);
//! - the unit of reported prices, amounts and balances (`amounts`: yuan or fen);
//! - the exact callback acknowledgement it requires, case-sensitive or not (`callback_ack`);
//! - how many times a callback is retried after its first attempt (`callback_retries`).
//!
//! Rule of random dialects ([`Dialect::random`]): a perturbation may not make every order Unknown. So the
//! query's success code and the `succeeded` status value stay the documented ones (with either unknown, no
//! delivered order could ever be confirmed: every order would wait for an operator and the campaign would
//! prove nothing about deliveries); everything else may move to a code or value no table of ours lists: the
//! submit's acceptance code (queries still settle the order), not found, duplicate, busy, refusal, the
//! waiting, processing, failed, reversed and partial status values, the balance success code, every message,
//! the amount unit and the acknowledgement.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::ledger::OrderState;

/// A code and its message, as a provider answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeText {
    /// The code (suka `resultno`, wikeyun `code`, ICE `code`, openapi-rsa `status`, a number there; ignored by
    /// sms-billing).
    pub code: String,
    /// The message (suka-xml has none on the wire: ignored there).
    pub message: String,
}

impl CodeText {
    fn new(code: impl Into<String>, message: impl Into<String>) -> CodeText {
        CodeText {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The codes and messages of one phase (submit, query or balance). `None` keeps the documented one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhaseCodes {
    /// The answer that carries a result: a found order (query), a balance (balance).
    pub success: Option<CodeText>,
    /// The order was taken (submit).
    pub accepted: Option<CodeText>,
    /// No such order (query).
    pub not_found: Option<CodeText>,
    /// This order id is taken (submit).
    pub duplicate: Option<CodeText>,
    /// The in-band error after recording (submit): the order exists, the answer says "busy".
    pub busy: Option<CodeText>,
}

impl PhaseCodes {
    fn is_empty(&self) -> bool {
        self == &PhaseCodes::default()
    }

    fn describe(&self, phase: &str, parts: &mut Vec<String>) {
        for (slot, c) in [
            ("success", &self.success),
            ("accepted", &self.accepted),
            ("not found", &self.not_found),
            ("duplicate", &self.duplicate),
            ("busy", &self.busy),
        ] {
            if let Some(c) = c {
                parts.push(format!("{phase} {slot} {}", c.code));
            }
        }
    }
}

/// Order-status values of queries and callbacks. `None` keeps the documented one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Statuses {
    /// Taken, not started (also an order waiting for its user).
    pub waiting: Option<String>,
    /// In progress.
    pub processing: Option<String>,
    /// Delivered.
    pub succeeded: Option<String>,
    /// Failed (and refunded).
    pub failed: Option<String>,
    /// Delivered, then taken back (wikeyun only).
    pub reversed: Option<String>,
    /// Part of the value arrived (wikeyun only).
    pub partial: Option<String>,
}

impl Statuses {
    /// The override for a ledger state, if any.
    pub fn get(&self, state: OrderState) -> Option<&str> {
        match state {
            OrderState::Accepted | OrderState::AwaitingUser => self.waiting.as_deref(),
            OrderState::Processing => self.processing.as_deref(),
            OrderState::Succeeded => self.succeeded.as_deref(),
            OrderState::Failed => self.failed.as_deref(),
            OrderState::Reversed => self.reversed.as_deref(),
            OrderState::Partial => self.partial.as_deref(),
        }
    }
}

/// The unit of reported prices, amounts and balances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Yuan with up to two decimals (`98.5`): every document of ours.
    #[default]
    Yuan,
    /// Whole fen (`9850`).
    Fen,
}

/// The callback acknowledgement a provider requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The reply body, compared after trimming whitespace.
    pub text: String,
    /// Whether case matters.
    #[serde(default)]
    pub case_sensitive: bool,
}

impl Ack {
    /// Whether a reply body is this acknowledgement.
    pub fn matches(&self, body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        let t = text.trim();
        if self.case_sensitive {
            t == self.text
        } else {
            t.eq_ignore_ascii_case(&self.text)
        }
    }
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
    /// Codes and messages of the submit.
    pub submit: PhaseCodes,
    /// Codes and messages of the order query.
    pub query: PhaseCodes,
    /// Codes and messages of the balance query.
    pub balance: PhaseCodes,
    /// Order-status values of queries and callbacks.
    pub statuses: Statuses,
    /// Unit of reported prices, amounts and balances.
    pub amounts: Unit,
    /// The callback acknowledgement required, instead of the protocol's.
    pub callback_ack: Option<Ack>,
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
            submit: PhaseCodes::default(),
            query: PhaseCodes::default(),
            balance: PhaseCodes::default(),
            statuses: Statuses::default(),
            amounts: Unit::Yuan,
            callback_ack: None,
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
        if let Some(a) = &d.callback_ack
            && a.text.trim().is_empty()
        {
            return Err(DialectError::Value("callback_ack.text is empty".into()));
        }
        Ok(d)
    }

    /// A seeded perturbation of `protocol`'s default dialect: the same seed and protocol give the same
    /// dialect. The query's success code and the `succeeded` status stay documented (module docs: the rule).
    pub fn random(protocol: crate::Protocol, seed: u64) -> Dialect {
        use crate::Protocol as P;
        let mut rng =
            crate::script::SplitMix64::new(seed ^ crate::script::fnv1a(protocol.name().as_bytes()));
        let mut pick = |n: u64| rng.below(n);
        let not_searchable_secs = [0.0, 0.0, 30.0, 300.0, 1800.0][pick(5) as usize];
        let inband_error_after_recording = [None, Some(0.05), Some(0.15)][pick(3) as usize];
        let callback_retries = [None, Some(0), Some(1)][pick(3) as usize];
        // No document of ours lists these codes: a gateway must take them as Unknown. 004's codes are numbers
        // (its `status`), the others' strings of digits.
        let base = match protocol {
            P::OpenapiRsa => 9_100,
            P::SukaXml | P::Wikeyun | P::IceMicroservice | P::SmsBilling => 8_100,
        };
        let unlisted = |pick: &mut dyn FnMut(u64) -> u64| format!("{}", base + pick(900));
        let submit_refusal =
            (pick(2) == 0).then(|| CodeText::new(unlisted(&mut pick), "渠道维护中"));
        let maybe = |pick: &mut dyn FnMut(u64) -> u64, one_in: u64, message: &str| {
            (pick(one_in) == 0).then(|| CodeText::new(unlisted(pick), message))
        };
        let submit = PhaseCodes {
            success: None,
            accepted: maybe(&mut pick, 4, "下单成功"),
            not_found: None,
            duplicate: maybe(&mut pick, 3, "订单已存在"),
            busy: maybe(&mut pick, 3, "系统繁忙,请稍后再试"),
        };
        let query = PhaseCodes {
            success: None,
            accepted: None,
            not_found: maybe(&mut pick, 4, "查无此单"),
            duplicate: None,
            busy: None,
        };
        let balance = PhaseCodes {
            success: maybe(&mut pick, 4, "查询成功"),
            ..PhaseCodes::default()
        };
        // Status values no table lists: 40..89 (every documented one is below 13).
        let status = |pick: &mut dyn FnMut(u64) -> u64, one_in: u64| {
            (pick(one_in) == 0).then(|| format!("{}", 40 + pick(50)))
        };
        let wikeyun = protocol == P::Wikeyun;
        let statuses = Statuses {
            waiting: status(&mut pick, 4),
            processing: status(&mut pick, 4),
            succeeded: None,
            failed: status(&mut pick, 5),
            reversed: status(&mut pick, 4).filter(|_| wikeyun),
            partial: status(&mut pick, 4).filter(|_| wikeyun),
        };
        let amounts = if pick(3) == 0 { Unit::Fen } else { Unit::Yuan };
        let documented_ack = match protocol {
            P::SukaXml | P::SmsBilling => "ok",
            P::Wikeyun => "success",
            P::OpenapiRsa => "SUCCESS",
            // ICE sends no callbacks.
            P::IceMicroservice => "",
        };
        let callback_ack = (pick(3) == 0 && !documented_ack.is_empty()).then(|| {
            let text = match pick(3) {
                0 => documented_ack.to_ascii_uppercase(),
                1 => documented_ack.to_ascii_lowercase(),
                _ => {
                    let mut c = documented_ack.to_ascii_lowercase().into_bytes();
                    if let Some(first) = c.first_mut() {
                        first.make_ascii_uppercase();
                    }
                    String::from_utf8_lossy(&c).into_owned()
                }
            };
            Ack {
                text,
                case_sensitive: true,
            }
        });
        Dialect {
            name: format!("random:{seed}"),
            not_searchable_secs,
            inband_error_after_recording,
            submit_refusal,
            submit,
            query,
            balance,
            statuses,
            amounts,
            callback_ack,
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

    /// The code and message to answer for `slot`, or the documented ones.
    pub fn code(slot: &Option<CodeText>, code: &str, message: &str) -> (String, String) {
        match slot {
            Some(c) => (c.code.clone(), c.message.clone()),
            None => (code.to_owned(), message.to_owned()),
        }
    }

    /// The status value to report for `state`, or the documented one.
    pub fn status(&self, state: OrderState, documented: &str) -> String {
        self.statuses
            .get(state)
            .map_or_else(|| documented.to_owned(), str::to_owned)
    }

    /// An amount in fen as this dialect writes it (yuan: `98.5`; fen: `9850`).
    pub fn amount(&self, fen: i64) -> String {
        match self.amounts {
            Unit::Yuan => crate::codec::yuan(fen),
            Unit::Fen => fen.to_string(),
        }
    }

    /// What moved, one entry per perturbation (empty: as documented). Campaign tables group by these.
    pub fn perturbations(&self) -> Vec<String> {
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
        self.submit.describe("submit", &mut parts);
        self.query.describe("query", &mut parts);
        self.balance.describe("balance", &mut parts);
        for (name, v) in [
            ("waiting", &self.statuses.waiting),
            ("processing", &self.statuses.processing),
            ("succeeded", &self.statuses.succeeded),
            ("failed", &self.statuses.failed),
            ("reversed", &self.statuses.reversed),
            ("partial", &self.statuses.partial),
        ] {
            if let Some(v) = v {
                parts.push(format!("status {name} {v}"));
            }
        }
        if self.amounts == Unit::Fen {
            parts.push("amounts in fen".into());
        }
        if let Some(a) = &self.callback_ack {
            parts.push(format!(
                "ack {:?}{}",
                a.text,
                if a.case_sensitive { " exact case" } else { "" }
            ));
        }
        if let Some(n) = self.callback_retries {
            parts.push(format!("callback retries {n}"));
        }
        if self.planted_double_delivery {
            parts.push("PLANTED double delivery".into());
        }
        parts
    }

    /// Whether the dialect changes any code, status, unit or acknowledgement (beyond timing and rates).
    pub fn changes_vocabulary(&self) -> bool {
        !(self.submit.is_empty()
            && self.query.is_empty()
            && self.balance.is_empty()
            && self.statuses == Statuses::default()
            && self.amounts == Unit::Yuan
            && self.callback_ack.is_none())
    }

    /// One line for campaign tables: what moved.
    pub fn summary(&self) -> String {
        let parts = self.perturbations();
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

    #[test]
    fn random_dialects_keep_the_query_success_and_the_succeeded_status_and_move_everything_else() {
        let protocols = [
            Protocol::SukaXml,
            Protocol::Wikeyun,
            Protocol::IceMicroservice,
            Protocol::OpenapiRsa,
        ];
        let mut moved = std::collections::BTreeSet::new();
        for p in protocols {
            for seed in 0..200 {
                let d = Dialect::random(p, seed);
                assert_eq!(d.query.success, None, "{p:?} {seed}");
                assert_eq!(d.statuses.succeeded, None, "{p:?} {seed}");
                assert!(!d.planted_double_delivery);
                if p != Protocol::Wikeyun {
                    assert_eq!(d.statuses.reversed, None, "only wikeyun can say reversed");
                    assert_eq!(d.statuses.partial, None, "only wikeyun can say partial");
                }
                if p == Protocol::IceMicroservice {
                    assert_eq!(d.callback_ack, None, "ICE sends no callbacks");
                }
                for part in d.perturbations() {
                    // "submit accepted 8123" -> "submit accepted"
                    let kind: String = part
                        .split_whitespace()
                        .take_while(|w| !w.starts_with(|c: char| c.is_ascii_digit() || c == '"'))
                        .collect::<Vec<_>>()
                        .join(" ");
                    moved.insert(kind);
                }
            }
        }
        for kind in [
            "unsearchable",
            "in-band errors",
            "refusal code",
            "submit accepted",
            "submit duplicate",
            "submit busy",
            "query not found",
            "balance success",
            "status waiting",
            "status processing",
            "status failed",
            "status reversed",
            "status partial",
            "amounts in fen",
            "ack",
            "callback retries",
        ] {
            assert!(moved.contains(kind), "{kind} never moved: {moved:?}");
        }
    }

    #[test]
    fn an_acknowledgement_is_compared_trimmed_and_with_case_only_when_asked() {
        let exact = Ack {
            text: "OK".into(),
            case_sensitive: true,
        };
        assert!(exact.matches(b" OK\n"));
        assert!(!exact.matches(b"ok"));
        let loose = Ack {
            text: "success".into(),
            case_sensitive: false,
        };
        assert!(loose.matches(b"SUCCESS"));
        assert!(!loose.matches(b"successful"));
    }

    #[test]
    fn a_dialect_writes_amounts_in_its_unit_and_its_own_status_values() {
        let d = Dialect::from_json(r#"{"amounts": "fen", "statuses": {"failed": "44"}}"#)
            .expect("a good dialect");
        assert_eq!(d.amount(9_850), "9850");
        assert_eq!(Dialect::default().amount(9_850), "98.5");
        assert_eq!(d.status(OrderState::Failed, "9"), "44");
        assert_eq!(d.status(OrderState::Succeeded, "1"), "1");
        assert!(d.changes_vocabulary());
        assert!(!Dialect::default().changes_vocabulary());
        assert_eq!(d.summary(), "status failed 44, amounts in fen");
        assert!(Dialect::from_json(r#"{"amounts": "jiao"}"#).is_err());
        assert!(Dialect::from_json(r#"{"callback_ack": {"text": " "}}"#).is_err());
        assert!(Dialect::from_json(r#"{"statuses": {"refunded": "5"}}"#).is_err());
    }
}

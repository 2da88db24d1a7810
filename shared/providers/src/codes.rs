//! Code tables as data (docs/providers/README.md §4 rule 1; docs/providers/README.md §5). Each protocol states the
//! codes its documents give, per phase (submit, query, callback); a provider account's configuration may add or
//! override entries (`"codes": {"submit": {"2001": "unknown"}}`). **A code that is in no table is Unknown**, at every
//! phase, and is reported as *unlisted* so it is logged once and counted: an operator learns it and extends the table
//! without a release.
//!
//! Vocabularies nobody has confirmed ship empty (docs/providers/README.md §4 rule 2): an adapter calls
//! [`CodeTable::require`] for them, so an account that does not state them fails to load, naming the account and the
//! field.

use recharge_core::{Fen, Outcome, Reason};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// Where in a provider exchange a code was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The answer to a new order (and to the 001 resubmit probe).
    Submit,
    /// The answer to an order query.
    Query,
    /// A callback (or a carrier-billing sync).
    Callback,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Submit => "submit",
            Phase::Query => "query",
            Phase::Callback => "callback",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a listed code means. The names are what an operator writes in an account's `codes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// Delivered.
    Success,
    /// Taken and being worked on.
    Accepted,
    /// Refused before anything was created: nothing was charged, failover allowed.
    Refusal,
    /// Failed (and refunded) after acceptance: failover allowed.
    Failure,
    /// Failed, and the order must not be retried elsewhere.
    FailureFinal,
    /// The provider has no such order (a query answer; the state machine applies the grace window).
    NotFound,
    /// Part of the value arrived (the adapter reads how much; without an amount it stays Unknown).
    Partial,
    /// Delivered value was taken back (返销).
    Reversed,
    /// "This order id is taken": the order may exist. Unknown at submit; to the 001 resubmit probe it means
    /// the provider has the attempt.
    Duplicate,
    /// Documented as "we do not know" (001 `9999`): Unknown, but not reported as unlisted.
    Unknown,
}

/// An account's additions and overrides, per phase: `{"submit": {"2001": "unknown"}, "query": {...}}`.
pub type CodeOverrides = BTreeMap<Phase, BTreeMap<String, Meaning>>;

impl Phase {
    /// Every phase, in the order an operator reads them.
    pub const ALL: [Phase; 3] = [Phase::Submit, Phase::Query, Phase::Callback];
}

impl Meaning {
    /// Every meaning an operator may give a code.
    pub const ALL: [Meaning; 10] = [
        Meaning::Success,
        Meaning::Accepted,
        Meaning::Refusal,
        Meaning::Failure,
        Meaning::FailureFinal,
        Meaning::NotFound,
        Meaning::Partial,
        Meaning::Reversed,
        Meaning::Duplicate,
        Meaning::Unknown,
    ];

    /// The name an operator writes (`refusal`, `failure_final`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Meaning::Success => "success",
            Meaning::Accepted => "accepted",
            Meaning::Refusal => "refusal",
            Meaning::Failure => "failure",
            Meaning::FailureFinal => "failure_final",
            Meaning::NotFound => "not_found",
            Meaning::Partial => "partial",
            Meaning::Reversed => "reversed",
            Meaning::Duplicate => "duplicate",
            Meaning::Unknown => "unknown",
        }
    }
}

/// The longest code an operator may map (providers' codes are a few characters; a status value a word).
pub const MAX_OVERRIDE_CODE_CHARS: usize = 64;
/// The most codes one account's runtime overrides may map, over every phase.
pub const MAX_OVERRIDE_CODES: usize = 200;

/// Reads an operator's runtime overrides (`{"submit": {"7777": "refusal"}, "query": {...}}`), as stored in the
/// account's control, naming the first bad phase, code or meaning. `null` and `{}` are no overrides. A phase
/// with no codes is dropped, so two spellings of the same overrides compare equal.
pub fn parse_overrides(value: &serde_json::Value) -> Result<CodeOverrides, String> {
    let mut out = CodeOverrides::new();
    let phases = match value {
        serde_json::Value::Null => return Ok(out),
        serde_json::Value::Object(m) => m,
        _ => {
            return Err(
                "code_overrides: an object of phases (submit, query, callback), or null".to_owned(),
            );
        }
    };
    let phase_names = || {
        Phase::ALL
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let meaning_names = || {
        Meaning::ALL
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut count = 0usize;
    for (phase_name, codes) in phases {
        let Some(phase) = Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == phase_name.as_str())
        else {
            return Err(format!(
                "code_overrides.{}: not a phase (one of {})",
                printable(phase_name),
                phase_names()
            ));
        };
        let serde_json::Value::Object(codes) = codes else {
            return Err(format!(
                "code_overrides.{phase}: an object of code to meaning"
            ));
        };
        for (code, meaning) in codes {
            if code.is_empty()
                || code.chars().count() > MAX_OVERRIDE_CODE_CHARS
                || code.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(format!(
                    "code_overrides.{phase}.{}: a code is 1 to {MAX_OVERRIDE_CODE_CHARS} characters, \
                     without spaces or control characters",
                    printable(code)
                ));
            }
            let found = meaning
                .as_str()
                .and_then(|m| Meaning::ALL.into_iter().find(|x| x.as_str() == m));
            let Some(found) = found else {
                return Err(format!(
                    "code_overrides.{phase}.{code}: {} is not a meaning (one of {})",
                    printable(
                        &meaning
                            .as_str()
                            .map_or_else(|| meaning.to_string(), str::to_owned)
                    ),
                    meaning_names()
                ));
            };
            count += 1;
            if count > MAX_OVERRIDE_CODES {
                return Err(format!(
                    "code_overrides: at most {MAX_OVERRIDE_CODES} codes"
                ));
            }
            out.entry(phase).or_default().insert(code.clone(), found);
        }
    }
    out.retain(|_, codes| !codes.is_empty());
    Ok(out)
}

/// At most 64 characters of operator input, control characters shown as `?`, for an error message.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `base` with `over` on top, code by code: an account's configured codes under the operators' runtime
/// overrides (configured defaults < account config < operator).
pub fn layered(base: &CodeOverrides, over: &CodeOverrides) -> CodeOverrides {
    let mut out = base.clone();
    for (phase, codes) in over {
        let table = out.entry(*phase).or_default();
        for (code, meaning) in codes {
            table.insert(code.clone(), *meaning);
        }
    }
    out
}

/// A code that no table lists, as seen in one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlisted {
    pub phase: Phase,
    pub code: String,
    pub message: String,
}

/// The result of looking a code up: the outcome, and the code itself when it was unlisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub outcome: Outcome,
    pub unlisted: Option<Unlisted>,
}

/// One account's code table: the protocol's defaults with the account's overrides applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeTable {
    phases: BTreeMap<Phase, BTreeMap<String, Meaning>>,
}

impl CodeTable {
    /// `defaults` (the protocol's documented codes) with `overrides` (the account's) applied on top.
    pub fn new(defaults: &[(Phase, &[(&str, Meaning)])], overrides: &CodeOverrides) -> CodeTable {
        let mut phases: BTreeMap<Phase, BTreeMap<String, Meaning>> = BTreeMap::new();
        for (phase, entries) in defaults {
            let table = phases.entry(*phase).or_default();
            for (code, meaning) in *entries {
                table.insert((*code).to_owned(), *meaning);
            }
        }
        for (phase, entries) in overrides {
            let table = phases.entry(*phase).or_default();
            for (code, meaning) in entries {
                table.insert(code.clone(), *meaning);
            }
        }
        CodeTable { phases }
    }

    /// The meaning of `code` at `phase`, if listed.
    pub fn lookup(&self, phase: Phase, code: &str) -> Option<Meaning> {
        self.phases.get(&phase)?.get(code).copied()
    }

    /// The codes listed at `phase` with `meaning`.
    pub fn codes_for(&self, phase: Phase, meaning: Meaning) -> Vec<&str> {
        self.phases
            .get(&phase)
            .map(|t| {
                t.iter()
                    .filter(|(_, m)| **m == meaning)
                    .map(|(c, _)| c.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A vocabulary the documents do not give must be stated by the account: `phase` must list at least one
    /// code meaning `meaning`. `Err` carries the field to name (`codes.query: no code means success`).
    pub fn require(&self, phase: Phase, meaning: Meaning) -> Result<(), String> {
        if self.codes_for(phase, meaning).is_empty() {
            let name = serde_json::to_value(meaning)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(format!(
                "codes.{phase}: no code means {name:?}; the provider's documents do not give one, so the \
                 account must state it (docs/providers/README.md §4 rule 2)"
            ));
        }
        Ok(())
    }

    /// Classifies `code`. `message` goes into the reason; `provider_ref` into acceptances and successes;
    /// `delivered` is what a `Partial` code delivered (without it, a partial stays Unknown).
    pub fn classify(
        &self,
        phase: Phase,
        code: &str,
        message: &str,
        provider_ref: Option<String>,
        delivered: Option<Fen>,
    ) -> Classified {
        let reason = || Reason::new(code, message);
        let Some(meaning) = self.lookup(phase, code) else {
            return Classified {
                outcome: Outcome::Unknown {
                    reason: Reason::new(code, format!("unlisted code: {message}")),
                },
                unlisted: Some(Unlisted {
                    phase,
                    code: code.to_owned(),
                    message: message.to_owned(),
                }),
            };
        };
        let outcome = match meaning {
            Meaning::Success => Outcome::Succeeded { provider_ref },
            Meaning::Accepted => Outcome::Accepted { provider_ref },
            Meaning::Refusal => Outcome::Rejected {
                failover_allowed: true,
                reason: reason(),
            },
            Meaning::Failure => Outcome::Failed {
                failover_allowed: true,
                reason: reason(),
            },
            Meaning::FailureFinal => Outcome::Failed {
                failover_allowed: false,
                reason: reason(),
            },
            Meaning::NotFound => Outcome::NotFound,
            Meaning::Partial => match delivered {
                Some(delivered) => Outcome::PartiallySucceeded { delivered },
                None => Outcome::Unknown {
                    reason: Reason::new(
                        code,
                        format!("partial without a readable amount: {message}"),
                    ),
                },
            },
            Meaning::Reversed => Outcome::Reversed { reason: reason() },
            Meaning::Duplicate | Meaning::Unknown => Outcome::Unknown { reason: reason() },
        };
        Classified {
            outcome,
            unlisted: None,
        }
    }
}

/// Codes longer than this are cut in logs and metrics (a garbage answer must not make a metric per byte).
const MAX_CODE_CHARS: usize = 24;

/// Counts unlisted codes per (account, phase, code) for this process, logs each the first time it is seen,
/// and hands the counts to whoever emits metrics ([`take_unlisted_counts`]).
fn registry() -> &'static Mutex<UnlistedRegistry> {
    static REGISTRY: OnceLock<Mutex<UnlistedRegistry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(UnlistedRegistry::default()))
}

#[derive(Debug, Default)]
struct UnlistedRegistry {
    seen: HashSet<(String, Phase, String)>,
    pending: BTreeMap<(String, Phase, String), u64>,
}

/// Records one unlisted code seen on `account`. Logged (with its message) the first time this process sees
/// the (account, phase, code); counted every time.
pub fn note_unlisted(account: &str, u: &Unlisted) {
    let code: String = u.code.chars().take(MAX_CODE_CHARS).collect();
    let key = (account.to_owned(), u.phase, code);
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    if r.seen.insert(key.clone()) {
        tracing::warn!(
            alert = "unlisted_provider_code",
            provider_account = account,
            phase = u.phase.as_str(),
            code = %key.2,
            message = %u.message.chars().take(200).collect::<String>(),
            "provider answered a code its table does not list; the attempt is unknown until settled"
        );
    }
    *r.pending.entry(key).or_insert(0) += 1;
}

/// The unlisted-code counts since the last call: `(account, phase, code, count)`, for the metrics emitter.
pub fn take_unlisted_counts() -> Vec<(String, Phase, String, u64)> {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    std::mem::take(&mut r.pending)
        .into_iter()
        .map(|((a, p, c), n)| (a, p, c, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &[(Phase, &[(&str, Meaning)])] = &[
        (
            Phase::Submit,
            &[("0000", Meaning::Accepted), ("1003", Meaning::Refusal)],
        ),
        (Phase::Query, &[("2", Meaning::Success)]),
    ];

    #[test]
    fn a_code_in_no_table_is_unknown_and_reported_as_unlisted_at_every_phase() {
        let t = CodeTable::new(DEFAULTS, &CodeOverrides::new());
        for phase in [Phase::Submit, Phase::Query, Phase::Callback] {
            let c = t.classify(phase, "2001", "系统繁忙", None, None);
            assert!(matches!(c.outcome, Outcome::Unknown { .. }), "{phase}");
            assert_eq!(c.unlisted.unwrap().code, "2001");
        }
    }

    #[test]
    fn an_account_adds_and_overrides_codes_per_phase() {
        let overrides: CodeOverrides = serde_json::from_str(
            r#"{"submit": {"2001": "unknown", "1003": "unknown", "3001": "refusal"}}"#,
        )
        .unwrap();
        let t = CodeTable::new(DEFAULTS, &overrides);
        let c = t.classify(Phase::Submit, "2001", "busy", None, None);
        assert!(matches!(c.outcome, Outcome::Unknown { .. }));
        assert!(c.unlisted.is_none(), "a listed unknown is not unlisted");
        assert!(matches!(
            t.classify(Phase::Submit, "1003", "", None, None).outcome,
            Outcome::Unknown { .. }
        ));
        assert!(matches!(
            t.classify(Phase::Submit, "3001", "", None, None).outcome,
            Outcome::Rejected {
                failover_allowed: true,
                ..
            }
        ));
        // The other phase is untouched.
        assert!(matches!(
            t.classify(Phase::Query, "2", "", None, None).outcome,
            Outcome::Succeeded { .. }
        ));
    }

    #[test]
    fn an_unknown_meaning_name_is_refused_when_the_account_is_read() {
        let r: Result<CodeOverrides, _> = serde_json::from_str(r#"{"submit": {"1": "maybe"}}"#);
        assert!(r.is_err());
        let r: Result<CodeOverrides, _> = serde_json::from_str(r#"{"refund": {"1": "failure"}}"#);
        assert!(r.is_err());
    }

    #[test]
    fn runtime_overrides_are_read_naming_the_bad_phase_code_or_meaning() {
        let ok = parse_overrides(&serde_json::json!({
            "submit": {"7777": "refusal", "8": "failure_final"}, "query": {}, "callback": {"X": "not_found"}
        }))
        .unwrap();
        assert_eq!(ok[&Phase::Submit]["7777"], Meaning::Refusal);
        assert_eq!(ok[&Phase::Submit]["8"], Meaning::FailureFinal);
        assert_eq!(ok[&Phase::Callback]["X"], Meaning::NotFound);
        assert!(!ok.contains_key(&Phase::Query), "an empty phase is dropped");
        assert!(
            parse_overrides(&serde_json::Value::Null)
                .unwrap()
                .is_empty()
        );
        assert!(parse_overrides(&serde_json::json!({})).unwrap().is_empty());
        // Every meaning name round-trips through serde's spelling.
        for m in Meaning::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        let cases = [
            (
                serde_json::json!({"balance": {"1": "success"}}),
                "code_overrides.balance: not a phase",
            ),
            (
                serde_json::json!({"submit": {"7777": "refused"}}),
                "code_overrides.submit.7777: refused is not a meaning",
            ),
            (
                serde_json::json!({"submit": {"7777": 3}}),
                "code_overrides.submit.7777: 3 is not a meaning",
            ),
            (
                serde_json::json!({"submit": {"": "refusal"}}),
                "code_overrides.submit.: a code is",
            ),
            (
                serde_json::json!({"submit": {"77 77": "refusal"}}),
                "code_overrides.submit.77 77: a code is",
            ),
            (
                serde_json::json!({"query": ["2"]}),
                "code_overrides.query: an object",
            ),
            (
                serde_json::json!(["submit"]),
                "code_overrides: an object of phases",
            ),
        ];
        for (value, expected) in cases {
            let e = parse_overrides(&value).unwrap_err();
            assert!(e.starts_with(expected), "{value}: {e}");
        }
        let e = parse_overrides(&serde_json::json!({"submit": {"7777": "refused"}})).unwrap_err();
        assert!(
            e.contains("failure_final") && e.contains("refusal"),
            "lists the meanings: {e}"
        );
        let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_OVERRIDE_CODES)
            .map(|i| (i.to_string(), serde_json::json!("unknown")))
            .collect();
        let e = parse_overrides(&serde_json::json!({"submit": many})).unwrap_err();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn operator_overrides_go_on_top_of_the_account_config_which_goes_on_top_of_the_defaults() {
        let config: CodeOverrides =
            serde_json::from_str(r#"{"submit": {"2001": "unknown", "3001": "refusal"}}"#).unwrap();
        let operator: CodeOverrides =
            serde_json::from_str(r#"{"submit": {"3001": "failure_final", "7777": "refusal"}, "query": {"2": "accepted"}}"#)
                .unwrap();
        let t = CodeTable::new(DEFAULTS, &layered(&config, &operator));
        // Defaults the others do not mention stay.
        assert_eq!(t.lookup(Phase::Submit, "0000"), Some(Meaning::Accepted));
        assert_eq!(t.lookup(Phase::Submit, "1003"), Some(Meaning::Refusal));
        // The account's config over the defaults, where the operator says nothing.
        assert_eq!(t.lookup(Phase::Submit, "2001"), Some(Meaning::Unknown));
        // The operator over both.
        assert_eq!(t.lookup(Phase::Submit, "3001"), Some(Meaning::FailureFinal));
        assert_eq!(t.lookup(Phase::Submit, "7777"), Some(Meaning::Refusal));
        assert_eq!(t.lookup(Phase::Query, "2"), Some(Meaning::Accepted));
        // No overrides: the config alone.
        assert_eq!(layered(&config, &CodeOverrides::new()), config);
    }

    #[test]
    fn a_required_vocabulary_names_its_field_when_missing() {
        let t = CodeTable::new(DEFAULTS, &CodeOverrides::new());
        assert!(t.require(Phase::Query, Meaning::Success).is_ok());
        let e = t.require(Phase::Callback, Meaning::Success).unwrap_err();
        assert!(e.contains("codes.callback"), "{e}");
    }

    #[test]
    fn a_partial_without_an_amount_stays_unknown() {
        let t = CodeTable::new(
            &[(Phase::Query, &[("11", Meaning::Partial)])],
            &CodeOverrides::new(),
        );
        assert!(matches!(
            t.classify(Phase::Query, "11", "", None, None).outcome,
            Outcome::Unknown { .. }
        ));
        assert_eq!(
            t.classify(Phase::Query, "11", "", None, Some(Fen::new(5000)))
                .outcome,
            Outcome::PartiallySucceeded {
                delivered: Fen::new(5000)
            }
        );
    }

    #[test]
    fn unlisted_codes_are_counted_per_account_phase_and_code() {
        let u = Unlisted {
            phase: Phase::Submit,
            code: "7777-test-only".into(),
            message: "m".into(),
        };
        note_unlisted("acct-count-test", &u);
        note_unlisted("acct-count-test", &u);
        let counts = take_unlisted_counts();
        assert!(counts.contains(&(
            "acct-count-test".to_owned(),
            Phase::Submit,
            "7777-test-only".to_owned(),
            2
        )));
        assert!(
            !take_unlisted_counts()
                .iter()
                .any(|(a, ..)| a == "acct-count-test")
        );
    }
}

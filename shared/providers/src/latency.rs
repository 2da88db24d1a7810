//! Provider call latency per account (issue 15): every provider call the registry runs (submit, probe,
//! query, verify, balance) records its duration under (account, phase, outcome class) in a process-global
//! recorder, which the Lambda `Metrics` drains after each invocation into the EMF metric `ProviderLatency`
//! (docs/operations.md §7), like the unlisted-code counts of `codes`. Recording is off until `enable` is called
//! (the Lambda functions do it), so a process that never drains (the local stack) keeps nothing.

use recharge_core::Outcome;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Which provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallPhase {
    Submit,
    /// The resubmit of the same attempt id after repeated not-found answers.
    Probe,
    Query,
    /// The carrier-billing verification code.
    Verify,
    Balance,
}

impl CallPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Submit => "submit",
            CallPhase::Probe => "probe",
            CallPhase::Query => "query",
            CallPhase::Verify => "verify",
            CallPhase::Balance => "balance",
        }
    }
}

/// What the call came to, coarsely: the dimension keeps the metric's cardinality small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutcomeClass {
    /// The provider answered something definite (accepted, a result, a refusal, not found).
    Answered,
    /// Nothing definite: a timeout, a 5xx, an unparsable or unlisted answer.
    Unknown,
    /// The request never left: not built, or the connection was never made.
    NotSent,
}

impl OutcomeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Answered => "answered",
            OutcomeClass::Unknown => "unknown",
            OutcomeClass::NotSent => "not_sent",
        }
    }

    /// The class of an outcome the registry returns (its own reason codes mark what was never sent).
    pub fn of(outcome: &Outcome) -> OutcomeClass {
        let not_sent = |code: &str| {
            matches!(
                code,
                "not_connected" | "request_not_built" | "probe_not_built" | "query_not_built"
            )
        };
        match outcome {
            Outcome::Unknown { reason } if not_sent(&reason.code) => OutcomeClass::NotSent,
            Outcome::Rejected { reason, .. } | Outcome::Failed { reason, .. }
                if not_sent(&reason.code) =>
            {
                OutcomeClass::NotSent
            }
            Outcome::Unknown { .. } => OutcomeClass::Unknown,
            Outcome::Accepted { .. }
            | Outcome::ActionRequired { .. }
            | Outcome::Succeeded { .. }
            | Outcome::PartiallySucceeded { .. }
            | Outcome::Failed { .. }
            | Outcome::Rejected { .. }
            | Outcome::NotFound
            | Outcome::Reversed { .. } => OutcomeClass::Answered,
        }
    }
}

/// Durations kept per key between two drains; more are dropped (a drain runs after every invocation).
const MAX_PER_KEY: usize = 10_000;

type Key = (String, CallPhase, OutcomeClass);

static ENABLED: AtomicBool = AtomicBool::new(false);

fn recorder() -> &'static Mutex<BTreeMap<Key, Vec<f64>>> {
    static R: OnceLock<Mutex<BTreeMap<Key, Vec<f64>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Starts recording (once per process, by whoever drains with `take`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Records one call of `account` that took `took`.
pub fn record(account: &str, phase: CallPhase, class: OutcomeClass, took: Duration) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let mut r = recorder().lock().unwrap_or_else(|p| p.into_inner());
    let values = r.entry((account.to_owned(), phase, class)).or_default();
    if values.len() < MAX_PER_KEY {
        values.push(took.as_secs_f64() * 1000.0);
    }
}

/// The durations (milliseconds) recorded since the last call: `(account, phase, class, values)`.
pub fn take() -> Vec<(String, CallPhase, OutcomeClass, Vec<f64>)> {
    let mut r = recorder().lock().unwrap_or_else(|p| p.into_inner());
    std::mem::take(&mut *r)
        .into_iter()
        .map(|((a, p, c), v)| (a, p, c, v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use recharge_core::Reason;

    #[test]
    fn never_sent_calls_are_told_apart_from_unknown_and_answered_ones() {
        let unknown = Outcome::Unknown {
            reason: Reason::new("timeout", "no answer"),
        };
        let refused = Outcome::Rejected {
            failover_allowed: true,
            reason: Reason::new("not_connected", "refused"),
        };
        assert_eq!(OutcomeClass::of(&unknown), OutcomeClass::Unknown);
        assert_eq!(OutcomeClass::of(&refused), OutcomeClass::NotSent);
        assert_eq!(OutcomeClass::of(&Outcome::NotFound), OutcomeClass::Answered);
    }

    #[test]
    fn recorded_durations_are_drained_once_per_key() {
        enable();
        record(
            "acct-latency-unit",
            CallPhase::Query,
            OutcomeClass::Answered,
            Duration::from_millis(12),
        );
        record(
            "acct-latency-unit",
            CallPhase::Query,
            OutcomeClass::Answered,
            Duration::from_millis(30),
        );
        let drained = take();
        let mine: Vec<_> = drained
            .iter()
            .filter(|(a, ..)| a == "acct-latency-unit")
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].3, vec![12.0, 30.0]);
        assert!(!take().iter().any(|(a, ..)| a == "acct-latency-unit"));
    }
}

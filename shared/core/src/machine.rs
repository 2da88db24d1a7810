//! The order state machine of docs/state-machine.md as one pure function: `apply(order, event, now, policy)` returns
//! the next order (version + 1) or a typed refusal that says why nothing changes. Every store write goes through it, so
//! the invariants hold whatever order callbacks, queries and the sweep arrive in.
//!
//! Refusals are not errors to the caller: `Duplicate` and `Stale` events are acknowledged and forgotten;
//! `Conflicting` ones are acknowledged and alerted.

use crate::ids::AttemptNo;
use crate::order::{
    Anomaly, AnomalyKind, Attempt, AttemptState, MAX_UNVERIFIED, NotFoundTrack, Order, Route,
    UnverifiedResult,
};
use crate::outcome::{Finding, Outcome, Reason, Report, Source};
use crate::time::Timestamp;
use std::time::Duration;

/// Per-provider timing rules (the caller passes the policy of the attempt's provider account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// After this long in `Submitting` with no answer recorded, the attempt is `Unknown` (a crash or a lost
    /// answer). Must exceed the provider call timeout.
    pub call_timeout: Duration,
    /// Delay before the first query, then between queries; the last value repeats.
    pub poll_backoff: Vec<Duration>,
    /// "Not found" is a definite failure only once the attempt is this old (docs/providers/README.md §3 rule 3) …
    pub not_found_grace: Duration,
    /// … and only after this many not-found answers.
    pub not_found_min_answers: u32,
    /// Whether a not-found failure may fail over (a provider that dedupes our id makes it safe).
    pub not_found_failover: bool,
    /// The provider refuses a reused order id, so "not found" never fails an attempt: once the grace window
    /// and the answers are there, the caller probes by resubmitting the same attempt id instead
    /// ([`Policy::probe_due`]; docs/providers/README.md §4 rule 4).
    pub not_found_probe: bool,
}

impl Default for Policy {
    /// docs/providers/README.md §3 rule 2: query at 10 s, 30 s, 1 m, 2 m, 5 m, then every 5 m; grace window 10 minutes.
    fn default() -> Policy {
        Policy {
            call_timeout: Duration::from_secs(30),
            poll_backoff: [10, 30, 60, 120, 300]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            not_found_grace: Duration::from_secs(600),
            not_found_min_answers: 2,
            not_found_failover: true,
            not_found_probe: false,
        }
    }
}

impl Policy {
    /// True when attempt `no` of `order` should be probed by resubmitting it under the same id
    /// (docs/providers/README.md §4 rule 4): the provider refuses reused ids (`not_found_probe`), the attempt is
    /// open and was never acknowledged, and "not found" has been answered often enough for long enough.
    pub fn probe_due(&self, order: &Order, no: AttemptNo, now: Timestamp) -> bool {
        let Some(a) = order.attempt(no) else {
            return false;
        };
        self.not_found_probe
            && a.state.is_open()
            && a.state != AttemptState::Submitting
            && !a.acknowledged
            && a.not_found
                .is_some_and(|t| t.answers >= self.not_found_min_answers)
            && now.since(a.opened_at) >= self.not_found_grace
    }

    fn poll_delay(&self, polls: u32) -> Duration {
        let i = usize::try_from(polls).unwrap_or(usize::MAX);
        self.poll_backoff
            .get(i)
            .or(self.poll_backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }
}

/// Something that happened to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A provider answer (submit response, query result, verified callback, operator decision), with the
    /// amounts it reported and what in it did not fit the attempt.
    Outcome {
        attempt: AttemptNo,
        source: Source,
        outcome: Outcome,
        report: Report,
    },
    /// A result that could not be verified on a protocol that cannot be queried: kept on the attempt and
    /// raised for an operator; it changes no state.
    UnverifiedResult { attempt: AttemptNo, content: String },
    /// The sweep found an attempt still `Submitting` past its call deadline (a crash or a lost answer).
    SubmitDeadlinePassed { attempt: AttemptNo },
    /// A PC carrier-billing attempt waited for its verification code longer than allowed: the code was never
    /// sent to the provider, so nothing was charged, and the attempt fails (no failover: the user walked away).
    VerificationExpired { attempt: AttemptNo },
    /// Routing chose the next route after a definite failure.
    OpenAttempt { route: Route },
    /// Routing found no further route after a definite failure.
    RoutesExhausted { reason: Reason },
    /// A merchant notification of `sequence` was sent: `delivered` on a 2xx; otherwise retry at `retry_at`
    /// (`None`: the schedule is exhausted, stop).
    Notified {
        sequence: u64,
        delivered: bool,
        retry_at: Option<Timestamp>,
    },
    /// A sender takes the notification of `sequence` (the current one, due at `now`) and holds it until
    /// `until`: the order is not due for it before then, so no other sender (the sweep, a racing inline send)
    /// notifies the same change. The claim is the conditional write that makes one sender per change; a sender
    /// that dies leaves the claim to expire, and the sweep retries after `until` (docs/state-machine.md §5).
    NotifyClaimed { sequence: u64, until: Timestamp },
}

/// Why an event changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("duplicate: the order already says this")]
    Duplicate,
    #[error("stale: the order already knows something newer")]
    Stale,
    #[error("conflicting: the event contradicts a final result")]
    Conflicting,
    #[error("no attempt {0} on this order")]
    UnknownAttempt(u8),
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
}

/// The result of an event that changes the order.
#[derive(Debug, Clone)]
pub struct Applied {
    pub order: Order,
    /// The merchant-visible view changed (`sequence` grew): notify.
    pub public_changed: bool,
    /// Anomalies this event raised: alert on each.
    pub anomalies: Vec<Anomaly>,
    /// One line for the audit trail and logs (no personal data).
    pub summary: String,
}

/// Applies `event` to `order` at `now`.
pub fn apply(
    order: &Order,
    event: &Event,
    now: Timestamp,
    policy: &Policy,
) -> Result<Applied, Refusal> {
    let mut next = order.clone();
    let mut anomalies = Vec::new();
    let summary = match event {
        Event::Outcome {
            attempt,
            source,
            outcome,
            report,
        } => apply_outcome(
            &mut next,
            *attempt,
            *source,
            outcome,
            report,
            now,
            policy,
            &mut anomalies,
        )?,
        Event::UnverifiedResult { attempt, content } => {
            let a = attempt_mut(&mut next, *attempt)?;
            if a.unverified.iter().any(|u| &u.content == content) {
                return Err(Refusal::Duplicate);
            }
            if a.unverified.len() >= MAX_UNVERIFIED {
                a.unverified.remove(0);
            }
            a.unverified.push(UnverifiedResult {
                at: now,
                content: content.clone(),
            });
            a.updated_at = now;
            anomalies.push(Anomaly {
                at: now,
                attempt: *attempt,
                kind: AnomalyKind::UnverifiedResult,
            });
            format!(
                "attempt {}: unverified result kept for an operator",
                attempt.get()
            )
        }
        Event::SubmitDeadlinePassed { attempt } => {
            let a = attempt_mut(&mut next, *attempt)?;
            if a.state != AttemptState::Submitting {
                return Err(Refusal::Stale);
            }
            if a.next_poll_at.is_some_and(|deadline| now < deadline) {
                return Err(Refusal::NotAllowed("the call deadline has not passed"));
            }
            a.state = AttemptState::Unknown {
                reason: Reason::new(
                    "no_answer",
                    "no provider answer recorded before the call deadline",
                ),
            };
            a.updated_at = now;
            a.next_poll_at = Some(now.plus(policy.poll_delay(a.polls)));
            format!(
                "attempt {}: submitting -> unknown (call deadline passed)",
                attempt.get()
            )
        }
        Event::VerificationExpired { attempt } => {
            let a = attempt_mut(&mut next, *attempt)?;
            if a.state
                != (AttemptState::ActionRequired {
                    next: crate::outcome::NextAction::EnterVerificationCode,
                })
            {
                return Err(Refusal::Stale);
            }
            a.state = AttemptState::Failed {
                failover_allowed: false,
                reason: Reason::new(
                    "expired",
                    "the verification code was not entered in time; nothing was charged",
                ),
            };
            a.updated_at = now;
            a.next_poll_at = None;
            format!(
                "attempt {}: action_required -> failed (verification code never entered)",
                attempt.get()
            )
        }
        Event::OpenAttempt { route } => {
            if !order.awaiting_failover() {
                return Err(Refusal::NotAllowed("no definite failure to fail over from"));
            }
            let no = order
                .last_attempt()
                .and_then(|a| a.no.next())
                .ok_or(Refusal::NotAllowed("attempt limit reached"))?;
            next.attempts
                .push(Attempt::open(no, route.clone(), now, policy.call_timeout));
            format!(
                "attempt {}: opened on {} (failover)",
                no.get(),
                route.provider_account
            )
        }
        Event::RoutesExhausted { reason } => {
            if !order.awaiting_failover() {
                return Err(Refusal::NotAllowed("no definite failure to give up on"));
            }
            next.routes_exhausted = Some(reason.clone());
            format!("routes exhausted: {}", reason.code)
        }
        Event::Notified {
            sequence,
            delivered,
            retry_at,
        } => {
            if *sequence <= order.notified_sequence || *sequence > order.sequence {
                return Err(Refusal::Stale);
            }
            if *delivered {
                next.notified_sequence = *sequence;
                if *sequence == order.sequence {
                    next.notify_next_at = None;
                    next.notify_attempts = 0;
                }
                format!("notification of sequence {sequence} delivered")
            } else {
                if *sequence != order.sequence {
                    // A failure to deliver an older view: the newer one is pending on its own schedule.
                    return Err(Refusal::Stale);
                }
                next.notify_attempts = next.notify_attempts.saturating_add(1);
                next.notify_next_at = *retry_at;
                match retry_at {
                    Some(_) => format!(
                        "notification of sequence {sequence} failed ({} tries)",
                        next.notify_attempts
                    ),
                    None => format!(
                        "notification of sequence {sequence} abandoned after {} tries",
                        next.notify_attempts
                    ),
                }
            }
        }
        Event::NotifyClaimed { sequence, until } => {
            if *sequence != order.sequence || order.notified_sequence >= *sequence {
                return Err(Refusal::Stale);
            }
            if order.notify_url.is_none() {
                return Err(Refusal::NotAllowed("the order has no notify_url"));
            }
            match order.notify_next_at {
                Some(due) if due <= now => {}
                // Claimed by another sender (its lease runs), scheduled later, or abandoned.
                Some(_) | None => return Err(Refusal::NotAllowed("the notification is not due")),
            }
            if *until <= now {
                return Err(Refusal::NotAllowed("a claim must end after now"));
            }
            next.notify_next_at = Some(*until);
            format!(
                "notification of sequence {sequence} claimed for {} ms",
                until.millis().saturating_sub(now.millis())
            )
        }
    };

    // Invariant 6, enforced rather than hoped for: a terminal order never becomes open again.
    if order.resolution().is_terminal() && !next.resolution().is_terminal() {
        return Err(Refusal::Conflicting);
    }
    next.version += 1;
    next.updated_at = now;
    let public_changed = next.public_view() != order.public_view();
    if public_changed {
        next.sequence += 1;
        // Every change of the public view is notified, from the first try of its own schedule.
        if next.notify_url.is_some() {
            next.notify_attempts = 0;
            next.notify_next_at = Some(now);
        }
    }
    next.anomalies.extend(anomalies.iter().cloned());
    Ok(Applied {
        order: next,
        public_changed,
        anomalies,
        summary,
    })
}

fn attempt_mut(order: &mut Order, no: AttemptNo) -> Result<&mut Attempt, Refusal> {
    order
        .attempts
        .iter_mut()
        .find(|a| a.no == no)
        .ok_or(Refusal::UnknownAttempt(no.get()))
}

/// What an outcome does to one attempt's state.
enum Step {
    To(AttemptState),
    Same,
    Stale,
    Conflicting,
    NotFound,
}

fn step(cur: &AttemptState, outcome: &Outcome, source: Source) -> Step {
    use AttemptState as S;
    use Outcome as O;
    match cur {
        S::Submitting | S::Accepted | S::ActionRequired { .. } | S::Unknown { .. } => match outcome
        {
            O::Accepted { .. } => match cur {
                S::Accepted => Step::Same,
                _ => Step::To(S::Accepted),
            },
            O::ActionRequired { next, .. } => match cur {
                S::ActionRequired { next: have } if have == next => Step::Same,
                _ => Step::To(S::ActionRequired { next: next.clone() }),
            },
            O::Succeeded { .. } => Step::To(S::Succeeded),
            O::PartiallySucceeded { delivered } => Step::To(S::PartiallySucceeded {
                delivered: *delivered,
            }),
            O::Failed {
                failover_allowed,
                reason,
            } => Step::To(S::Failed {
                failover_allowed: *failover_allowed,
                reason: reason.clone(),
            }),
            // A refusal means "never accepted, nothing charged": it can only answer a submit, or be an
            // operator's finding with evidence that an unknown submit never reached the provider
            // (docs/operations.md §1). After an acceptance (or from a query) it is a late or confused answer, and
            // changes nothing.
            O::Rejected {
                failover_allowed,
                reason,
            } => match (cur, source) {
                (S::Submitting, _)
                | (S::Unknown { .. }, Source::Submit)
                | (S::Unknown { .. }, Source::Operator) => Step::To(S::Rejected {
                    failover_allowed: *failover_allowed,
                    reason: reason.clone(),
                }),
                _ => Step::Stale,
            },
            // An inconclusive answer never demotes what we know; it only turns `Submitting` into `Unknown`.
            O::Unknown { reason } => match cur {
                S::Submitting => Step::To(S::Unknown {
                    reason: reason.clone(),
                }),
                _ => Step::Same,
            },
            O::NotFound => Step::NotFound,
            O::Reversed { reason } => Step::To(S::Reversed {
                reason: reason.clone(),
            }),
        },
        S::Succeeded => match outcome {
            O::Succeeded { .. } => Step::Same,
            O::Reversed { reason } => Step::To(S::Reversed {
                reason: reason.clone(),
            }),
            O::Failed { .. } | O::Rejected { .. } | O::PartiallySucceeded { .. } => {
                Step::Conflicting
            }
            O::Accepted { .. } | O::ActionRequired { .. } | O::Unknown { .. } | O::NotFound => {
                Step::Stale
            }
        },
        S::PartiallySucceeded { delivered } => match outcome {
            O::PartiallySucceeded { delivered: d } if d == delivered => Step::Same,
            O::Reversed { reason } => Step::To(S::Reversed {
                reason: reason.clone(),
            }),
            O::PartiallySucceeded { .. }
            | O::Succeeded { .. }
            | O::Failed { .. }
            | O::Rejected { .. } => Step::Conflicting,
            O::Accepted { .. } | O::ActionRequired { .. } | O::Unknown { .. } | O::NotFound => {
                Step::Stale
            }
        },
        // The one way out of a failure: a late success (alerted, docs/state-machine.md §3 invariant 6).
        S::Rejected { .. } | S::Failed { .. } => match outcome {
            O::Failed { .. } | O::Rejected { .. } => Step::Same,
            O::Succeeded { .. } => Step::To(S::Succeeded),
            O::PartiallySucceeded { delivered } => Step::To(S::PartiallySucceeded {
                delivered: *delivered,
            }),
            O::Reversed { .. } => Step::Conflicting,
            O::Accepted { .. } | O::ActionRequired { .. } | O::Unknown { .. } | O::NotFound => {
                Step::Stale
            }
        },
        S::Reversed { .. } => match outcome {
            O::Reversed { .. } => Step::Same,
            O::Accepted { .. }
            | O::ActionRequired { .. }
            | O::Succeeded { .. }
            | O::PartiallySucceeded { .. }
            | O::Failed { .. }
            | O::Rejected { .. }
            | O::Unknown { .. }
            | O::NotFound => Step::Stale,
        },
    }
}

fn provider_ref_of(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Accepted { provider_ref }
        | Outcome::ActionRequired { provider_ref, .. }
        | Outcome::Succeeded { provider_ref } => provider_ref.as_deref(),
        Outcome::PartiallySucceeded { .. }
        | Outcome::Failed { .. }
        | Outcome::Rejected { .. }
        | Outcome::Unknown { .. }
        | Outcome::NotFound
        | Outcome::Reversed { .. } => None,
    }
}

/// Whether an outcome shows the provider knows the attempt.
fn acknowledges(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Accepted { .. }
        | Outcome::ActionRequired { .. }
        | Outcome::Succeeded { .. }
        | Outcome::PartiallySucceeded { .. }
        | Outcome::Failed { .. }
        | Outcome::Reversed { .. } => true,
        Outcome::Rejected { .. } | Outcome::Unknown { .. } | Outcome::NotFound => false,
    }
}

fn finding_kind(f: &Finding) -> AnomalyKind {
    match f {
        Finding::ForeignOrder { .. } => AnomalyKind::ForeignAnswer,
        Finding::CostMismatch { .. }
        | Finding::FaceMismatch { .. }
        | Finding::QuantityMismatch { .. }
        | Finding::DeliveredAboveFace { .. } => AnomalyKind::AmountMismatch,
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_outcome(
    order: &mut Order,
    no: AttemptNo,
    source: Source,
    outcome: &Outcome,
    report: &Report,
    now: Timestamp,
    policy: &Policy,
    anomalies: &mut Vec<Anomaly>,
) -> Result<String, Refusal> {
    let others_delivered = order
        .attempts
        .iter()
        .any(|a| a.no != no && a.state.delivered());
    let a = attempt_mut(order, no)?;
    let old = a.state.clone();
    let was_open = old.is_open();
    let mut learned_ref = false;
    if let Some(r) = provider_ref_of(outcome)
        && a.provider_ref.is_none()
    {
        a.provider_ref = Some(r.to_owned());
        learned_ref = true;
    }
    if source == Source::Query && was_open {
        a.polls = a.polls.saturating_add(1);
    }
    let learned_amounts = a.reported.merge(&report.reported);
    // An operator's word is evidence about the attempt, not the provider acknowledging it.
    if source != Source::Operator && (acknowledges(outcome) || learned_ref) {
        a.acknowledged = true;
    }

    let new_state = match step(&old, outcome, source) {
        Step::To(s) => Some(s),
        // "Not found" never fails an attempt the provider once acknowledged (docs/providers/README.md §4 rule 4), nor
        // one on a provider whose reused-id refusal gives a safe probe instead.
        Step::NotFound if a.acknowledged || policy.not_found_probe => {
            let track = a.not_found.get_or_insert(NotFoundTrack {
                first_at: now,
                answers: 0,
            });
            track.answers = track.answers.saturating_add(1);
            if old == AttemptState::Submitting {
                Some(AttemptState::Unknown {
                    reason: Reason::new("not_found", "provider has no such order yet"),
                })
            } else {
                None
            }
        }
        Step::NotFound => {
            let track = a.not_found.get_or_insert(NotFoundTrack {
                first_at: now,
                answers: 0,
            });
            track.answers = track.answers.saturating_add(1);
            let answers = track.answers;
            if now.since(a.opened_at) >= policy.not_found_grace
                && answers >= policy.not_found_min_answers
            {
                Some(AttemptState::Failed {
                    failover_allowed: policy.not_found_failover,
                    reason: Reason::new(
                        "not_found",
                        format!("provider has no such order after {answers} queries"),
                    ),
                })
            } else if old == AttemptState::Submitting {
                Some(AttemptState::Unknown {
                    reason: Reason::new("not_found", "provider has no such order yet"),
                })
            } else {
                None
            }
        }
        // A query that tells nothing new still moves the polling schedule on, so it is still written.
        Step::Same if source == Source::Query && was_open => None,
        Step::Same | Step::Stale if learned_ref || learned_amounts => None,
        Step::Same => return Err(Refusal::Duplicate),
        Step::Stale => return Err(Refusal::Stale),
        Step::Conflicting => return Err(Refusal::Conflicting),
    };

    let summary = match &new_state {
        Some(s) => format!(
            "attempt {}: {} -> {} ({})",
            no.get(),
            old.name(),
            s.name(),
            source.as_str()
        ),
        None => format!(
            "attempt {}: still {} ({}, {} polls)",
            no.get(),
            old.name(),
            source.as_str(),
            a.polls
        ),
    };
    let mut raise = |kind| {
        anomalies.push(Anomaly {
            at: now,
            attempt: no,
            kind,
        })
    };
    for f in &report.findings {
        raise(finding_kind(f));
    }
    if let Some(s) = new_state {
        if old.definite_failure().is_some() && (s.delivered()) {
            raise(AnomalyKind::LateSuccessAfterFailure);
        }
        if matches!(s, AttemptState::Reversed { .. }) {
            raise(AnomalyKind::Reversal);
        }
        if matches!(s, AttemptState::PartiallySucceeded { .. }) {
            raise(AnomalyKind::PartialDelivery);
        }
        if others_delivered && !old.delivered() && s.delivered() {
            raise(AnomalyKind::SecondDelivery);
        }
        a.state = s;
    }
    a.updated_at = now;
    a.next_poll_at = if !a.state.is_open() {
        None
    } else if source == Source::Query || old == AttemptState::Submitting || a.next_poll_at.is_none()
    {
        Some(now.plus(policy.poll_delay(a.polls)))
    } else {
        a.next_poll_at
    };
    Ok(summary)
}

#[cfg(test)]
mod tests;

//! One test per invariant of docs/state-machine.md §3, then a property test that drives random event sequences
//! (duplicates, late, out-of-order and conflicting answers, crashes) and checks every invariant after each step.

use super::*;
use crate::ids::{ProductCode, ProviderAccountId};
use crate::money::Fen;
use crate::order::{AnomalyKind, Attention, NewOrder, PublicStatus, Resolution};
use crate::outcome::NextAction;
use crate::{AppId, MerchantOrderNo};
use proptest::prelude::*;
use std::collections::BTreeMap;

const T0: Timestamp = Timestamp::from_millis(1_763_000_000_000);

fn route(account: &str) -> Route {
    Route {
        provider_account: ProviderAccountId::parse(account).unwrap(),
        provider_product: "100".into(),
        cost: Fen::new(9_850),
    }
}

fn new_order() -> Order {
    order_with_notify(None)
}

fn order_with_notify(notify_url: Option<&str>) -> Order {
    let new = NewOrder {
        app_id: AppId::parse("demo").unwrap(),
        merchant_order_no: MerchantOrderNo::parse("M1").unwrap(),
        product_code: ProductCode::parse("mobile.100").unwrap(),
        account: "13800138000".into(),
        extra: BTreeMap::new(),
        face_value: Fen::new(10_000),
        notify_url: notify_url.map(str::to_owned),
        request_digest: String::new(),
    };
    Order::new(new, route("acct-a"), T0, Policy::default().call_timeout)
}

fn n(k: u8) -> AttemptNo {
    AttemptNo::new(k).unwrap()
}

fn out(k: u8, source: Source, outcome: Outcome) -> Event {
    Event::Outcome {
        attempt: n(k),
        source,
        outcome,
        report: Default::default(),
    }
}

fn rejected() -> Outcome {
    Outcome::Rejected {
        failover_allowed: true,
        reason: Reason::new("5002", "余额不足"),
    }
}

fn failed(failover_allowed: bool) -> Outcome {
    Outcome::Failed {
        failover_allowed,
        reason: Reason::new("9", "充值失败"),
    }
}

fn unknown() -> Outcome {
    Outcome::Unknown {
        reason: Reason::new("timeout", "no answer within 10 s"),
    }
}

fn succeeded() -> Outcome {
    Outcome::Succeeded { provider_ref: None }
}

fn accepted() -> Outcome {
    Outcome::Accepted { provider_ref: None }
}

/// Applies events in order at `now`, panicking on a refusal.
fn run(order: &Order, events: &[Event], now: Timestamp) -> Order {
    events.iter().fold(order.clone(), |o, e| {
        apply(&o, e, now, &Policy::default())
            .unwrap_or_else(|r| panic!("{e:?} refused: {r}"))
            .order
    })
}

#[test]
fn a_new_order_is_written_as_submitting_with_a_call_deadline() {
    // Invariant 1: the first write already holds attempt 1 `Submitting`, so a crash after the provider call
    // leaves it there, and the sweep sees it at the call deadline.
    let o = new_order();
    assert_eq!(o.attempts().len(), 1);
    assert_eq!(o.attempts()[0].state(), &AttemptState::Submitting);
    assert_eq!(o.version(), 1);
    assert_eq!(o.due_at(), Some(T0.plus(Policy::default().call_timeout)));
    assert_eq!(o.public_view().status, PublicStatus::Processing);
}

#[test]
fn a_submission_left_by_a_crash_becomes_unknown_only_after_the_call_deadline() {
    let o = new_order();
    let early = T0.plus(Duration::from_secs(5));
    assert_eq!(
        apply(
            &o,
            &Event::SubmitDeadlinePassed { attempt: n(1) },
            early,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::NotAllowed("the call deadline has not passed")
    );
    let late = T0.plus(Duration::from_secs(31));
    let u = run(&o, &[Event::SubmitDeadlinePassed { attempt: n(1) }], late);
    assert!(matches!(
        u.attempts()[0].state(),
        AttemptState::Unknown { .. }
    ));
    assert_eq!(u.public_view().status, PublicStatus::Processing);
    assert_eq!(u.due_at(), Some(late.plus(Duration::from_secs(10))));
}

#[test]
fn no_second_attempt_opens_while_one_is_open() {
    // Invariant 2, for each open state.
    let open_states = [
        vec![],
        vec![out(1, Source::Submit, accepted())],
        vec![out(1, Source::Submit, unknown())],
        vec![out(
            1,
            Source::Submit,
            Outcome::ActionRequired {
                next: NextAction::EnterVerificationCode,
                provider_ref: None,
            },
        )],
    ];
    for events in open_states {
        let o = run(&new_order(), &events, T0);
        let e = Event::OpenAttempt {
            route: route("acct-b"),
        };
        assert_eq!(
            apply(&o, &e, T0, &Policy::default()).unwrap_err(),
            Refusal::NotAllowed("no definite failure to fail over from"),
            "after {events:?}"
        );
    }
}

#[test]
fn failover_opens_the_next_attempt_only_after_a_definite_failure() {
    let o = run(&new_order(), &[out(1, Source::Submit, rejected())], T0);
    assert!(o.awaiting_failover());
    assert_eq!(o.public_view().status, PublicStatus::Processing);
    assert_eq!(o.due_at(), Some(T0), "a pending failover is due at once");
    let o = run(
        &o,
        &[Event::OpenAttempt {
            route: route("acct-b"),
        }],
        T0,
    );
    assert_eq!(o.attempts().len(), 2);
    assert_eq!(o.attempts()[1].no(), n(2));
    assert_eq!(o.attempts()[1].route().provider_account.as_str(), "acct-b");
    assert_eq!(o.open_attempt().map(|a| a.no()), Some(n(2)));
}

#[test]
fn a_failure_without_failover_is_final_at_once() {
    let o = run(&new_order(), &[out(1, Source::Callback, failed(false))], T0);
    assert!(matches!(o.resolution(), Resolution::Failed { .. }));
    assert_eq!(o.public_view().status, PublicStatus::Failed);
    assert_eq!(o.due_at(), None);
}

#[test]
fn exhausted_routes_fail_the_order_with_the_last_reason() {
    let o = run(
        &new_order(),
        &[
            out(1, Source::Submit, rejected()),
            Event::RoutesExhausted {
                reason: Reason::new("no_route", "no further route"),
            },
        ],
        T0,
    );
    assert_eq!(
        o.public_view().failure,
        Some(Reason::new("5002", "余额不足")),
        "the merchant sees the provider's last definite reason"
    );
    assert_eq!(o.public_view().status, PublicStatus::Failed);
}

#[test]
fn an_unknown_attempt_is_never_failed_over_and_never_failed_by_silence() {
    // Invariant 3.
    let o = run(&new_order(), &[out(1, Source::Submit, unknown())], T0);
    assert!(!o.awaiting_failover());
    for e in [
        Event::OpenAttempt {
            route: route("acct-b"),
        },
        Event::RoutesExhausted {
            reason: Reason::new("x", "y"),
        },
    ] {
        assert!(apply(&o, &e, T0, &Policy::default()).is_err());
    }
    // More unknowns change nothing but the polling schedule.
    let later = T0.plus(Duration::from_secs(3600));
    let a = apply(
        &o,
        &out(1, Source::Query, unknown()),
        later,
        &Policy::default(),
    )
    .unwrap();
    assert!(!a.public_changed);
    assert!(matches!(
        a.order.attempts()[0].state(),
        AttemptState::Unknown { .. }
    ));
    assert_eq!(a.order.attempts()[0].polls(), 1);
    // A refusal cannot come from a query about an order the provider may hold.
    assert_eq!(
        apply(
            &o,
            &out(1, Source::Query, rejected()),
            later,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::Stale
    );
}

#[test]
fn not_found_fails_only_after_the_grace_window_and_repeated_answers() {
    let p = Policy::default();
    let o = run(&new_order(), &[out(1, Source::Submit, unknown())], T0);
    // Early not-found answers, however many, are not failures.
    let mut cur = o;
    for minute in 1..=9 {
        let at = T0.plus(Duration::from_secs(60 * minute));
        cur = apply(&cur, &out(1, Source::Query, Outcome::NotFound), at, &p)
            .unwrap()
            .order;
        assert!(cur.open_attempt().is_some(), "failed at minute {minute}");
    }
    // Past the window, one more not-found is the definite failure.
    let at = T0.plus(p.not_found_grace);
    let done = apply(&cur, &out(1, Source::Query, Outcome::NotFound), at, &p)
        .unwrap()
        .order;
    match done.attempts()[0].state() {
        AttemptState::Failed {
            failover_allowed,
            reason,
        } => {
            assert!(*failover_allowed);
            assert_eq!(reason.code, "not_found");
        }
        other => panic!("expected failed, got {other:?}"),
    }
}

#[test]
fn a_single_not_found_after_the_window_is_not_enough() {
    let p = Policy::default();
    let o = run(&new_order(), &[out(1, Source::Submit, accepted())], T0);
    let at = T0.plus(p.not_found_grace).plus(Duration::from_secs(1));
    let once = apply(&o, &out(1, Source::Query, Outcome::NotFound), at, &p)
        .unwrap()
        .order;
    assert_eq!(once.attempts()[0].state(), &AttemptState::Accepted);
    assert_eq!(once.attempts()[0].not_found().map(|t| t.answers), Some(1));
}

#[test]
fn not_found_never_fails_an_attempt_the_provider_once_acknowledged() {
    // docs/providers/README.md §4 rule 4: the provider accepted it, so "not found" is the provider's confusion.
    let p = Policy::default();
    let o = run(&new_order(), &[out(1, Source::Submit, accepted())], T0);
    assert!(o.attempts()[0].acknowledged());
    let mut cur = o;
    for minute in [11, 16, 21, 60, 600] {
        let at = T0.plus(Duration::from_secs(60 * minute));
        cur = apply(&cur, &out(1, Source::Query, Outcome::NotFound), at, &p)
            .unwrap()
            .order;
    }
    assert_eq!(cur.attempts()[0].state(), &AttemptState::Accepted);
    assert_eq!(cur.attempts()[0].not_found().map(|t| t.answers), Some(5));
    assert!(!p.probe_due(&cur, n(1), T0.plus(Duration::from_secs(36_000))));
}

#[test]
fn on_a_provider_that_refuses_reused_ids_not_found_is_never_a_failure_and_a_probe_comes_due() {
    let p = Policy {
        not_found_probe: true,
        ..Policy::default()
    };
    let o = run(&new_order(), &[out(1, Source::Submit, unknown())], T0);
    assert!(
        !o.attempts()[0].acknowledged(),
        "an Unknown is no acknowledgement"
    );
    let early = T0.plus(Duration::from_secs(60));
    let mut cur = apply(&o, &out(1, Source::Query, Outcome::NotFound), early, &p)
        .unwrap()
        .order;
    assert!(!p.probe_due(&cur, n(1), early), "inside the grace window");
    let late = T0.plus(p.not_found_grace);
    cur = apply(&cur, &out(1, Source::Query, Outcome::NotFound), late, &p)
        .unwrap()
        .order;
    assert!(
        matches!(cur.attempts()[0].state(), AttemptState::Unknown { .. }),
        "{:?}",
        cur.attempts()[0].state()
    );
    assert!(p.probe_due(&cur, n(1), late));
    // The probe's answer "I have it" (Accepted, from a submit) ends the probing.
    let probed = apply(&cur, &out(1, Source::Submit, accepted()), late, &p)
        .unwrap()
        .order;
    assert!(!p.probe_due(&probed, n(1), late));
    // A refusal of the probe is a definite one: nothing exists under that id.
    let refused = apply(&cur, &out(1, Source::Submit, rejected()), late, &p)
        .unwrap()
        .order;
    assert!(refused.awaiting_failover());
}

#[test]
fn reported_amounts_are_kept_on_the_attempt_and_findings_raise_anomalies() {
    let p = Policy::default();
    let o = run(&new_order(), &[out(1, Source::Submit, accepted())], T0);
    let report = Report {
        reported: crate::outcome::Reported {
            cost: Some(Fen::new(9_900)),
            ..Default::default()
        },
        findings: vec![crate::outcome::Finding::CostMismatch {
            reported: Fen::new(9_900),
            route: Fen::new(9_850),
        }],
    };
    let e = Event::Outcome {
        attempt: n(1),
        source: Source::Callback,
        outcome: succeeded(),
        report,
    };
    let done = apply(&o, &e, T0, &p).unwrap();
    assert_eq!(
        done.order.attempts()[0].reported().cost,
        Some(Fen::new(9_900))
    );
    assert!(
        done.anomalies
            .iter()
            .any(|a| a.kind == AnomalyKind::AmountMismatch),
        "{:?}",
        done.anomalies
    );
    // A duplicate that reports nothing new changes nothing.
    let again = out(1, Source::Callback, succeeded());
    assert_eq!(
        apply(&done.order, &again, T0, &p).unwrap_err(),
        Refusal::Duplicate
    );
}

#[test]
fn an_unverified_result_is_kept_once_bounded_and_changes_no_state() {
    let p = Policy::default();
    let o = run(&new_order(), &[out(1, Source::Submit, accepted())], T0);
    let kept = |o: &Order, c: &str| {
        apply(
            o,
            &Event::UnverifiedResult {
                attempt: n(1),
                content: c.to_owned(),
            },
            T0,
            &p,
        )
    };
    let first = kept(&o, "status=DELIVRD").unwrap();
    assert_eq!(first.order.attempts()[0].state(), &AttemptState::Accepted);
    assert!(!first.public_changed);
    assert_eq!(first.anomalies[0].kind, AnomalyKind::UnverifiedResult);
    assert_eq!(
        kept(&first.order, "status=DELIVRD").unwrap_err(),
        Refusal::Duplicate
    );
    let mut cur = first.order;
    for i in 0..10 {
        cur = kept(&cur, &format!("status=DELIVRD&n={i}")).unwrap().order;
    }
    let u = cur.attempts()[0].unverified();
    assert_eq!(u.len(), crate::order::MAX_UNVERIFIED);
    assert_eq!(u.last().unwrap().content, "status=DELIVRD&n=9");
}

#[test]
fn each_attempt_has_its_own_stable_provider_facing_id() {
    // Invariant 4.
    let o = run(
        &new_order(),
        &[
            out(1, Source::Submit, rejected()),
            Event::OpenAttempt {
                route: route("acct-b"),
            },
            out(2, Source::Submit, rejected()),
            Event::OpenAttempt {
                route: route("acct-a"),
            },
        ],
        T0,
    );
    let ids: Vec<String> = o
        .attempts()
        .iter()
        .map(|a| o.attempt_id(a.no()).to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let parsed = crate::AttemptId::parse(id).unwrap();
        assert_eq!(&parsed.order_id(), o.id());
        assert_eq!(parsed.attempt().get() as usize, i + 1);
    }
}

#[test]
fn duplicate_callback_changes_nothing_and_is_acknowledged() {
    // Invariant 5: the second copy is refused as a duplicate (the caller acknowledges and writes nothing).
    let o = run(&new_order(), &[out(1, Source::Callback, succeeded())], T0);
    assert_eq!(
        apply(
            &o,
            &out(1, Source::Callback, succeeded()),
            T0,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::Duplicate
    );
}

#[test]
fn stale_processing_callback_after_success_changes_nothing() {
    let o = run(&new_order(), &[out(1, Source::Callback, succeeded())], T0);
    for stale in [accepted(), unknown(), Outcome::NotFound] {
        assert_eq!(
            apply(&o, &out(1, Source::Callback, stale), T0, &Policy::default()).unwrap_err(),
            Refusal::Stale
        );
    }
}

#[test]
fn every_applied_change_moves_the_version_by_one() {
    let o = new_order();
    let a = apply(
        &o,
        &out(1, Source::Submit, accepted()),
        T0,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(a.order.version(), 2);
    assert_eq!(
        a.order.sequence(),
        1,
        "accepted is still `processing`: no public change"
    );
    assert!(!a.public_changed);
    let b = apply(
        &a.order,
        &out(1, Source::Callback, succeeded()),
        T0,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(b.order.version(), 3);
    assert_eq!(b.order.sequence(), 2);
    assert!(b.public_changed);
}

#[test]
fn success_never_turns_into_failure() {
    // Invariant 6: the only ways out of a terminal state are the two alerted anomalies.
    let o = run(&new_order(), &[out(1, Source::Callback, succeeded())], T0);
    assert_eq!(
        apply(
            &o,
            &out(1, Source::Query, failed(true)),
            T0,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::Conflicting
    );
    assert_eq!(
        apply(
            &o,
            &out(
                1,
                Source::Query,
                Outcome::PartiallySucceeded {
                    delivered: Fen::new(1)
                }
            ),
            T0,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::Conflicting
    );
}

#[test]
fn reversal_after_success_is_recorded_and_alerted() {
    let o = run(&new_order(), &[out(1, Source::Callback, succeeded())], T0);
    let r = apply(
        &o,
        &out(
            1,
            Source::Query,
            Outcome::Reversed {
                reason: Reason::new("10", "返销"),
            },
        ),
        T0,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(r.order.public_view().status, PublicStatus::Reversed);
    assert_eq!(r.anomalies.len(), 1);
    assert_eq!(r.anomalies[0].kind, AnomalyKind::Reversal);
    assert!(r.public_changed);
}

#[test]
fn late_success_after_failure_is_legal_and_alerted() {
    let o = run(&new_order(), &[out(1, Source::Callback, failed(false))], T0);
    assert_eq!(o.public_view().status, PublicStatus::Failed);
    let r = apply(
        &o,
        &out(1, Source::Callback, succeeded()),
        T0,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(r.order.public_view().status, PublicStatus::Succeeded);
    assert_eq!(
        r.anomalies.iter().map(|a| a.kind).collect::<Vec<_>>(),
        vec![AnomalyKind::LateSuccessAfterFailure]
    );
    assert_eq!(r.order.anomalies().len(), 1);
}

#[test]
fn late_success_of_a_failed_over_attempt_flags_a_second_delivery() {
    let o = run(
        &new_order(),
        &[
            out(1, Source::Callback, failed(true)),
            Event::OpenAttempt {
                route: route("acct-b"),
            },
            out(2, Source::Callback, succeeded()),
        ],
        T0,
    );
    let r = apply(
        &o,
        &out(1, Source::Callback, succeeded()),
        T0,
        &Policy::default(),
    )
    .unwrap();
    let kinds: Vec<_> = r.anomalies.iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&AnomalyKind::LateSuccessAfterFailure));
    assert!(kinds.contains(&AnomalyKind::SecondDelivery));
}

#[test]
fn partial_success_reports_what_was_delivered() {
    let o = run(
        &new_order(),
        &[out(
            1,
            Source::Callback,
            Outcome::PartiallySucceeded {
                delivered: Fen::new(5_000),
            },
        )],
        T0,
    );
    let v = o.public_view();
    assert_eq!(v.status, PublicStatus::PartiallySucceeded);
    assert_eq!(v.delivered_fen, Some(Fen::new(5_000)));
    assert_eq!(o.anomalies()[0].kind, AnomalyKind::PartialDelivery);
}

#[test]
fn carrier_billing_shows_the_next_action_until_it_is_done() {
    let next = NextAction::SendSms {
        messages: vec![crate::SmsInstruction {
            to: "10658000".into(),
            body: "ZQXX_200".into(),
        }],
    };
    let o = run(
        &new_order(),
        &[out(
            1,
            Source::Submit,
            Outcome::ActionRequired {
                next: next.clone(),
                provider_ref: Some("SP1".into()),
            },
        )],
        T0,
    );
    let v = o.public_view();
    assert_eq!(v.status, PublicStatus::ActionRequired);
    assert_eq!(v.next_action, Some(next));
    assert_eq!(o.attempts()[0].provider_ref(), Some("SP1"));
    let done = run(&o, &[out(1, Source::Callback, succeeded())], T0);
    assert_eq!(done.public_view().next_action, None);
}

#[test]
fn a_callback_that_beats_the_submit_answer_wins_and_the_answer_is_stale() {
    // The provider's callback arrives before our submit call returns.
    let o = run(&new_order(), &[out(1, Source::Callback, succeeded())], T0);
    assert_eq!(
        apply(
            &o,
            &out(1, Source::Submit, accepted()),
            T0,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::Stale
    );
}

#[test]
fn events_for_an_attempt_that_does_not_exist_are_refused() {
    assert_eq!(
        apply(
            &new_order(),
            &out(2, Source::Callback, succeeded()),
            T0,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::UnknownAttempt(2)
    );
}

#[test]
fn a_public_change_schedules_a_notification_until_it_is_delivered() {
    let o = order_with_notify(Some("https://merchant.example/notify"));
    assert_eq!(
        o.notify_due_at(),
        None,
        "the create is answered synchronously, not notified"
    );
    let later = T0.plus(Duration::from_secs(5));
    let done = run(&o, &[out(1, Source::Callback, succeeded())], later);
    assert_eq!(done.sequence(), 2);
    assert_eq!(done.notify_due_at(), Some(later));
    assert_eq!(
        done.due_at(),
        Some(later),
        "the sweep retries notifications too"
    );
    let retry = T0.plus(Duration::from_secs(60));
    let failed_once = run(
        &done,
        &[Event::Notified {
            sequence: 2,
            delivered: false,
            retry_at: Some(retry),
        }],
        later,
    );
    assert_eq!(failed_once.notify_attempts(), 1);
    assert_eq!(failed_once.notify_due_at(), Some(retry));
    assert_eq!(
        failed_once.sequence(),
        2,
        "notification bookkeeping is not a public change"
    );
    let acked = run(
        &failed_once,
        &[Event::Notified {
            sequence: 2,
            delivered: true,
            retry_at: None,
        }],
        retry,
    );
    assert_eq!(acked.notified_sequence(), 2);
    assert_eq!(acked.notify_due_at(), None);
    assert_eq!(acked.due_at(), None);
    // A late copy of the acknowledgement is stale.
    assert_eq!(
        apply(
            &acked,
            &Event::Notified {
                sequence: 2,
                delivered: true,
                retry_at: None
            },
            retry,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::Stale
    );
}

#[test]
fn one_claim_takes_a_due_notification_and_a_second_claim_is_refused_until_it_expires() {
    let o = run(
        &order_with_notify(Some("https://merchant.example/notify")),
        &[out(1, Source::Callback, succeeded())],
        T0,
    );
    assert_eq!(o.notify_due_at(), Some(T0));
    let until = T0.plus(Duration::from_secs(10));
    let claim = Event::NotifyClaimed { sequence: 2, until };
    let claimed = run(&o, std::slice::from_ref(&claim), T0);
    assert_eq!(
        claimed.notify_due_at(),
        Some(until),
        "not due while claimed"
    );
    assert_eq!(claimed.sequence(), 2, "a claim is not a public change");
    // A second sender (the sweep, a racing inline send) is refused while the claim runs ...
    let again = Event::NotifyClaimed {
        sequence: 2,
        until: until.plus(Duration::from_secs(10)),
    };
    assert!(matches!(
        apply(
            &claimed,
            &again,
            T0.plus(Duration::from_secs(5)),
            &Policy::default()
        ),
        Err(Refusal::NotAllowed(_))
    ));
    // ... and takes it over once the claim expired (its sender died).
    let later = until.plus(Duration::from_secs(1));
    let taken = run(
        &claimed,
        &[Event::NotifyClaimed {
            sequence: 2,
            until: later.plus(Duration::from_secs(10)),
        }],
        later,
    );
    assert_eq!(
        taken.notify_due_at(),
        Some(later.plus(Duration::from_secs(10)))
    );
    // The sender's result ends the claim: delivered clears it.
    let acked = run(
        &claimed,
        &[Event::Notified {
            sequence: 2,
            delivered: true,
            retry_at: None,
        }],
        T0,
    );
    assert_eq!(acked.notify_due_at(), None);
    // A claim of another sequence than the current one, or of an acknowledged one, is stale.
    assert_eq!(
        apply(
            &o,
            &Event::NotifyClaimed { sequence: 1, until },
            T0,
            &Policy::default()
        )
        .unwrap_err(),
        Refusal::Stale
    );
    assert_eq!(
        apply(&acked, &claim, T0, &Policy::default()).unwrap_err(),
        Refusal::Stale
    );
}

#[test]
fn an_exhausted_notification_schedule_stops_retrying() {
    let o = run(
        &order_with_notify(Some("https://merchant.example/notify")),
        &[out(1, Source::Callback, succeeded())],
        T0,
    );
    let gave_up = run(
        &o,
        &[Event::Notified {
            sequence: 2,
            delivered: false,
            retry_at: None,
        }],
        T0,
    );
    assert_eq!(gave_up.notify_due_at(), None);
    assert_eq!(gave_up.due_at(), None);
}

#[test]
fn orders_without_a_notify_url_are_never_due_for_notification() {
    let o = run(&new_order(), &[out(1, Source::Callback, succeeded())], T0);
    assert_eq!(o.notify_due_at(), None);
    assert_eq!(o.due_at(), None);
}

#[test]
fn an_operator_may_find_that_an_unknown_submit_never_reached_the_provider() {
    let unknown_order = run(&new_order(), &[out(1, Source::Submit, unknown())], T0);
    let not_submitted = Outcome::Rejected {
        failover_allowed: true,
        reason: Reason::new("resolved_by_operator", "provider has no record; ticket 42"),
    };
    // A query or callback saying "refused" about an unknown attempt is confused, and changes nothing …
    for source in [Source::Query, Source::Callback] {
        assert_eq!(
            apply(
                &unknown_order,
                &out(1, source, not_submitted.clone()),
                T0,
                &Policy::default()
            )
            .unwrap_err(),
            Refusal::Stale
        );
    }
    // … but an operator's finding with evidence closes it, and the order may fail over.
    let closed = run(
        &unknown_order,
        &[out(1, Source::Operator, not_submitted)],
        T0,
    );
    assert!(matches!(
        closed.attempts()[0].state(),
        AttemptState::Rejected { .. }
    ));
    assert!(closed.awaiting_failover());
}

#[test]
fn an_operator_cannot_call_an_accepted_attempt_not_submitted() {
    let accepted_order = run(&new_order(), &[out(1, Source::Submit, accepted())], T0);
    let refused = apply(
        &accepted_order,
        &out(
            1,
            Source::Operator,
            Outcome::Rejected {
                failover_allowed: true,
                reason: Reason::new("resolved_by_operator", "?"),
            },
        ),
        T0,
        &Policy::default(),
    );
    assert_eq!(refused.unwrap_err(), Refusal::Stale);
    // What an operator may say about it is what a provider could: a result.
    let done = run(
        &accepted_order,
        &[out(1, Source::Operator, succeeded())],
        T0,
    );
    assert_eq!(done.public_view().status, PublicStatus::Succeeded);
}

fn waiting_for_code() -> Order {
    run(
        &new_order(),
        &[out(
            1,
            Source::Submit,
            Outcome::ActionRequired {
                next: NextAction::EnterVerificationCode,
                provider_ref: Some("P9".into()),
            },
        )],
        T0,
    )
}

#[test]
fn a_verification_code_never_entered_expires_as_failed_without_failover() {
    let o = waiting_for_code();
    let expired = run(&o, &[Event::VerificationExpired { attempt: n(1) }], T0);
    let v = expired.public_view();
    assert_eq!(v.status, PublicStatus::Failed);
    assert_eq!(v.failure.unwrap().code, "expired");
    assert!(!expired.awaiting_failover());
    assert_eq!(expired.due_at(), None);
    // Only an attempt still waiting for its code can expire.
    for other in [
        new_order(),
        run(&o, &[out(1, Source::Submit, accepted())], T0),
    ] {
        assert_eq!(
            apply(
                &other,
                &Event::VerificationExpired { attempt: n(1) },
                T0,
                &Policy::default()
            )
            .unwrap_err(),
            Refusal::Stale
        );
    }
}

#[test]
fn a_stuck_attempt_enters_the_operator_queue_at_its_escalation_limit() {
    let o = run(&new_order(), &[out(1, Source::Submit, unknown())], T0);
    let limit = crate::order::DEFAULT_ESCALATE_AFTER;
    assert_eq!(
        o.attention(),
        Some((T0.plus(limit), Attention::StuckAttempt))
    );
    assert!(!o.needs_operator(T0.plus(limit - Duration::from_secs(1))));
    assert!(o.needs_operator(T0.plus(limit)));
    // A slow product's order gets its own limit at creation.
    let slow = new_order().with_escalation(Duration::from_secs(72 * 3600));
    assert_eq!(slow.escalate_after(), Duration::from_secs(72 * 3600));
    assert!(!slow.needs_operator(T0.plus(limit)));
    // An accepted attempt waits the same; a final order leaves the queue.
    let acc = run(&new_order(), &[out(1, Source::Submit, accepted())], T0);
    assert!(acc.needs_operator(T0.plus(limit)));
    let done = run(&acc, &[out(1, Source::Callback, succeeded())], T0);
    assert_eq!(done.attention(), None);
    // A PC order waiting for its code expires instead of queueing; an MP one waiting for its SMS queues.
    assert_eq!(waiting_for_code().attention(), None);
    let sms = run(
        &new_order(),
        &[out(
            1,
            Source::Submit,
            Outcome::ActionRequired {
                next: NextAction::SendSms { messages: vec![] },
                provider_ref: None,
            },
        )],
        T0,
    );
    assert!(sms.needs_operator(T0.plus(limit)));
}

#[test]
fn an_abandoned_notification_enters_the_operator_queue_at_once() {
    let o = run(
        &order_with_notify(Some("https://merchant.example/notify")),
        &[out(1, Source::Callback, succeeded())],
        T0,
    );
    // Pending, or never tried: not abandoned.
    assert!(!o.notification_abandoned());
    assert_eq!(o.attention(), None);
    assert!(!order_with_notify(Some("https://m.example/n")).notification_abandoned());
    let later = T0.plus(Duration::from_secs(60));
    let gave_up = run(
        &o,
        &[Event::Notified {
            sequence: 2,
            delivered: false,
            retry_at: None,
        }],
        later,
    );
    assert!(gave_up.notification_abandoned());
    assert_eq!(
        gave_up.attention(),
        Some((later, Attention::NotificationAbandoned))
    );
    assert!(gave_up.needs_operator(later));
    // A late acknowledgement (an operator's redelivery) takes it out again.
    let acked = run(
        &gave_up,
        &[Event::Notified {
            sequence: 2,
            delivered: true,
            retry_at: None,
        }],
        later,
    );
    assert_eq!(acked.attention(), None);
}

// ---------------------------------------------------------------------------------------------------------
// Property test: random sequences of events against every invariant.

fn arb_reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::new("5002", "余额不足")),
        Just(Reason::new("9", "失败"))
    ]
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Accepted { provider_ref: Some("P".into()) }),
        3 => Just(Outcome::Succeeded { provider_ref: None }),
        3 => (any::<bool>(), arb_reason()).prop_map(|(f, r)| Outcome::Failed { failover_allowed: f, reason: r }),
        3 => (any::<bool>(), arb_reason()).prop_map(|(f, r)| Outcome::Rejected { failover_allowed: f, reason: r }),
        3 => arb_reason().prop_map(|r| Outcome::Unknown { reason: r }),
        3 => Just(Outcome::NotFound),
        1 => (1i64..10_000).prop_map(|d| Outcome::PartiallySucceeded { delivered: Fen::new(d) }),
        1 => arb_reason().prop_map(|r| Outcome::Reversed { reason: r }),
        1 => Just(Outcome::ActionRequired { next: NextAction::EnterVerificationCode, provider_ref: None }),
    ]
}

fn arb_source() -> impl Strategy<Value = Source> {
    prop_oneof![
        Just(Source::Submit),
        Just(Source::Query),
        Just(Source::Callback),
        Just(Source::Operator)
    ]
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (1u8..=4, arb_source(), arb_outcome())
            .prop_map(|(k, source, outcome)| Event::Outcome { attempt: n(k), source, outcome, report: Default::default() }),
        1 => (1u8..=4).prop_map(|k| Event::SubmitDeadlinePassed { attempt: n(k) }),
        1 => (1u8..=4).prop_map(|k| Event::VerificationExpired { attempt: n(k) }),
        2 => prop_oneof![Just("acct-a"), Just("acct-b")].prop_map(|a| Event::OpenAttempt { route: route(a) }),
        1 => Just(Event::RoutesExhausted { reason: Reason::new("no_route", "none left") }),
        2 => (1u64..6, any::<bool>(), any::<bool>()).prop_map(|(sequence, delivered, retry)| Event::Notified {
            sequence,
            delivered,
            retry_at: retry.then_some(T0),
        }),
        1 => (1u64..6, 0u64..120).prop_map(|(sequence, secs)| Event::NotifyClaimed {
            sequence,
            until: T0.plus(Duration::from_secs(secs)),
        }),
    ]
}

/// Checks what must hold between two consecutive versions of an order.
fn check_step(before: &Order, event: &Event, after: &Order, applied: &Applied, now: Timestamp) {
    let p = Policy::default();
    // 2: at most one open attempt.
    assert!(
        after
            .attempts()
            .iter()
            .filter(|a| a.state().is_open())
            .count()
            <= 1
    );
    // 2/3: a new attempt only after a definite failure of the previous one (so never after Unknown).
    if after.attempts().len() > before.attempts().len() {
        assert_eq!(after.attempts().len(), before.attempts().len() + 1);
        let prev = before.last_attempt().unwrap();
        assert!(
            prev.state().definite_failure().is_some_and(|(f, _)| f),
            "opened after {prev:?}"
        );
    }
    // 4: attempt numbers are 1..=n, so their provider-facing ids are unique.
    for (i, a) in after.attempts().iter().enumerate() {
        assert_eq!(a.no().get() as usize, i + 1);
    }
    // An attempt fails only on an explicit failure, or on not-found past the grace window.
    for (b, a) in before.attempts().iter().zip(after.attempts()) {
        if matches!(a.state(), AttemptState::Failed { .. }) && b.state().is_open() {
            match event {
                Event::Outcome {
                    outcome: Outcome::Failed { .. },
                    ..
                } => {}
                Event::Outcome {
                    outcome: Outcome::NotFound,
                    ..
                } => {
                    assert!(now.since(a.opened_at()) >= p.not_found_grace);
                    assert!(a.not_found().unwrap().answers >= p.not_found_min_answers);
                    // docs/providers/README.md §4 rule 4: never an attempt the provider once acknowledged.
                    assert!(
                        !b.acknowledged(),
                        "not-found failed an acknowledged attempt: {b:?}"
                    );
                    assert!(!p.not_found_probe);
                }
                Event::VerificationExpired { .. } => assert_eq!(
                    b.state(),
                    &AttemptState::ActionRequired {
                        next: NextAction::EnterVerificationCode
                    }
                ),
                other => panic!("{:?} failed an open attempt via {other:?}", b.state()),
            }
        }
        // A refusal only ever answers a submit, or is an operator's finding.
        if matches!(a.state(), AttemptState::Rejected { .. }) && b.state().is_open() {
            assert!(
                b.state() == &AttemptState::Submitting
                    || matches!(
                        event,
                        Event::Outcome {
                            source: Source::Submit | Source::Operator,
                            ..
                        }
                    )
            );
            assert!(
                !matches!(b.state(), AttemptState::Accepted),
                "an accepted attempt was refused"
            );
        }
    }
    if let Event::Notified { .. } | Event::NotifyClaimed { .. } = event {
        assert_eq!(
            before.public_view(),
            after.public_view(),
            "a notification changes no public state"
        );
        assert_eq!(before.attempts(), after.attempts());
    }
    // A pending notification is never for an acknowledged sequence.
    if after.notify_due_at().is_some() {
        assert!(after.notified_sequence() < after.sequence());
    }
    // 5: versions move by one; sequence moves exactly when the public view does.
    assert_eq!(after.version(), before.version() + 1);
    let changed = before.public_view() != after.public_view();
    assert_eq!(applied.public_changed, changed);
    assert_eq!(after.sequence(), before.sequence() + u64::from(changed));
    // 6: terminal never regresses; leaving a terminal resolution is one of the two alerted anomalies.
    let (rb, ra) = (before.resolution(), after.resolution());
    if rb.is_terminal() {
        assert!(ra.is_terminal(), "{rb:?} -> {ra:?}");
        if std::mem::discriminant(&rb) != std::mem::discriminant(&ra) {
            let kinds: Vec<_> = applied.anomalies.iter().map(|a| a.kind).collect();
            assert!(
                !kinds.is_empty(),
                "terminal change without an anomaly: {rb:?} -> {ra:?}"
            );
            if matches!(rb, Resolution::Failed { .. }) {
                assert!(
                    kinds.contains(&AnomalyKind::LateSuccessAfterFailure),
                    "{kinds:?}"
                );
            }
            if matches!(ra, Resolution::Reversed { .. }) {
                assert!(kinds.contains(&AnomalyKind::Reversal), "{kinds:?}");
            }
        }
    }
    // Delivered value is never negative, and a failed order has delivered nothing.
    let v = after.public_view();
    assert!(v.delivered_fen.is_none_or(|d| d.get() >= 0));
    if v.status == PublicStatus::Failed {
        assert!(after.attempts().iter().all(|a| !a.state().delivered()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_of_events_breaks_an_invariant(
        steps in prop::collection::vec((arb_event(), 0u64..900, any::<bool>()), 1..40)
    ) {
        let p = Policy::default();
        let mut order = order_with_notify(Some("https://merchant.example/notify"));
        let mut now = T0;
        for (event, advance_secs, replay) in steps {
            now = now.plus(Duration::from_secs(advance_secs));
            match apply(&order, &event, now, &p) {
                Ok(applied) => {
                    check_step(&order, &event, &applied.order, &applied, now);
                    // Invariant 5: a duplicate delivery of the same callback right after changes nothing.
                    if replay
                        && let Event::Outcome { source: Source::Callback, outcome, .. } = &event
                        && !matches!(outcome, Outcome::NotFound)
                    {
                        prop_assert!(apply(&applied.order, &event, now, &p).is_err());
                    }
                    order = applied.order;
                }
                Err(_) => {
                    // A refusal is pure: nothing to check but that the order is unchanged (it is not moved).
                }
            }
        }
    }

    #[test]
    fn the_first_definite_result_wins_against_any_later_replay(
        first in arb_outcome(), later in prop::collection::vec(arb_outcome(), 0..10)
    ) {
        let p = Policy::default();
        let Ok(a) = apply(&new_order(), &out(1, Source::Callback, first), T0, &p) else { return Ok(()) };
        let settled = a.order.resolution();
        let mut order = a.order;
        for o in later {
            if let Ok(next) = apply(&order, &out(1, Source::Callback, o), T0, &p) {
                order = next.order;
            }
        }
        if settled.is_terminal() {
            prop_assert!(order.resolution().is_terminal());
        }
    }
}

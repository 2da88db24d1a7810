//! The order flows every entry point shares: record an event and follow up on it (alert anomalies), submit an
//! attempt, fail over, query a provider, notify the merchant. A public change only makes the merchant's
//! notification due: it is sent by the sweep's notification lane (`sweep`), which claims it first, so no
//! entry point waits on a merchant's server and each change has one sender (docs/state-machine.md §5). Each writes through `store::record`, so a
//! racing callback, sweep or retry takes effect once or is refused as a duplicate.
//!
//! Logs name the order, the attempt, the provider account and the outcome; the recharge account is masked.

use crate::catalog::validate_account;
use crate::http::view::OrderView;
use crate::state::AppState;
use crate::usecases::notify::{self, Delivery};
use crate::usecases::route_choice;
use recharge_core::mask::mask;
use recharge_core::store::{Recorded, StoreError, record};
use recharge_core::{
    AttemptNo, AttemptState, Event, Order, Outcome, ProductKind, Reason, Refusal, Report, Source,
};
use recharge_providers::{Answer, Expect, Provider, QueryRequest, SubmitRequest};
use secrecy::ExposeSecret;

/// What recording an event did.
#[derive(Debug)]
pub struct Step {
    pub order: Order,
    /// This call's write took effect (false: refused as duplicate/stale/conflicting/not allowed).
    pub applied: bool,
}

fn policy_account(order: &Order, event: &Event) -> Option<recharge_core::ProviderAccountId> {
    match event {
        Event::OpenAttempt { route } => Some(route.provider_account.clone()),
        Event::Outcome { attempt, .. }
        | Event::SubmitDeadlinePassed { attempt }
        | Event::VerificationExpired { attempt } => order
            .attempt(*attempt)
            .map(|a| a.route().provider_account.clone()),
        Event::UnverifiedResult { attempt, .. } => order
            .attempt(*attempt)
            .map(|a| a.route().provider_account.clone()),
        Event::RoutesExhausted { .. } | Event::Notified { .. } | Event::NotifyClaimed { .. } => {
            order
                .last_attempt()
                .map(|a| a.route().provider_account.clone())
        }
    }
}

/// Records `event` on `order` and follows up with an alert per anomaly. A public change makes the merchant's
/// notification due (the write itself sets it); nothing here sends it.
pub async fn apply_event(
    state: &AppState,
    order: Order,
    event: Event,
    detail: Option<String>,
) -> Result<Step, StoreError> {
    let now = state.clock.now();
    let account = policy_account(&order, &event);
    if let Some(a) = &account
        && let Err(e) = state.ensure_accounts([a]).await
    {
        // Its timing is then the default policy's: logged, as the event is recorded either way.
        tracing::warn!(order_id = %order.id(), provider_account = %a, error = %e, "provider account not loaded for its policy");
    }
    let policy = account.map(|a| state.policy(&a)).unwrap_or_default();
    match record(&*state.store, order, &event, now, &policy, detail).await? {
        Recorded::Applied(applied) => {
            let o = &applied.order;
            tracing::info!(
                order_id = %o.id(),
                app = %o.app_id(),
                version = o.version(),
                status = o.public_view().status.as_str(),
                change = %applied.summary,
                "order changed"
            );
            for a in &applied.anomalies {
                let account = o
                    .attempt(a.attempt)
                    .map(|x| x.route().provider_account.to_string());
                // The alarm's metric: one per anomaly, with the order and provider account for the on-call.
                tracing::error!(
                    alert = "order_anomaly",
                    anomaly = a.kind.as_str(),
                    order_id = %o.id(),
                    attempt = a.attempt.get(),
                    provider_account = account.as_deref().unwrap_or("?"),
                    "order anomaly"
                );
            }
            Ok(Step {
                order: applied.order,
                applied: true,
            })
        }
        Recorded::Refused { order, refusal } => {
            match &refusal {
                Refusal::Conflicting => tracing::error!(
                    alert = "conflicting_result",
                    order_id = %order.id(),
                    event = ?event_name(&event),
                    "an event contradicts the order's final result; ignored"
                ),
                other => {
                    tracing::debug!(order_id = %order.id(), refusal = %other, "event changes nothing")
                }
            }
            Ok(Step {
                order: *order,
                applied: false,
            })
        }
    }
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Outcome { .. } => "outcome",
        Event::SubmitDeadlinePassed { .. } => "submit_deadline_passed",
        Event::VerificationExpired { .. } => "verification_expired",
        Event::OpenAttempt { .. } => "open_attempt",
        Event::RoutesExhausted { .. } => "routes_exhausted",
        Event::Notified { .. } => "notified",
        Event::NotifyClaimed { .. } => "notify_claimed",
        Event::UnverifiedResult { .. } => "unverified_result",
    }
}

/// Signs the order's current view and POSTs it to its notify URL once (no recording, no schedule).
pub async fn deliver_view(state: &AppState, order: &Order) -> Delivery {
    let Some(url) = order.notify_url().map(str::to_owned) else {
        return Delivery::Failed("the order has no notify_url".to_owned());
    };
    let now = state.clock.now();
    let body = serde_json::to_vec(&OrderView::of(order)).unwrap_or_default();
    match state.apps.get(order.app_id()).await {
        Ok(Some(app)) => match state.apps.keys(&app).await {
            Ok(keys) => {
                let ts = now.seconds();
                let sig = notify::signature(
                    keys.current.app_secret.expose_secret().as_bytes(),
                    ts,
                    &body,
                );
                let headers = vec![
                    (notify::HEADER_TIMESTAMP.to_owned(), ts.to_string()),
                    (notify::HEADER_SIGNATURE.to_owned(), sig),
                ];
                state.notifier.deliver(&url, &headers, &body).await
            }
            Err(e) => Delivery::Failed(format!("merchant secret: {e}")),
        },
        Ok(None) => Delivery::Failed("app no longer configured".to_owned()),
        Err(e) => Delivery::Failed(format!("app store: {e}")),
    }
}

/// Sends the merchant the order's current view if its notification is due now, and records the result. The
/// notification is claimed first (`Event::NotifyClaimed`, one conditional write holding it for
/// `settings.notify_lease`): a sender that loses the claim, or finds it held, sends nothing, so the same
/// (order, sequence) is never sent by two senders at once. The try costs at most the notifier's timeout.
pub async fn notify_merchant(state: &AppState, order: Order) -> Result<Order, StoreError> {
    let now = state.clock.now();
    if order.notify_url().is_none() || order.notify_due_at().is_none_or(|t| t > now) {
        return Ok(order);
    }
    let claim = Event::NotifyClaimed {
        sequence: order.sequence(),
        until: now.plus(state.settings.notify_lease),
    };
    let order = match record(&*state.store, order, &claim, now, &Default::default(), None).await? {
        Recorded::Applied(a) => a.order,
        // Another sender holds it, or it changed under us (a newer sequence is due on its own).
        Recorded::Refused { order, .. } => return Ok(*order),
    };
    let delivery = deliver_view(state, &order).await;
    let now = state.clock.now();
    let sequence = order.sequence();
    let (delivered, retry_at) = match &delivery {
        Delivery::Acknowledged => (true, None),
        Delivery::Failed(why) => {
            let retry = notify::retry_delay(order.notify_attempts() + 1, state.settings.time_scale)
                .map(|d| now.plus(d));
            tracing::warn!(
                order_id = %order.id(),
                sequence,
                tries = order.notify_attempts() + 1,
                reason = %why,
                gave_up = retry.is_none(),
                "merchant notification failed"
            );
            (false, retry)
        }
    };
    let event = Event::Notified {
        sequence,
        delivered,
        retry_at,
    };
    let now = state.clock.now();
    match record(&*state.store, order, &event, now, &Default::default(), None).await? {
        Recorded::Applied(a) => Ok(a.order),
        Recorded::Refused { order, .. } => Ok(*order),
    }
}

/// The submit request of attempt `no` as its provider gets it: the route's product, the order's account and
/// the extras the catalog allowed, and the product kind, which the adapter uses where its protocol encodes
/// the account by kind.
fn submit_request(state: &AppState, order: &Order, no: AttemptNo) -> Option<SubmitRequest> {
    let route = order.attempt(no)?.route().clone();
    let kind = state
        .catalog
        .product(order.product_code())
        .map(|p| p.kind)
        // An order whose product left the catalog keeps its provider's view of it: a plain account.
        .unwrap_or(ProductKind::Game);
    Some(SubmitRequest {
        attempt: order.attempt_id(no),
        callback_url: Some(state.callback_url(&route.provider_account)),
        route,
        kind,
        account: order.account().to_owned(),
        face_value: order.face_value(),
        extra: order.extra().clone(),
    })
}

/// Records a provider's answer about attempt `no`, from `source`.
pub async fn record_answer(
    state: &AppState,
    order: Order,
    no: AttemptNo,
    source: Source,
    answer: Answer,
) -> Result<Step, StoreError> {
    let detail = findings_detail(&answer.report);
    let event = Event::Outcome {
        attempt: no,
        source,
        outcome: answer.outcome,
        report: answer.report,
    };
    apply_event(state, order, event, detail).await
}

/// The findings of a report as one audit line for the operator, if there are any.
fn findings_detail(report: &Report) -> Option<String> {
    if report.findings.is_empty() {
        return None;
    }
    let lines: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{}: {f}", f.as_str()))
        .collect();
    Some(lines.join("; "))
}

/// Sends the open `Submitting` attempt to its provider and records the answer. Call only right after this
/// process wrote that `Submitting` state (create or failover): the write precedes the call (invariant 1).
pub async fn submit_open_attempt(state: &AppState, order: Order) -> Result<Order, StoreError> {
    let Some(attempt) = order
        .open_attempt()
        .filter(|a| a.state() == &AttemptState::Submitting)
    else {
        return Ok(order);
    };
    let no = attempt.no();
    let account = attempt.route().provider_account.clone();
    let attempt_id = order.attempt_id(no);
    let answer = match (
        state.provider(&account).await,
        submit_request(state, &order, no),
    ) {
        (Some(provider), Some(req)) => {
            provider
                .submit(&state.executor, &req, state.clock.now())
                .await
        }
        // Nothing was sent: a definite refusal.
        (None, _) | (_, None) => Answer::from(Outcome::Rejected {
            failover_allowed: true,
            reason: Reason::new("account_not_loaded", "provider account is not configured"),
        }),
    };
    tracing::info!(
        order_id = %order.id(),
        attempt_id = %attempt_id,
        provider_account = %account,
        account = %mask(order.account()),
        outcome = outcome_name(&answer.outcome),
        "submit"
    );
    Ok(record_answer(state, order, no, Source::Submit, answer)
        .await?
        .order)
}

pub fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Accepted { .. } => "accepted",
        Outcome::ActionRequired { .. } => "action_required",
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::PartiallySucceeded { .. } => "partially_succeeded",
        Outcome::Failed { .. } => "failed",
        Outcome::Rejected { .. } => "rejected",
        Outcome::Unknown { .. } => "unknown",
        Outcome::NotFound => "not_found",
        Outcome::Reversed { .. } => "reversed",
    }
}

/// While the last attempt definitely failed and failover is allowed: open the next route and submit it, or
/// declare the routes exhausted. Only the writer whose `OpenAttempt` applied submits.
pub async fn advance(state: &AppState, order: Order) -> Result<Order, StoreError> {
    let mut order = order;
    for _ in 0..recharge_core::AttemptNo::MAX {
        if !order.awaiting_failover() {
            break;
        }
        let Some(product) = state.catalog.product(order.product_code()) else {
            let reason = Reason::new("product_unavailable", "product no longer in the catalog");
            order = apply_event(state, order, Event::RoutesExhausted { reason }, None)
                .await?
                .order;
            break;
        };
        let carrier = validate_account(product, order.account())
            .ok()
            .and_then(|t| t.carrier);
        let tried: Vec<_> = order
            .attempts()
            .iter()
            .map(|a| a.route().provider_account.clone())
            .collect();
        // The remaining candidates, loaded where accounts load on first use. If their credentials cannot be
        // read now, the order stays awaiting failover for the sweep, as after a crash here: routing must
        // not call the routes exhausted because Secrets Manager failed.
        state
            .ensure_accounts(product.routes.iter().map(|r| &r.provider_account))
            .await
            .map_err(|e| StoreError::Unavailable {
                operation: "failover: reading provider credentials",
                source: Box::new(e),
            })?;
        let balances = state.known_balances().await;
        let controls = state.account_controls().await;
        let decision = route_choice::choose(
            &state.catalog,
            product,
            carrier,
            &tried,
            &crate::state::RuntimeAccounts {
                providers: &state.providers,
                controls: &controls,
            },
            &balances,
        );
        tracing::info!(order_id = %order.id(), skipped = ?decision.skipped, chosen = ?decision.route.as_ref().map(|r| r.provider_account.to_string()), "failover routing");
        match decision.route {
            Some(route) => {
                let step = apply_event(state, order, Event::OpenAttempt { route }, None).await?;
                order = if step.applied {
                    submit_open_attempt(state, step.order).await?
                } else {
                    step.order
                };
            }
            None => {
                let reason = Reason::new("no_route", "no further provider route");
                order = apply_event(state, order, Event::RoutesExhausted { reason }, None)
                    .await?
                    .order;
            }
        }
    }
    Ok(order)
}

/// Queries the provider about an open attempt and records the answer (a query also moves the poll schedule).
/// On a provider that refuses reused ids, an attempt that keeps answering "not found" past the grace window is
/// then probed by resubmitting the same attempt id (docs/providers/README.md §4 rule 4).
pub async fn query_attempt(
    state: &AppState,
    order: Order,
    no: AttemptNo,
) -> Result<Order, StoreError> {
    let Some(attempt) = order.attempt(no) else {
        return Ok(order);
    };
    let account = attempt.route().provider_account.clone();
    let provider_ref = attempt.provider_ref().map(str::to_owned);
    let attempt_id = order.attempt_id(no);
    let provider = state.provider(&account).await;
    let answer = match (provider.as_deref(), Expect::of(&order, no)) {
        (None, _) | (_, None) => Answer::from(Outcome::Unknown {
            reason: Reason::new("account_not_loaded", "provider account is not configured"),
        }),
        (Some(provider), Some(_))
            if !provider.capabilities().query_by_our_id && provider_ref.is_none() =>
        {
            Answer::from(Outcome::Unknown {
                reason: Reason::new(
                    "no_query",
                    "the provider cannot be queried for this order; waiting for its callback",
                ),
            })
        }
        (Some(provider), Some(expect)) => {
            let req = QueryRequest {
                attempt: attempt_id.clone(),
                provider_ref,
            };
            provider
                .query(&state.executor, &req, &expect, state.clock.now())
                .await
        }
    };
    tracing::info!(
        order_id = %order.id(),
        attempt_id = %attempt_id,
        provider_account = %account,
        outcome = outcome_name(&answer.outcome),
        "query"
    );
    let order = record_answer(state, order, no, Source::Query, answer)
        .await?
        .order;
    match provider.as_deref() {
        Some(p)
            if state
                .policy(&account)
                .probe_due(&order, no, state.clock.now()) =>
        {
            probe_attempt(state, p, order, no).await
        }
        Some(_) | None => Ok(order),
    }
}

/// Resubmits attempt `no` under its own id to the same account and records what that tells.
async fn probe_attempt(
    state: &AppState,
    provider: &Provider,
    order: Order,
    no: AttemptNo,
) -> Result<Order, StoreError> {
    let Some(req) = submit_request(state, &order, no) else {
        return Ok(order);
    };
    let answer = provider
        .probe(&state.executor, &req, state.clock.now())
        .await;
    tracing::warn!(
        order_id = %order.id(),
        attempt_id = %req.attempt,
        provider_account = %provider.account.id,
        outcome = outcome_name(&answer.outcome),
        "probe: resubmitted the same attempt id after repeated not-found answers"
    );
    Ok(record_answer(state, order, no, Source::Submit, answer)
        .await?
        .order)
}

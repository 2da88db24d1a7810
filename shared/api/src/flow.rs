//! The order flows every entry point shares: record an event and follow up on it (notify the merchant, alert
//! anomalies), submit an attempt, fail over, query a provider. Each writes through `store::record`, so a
//! racing callback, sweep or retry takes effect once or is refused as a duplicate.
//!
//! Logs name the order, the attempt, the provider account and the outcome; the recharge account is masked.

use crate::catalog::validate_account;
use crate::notify::{self, Delivery};
use crate::routing;
use crate::state::AppState;
use crate::view::OrderView;
use recharge_core::mask::mask;
use recharge_core::secrets::{MerchantSecret, parse_json};
use recharge_core::store::{Recorded, StoreError, record};
use recharge_core::{AttemptNo, AttemptState, Event, Order, Outcome, Reason, Refusal, Source};
use recharge_providers::{QueryRequest, RequestContext, SubmitRequest};
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
        Event::RoutesExhausted { .. } | Event::Notified { .. } => order
            .last_attempt()
            .map(|a| a.route().provider_account.clone()),
    }
}

/// Records `event` on `order` and follows up: an alert per anomaly, a merchant notification on a public change.
pub async fn apply_event(
    state: &AppState,
    order: Order,
    event: Event,
    detail: Option<String>,
) -> Result<Step, StoreError> {
    let now = state.clock.now();
    let policy = policy_account(&order, &event)
        .map(|a| state.policy(&a))
        .unwrap_or_default();
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
            let order = applied.order;
            let order = if applied.public_changed {
                notify_merchant(state, order).await?
            } else {
                order
            };
            Ok(Step {
                order,
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
    }
}

/// Signs the order's current view and POSTs it to its notify URL once (no recording, no schedule).
pub async fn deliver_view(state: &AppState, order: &Order) -> Delivery {
    let Some(url) = order.notify_url().map(str::to_owned) else {
        return Delivery::Failed("the order has no notify_url".to_owned());
    };
    let now = state.clock.now();
    let body = serde_json::to_vec(&OrderView::of(order)).unwrap_or_default();
    match state.apps.get(order.app_id()) {
        Some(app) => {
            let name = state.apps.secret_name(app);
            match state
                .secrets
                .fetch(&name)
                .await
                .and_then(|v| parse_json::<MerchantSecret>(&name, &v))
            {
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
            }
        }
        None => Delivery::Failed("app no longer configured".to_owned()),
    }
}

/// Sends the merchant the order's current view if a notification is due, and records the result.
pub async fn notify_merchant(state: &AppState, order: Order) -> Result<Order, StoreError> {
    if order.notify_url().is_none() || order.notify_due_at().is_none() {
        return Ok(order);
    }
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
    let route = attempt.route().clone();
    let attempt_id = order.attempt_id(no);
    let outcome = match state.providers.get(&route.provider_account) {
        None => Outcome::Rejected {
            failover_allowed: true,
            reason: Reason::new("account_not_loaded", "provider account is not configured"),
        },
        Some(provider) => {
            let (account, extra) = provider_fields(state, &order, provider.account.protocol);
            let req = SubmitRequest {
                attempt: attempt_id.clone(),
                route: route.clone(),
                account,
                face_value: order.face_value(),
                extra,
                callback_url: Some(state.callback_url(&route.provider_account)),
            };
            match RequestContext::fresh(state.clock.now())
                .and_then(|ctx| provider.adapter.build_submit(&req, &ctx))
            {
                Ok(http) => {
                    state
                        .executor
                        .call(&http, &provider.account.limits(), |r| {
                            provider.adapter.parse_submit(r)
                        })
                        .await
                }
                // Nothing was sent, so nothing can have been charged: a definite refusal.
                Err(e) => Outcome::Rejected {
                    failover_allowed: true,
                    reason: Reason::new("request_not_built", e.to_string()),
                },
            }
        }
    };
    tracing::info!(
        order_id = %order.id(),
        attempt_id = %attempt_id,
        provider_account = %route.provider_account,
        account = %mask(order.account()),
        outcome = outcome_name(&outcome),
        "submit"
    );
    let event = Event::Outcome {
        attempt: no,
        source: Source::Submit,
        outcome,
    };
    Ok(apply_event(state, order, event, None).await?.order)
}

/// The account and extras as the provider's protocol wants them. Electricity on the 001 family is the one
/// case where they differ from what the merchant sent: the seed's `account` is a JSON object built from the
/// 户号 and the region, and `areaid` carries the contact phone (PROVIDERS 001, electricity example).
fn provider_fields(
    state: &AppState,
    order: &Order,
    protocol: recharge_providers::Protocol,
) -> (String, std::collections::BTreeMap<String, String>) {
    let kind = state.catalog.product(order.product_code()).map(|p| p.kind);
    let mut extra = order.extra().clone();
    match (kind, protocol) {
        (Some(crate::catalog::ProductKind::Electricity), recharge_providers::Protocol::SukaXml) => {
            let get = |k: &str| order.extra().get(k).map(String::as_str).unwrap_or("");
            let account = recharge_providers::suka_xml::electricity_account(
                order.account(),
                get("username"),
                order.extra().get("type").map(String::as_str).unwrap_or("1"),
                get("area"),
                get("city"),
            );
            if let Some(phone) = order.extra().get("phone") {
                extra.insert("areaid".to_owned(), phone.clone());
            }
            (account, extra)
        }
        _ => (order.account().to_owned(), extra),
    }
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
        let balances = state.known_balances().await;
        let controls = state.account_controls().await;
        let decision = routing::choose(
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
    let outcome = match state.providers.get(&account) {
        None => Outcome::Unknown {
            reason: Reason::new("account_not_loaded", "provider account is not configured"),
        },
        Some(provider) if !provider.capabilities().query_by_our_id && provider_ref.is_none() => {
            Outcome::Unknown {
                reason: Reason::new(
                    "no_query",
                    "the provider cannot be queried for this order; waiting for its callback",
                ),
            }
        }
        Some(provider) => {
            let req = QueryRequest {
                attempt: attempt_id.clone(),
                provider_ref,
            };
            match RequestContext::fresh(state.clock.now())
                .and_then(|ctx| provider.adapter.build_query(&req, &ctx))
            {
                Ok(http) => {
                    state
                        .executor
                        .call(&http, &provider.account.limits(), |r| {
                            provider.adapter.parse_query(r)
                        })
                        .await
                }
                Err(e) => Outcome::Unknown {
                    reason: Reason::new("query_not_built", e.to_string()),
                },
            }
        }
    };
    tracing::info!(
        order_id = %order.id(),
        attempt_id = %attempt_id,
        provider_account = %account,
        outcome = outcome_name(&outcome),
        "query"
    );
    let event = Event::Outcome {
        attempt: no,
        source: Source::Query,
        outcome,
    };
    Ok(apply_event(state, order, event, None).await?.order)
}

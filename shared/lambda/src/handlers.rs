//! The three handler shapes, and how their failures reach Lambda.
//!
//! Error mapping, on purpose:
//! - HTTP functions never fail the invocation for a request problem: `routes::handle` already answers every
//!   request (4xx with a stable code, or the provider's own "retry" acknowledgement). A failed invocation would
//!   reach the caller as API Gateway's bare 500. (An event `lambda_http` cannot turn into a request never
//!   reaches them: see [`crate::apigw`].)
//! - Schedule functions fail the invocation only when the whole run could not work (the order store was
//!   unreachable for every shard): `Retryable.StoreUnavailable`, which shows in the Lambda `Errors` metric and
//!   alarm. Partial failures are retried by the next run (every minute / 5 minutes), so they are reported
//!   and counted, not raised. An event that is not an EventBridge scheduled event is `Permanent.BadEvent`:
//!   retrying it cannot help. The template sets `MaximumRetryAttempts: 0` for both, because the schedule is
//!   the retry and an async retry would only overlap the next run.

use crate::apigw::{RawResponse, from_api_response, http_context, to_api_request};
use crate::bootstrap::Service;
use lambda_http::{Body, Request, Response};
use lambda_runtime::{Diagnostic, LambdaEvent};
use recharge_api::ApiError;
use recharge_api::http::routes;
use recharge_api::usecases::operator::Principal;
use recharge_api::usecases::{balance_check, ops, sweep};
use recharge_core::store::OrderFilter;
use serde_json::{Value, json};
use std::sync::Arc;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// Retrying the same event cannot succeed.
    #[error("bad event: {0}")]
    BadEvent(String),
    /// The order store was unreachable; the next run (or a retry) may succeed.
    #[error("order store unavailable: {0}")]
    StoreUnavailable(String),
}

impl InvocationError {
    pub fn is_retryable(&self) -> bool {
        match self {
            InvocationError::BadEvent(_) => false,
            InvocationError::StoreUnavailable(_) => true,
        }
    }

    /// The `errorType` Lambda records: `Retryable.*` or `Permanent.*`, so a log filter or a future
    /// destination can tell them apart without parsing messages.
    pub fn error_type(&self) -> &'static str {
        match self {
            InvocationError::BadEvent(_) => "Permanent.BadEvent",
            InvocationError::StoreUnavailable(_) => "Retryable.StoreUnavailable",
        }
    }
}

impl From<InvocationError> for Diagnostic {
    fn from(e: InvocationError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// `submit-order`, `order-status`, `provider-callback`: one API Gateway HTTP API request, as `lambda_http`
/// hands it over.
pub async fn http(service: &Service, req: Request) -> Result<RawResponse, InvocationError> {
    Ok(RawResponse(http_request(service, req).await))
}

/// The HTTP handler without the Lambda envelope (tests call this with the events of `events/`).
pub async fn http_request(service: &Service, req: Request) -> Response<Body> {
    let resp = routes::handle(&service.state, to_api_request(req)).await;
    if resp.status >= 500 {
        service.metrics.function_error();
    }
    service.metrics.unlisted_codes();
    service.metrics.provider_latency();
    from_api_response(resp).0
}

/// `ops`: one request of an operator, authorised by API Gateway's `AWS_IAM` authorizer (SigV4 with the
/// operator's AWS credentials). The verified caller ARN is the principal; an event without one reached the
/// function through a route without the authorizer, a wiring mistake, and is refused.
pub async fn ops(service: &Service, req: Request) -> Result<RawResponse, InvocationError> {
    Ok(RawResponse(ops_request(service, req).await))
}

pub async fn ops_request(service: &Service, req: Request) -> Response<Body> {
    let principal = http_context(&req)
        .and_then(|c| c.authorizer.as_ref())
        .and_then(|a| a.iam.as_ref())
        .and_then(|iam| iam.user_arn.clone())
        .filter(|arn| !arn.is_empty());
    let req = to_api_request(req);
    let resp = match principal {
        Some(arn) if req.path.starts_with("/ops/") => {
            ops::handle(&service.state, &req, &Principal::Iam(arn)).await
        }
        Some(_) => ApiError::RouteNotFound.to_response(),
        None => {
            tracing::error!(
                "ops request without an IAM principal: the route lacks the AWS_IAM authorizer"
            );
            ApiError::Forbidden("ops routes need an IAM-signed request").to_response()
        }
    };
    if resp.status >= 500 {
        service.metrics.function_error();
    }
    service.metrics.provider_latency();
    from_api_response(resp).0
}

/// Accepts EventBridge scheduled events (and a bare `{}` from a manual test invoke); anything else is a
/// wiring mistake.
fn check_schedule(payload: &Value) -> Result<(), InvocationError> {
    match payload.get("detail-type").and_then(Value::as_str) {
        Some("Scheduled Event") => Ok(()),
        None if payload.as_object().is_some_and(|o| o.is_empty()) => Ok(()),
        Some(other) => Err(InvocationError::BadEvent(format!(
            "detail-type {other:?} is not a scheduled event"
        ))),
        None => Err(InvocationError::BadEvent(
            "not an EventBridge scheduled event".to_owned(),
        )),
    }
}

/// `reconcile`: one sweep over every shard of the due index.
pub async fn reconcile(
    service: &Service,
    event: LambdaEvent<Value>,
) -> Result<Value, InvocationError> {
    reconcile_event(service, &event.payload).await
}

pub async fn reconcile_event(service: &Service, payload: &Value) -> Result<Value, InvocationError> {
    // The daily rule's constant input (docs/reconciliation.md §3): the reconciliation mode.
    if let Some(mode) = payload.get("recon") {
        return daily_recon(service, mode).await;
    }
    if let Err(e) = check_schedule(payload) {
        service.metrics.function_error();
        return Err(e);
    }
    let started = std::time::Instant::now();
    let report = sweep::sweep(Arc::clone(&service.state)).await;
    service.metrics.unlisted_codes();
    service.metrics.provider_latency();
    if report.errors > 0 {
        service.metrics.function_error();
    }
    let queue = operator_queue(service).await;
    // No order read at all, and errors: the due index itself was unreachable.
    if report.errors > 0 && report.due == 0 {
        return Err(InvocationError::StoreUnavailable(format!(
            "{} shard queries failed",
            report.errors
        )));
    }
    // The sweep's leftover time continues an unfinished daily re-query (docs/reconciliation.md §3).
    let recon = continue_recon(service, started).await;
    Ok(json!({ "sweep": report, "operator_queue": queue, "recon": recon }))
}

/// Days (today, yesterday, the day before) whose unfinished re-query the minute tick continues.
const RECON_CONTINUE_DAYS: u32 = 3;

/// Spends what is left of the tick's re-query budget on the days whose re-query has attempts remaining, and
/// emits their `ReconMismatches`. A store failure is logged and counted, never fails the sweep's invocation.
async fn continue_recon(service: &Service, started: std::time::Instant) -> Value {
    let state = &service.state;
    let options = &state.settings.recon;
    let deadline = started + options.requery_budget;
    if deadline.saturating_duration_since(std::time::Instant::now())
        < std::time::Duration::from_secs(2)
    {
        return Value::Null;
    }
    match recharge_api::usecases::recon::continue_unfinished(
        state,
        RECON_CONTINUE_DAYS,
        options,
        deadline,
    )
    .await
    {
        Ok(reports) => {
            for r in &reports {
                service
                    .metrics
                    .recon_mismatches(r.account.as_str(), r.alarming());
            }
            Value::Array(
                reports
                    .iter()
                    .map(|r| {
                        json!({"account": r.account.as_str(), "date": r.date,
                               "remaining": r.requery.remaining, "alarming": r.alarming()})
                    })
                    .collect(),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "reconciliation continuation failed");
            service.metrics.function_error();
            Value::Null
        }
    }
}

/// The daily reconciliation (docs/reconciliation.md): `{"recon": "daily"}` reconciles yesterday in the
/// configured offset, `{"recon": {"date": "YYYY-MM-DD"}}` a given day. One `ReconMismatches` figure per
/// account; a store failure fails the invocation.
async fn daily_recon(service: &Service, mode: &Value) -> Result<Value, InvocationError> {
    let state = &service.state;
    let offset = state.settings.recon_utc_offset_minutes;
    let day = match mode {
        Value::String(s) if s == "daily" => {
            recharge_core::recon::ReconDay::containing(state.clock.now(), offset).previous()
        }
        other => match other.get("date").and_then(Value::as_str) {
            Some(date) => recharge_core::recon::ReconDay::parse(date, offset)
                .map_err(|e| InvocationError::BadEvent(e.to_string()))?,
            None => {
                return Err(InvocationError::BadEvent(
                    "recon: \"daily\" or {\"date\": \"YYYY-MM-DD\"}".to_owned(),
                ));
            }
        },
    };
    let reports = recharge_api::usecases::recon::run(state, day, None, &state.settings.recon)
        .await
        .map_err(|e| {
            service.metrics.function_error();
            InvocationError::StoreUnavailable(format!("reconciliation of {}: {e}", day.date()))
        })?;
    let mut summary = Vec::new();
    for r in &reports {
        service
            .metrics
            .recon_mismatches(r.account.as_str(), r.alarming());
        summary.push(
            json!({"account": r.account.as_str(), "mismatches": r.mismatches.len(),
                            "alarming": r.alarming(), "requery_remaining": r.requery.remaining}),
        );
    }
    Ok(json!({"recon": {"date": day.date(), "reports": summary}}))
}

/// Counts the operator queue (docs/operations.md §2: nothing is open without someone being told) after each sweep and
/// emits `OperatorQueue`, which the template alarms on. Counted up to `QUEUE_COUNT_CAP`, one page of the
/// attention index per shard at a time; a store failure is logged and counts as an error, not as zero.
pub async fn operator_queue(service: &Service) -> Option<usize> {
    const QUEUE_COUNT_CAP: usize = 10_000;
    let state = &service.state;
    let now = state.clock.now();
    let filter = OrderFilter {
        needs_operator: true,
        ..OrderFilter::default()
    };
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        match state.store.list(&filter, now, 200, after.as_deref()).await {
            Ok(page) => {
                count += page.orders.len();
                match page.next {
                    Some(next) if count < QUEUE_COUNT_CAP => after = Some(next),
                    _ => break,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "operator queue unreadable");
                service.metrics.function_error();
                return None;
            }
        }
    }
    service.metrics.operator_queue(count);
    if count > 0 {
        tracing::warn!(
            alert = "operator_queue",
            orders = count,
            "orders need an operator"
        );
    }
    Some(count)
}

/// `check-balance`: every account with a balance API, snapshots stored, low balances alarmed.
pub async fn check_balance(
    service: &Service,
    event: LambdaEvent<Value>,
) -> Result<Value, InvocationError> {
    check_balance_event(service, &event.payload).await
}

pub async fn check_balance_event(
    service: &Service,
    payload: &Value,
) -> Result<Value, InvocationError> {
    if let Err(e) = check_schedule(payload) {
        service.metrics.function_error();
        return Err(e);
    }
    let report = balance_check::check_balances(&service.state).await;
    service.metrics.provider_latency();
    for account in &report.low {
        service.metrics.low_balance(account);
    }
    match service.state.balances.balances().await {
        Ok(snapshots) => {
            for s in snapshots {
                if report.checked.iter().any(|c| c == s.account.as_str()) {
                    service.metrics.balance(s.account.as_str(), s.balance.get());
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "balance snapshots unreadable after the check"),
    }
    if !report.failed.is_empty() {
        service.metrics.function_error();
    }
    Ok(json!({ "balances": report }))
}

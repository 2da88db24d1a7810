//! The operators' API (docs/operations.md §1): every order has an owner. Routes under `/ops/`, served in AWS by the
//! `ops` function behind the HTTP API's `AWS_IAM` authorizer (operators sign with their AWS credentials; the caller's
//! ARN is the principal), and in the local stack by the router, authorised by an admin app's HMAC signature.
//!
//! | route | what | DynamoDB round trips |
//! |---|---|---|
//! | `GET /ops/orders?…` | list by status, provider account, app, age, queue; paged | 1 Query per index partition per page |
//! | `GET /ops/orders?app=A&merchant_order_no=N`, `?attempt_id=I` | look one up | 1 GetItem (the id is derived) |
//! | `GET /ops/orders/{order_id}` | the order, its attempts and audit trail (masked) | 1 GetItem + 1 Query |
//! | `POST /ops/orders/{order_id}/query` | query the open attempt now | 1 GetItem + the writes of a query |
//! | `POST /ops/orders/{order_id}/resolve` | an operator's outcome, with evidence | 1 GetItem + 1 UpdateItem (+ notification) |
//! | `POST /ops/orders/{order_id}/notify` | redeliver the merchant notification now | 1 GetItem (+ 1 write when acknowledged) |
//! | `GET /ops/notifications?abandoned=true` | abandoned notifications | 1 Query per shard per page |
//! | `GET /ops/balances` | last known balance of every provider account | 1 Query (the balance partition) |
//! | `GET /ops/accounts`, `GET /ops/accounts/{id}` | every account's runtime control | 1 Query (the config partition) + 1 Query (balances) |
//! | `PUT /ops/accounts/{id}` | enable, disable, drain; thresholds; code overrides | 1 Query + 1 PutItem |
//! | `GET /ops/apps`, `GET /ops/apps/{id}` | merchant apps (seed and table), no secrets | 1 Query / 1 GetItem |
//! | `POST /ops/apps` | a new app; its secret created in Secrets Manager and shown once | 1 GetItem + 2 PutItem + 1 CreateSecret |
//! | `PUT /ops/apps/{id}` | disable, enable, rotate (previous secret verifies for a grace period) | 1 GetItem + 1 PutItem (+ 1 PutSecretValue) |
//! | `POST /ops/recon/run` | run the daily reconciliation now (docs/reconciliation.md) | see `recon` |
//! | `GET /ops/recon?date=D&account=ID` | stored reports of a day | 1 Query per account |
//! | `GET /ops/recon/mismatches?date=D&account=ID&kind=K&state=S` | their mismatches, open or settled, with each order's status now | 1 Query per account + 1 BatchGetItem per 100 orders |
//! | `POST /ops/recon/mismatches/settle` | an operator settles one mismatch, with note and evidence | 1 Query + 1 conditional PutItem |
//!
//! Every change goes through the state machine (`recharge_core::apply`) as any other event: an operator's
//! outcome is an `Event::Outcome` with `Source::Operator`, audited with who, why and the evidence.

use crate::http::error::ApiError;
use crate::http::view::{OrderView, merchant_failure, rfc3339};
use crate::http::{ApiRequest, ApiResponse};
use crate::state::AppState;
use crate::usecases::flow;
use crate::usecases::notify::Delivery;
use crate::usecases::operator::{Principal, mask_numbers, text_field};
use recharge_core::mask::mask;
use recharge_core::store::{AccountControl, AccountMode, OrderFilter, OrderSummary, valid_cursor};
use recharge_core::{
    AppId, AttemptId, AttemptNo, AttemptState, Attention, Event, Fen, MerchantOrderNo, Order,
    OrderId, Outcome, ProviderAccountId, PublicStatus, Reason, Refusal, Source, Timestamp,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// The ops routes, as `recharge_api::http::routes::ROUTES` lists them (function `ops`).
pub const OPS_ROUTES: &[(&str, &str)] = &[
    ("GET", "/ops/orders"),
    ("GET", "/ops/orders/{order_id}"),
    ("POST", "/ops/orders/{order_id}/query"),
    ("POST", "/ops/orders/{order_id}/resolve"),
    ("POST", "/ops/orders/{order_id}/notify"),
    ("GET", "/ops/notifications"),
    ("GET", "/ops/balances"),
    ("GET", "/ops/accounts"),
    ("GET", "/ops/accounts/{provider_account}"),
    ("PUT", "/ops/accounts/{provider_account}"),
    ("GET", "/ops/apps"),
    ("POST", "/ops/apps"),
    ("GET", "/ops/apps/{app_id}"),
    ("PUT", "/ops/apps/{app_id}"),
    ("POST", "/ops/recon/run"),
    ("GET", "/ops/recon"),
    ("GET", "/ops/recon/mismatches"),
    ("POST", "/ops/recon/mismatches/settle"),
];

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

/// Serves one `/ops/...` request of an authenticated operator.
pub async fn handle(state: &AppState, req: &ApiRequest, principal: &Principal) -> ApiResponse {
    match route(state, req, principal).await {
        Ok(resp) => resp,
        Err(e) => e.to_response(),
    }
}

async fn route(
    state: &AppState,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<ApiResponse, ApiError> {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let method = req.method.to_ascii_uppercase();
    let params = Params::parse(&req.raw_query);
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["ops", "orders"]) => list_orders(state, &params).await,
        ("GET", ["ops", "orders", id]) => show(state, &order_of(state, id).await?).await,
        ("POST", ["ops", "orders", id, "query"]) => {
            query_now(state, order_of(state, id).await?).await
        }
        ("POST", ["ops", "orders", id, "resolve"]) => {
            resolve(state, order_of(state, id).await?, &req.body, principal).await
        }
        ("POST", ["ops", "orders", id, "notify"]) => {
            redeliver(state, order_of(state, id).await?, principal).await
        }
        ("GET", ["ops", "notifications"]) => abandoned_notifications(state, &params).await,
        ("GET", ["ops", "accounts"]) => list_accounts(state).await,
        ("GET", ["ops", "accounts", id]) => show_account(state, id).await,
        ("PUT", ["ops", "accounts", id]) => put_account(state, id, &req.body, principal).await,
        ("GET", ["ops", "apps"]) => crate::usecases::ops_apps::list(state).await,
        ("POST", ["ops", "apps"]) => {
            crate::usecases::ops_apps::create(state, &req.body, principal).await
        }
        ("GET", ["ops", "apps", id]) => crate::usecases::ops_apps::show(state, id).await,
        ("PUT", ["ops", "apps", id]) => {
            crate::usecases::ops_apps::change(state, id, &req.body, principal).await
        }
        ("POST", ["ops", "recon", "run"]) => {
            crate::usecases::recon::ops_run(state, &req.body).await
        }
        ("GET", ["ops", "recon"]) => crate::usecases::recon::ops_show(state, &req.raw_query).await,
        ("GET", ["ops", "recon", "mismatches"]) => {
            crate::usecases::recon::ops_mismatches(state, &req.raw_query).await
        }
        ("POST", ["ops", "recon", "mismatches", "settle"]) => {
            crate::usecases::recon::ops_settle(state, &req.body, principal).await
        }
        (
            _,
            ["ops", "recon"]
            | ["ops", "recon", "run" | "mismatches"]
            | ["ops", "recon", "mismatches", "settle"],
        ) => Err(ApiError::MethodNotAllowed),
        ("GET", ["ops", "balances"]) => Ok(ApiResponse::json(
            200,
            &crate::usecases::orders::balances_json(state).await?,
        )),
        (
            _,
            [
                "ops",
                "orders" | "notifications" | "balances" | "accounts" | "apps",
            ]
            | ["ops", "orders" | "accounts" | "apps", _],
        )
        | (_, ["ops", "orders", _, "query" | "resolve" | "notify"]) => {
            Err(ApiError::MethodNotAllowed)
        }
        _ => Err(ApiError::RouteNotFound),
    }
}

/// The decoded query string.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: &str) -> Params {
        Params(
            url::form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(_) => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{name}: true or false"),
            )),
        }
    }

    fn page(&self) -> Result<(usize, Option<String>), ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_PAGE,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_parameter", format!("limit: 1 to {MAX_PAGE}"))
                })?,
        };
        let cursor = match self.get("cursor") {
            None => None,
            Some(c) if valid_cursor(c) => Some(c.to_owned()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "cursor: the `next` of a previous page",
                ));
            }
        };
        Ok((limit, cursor))
    }
}

fn invalid(name: &str, rule: &str) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("{name}: {rule}"))
}

/// `90`, `90s`, `30m`, `2h`, `3d`.
pub fn parse_age(text: &str) -> Option<Duration> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

async fn order_of(state: &AppState, id: &str) -> Result<Order, ApiError> {
    let id = OrderId::parse(id).map_err(|_| ApiError::OrderNotFound)?;
    state.store.get(&id).await?.ok_or(ApiError::OrderNotFound)
}

fn summary_json(s: &OrderSummary, now: Timestamp) -> Value {
    json!({
        "order_id": s.order_id.as_str(),
        "app": s.app.as_str(),
        "status": s.status.as_str(),
        "provider_account": s.provider_account.as_ref().map(ProviderAccountId::as_str),
        "product_code": s.product_code.as_str(),
        "created_at": rfc3339(s.created_at),
        "attention": s.attention.map(|(at, why)| json!({"since": rfc3339(at), "reason": why.as_str()})),
        "needs_operator": s.attention.is_some_and(|(at, _)| at <= now),
    })
}

fn page_json(orders: &[OrderSummary], next: Option<String>, now: Timestamp) -> Value {
    json!({
        "orders": orders.iter().map(|s| summary_json(s, now)).collect::<Vec<_>>(),
        "next": next,
    })
}

/// `GET /ops/orders`: a listing (`status`, `provider_account`, `app`, `older_than`, `needs_operator`,
/// `attention`, `limit`, `cursor`), or a lookup (`app` + `merchant_order_no`, or `attempt_id`).
async fn list_orders(state: &AppState, params: &Params) -> Result<ApiResponse, ApiError> {
    let now = state.clock.now();
    let app = params
        .get("app")
        .map(|a| AppId::parse(a).map_err(|_| invalid("app", "an app id")))
        .transpose()?;
    // Lookups: the id is derived, so one read.
    let lookup = match (params.get("merchant_order_no"), params.get("attempt_id")) {
        (Some(no), None) => {
            let app = app
                .clone()
                .ok_or_else(|| invalid("merchant_order_no", "needs app"))?;
            let no = MerchantOrderNo::parse(no)
                .map_err(|_| invalid("merchant_order_no", "a merchant order number"))?;
            Some(OrderId::derive(&app, &no))
        }
        (None, Some(attempt)) => {
            let attempt = AttemptId::parse(attempt).map_err(|e| invalid("attempt_id", e.rule))?;
            Some(attempt.order_id())
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "merchant_order_no",
                "give merchant_order_no or attempt_id, not both",
            ));
        }
        (None, None) => None,
    };
    if let Some(id) = lookup {
        let found: Vec<OrderSummary> = state
            .store
            .get(&id)
            .await?
            .map(|o| OrderSummary::of(&o))
            .into_iter()
            .collect();
        return Ok(ApiResponse::json(200, &page_json(&found, None, now)));
    }
    let status = params
        .get("status")
        .map(|s| {
            PublicStatus::parse(s).ok_or_else(|| {
                invalid(
                    "status",
                    "processing, action_required, succeeded, partially_succeeded, failed or reversed",
                )
            })
        })
        .transpose()?;
    let provider_account = params
        .get("provider_account")
        .map(|a| {
            ProviderAccountId::parse(a).map_err(|_| invalid("provider_account", "an account id"))
        })
        .transpose()?;
    let created_before = params
        .get("older_than")
        .map(|a| {
            parse_age(a)
                .map(|d| {
                    Timestamp::from_millis(
                        now.millis() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2),
                    )
                })
                .ok_or_else(|| invalid("older_than", "seconds, or a number with s, m, h or d"))
        })
        .transpose()?;
    let attention = params
        .get("attention")
        .map(|a| {
            Attention::parse(a)
                .ok_or_else(|| invalid("attention", "stuck_attempt or notification_abandoned"))
        })
        .transpose()?;
    let needs_operator = params.flag("needs_operator")? || attention.is_some();
    let (limit, cursor) = params.page()?;
    let filter = OrderFilter {
        status,
        needs_operator,
        attention,
        app,
        provider_account,
        created_before,
    };
    let page = state
        .store
        .list(&filter, now, limit, cursor.as_deref())
        .await?;
    Ok(ApiResponse::json(
        200,
        &page_json(&page.orders, page.next, now),
    ))
}

/// `GET /ops/notifications?abandoned=true`: orders whose merchant notification was given up, oldest first.
async fn abandoned_notifications(
    state: &AppState,
    params: &Params,
) -> Result<ApiResponse, ApiError> {
    if !params.flag("abandoned")? {
        return Err(invalid(
            "abandoned",
            "only abandoned notifications are listed: abandoned=true",
        ));
    }
    let now = state.clock.now();
    let (limit, cursor) = params.page()?;
    let filter = OrderFilter {
        needs_operator: true,
        attention: Some(Attention::NotificationAbandoned),
        ..OrderFilter::default()
    };
    let page = state
        .store
        .list(&filter, now, limit, cursor.as_deref())
        .await?;
    Ok(ApiResponse::json(
        200,
        &page_json(&page.orders, page.next, now),
    ))
}

fn reason_json(r: &Reason) -> Value {
    json!({"code": r.code, "message": r.message})
}

fn state_json(s: &AttemptState) -> Value {
    let mut v = json!({"state": s.name()});
    match s {
        AttemptState::Unknown { reason } | AttemptState::Reversed { reason } => {
            v["reason"] = reason_json(reason);
        }
        AttemptState::Rejected {
            failover_allowed,
            reason,
        }
        | AttemptState::Failed {
            failover_allowed,
            reason,
        } => {
            v["reason"] = reason_json(reason);
            v["failover_allowed"] = json!(failover_allowed);
        }
        AttemptState::PartiallySucceeded { delivered } => {
            v["delivered_fen"] = json!(delivered.get());
        }
        AttemptState::ActionRequired { next } => {
            v["next_action"] = serde_json::to_value(next).unwrap_or(Value::Null);
        }
        AttemptState::Submitting | AttemptState::Accepted | AttemptState::Succeeded => {}
    }
    v
}

/// The operators' view of one order: everything the merchant sees, plus every attempt with the provider's raw
/// codes, the anomalies, the notification state, the queue entry and the audit trail. Personal data masked.
pub fn ops_view(order: &Order, now: Timestamp) -> Value {
    let merchant = OrderView::of(order);
    let attempts: Vec<Value> = order
        .attempts()
        .iter()
        .map(|a| {
            json!({
                "attempt": a.no().get(),
                "attempt_id": order.attempt_id(a.no()).to_string(),
                "provider_account": a.route().provider_account.as_str(),
                "provider_product": a.route().provider_product,
                "cost_fen": a.route().cost.get(),
                "state": state_json(a.state()),
                "provider_ref": a.provider_ref(),
                "opened_at": rfc3339(a.opened_at()),
                "updated_at": rfc3339(a.updated_at()),
                "polls": a.polls(),
                "not_found_answers": a.not_found().map(|n| n.answers),
            })
        })
        .collect();
    let anomalies: Vec<Value> = order
        .anomalies()
        .iter()
        .map(|a| json!({"at": rfc3339(a.at), "attempt": a.attempt.get(), "kind": a.kind.as_str()}))
        .collect();
    json!({
        "order_id": order.id().as_str(),
        "app": order.app_id().as_str(),
        "merchant_order_no": order.merchant_order_no().as_str(),
        "product_code": order.product_code().as_str(),
        "account": mask(order.account()),
        "face_value_fen": order.face_value().get(),
        "status": merchant.status,
        "failure": merchant_failure(order).map(|f| json!({"code": f.code, "message": f.message})),
        "raw_failure": order.public_view().failure.as_ref().map(reason_json),
        "delivered_fen": merchant.delivered_fen,
        "routes_exhausted": order.routes_exhausted().map(reason_json),
        "created_at": rfc3339(order.created_at()),
        "updated_at": rfc3339(order.updated_at()),
        "version": order.version(),
        "sequence": order.sequence(),
        "escalate_after_secs": order.escalate_after().as_secs(),
        "attention": order.attention().map(|(at, why)| json!({"since": rfc3339(at), "reason": why.as_str()})),
        "needs_operator": order.needs_operator(now),
        "notification": {
            "notify_url": order.notify_url(),
            "notified_sequence": order.notified_sequence(),
            "failed_tries": order.notify_attempts(),
            "next_at": order.notify_due_at().map(rfc3339),
            "abandoned": order.notification_abandoned(),
        },
        "attempts": attempts,
        "anomalies": anomalies,
    })
}

async fn show(state: &AppState, order: &Order) -> Result<ApiResponse, ApiError> {
    let audit = state.store.audit_trail(order.id()).await?;
    let mut view = ops_view(order, state.clock.now());
    view["audit"] = Value::Array(
        audit
            .iter()
            .map(|e| {
                json!({
                    "version": e.version,
                    "at": rfc3339(e.at),
                    "summary": e.summary,
                    "detail": e.detail.as_deref().map(mask_numbers),
                })
            })
            .collect(),
    );
    Ok(ApiResponse::json(200, &json!({ "order": view })))
}

/// `POST /ops/orders/{order_id}/query`: queries the open attempt now (and fails over if the answer allows).
async fn query_now(state: &AppState, order: Order) -> Result<ApiResponse, ApiError> {
    let Some(open) = order.open_attempt() else {
        return Err(ApiError::Conflict {
            code: "no_open_attempt",
            message: "the order has no open attempt to query".into(),
        });
    };
    let no = open.no();
    let before = open.state().name();
    let order = flow::query_attempt(state, order, no).await?;
    let order = flow::advance(state, order).await?;
    let after = order.attempt(no).map(|a| a.state().name()).unwrap_or("?");
    tracing::info!(order_id = %order.id(), attempt = no.get(), before, after, "operator query");
    Ok(ApiResponse::json(
        200,
        &json!({"queried_attempt": no.get(), "order": ops_view(&order, state.clock.now())}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    attempt: u8,
    outcome: String,
    #[serde(default)]
    delivered_fen: Option<i64>,
    /// After `failed` or `not_submitted`: may the order go on to the next route? Defaults: `failed` no (the
    /// provider charged and refunded; the merchant decides), `not_submitted` yes (nothing reached a provider).
    #[serde(default)]
    failover: Option<bool>,
    reason: String,
    evidence: String,
    operator: String,
}

/// `POST /ops/orders/{order_id}/resolve`: an operator's outcome for one attempt, with evidence, through the
/// state machine. 409 with a stable code where the machine refuses it.
async fn resolve(
    state: &AppState,
    order: Order,
    body: &[u8],
    principal: &Principal,
) -> Result<ApiResponse, ApiError> {
    let req: ResolveBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let reason = text_field("reason", &req.reason, 500)?;
    let evidence = text_field("evidence", &req.evidence, 2000)?;
    let operator = text_field("operator", &req.operator, 64)?;
    let no = AttemptNo::new(req.attempt)
        .ok()
        .filter(|n| order.attempt(*n).is_some())
        .ok_or_else(|| {
            ApiError::bad_request(
                "unknown_attempt",
                format!("the order has no attempt {}", req.attempt),
            )
        })?;
    let why = Reason::new("resolved_by_operator", mask_numbers(&reason));
    let outcome = match req.outcome.as_str() {
        "succeeded" => Outcome::Succeeded { provider_ref: None },
        "failed" => Outcome::Failed {
            failover_allowed: req.failover.unwrap_or(false),
            reason: why,
        },
        "not_submitted" => Outcome::Rejected {
            failover_allowed: req.failover.unwrap_or(true),
            reason: why,
        },
        "partially_succeeded" => {
            let d = req
                .delivered_fen
                .filter(|d| *d > 0 && *d < order.face_value().get())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_field",
                        "delivered_fen: more than 0 and less than the face value",
                    )
                })?;
            Outcome::PartiallySucceeded {
                delivered: Fen::new(d),
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "outcome: succeeded, failed, partially_succeeded or not_submitted",
            ));
        }
    };
    let event = Event::Outcome {
        attempt: no,
        source: Source::Operator,
        outcome,
        report: Default::default(),
    };
    // Judge first, to answer with the machine's reason; the write below judges again on the stored order.
    let account = order
        .attempt(no)
        .map(|a| a.route().provider_account.clone());
    let policy = account.map(|a| state.policy(&a)).unwrap_or_default();
    if let Err(refusal) = recharge_core::apply(&order, &event, state.clock.now(), &policy) {
        return Err(refused(&refusal));
    }
    let detail = json!({
        "operator": operator,
        "principal": principal.name(),
        "outcome": req.outcome,
        "reason": mask_numbers(&reason),
        "evidence": mask_numbers(&evidence),
    })
    .to_string();
    let step = flow::apply_event(state, order, event, Some(detail)).await?;
    if !step.applied {
        return Err(ApiError::Conflict {
            code: "changed_concurrently",
            message: "the order changed while this was applied; read it again".into(),
        });
    }
    tracing::info!(
        order_id = %step.order.id(),
        attempt = no.get(),
        outcome = %req.outcome,
        operator = %operator,
        principal = %principal.name(),
        "operator resolution"
    );
    let order = flow::advance(state, step.order).await?;
    Ok(ApiResponse::json(
        200,
        &json!({"order": ops_view(&order, state.clock.now())}),
    ))
}

fn refused(refusal: &Refusal) -> ApiError {
    let (code, message) = match refusal {
        Refusal::Duplicate => ("already_resolved", "the attempt already has this outcome".to_owned()),
        Refusal::Stale => (
            "outcome_not_applicable",
            "the attempt's state does not allow this outcome (e.g. not_submitted after an acceptance)"
                .to_owned(),
        ),
        Refusal::Conflicting => (
            "conflicts_with_final_result",
            "the outcome contradicts the attempt's final result".to_owned(),
        ),
        Refusal::UnknownAttempt(n) => ("unknown_attempt", format!("the order has no attempt {n}")),
        Refusal::NotAllowed(why) => ("not_allowed", (*why).to_owned()),
    };
    ApiError::Conflict { code, message }
}

/// `POST /ops/orders/{order_id}/notify`: sends the merchant the current view now, whatever its schedule
/// (abandoned included); an acknowledgement is recorded like any other.
async fn redeliver(
    state: &AppState,
    order: Order,
    principal: &Principal,
) -> Result<ApiResponse, ApiError> {
    if order.notify_url().is_none() {
        return Err(ApiError::Conflict {
            code: "no_notify_url",
            message: "the order has no notify_url".into(),
        });
    }
    let delivery = flow::deliver_view(state, &order).await;
    let sequence = order.sequence();
    let (delivered, why) = match &delivery {
        Delivery::Acknowledged => (true, None),
        Delivery::Failed(why) => (false, Some(why.clone())),
    };
    tracing::info!(order_id = %order.id(), sequence, delivered, principal = %principal.name(), "operator redelivery");
    let order = if delivered && order.notified_sequence() < sequence {
        flow::apply_event(
            state,
            order,
            Event::Notified {
                sequence,
                delivered: true,
                retry_at: None,
            },
            Some(format!("redelivered by {}", principal.name())),
        )
        .await?
        .order
    } else {
        order
    };
    Ok(ApiResponse::json(
        200,
        &json!({
            "delivered": delivered,
            "sequence": sequence,
            "failure": why,
            "order": ops_view(&order, state.clock.now()),
        }),
    ))
}

fn account_json(
    state: &AppState,
    controls: &std::collections::HashMap<ProviderAccountId, AccountControl>,
    balances: &[recharge_core::store::BalanceSnapshot],
    id: &ProviderAccountId,
) -> Option<Value> {
    let provider = state.providers.get(id)?;
    let control = controls.get(id);
    let settings = state.effective_settings(controls, id);
    let balance = balances.iter().find(|b| &b.account == id);
    let in_force = state.providers.codes_in_force(id);
    Some(json!({
        "provider_account": id.as_str(),
        "protocol": provider.account.protocol.as_str(),
        "mode": control.map_or(if settings.enabled { "enabled" } else { "disabled" }, |c| c.mode.as_str()),
        "takes_new_orders": settings.enabled,
        "catalog_enabled": state.catalog.settings(id).enabled,
        "low_balance_fen": settings.low_balance_fen,
        "escalate_after_secs": control.and_then(|c| c.escalate_after_secs),
        // The operators' overrides as stored, those this process classifies with, and why the stored ones
        // are not in force if they are not (docs/operations.md §3).
        "code_overrides": control.and_then(|c| c.code_overrides.clone()),
        "code_overrides_in_force": in_force.overrides,
        "code_overrides_rejected": in_force.rejected,
        // The account's codes over its protocol's defaults, operators' included: what differs from the
        // protocol's page.
        "codes": provider.account.codes,
        "updated_at": control.map(|c| rfc3339(c.updated_at)),
        "updated_by": control.map(|c| c.updated_by.clone()),
        "balance_fen": balance.map(|b| b.balance.get()),
        "balance_checked_at": balance.map(|b| rfc3339(b.at)),
    }))
}

/// `GET /ops/accounts`: every loaded provider account with its runtime control, read fresh from the store.
async fn list_accounts(state: &AppState) -> Result<ApiResponse, ApiError> {
    let controls = fresh_controls(state).await?;
    let balances = state.balances.balances().await?;
    state.providers.apply_controls(&controls);
    let accounts: Vec<Value> = state
        .providers
        .loaded()
        .iter()
        .filter_map(|p| account_json(state, &controls, &balances, &p.account.id))
        .collect();
    Ok(ApiResponse::json(200, &json!({ "accounts": accounts })))
}

async fn fresh_controls(
    state: &AppState,
) -> Result<std::collections::HashMap<ProviderAccountId, AccountControl>, ApiError> {
    Ok(state
        .balances
        .account_controls()
        .await?
        .into_iter()
        .map(|c| (c.account.clone(), c))
        .collect())
}

fn account_id(state: &AppState, id: &str) -> Result<ProviderAccountId, ApiError> {
    ProviderAccountId::parse(id)
        .ok()
        .filter(|a| state.providers.get(a).is_some())
        .ok_or_else(|| {
            ApiError::bad_request("unknown_account", format!("no provider account {id}"))
        })
}

/// `GET /ops/accounts/{id}`.
async fn show_account(state: &AppState, id: &str) -> Result<ApiResponse, ApiError> {
    let id = account_id(state, id)?;
    let controls = fresh_controls(state).await?;
    let balances = state.balances.balances().await?;
    state.providers.apply_controls(&controls);
    let view = account_json(state, &controls, &balances, &id).unwrap_or(Value::Null);
    Ok(ApiResponse::json(200, &json!({ "account": view })))
}

/// Reads `code_overrides` of a `PUT`: the shape of the code tables (phase, code, meaning), and the account must
/// still load with them over its configured codes (a protocol that requires a vocabulary refuses to lose it).
/// `Ok(None)`: clear them.
fn checked_overrides(
    state: &AppState,
    id: &ProviderAccountId,
    value: &Value,
) -> Result<Option<Value>, ApiError> {
    let overrides = recharge_providers::codes::parse_overrides(value)
        .map_err(|m| ApiError::bad_request("invalid_code_overrides", m))?;
    if overrides.is_empty() {
        return Ok(None);
    }
    if let Some(base) = state.providers.base(id) {
        base.with_code_overrides(&overrides).map_err(|e| {
            ApiError::bad_request(
                "invalid_code_overrides",
                format!("code_overrides: the account does not load with them: {e}"),
            )
        })?;
    }
    serde_json::to_value(&overrides)
        .map(Some)
        .map_err(|e| ApiError::bad_request("invalid_code_overrides", e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    #[serde(default)]
    mode: Option<AccountMode>,
    #[serde(default)]
    low_balance_fen: Option<i64>,
    #[serde(default)]
    escalate_after_secs: Option<u64>,
    /// The operators' code overrides (`{"submit": {"7777": "refusal"}}`, replacing the stored ones); `null` or
    /// `{}` clears them, absent keeps them.
    #[serde(default, deserialize_with = "present")]
    code_overrides: Option<Value>,
    operator: String,
}

/// A field that is there, `null` included (serde's `Option` takes `null` for absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `PUT /ops/accounts/{id}`: changes the given fields of the account's control; every function sees it
/// within its control cache's TTL (30 s), with no deploy.
async fn put_account(
    state: &AppState,
    id: &str,
    body: &[u8],
    principal: &Principal,
) -> Result<ApiResponse, ApiError> {
    let id = account_id(state, id)?;
    let req: AccountBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let operator = text_field("operator", &req.operator, 64)?;
    if req.low_balance_fen.is_some_and(|f| f < 0) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "low_balance_fen: 0 or more",
        ));
    }
    if req.escalate_after_secs.is_some_and(|s| s < 60) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "escalate_after_secs: 60 or more",
        ));
    }
    let code_overrides = match &req.code_overrides {
        Some(v) => Some(checked_overrides(state, &id, v)?),
        None => None,
    };
    let controls = fresh_controls(state).await?;
    let previous = controls.get(&id);
    let catalog = state.catalog.settings(&id);
    let control = AccountControl {
        account: id.clone(),
        mode: req
            .mode
            .or(previous.map(|c| c.mode))
            .unwrap_or(if catalog.enabled {
                AccountMode::Enabled
            } else {
                AccountMode::Disabled
            }),
        low_balance_fen: req
            .low_balance_fen
            .or(previous.and_then(|c| c.low_balance_fen)),
        escalate_after_secs: req
            .escalate_after_secs
            .or(previous.and_then(|c| c.escalate_after_secs)),
        code_overrides: match code_overrides {
            Some(checked) => checked,
            None => previous.and_then(|c| c.code_overrides.clone()),
        },
        updated_at: state.clock.now(),
        updated_by: format!("{operator} ({})", principal.name()),
    };
    state.balances.put_account_control(&control).await?;
    state.forget_controls();
    let overrides_text = control
        .code_overrides
        .as_ref()
        .map_or_else(|| "none".to_owned(), Value::to_string);
    tracing::warn!(
        alert = "account_control",
        provider_account = %id,
        mode = control.mode.as_str(),
        code_overrides = %overrides_text,
        operator = %operator,
        principal = %principal.name(),
        "provider account control changed"
    );
    let mut controls = controls;
    controls.insert(id.clone(), control);
    // This process follows at once; the others within their control cache's TTL.
    state.providers.apply_controls(&controls);
    let balances = state.balances.balances().await?;
    let view = account_json(state, &controls, &balances, &id).unwrap_or(Value::Null);
    Ok(ApiResponse::json(200, &json!({ "account": view })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_overrides_null_clears_and_absent_keeps() {
        let b: AccountBody =
            serde_json::from_str(r#"{"operator":"d","code_overrides":null}"#).unwrap();
        assert_eq!(b.code_overrides, Some(Value::Null));
        let b: AccountBody = serde_json::from_str(r#"{"operator":"d"}"#).unwrap();
        assert_eq!(b.code_overrides, None);
    }

    #[test]
    fn ages_take_a_unit() {
        assert_eq!(parse_age("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_age("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_age("3d"), Some(Duration::from_secs(259_200)));
        assert_eq!(parse_age("3w"), None);
        assert_eq!(parse_age("m"), None);
        assert_eq!(parse_age(""), None);
    }

    #[test]
    fn long_digit_runs_are_masked_in_free_text() {
        assert_eq!(
            mask_numbers("user 13800138000 says ticket 42 is closed"),
            "user 138****8000 says ticket 42 is closed"
        );
        assert_eq!(mask_numbers("no numbers"), "no numbers");
        assert_eq!(mask_numbers("id110101199003074518"), "id110****4518");
    }
}

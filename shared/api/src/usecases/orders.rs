//! The merchant endpoints: create an order, read it, send a verification code, read provider balances.

use crate::apps::Caller;
use crate::apps::Role;
use crate::catalog::{first_hidden, validate_account};
use crate::http::ApiResponse;
use crate::http::client_secret::{self, ClientKey, KeyError};
use crate::http::error::ApiError;
use crate::http::view::{OrderView, rfc3339};
use crate::state::{AppState, RuntimeAccounts};
use crate::usecases::flow::{self, apply_event};
use crate::usecases::notify::check_notify_url;
use crate::usecases::route_choice;
use recharge_core::Timestamp;
use recharge_core::secrets::{Rotating, SecretError};
use recharge_core::store::{AuditEntry, Created};
use recharge_core::{
    AttemptState, Event, MerchantOrderNo, NewOrder, NextAction, Order, OrderId, Outcome,
    ProductCode, Reason, Source,
};
use recharge_providers::{Answer, Expect, VerificationRequest};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const MAX_EXTRA_FIELDS: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrderBody {
    merchant_order_no: String,
    product_code: String,
    account: String,
    #[serde(default)]
    extra: BTreeMap<String, String>,
    #[serde(default)]
    notify_url: Option<String>,
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    // serde_json's messages name the field and the expected type; they quote no secrets (there are none here).
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}

fn field<T>(r: Result<T, recharge_core::IdError>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::bad_request("invalid_field", e.to_string()))
}

/// The digest a replay must match: the order's meaning, after normalisation.
fn request_digest(
    product: &ProductCode,
    account: &str,
    extra: &BTreeMap<String, String>,
    notify: Option<&str>,
) -> String {
    let canonical = json!({"product_code": product.as_str(), "account": account, "extra": extra, "notify_url": notify});
    data_encoding::HEXLOWER.encode(&Sha256::digest(canonical.to_string().as_bytes()))
}

/// `POST /v1/orders`: 201 for a new order, 200 for a replay of the same request, 409 for the same number with
/// another body, 422 when no route can take it.
pub async fn create_order(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    let req: CreateOrderBody = parse_json(body)?;
    let merchant_order_no = field(MerchantOrderNo::parse(&req.merchant_order_no))?;
    let product_code = field(ProductCode::parse(&req.product_code))?;
    let product = state
        .catalog
        .product(&product_code)
        .ok_or_else(|| ApiError::Unprocessable {
            code: "product_unavailable",
            message: format!("product {product_code} is not offered"),
        })?;
    let target = validate_account(product, &req.account)?;
    if req.extra.len() > MAX_EXTRA_FIELDS
        || req
            .extra
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 32 || v.chars().count() > 256)
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "extra: at most {MAX_EXTRA_FIELDS} fields, names of 1 to 32 bytes, values of at most 256 characters"
            ),
        ));
    }
    // Only the extras the product declares: nothing that decides what is delivered is the merchant's
    // (docs/providers/README.md §4 rule 6).
    if let Some(key) = req.extra.keys().find(|k| !product.allows_extra(k)) {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("extra.{key} is not accepted for {product_code}"),
        ));
    }
    if let Some((key, c)) = req
        .extra
        .iter()
        .find_map(|(k, v)| first_hidden(v).map(|c| (k, c)))
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "extra.{key}: contains U+{:04X}, a control or invisible formatting character",
                c as u32
            ),
        ));
    }
    // The product's candidate accounts, loaded in one read where accounts load on first use: routing and the
    // wire checks below see them as the other functions do.
    if let Err(e) = state
        .ensure_accounts(product.routes.iter().map(|r| &r.provider_account))
        .await
    {
        tracing::warn!(app = %caller.app, product = %product_code, error = %e, "create refused: provider credentials unavailable");
        return Err(ApiError::Unavailable);
    }
    // Text a route's wire cannot carry (a GBK form and an emoji) is refused now, not sent and failed later.
    for r in &product.routes {
        let Some(p) = state.providers.get(&r.provider_account) else {
            continue;
        };
        let unfit = std::iter::once(("account", target.account.as_str()))
            .chain(req.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .find(|(_, v)| !p.adapter.text_fits(v));
        if let Some((name, _)) = unfit {
            let name = if name == "account" {
                "account".to_owned()
            } else {
                format!("extra.{name}")
            };
            return Err(ApiError::bad_request(
                "invalid_field",
                format!(
                    "{name}: has characters the provider of {product_code} cannot receive (GBK)"
                ),
            ));
        }
    }
    if let Some(missing) = product
        .required_extra
        .iter()
        .find(|k| !req.extra.contains_key(*k))
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("extra.{missing} is required for {product_code}"),
        ));
    }
    if let Some(url) = &req.notify_url {
        check_notify_url(url, state.settings.local_mode)
            .map_err(|m| ApiError::bad_request("invalid_notify_url", m))?;
    }
    let digest = request_digest(
        &product_code,
        &target.account,
        &req.extra,
        req.notify_url.as_deref(),
    );
    let id = OrderId::derive(&caller.app, &merchant_order_no);
    // Read before anything is written, so a key outage refuses the create instead of losing the secret.
    let client_keys = client_keys(state).await?;
    let respond = |status: u16, order: &Order| {
        ApiResponse::json(status, &created_view(caller, order, client_keys.as_ref()))
    };

    let balances = state.known_balances().await;
    let controls = state.account_controls().await;
    let decision = route_choice::choose(
        &state.catalog,
        product,
        target.carrier,
        &[],
        &RuntimeAccounts {
            providers: &state.providers,
            controls: &controls,
        },
        &balances,
    );
    let Some(route) = decision.route else {
        // A replay of an order created when a route existed is still a replay.
        if let Some(existing) = state.store.get(&id).await? {
            return replay(existing, &digest).map(|o| respond(200, &o));
        }
        tracing::warn!(app = %caller.app, product = %product_code, skipped = ?decision.skipped, "no route");
        return Err(ApiError::Unprocessable {
            code: "no_route",
            message: format!("no provider can take {product_code} now"),
        });
    };
    let now = state.clock.now();
    let policy = state.policy(&route.provider_account);
    let new = NewOrder {
        app_id: caller.app.clone(),
        merchant_order_no,
        product_code,
        account: target.account,
        extra: req.extra,
        face_value: product.face_value(),
        notify_url: req.notify_url,
        request_digest: digest.clone(),
    };
    let escalate_after = state.escalate_after_on(&controls, &route.provider_account, product.kind);
    let order = Order::new(new, route, now, policy.call_timeout).with_escalation(escalate_after);
    match state
        .store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await?
    {
        Created::Existing(existing) => replay(existing, &digest).map(|o| respond(200, &o)),
        Created::New(order) => {
            tracing::info!(order_id = %order.id(), app = %caller.app, product = %order.product_code(), "order created");
            let order = flow::submit_open_attempt(state, order).await?;
            let order = flow::advance(state, order).await?;
            Ok(respond(201, &order))
        }
    }
}

fn replay(existing: Order, digest: &str) -> Result<Order, ApiError> {
    if existing.request_digest() == digest {
        Ok(existing)
    } else {
        Err(ApiError::Conflict {
            code: "idempotency_conflict",
            message: "this merchant_order_no was used with a different request".into(),
        })
    }
}

// ---- client secrets in the create's answer (issue 18; format and reasons in `client_secret`) -------------

/// The create's answer: the order view, and the order's client secret with its expiry. Only the create (and
/// its replay) carries the secret: not the merchant GET, not notifications.
#[derive(Serialize)]
struct CreatedView {
    #[serde(flatten)]
    view: OrderView,
    client_secret: Option<String>,
    client_secret_expires_at: Option<String>,
}

fn created_view(caller: &Caller, order: &Order, keys: Option<&Rotating<ClientKey>>) -> CreatedView {
    let ttl = caller.client_ttl;
    let expires = client_secret::expiry_of(order.created_at(), ttl);
    let secret = keys.and_then(|k| k.current.issue(order.id(), expires));
    CreatedView {
        view: OrderView::of(order),
        client_secret_expires_at: secret
            .as_ref()
            .map(|_| rfc3339(Timestamp::from_millis(expires.saturating_mul(1000)))),
        // The one place a client secret is exposed: the body of the create's answer.
        client_secret: secret.map(|s| s.expose_secret().to_owned()),
    }
}

/// The gateway key, or `None` where client secrets are not configured.
async fn client_keys(state: &AppState) -> Result<Option<Rotating<ClientKey>>, ApiError> {
    match client_secret::keys(&*state.secrets, state.settings.client_key_secret.as_deref()).await {
        Ok(k) => Ok(Some(k)),
        Err(KeyError::NotConfigured) => Ok(None),
        Err(e @ KeyError::Secret(SecretError::Unavailable { .. })) => {
            tracing::error!(error = %e, "client secret key unavailable");
            Err(ApiError::Unavailable)
        }
        Err(e @ KeyError::Secret(SecretError::NotFound(_) | SecretError::Malformed { .. })) => {
            tracing::error!(error = %e, "client secret key missing or malformed");
            Err(ApiError::Internal)
        }
    }
}

async fn own_order(
    state: &AppState,
    caller: &Caller,
    merchant_order_no: &str,
) -> Result<Order, ApiError> {
    let no = MerchantOrderNo::parse(merchant_order_no).map_err(|_| ApiError::OrderNotFound)?;
    let id = OrderId::derive(&caller.app, &no);
    match state.store.get(&id).await? {
        // The id is derived from the app, so another app's order cannot be addressed; check anyway.
        Some(o) if o.app_id() == &caller.app => Ok(o),
        _ => Err(ApiError::OrderNotFound),
    }
}

/// `GET /v1/orders/{merchant_order_no}`.
pub async fn get_order(
    state: &AppState,
    caller: &Caller,
    merchant_order_no: &str,
) -> Result<ApiResponse, ApiError> {
    let order = own_order(state, caller, merchant_order_no).await?;
    Ok(ApiResponse::json(200, &OrderView::of(&order)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerificationBody {
    code: String,
}

/// `POST /v1/orders/{merchant_order_no}/verification`: the second step of carrier billing. The code is sent to
/// the provider at most once per order: the attempt leaves `action_required` (written) before the call.
pub async fn verify(
    state: &AppState,
    caller: &Caller,
    merchant_order_no: &str,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    let code = parse_code(body)?;
    let order = own_order(state, caller, merchant_order_no).await?;
    let order = submit_code(state, order, code).await?;
    Ok(ApiResponse::json(200, &OrderView::of(&order)))
}

/// The `{code}` of a verification request: 4 to 8 letters or digits.
pub(crate) fn parse_code(body: &[u8]) -> Result<String, ApiError> {
    let req: VerificationBody = parse_json(body)?;
    if !(4..=8).contains(&req.code.len()) || !req.code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "code: 4 to 8 letters or digits",
        ));
    }
    Ok(req.code)
}

/// Sends the user's code for `order` (already read and authorised, by the merchant route or the client
/// route): 409 `verification_not_expected` unless its open attempt waits for a code. Round trips: 1
/// conditional write before the provider call (a second code now finds the order `accepted`), 1 after.
pub(crate) async fn submit_code(
    state: &AppState,
    order: Order,
    code: String,
) -> Result<Order, ApiError> {
    let not_expected = || ApiError::Conflict {
        code: "verification_not_expected",
        message: "this order is not waiting for a verification code".into(),
    };
    let attempt = order.open_attempt().ok_or_else(not_expected)?;
    if attempt.state()
        != (&AttemptState::ActionRequired {
            next: NextAction::EnterVerificationCode,
        })
    {
        return Err(not_expected());
    }
    let no = attempt.no();
    let account = attempt.route().provider_account.clone();
    let provider_ref = attempt.provider_ref().map(str::to_owned);
    let attempt_id = order.attempt_id(no);
    // Write first: a second code for this order now finds it `accepted` and gets 409.
    let taken = apply_event(
        state,
        order,
        Event::Outcome {
            attempt: no,
            source: Source::Submit,
            outcome: Outcome::Accepted { provider_ref: None },
            report: Default::default(),
        },
        Some("verification code received".into()),
    )
    .await?;
    if !taken.applied {
        return Err(not_expected());
    }
    let expect = Expect::of(&taken.order, no);
    let answer = match (state.provider(&account).await, provider_ref, expect) {
        (Some(provider), Some(provider_ref), Some(expect)) => {
            let vr = VerificationRequest {
                attempt: attempt_id,
                provider_ref,
                code,
            };
            provider
                .verify(&state.executor, &vr, &expect, state.clock.now())
                .await
        }
        _ => Answer::from(Outcome::Failed {
            failover_allowed: false,
            reason: Reason::new(
                "no_provider_order",
                "the provider order of the first step is unknown",
            ),
        }),
    };
    tracing::info!(order_id = %taken.order.id(), provider_account = %account, outcome = flow::outcome_name(&answer.outcome), "verification");
    Ok(
        flow::record_answer(state, taken.order, no, Source::Submit, answer)
            .await?
            .order,
    )
}

/// `GET /v1/balances`: the last known balance of every provider account (admin apps only).
pub async fn balances(state: &AppState, caller: &Caller) -> Result<ApiResponse, ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden(
            "balances are visible to admin apps only",
        ));
    }
    Ok(ApiResponse::json(200, &balances_json(state).await?))
}

/// The last known balance, threshold and routing switch of every provider account (merchant admin apps and
/// `GET /ops/balances`).
pub async fn balances_json(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let known = state.balances.balances().await?;
    let controls = state.account_controls().await;
    let accounts: Vec<_> = state
        .providers
        .configured()
        .map(|account| {
            let id = &account.id;
            let settings = state.effective_settings(&controls, id);
            let snap = known.iter().find(|b| &b.account == id);
            json!({
                "provider_account": id.as_str(),
                "protocol": account.protocol.as_str(),
                "enabled": settings.enabled,
                "mode": controls.get(id).map_or("enabled", |c| c.mode.as_str()),
                "balance_fen": snap.map(|b| b.balance.get()),
                "checked_at": snap.map(|b| rfc3339(b.at)),
                "low": match (snap, settings.low_balance_fen) {
                    (Some(b), Some(threshold)) => b.balance.get() < threshold,
                    _ => false,
                },
            })
        })
        .collect();
    Ok(json!({ "accounts": accounts }))
}

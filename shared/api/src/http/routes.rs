//! Maps a request to its handler: the merchant routes of docs/merchant-api.md §2 (authenticated here), the provider
//! callback route (authenticated by each protocol's own signature) and the client routes of issue 18
//! (authenticated by an order's client secret in `client`; the only routes that answer cross-origin).

use crate::apps::Role;
use crate::http::auth::authenticate;
use crate::http::error::ApiError;
use crate::http::{ApiRequest, ApiResponse, MAX_BODY};
use crate::state::AppState;
use crate::usecases::callbacks;
use crate::usecases::client;
use crate::usecases::orders;
use recharge_providers::{Method, RawCallback};

/// Every route the gateway serves, with the Lambda function that serves it in production.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/v1/orders", "submit-order"),
    (
        "POST",
        "/v1/orders/{merchant_order_no}/verification",
        "submit-order",
    ),
    ("GET", "/v1/orders/{merchant_order_no}", "order-status"),
    ("GET", "/v1/balances", "order-status"),
    ("GET", "/v1/statements/{date}", "order-status"),
    (
        "POST",
        "/v1/callbacks/{provider_account}",
        "provider-callback",
    ),
    (
        "GET",
        "/v1/callbacks/{provider_account}",
        "provider-callback",
    ),
    ("GET", "/ops/orders", "ops"),
    ("GET", "/ops/orders/{order_id}", "ops"),
    ("POST", "/ops/orders/{order_id}/query", "ops"),
    ("POST", "/ops/orders/{order_id}/resolve", "ops"),
    ("POST", "/ops/orders/{order_id}/notify", "ops"),
    ("GET", "/ops/notifications", "ops"),
    ("GET", "/ops/balances", "ops"),
    ("GET", "/ops/accounts", "ops"),
    ("GET", "/ops/accounts/{provider_account}", "ops"),
    ("PUT", "/ops/accounts/{provider_account}", "ops"),
    ("GET", "/ops/apps", "ops"),
    ("POST", "/ops/apps", "ops"),
    ("GET", "/ops/apps/{app_id}", "ops"),
    ("PUT", "/ops/apps/{app_id}", "ops"),
    ("POST", "/ops/recon/run", "ops"),
    ("GET", "/ops/recon", "ops"),
    ("GET", "/ops/recon/mismatches", "ops"),
    ("POST", "/ops/recon/mismatches/settle", "ops"),
    // ---- client routes (issue 18): client secret only, CORS for 公众号 H5 pages -------------------------
    ("GET", "/v1/client/orders/{order_id}", "order-status"),
    ("OPTIONS", "/v1/client/orders/{order_id}", "order-status"),
    (
        "POST",
        "/v1/client/orders/{order_id}/verification",
        "submit-order",
    ),
    // The preflight needs only the apps' configuration: the read-only function answers it.
    (
        "OPTIONS",
        "/v1/client/orders/{order_id}/verification",
        "order-status",
    ),
];

/// Provider callbacks may be larger than merchant requests only a little; anything bigger is refused unread.
pub const MAX_CALLBACK_BODY: usize = 64 * 1024;

pub async fn handle(state: &AppState, req: ApiRequest) -> ApiResponse {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let method = req.method.to_ascii_uppercase();
    match segments.as_slice() {
        ["v1", "callbacks", account] => {
            let m = match method.as_str() {
                "POST" => Method::Post,
                "GET" => Method::Get,
                _ => return ApiError::MethodNotAllowed.to_response(),
            };
            if req.body.len() > MAX_CALLBACK_BODY {
                return ApiError::TooLarge(MAX_CALLBACK_BODY).to_response();
            }
            let raw = RawCallback {
                method: m,
                headers: req.headers.clone(),
                query: req.raw_query.clone(),
                body: req.body.clone(),
            };
            callbacks::handle(state, account, raw).await
        }
        ["v1", "orders"]
        | ["v1", "orders", _]
        | ["v1", "orders", _, "verification"]
        | ["v1", "balances"]
        | ["v1", "statements", _] => match merchant(state, &method, &segments, &req).await {
            Ok(resp) => resp,
            Err(e) => e.to_response(),
        },
        ["ops", ..] => match operator(state, &req).await {
            Ok(principal) => crate::usecases::ops::handle(state, &req, &principal).await,
            Err(e) => e.to_response(),
        },
        // ---- client routes (issue 18): authorised in `client`, never by the merchant's HMAC ----------
        ["v1", "client", "orders", id] => {
            client::handle(state, client::ClientRoute::Order(id), &req).await
        }
        ["v1", "client", "orders", id, "verification"] => {
            client::handle(state, client::ClientRoute::Verification(id), &req).await
        }
        _ => ApiError::RouteNotFound.to_response(),
    }
}

/// The local stack's operators: an admin app's HMAC signature (in AWS the `ops` function is behind the
/// `AWS_IAM` authorizer and calls `ops::handle` with the caller's ARN instead, see recharge-lambda).
async fn operator(
    state: &AppState,
    req: &ApiRequest,
) -> Result<crate::usecases::operator::Principal, ApiError> {
    if req.body.len() > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    let caller = authenticate(req, &state.apps, state.clock.now()).await?;
    match caller.role {
        Role::Admin => Ok(crate::usecases::operator::Principal::App(caller.app)),
        Role::Merchant => Err(ApiError::Forbidden("ops routes are for admin apps only")),
    }
}

async fn merchant(
    state: &AppState,
    method: &str,
    segments: &[&str],
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let allowed = match segments {
        ["v1", "orders"] | ["v1", "orders", _, "verification"] => "POST",
        _ => "GET",
    };
    if method != allowed {
        return Err(ApiError::MethodNotAllowed);
    }
    if req.body.len() > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    let caller = authenticate(req, &state.apps, state.clock.now()).await?;
    match segments {
        ["v1", "orders"] => orders::create_order(state, &caller, &req.body).await,
        ["v1", "orders", no] => orders::get_order(state, &caller, &percent_decode(no)).await,
        ["v1", "orders", no, "verification"] => {
            orders::verify(state, &caller, &percent_decode(no), &req.body).await
        }
        ["v1", "balances"] => orders::balances(state, &caller).await,
        ["v1", "statements", date] => {
            crate::usecases::statement::get_statement(state, &caller, &percent_decode(date), req)
                .await
        }
        _ => Err(ApiError::RouteNotFound),
    }
}

/// Merchant order numbers are `[A-Za-z0-9_-]`, so decoding only has to undo what a client may have escaped;
/// anything else fails the order number's own parse.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

//! The client routes (issue 18): what a mini-program or a 公众号 H5 page may do with an order's client secret
//! (`client_secret`), and nothing else. Authorised by `Authorization: Bearer <client_secret>` alone; the
//! merchant's HMAC headers mean nothing here, and a client secret means nothing on the merchant routes.
//!
//! | route | store round trips |
//! |---|---|
//! | `GET /v1/client/orders/{order_id}` | 1 `GetItem` (0 when the secret is refused: it is checked before any read); a request with an `Origin` adds the app's `GetItem` on an app-cache miss (`crate::apps`) |
//! | `POST /v1/client/orders/{order_id}/verification` | 1 `GetItem` + 1 `UpdateItem` (the attempt counter); then, when the order waits for a code, the existing verification flow: 1 `UpdateItem` of the order before the provider call and 1 after |
//! | `OPTIONS` (preflight) on both | 0, but for 1 `Query` of the config partition per app-cache TTL (`AppDirectory::any_allows_origin`) |
//!
//! The gateway key is read through the cached secret source (no Secrets Manager call when warm).
//!
//! Refusals: 401 `missing_client_secret`, `invalid_client_secret` (malformed, forged, another order's, or an
//! order that does not exist: one answer), `client_secret_expired` (genuine but late); 403
//! `origin_not_allowed` (a browser page whose origin the order's app does not list); 429 `rate_limited` (more
//! than the per-order request rate, per process) and `too_many_attempts` (more than
//! `VERIFICATION_ATTEMPTS` verification requests on one order, counted in the store).
//!
//! CORS: only these routes answer cross-origin. A preflight is answered for an origin some app lists (the
//! preflight carries no credentials, so it cannot know the order's app); the request itself is then held to
//! the order's own app's list.

use crate::http::client_secret::{self, KeyError};
use crate::http::error::ApiError;
use crate::http::view::rfc3339;
use crate::http::{ApiRequest, ApiResponse, MAX_BODY};
use crate::state::AppState;
use crate::usecases::orders;
use recharge_core::mask::mask;
use recharge_core::secrets::SecretError;
use recharge_core::{NextAction, Order, OrderId, Timestamp};
use serde::Serialize;

/// Verification requests one order takes from clients, whatever their answers.
pub const VERIFICATION_ATTEMPTS: u32 = 5;
/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

// ---- the routes -----------------------------------------------------------------------------------------

/// The order as its end user's page sees it: no merchant configuration, no notify URL, the account masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientOrderView {
    pub order_id: String,
    pub status: &'static str,
    pub next_action: Option<NextAction>,
    pub face_value_fen: i64,
    /// Masked (`138****8000`).
    pub account: String,
    pub updated_at: String,
    pub sequence: u64,
}

impl ClientOrderView {
    pub fn of(order: &Order) -> ClientOrderView {
        let v = order.public_view();
        ClientOrderView {
            order_id: order.id().to_string(),
            status: v.status.as_str(),
            next_action: v.next_action,
            face_value_fen: order.face_value().get(),
            account: mask(order.account()),
            updated_at: rfc3339(order.updated_at()),
            sequence: order.sequence(),
        }
    }
}

/// Which client route a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRoute<'a> {
    Order(&'a str),
    Verification(&'a str),
}

impl ClientRoute<'_> {
    fn method(self) -> &'static str {
        match self {
            ClientRoute::Order(_) => "GET",
            ClientRoute::Verification(_) => "POST",
        }
    }

    /// The route's name in logs.
    fn kind(self) -> &'static str {
        match self {
            ClientRoute::Order(_) => "order",
            ClientRoute::Verification(_) => "verification",
        }
    }

    fn id(&self) -> &str {
        match self {
            ClientRoute::Order(id) | ClientRoute::Verification(id) => id,
        }
    }
}

/// Serves one client route: preflight, or the request with its CORS headers.
pub async fn handle(state: &AppState, route: ClientRoute<'_>, req: &ApiRequest) -> ApiResponse {
    let method = req.method.to_ascii_uppercase();
    let origin = req
        .header("Origin")
        .map(str::trim)
        .filter(|o| !o.is_empty());
    let known_origin = match origin {
        Some(o) if state.apps.any_allows_origin(o).await => Some(o),
        Some(_) | None => None,
    };
    if method == "OPTIONS" {
        return preflight(route, known_origin, req);
    }
    let mut resp = match serve(state, route, &method, origin, req).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.to_response();
            // The rate refills within a second; the attempt limit never does, so it gets no Retry-After.
            if e.code() == "rate_limited" {
                r.headers.push(("retry-after".to_owned(), "1".to_owned()));
            }
            r
        }
    };
    if let Some(o) = known_origin {
        cors_headers(&mut resp, o);
    }
    resp.headers
        .push(("cache-control".to_owned(), "no-store".to_owned()));
    resp
}

fn cors_headers(resp: &mut ApiResponse, origin: &str) {
    resp.headers
        .push(("access-control-allow-origin".to_owned(), origin.to_owned()));
    resp.headers.push(("vary".to_owned(), "Origin".to_owned()));
}

fn preflight(route: ClientRoute<'_>, origin: Option<&str>, req: &ApiRequest) -> ApiResponse {
    let asked = req
        .header("Access-Control-Request-Method")
        .map(|m| m.trim().to_ascii_uppercase());
    let Some(origin) = origin else {
        // No CORS headers: the browser refuses the cross-origin call.
        return ApiError::OriginNotAllowed.to_response();
    };
    if asked.as_deref() != Some(route.method()) {
        return ApiError::MethodNotAllowed.to_response();
    }
    let mut resp = ApiResponse {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    };
    cors_headers(&mut resp, origin);
    resp.headers.extend([
        (
            "access-control-allow-methods".to_owned(),
            route.method().to_owned(),
        ),
        (
            "access-control-allow-headers".to_owned(),
            "authorization, content-type".to_owned(),
        ),
        (
            "access-control-max-age".to_owned(),
            PREFLIGHT_MAX_AGE_SECS.to_string(),
        ),
    ]);
    resp
}

fn refused(r: client_secret::SecretRefusal) -> ApiError {
    ApiError::unauthorized(r.code(), r.to_string())
}

fn invalid() -> ApiError {
    refused(client_secret::SecretRefusal::Invalid)
}

async fn serve(
    state: &AppState,
    route: ClientRoute<'_>,
    method: &str,
    origin: Option<&str>,
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    if method != route.method() {
        return Err(ApiError::MethodNotAllowed);
    }
    if req.body.len() > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    let presented = bearer(req).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_client_secret",
            "Authorization: Bearer <client_secret> is required",
        )
    })?;
    // A malformed id is the same answer as a wrong secret.
    let id = OrderId::parse(route.id()).map_err(|_| invalid())?;
    let keys = client_secret::keys(&*state.secrets, state.settings.client_key_secret.as_deref())
        .await
        .map_err(|e| match e {
            KeyError::NotConfigured => invalid(),
            KeyError::Secret(SecretError::Unavailable { .. }) => {
                tracing::error!(error = %e, "client secret key unavailable");
                ApiError::Unavailable
            }
            KeyError::Secret(SecretError::NotFound(_) | SecretError::Malformed { .. }) => {
                tracing::error!(error = %e, "client secret key missing or malformed");
                ApiError::Internal
            }
        })?;
    let now = state.clock.now();
    client_secret::check(&keys, &id, presented, now).map_err(|r| {
        tracing::info!(order_id = %id, route = route.kind(), refusal = r.code(), "client secret refused");
        refused(r)
    })?;
    if !state.client_limiter.take(&id, now) {
        return Err(ApiError::TooManyRequests {
            code: "rate_limited",
            message: "too many requests for this order; slow down".into(),
        });
    }
    // Every secret we issued names a stored order; an order gone is a secret that no longer opens anything.
    let order = state.store.get(&id).await?.ok_or_else(invalid)?;
    // A browser page must be of an origin the order's own app lists. The app is looked up only then (a
    // mini-program sends no Origin): found on first use and cached, `crate::apps`; an app gone from the seed
    // and the table opens nothing to a browser.
    if let Some(o) = origin {
        let app = state.apps.get(order.app_id()).await?.ok_or_else(invalid)?;
        if !app.config.client.allows(o) {
            return Err(ApiError::OriginNotAllowed);
        }
    }
    match route {
        ClientRoute::Order(_) => Ok(ApiResponse::json(200, &ClientOrderView::of(&order))),
        ClientRoute::Verification(_) => {
            // Counted before the body is looked at: every request counts, whatever it says. The counter is
            // kept as long as the (verified) secret presented lives.
            let expires = Timestamp::from_millis(
                client_secret::presented_expiry(presented)
                    .unwrap_or_else(|| {
                        client_secret::expiry_of(order.created_at(), client_secret::DEFAULT_TTL)
                    })
                    .saturating_mul(1000),
            );
            if !state
                .store
                .count_client_attempt(&id, VERIFICATION_ATTEMPTS, expires)
                .await?
            {
                tracing::info!(order_id = %id, "client verification attempts exhausted");
                return Err(ApiError::TooManyRequests {
                    code: "too_many_attempts",
                    message: format!(
                        "at most {VERIFICATION_ATTEMPTS} verification requests per order"
                    ),
                });
            }
            let code = orders::parse_code(&req.body)?;
            let order = orders::submit_code(state, order, code).await?;
            Ok(ApiResponse::json(200, &ClientOrderView::of(&order)))
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(req: &ApiRequest) -> Option<&str> {
    let value = req.header("Authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::{ClientAccess, Origin};
    use crate::limits::Limiter;
    use std::time::Duration;

    #[test]
    fn origins_are_https_or_loopback_http_without_a_path() {
        for good in [
            "https://h5.example.com",
            "https://h5.example.com:8443",
            "http://127.0.0.1:5173",
            "http://localhost",
        ] {
            assert!(Origin::try_from(good.to_owned()).is_ok(), "{good}");
        }
        for bad in [
            "http://h5.example.com",
            "https://h5.example.com/",
            "https://H5.example.com",
            "https://h5.example.com:99999",
            "*",
            "https://",
            "h5.example.com",
            "https://a.com:",
        ] {
            assert!(Origin::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_access_defaults_to_a_day_and_no_origin_and_checks_its_ttl() {
        let c: ClientAccess = serde_json::from_str("{}").unwrap();
        assert_eq!(c, ClientAccess::default());
        assert_eq!(c.ttl(), Duration::from_secs(86_400));
        assert!(!c.allows("https://h5.example.com"));
        let c: ClientAccess = serde_json::from_str(
            r#"{"secret_ttl_secs": 600, "allowed_origins": ["https://h5.example.com"]}"#,
        )
        .unwrap();
        assert!(c.allows("https://h5.example.com"));
        assert!(!c.allows("https://h5.example.com.evil.cn"));
        assert!(serde_json::from_str::<ClientAccess>(r#"{"secret_ttl_secs": 0}"#).is_err());
        assert!(
            serde_json::from_str::<ClientAccess>(r#"{"allowed_origins": ["https://x.cn/"]}"#)
                .is_err()
        );
    }

    #[test]
    fn the_limiter_allows_a_burst_then_the_rate_per_order() {
        let l = Limiter::default();
        let a = OrderId::parse("ABCDEFGHIJKLMNOPQRST").unwrap();
        let b = OrderId::parse("ABCDEFGHIJKLMNOPQRSZ").unwrap();
        let t0 = Timestamp::from_millis(1_700_000_000_000);
        for i in 0..10 {
            assert!(l.take(&a, t0), "request {i} of the burst");
        }
        assert!(!l.take(&a, t0), "the 11th at once");
        assert!(l.take(&b, t0), "another order has its own bucket");
        let later = t0.plus(Duration::from_millis(1_100));
        assert!(l.take(&a, later), "one more a second later");
        assert!(!l.take(&a, later));
    }

    #[test]
    fn the_bearer_token_is_read_case_insensitively_and_nothing_else_counts() {
        let req = |v: &str| ApiRequest {
            method: "GET".into(),
            path: "/".into(),
            raw_query: String::new(),
            headers: vec![("authorization".into(), v.into())],
            body: Vec::new(),
        };
        assert_eq!(bearer(&req("Bearer rcs1_x")), Some("rcs1_x"));
        assert_eq!(bearer(&req("bearer  rcs1_x ")), Some("rcs1_x"));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
        assert_eq!(bearer(&req("rcs1_x")), None);
    }
}

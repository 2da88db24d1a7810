//! 003 话费充值微服务 behind 彩生活's ICE gateway (docs/providers/ice-microservice.md): 产品订购 (POST) and 订单状态查询 (GET),
//! authenticated by the ICE query parameters `ts`, `appID`, `sign = md5(appID + ts + token + "false")`
//! (lowercase hex) plus the privilege-service `access_token`; optionally serves `/app/auth` to issue that
//! token. Orders answer `status "0"` and advance on a timer (0 → 1 → 2 success | 3 failed); there is no
//! callback and no balance endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::any;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::codec::{Charset, md5_lower, parse_form, sign_eq, unix_secs};
use crate::dialect::{CodeText, Dialect};
use crate::engine::Engine;
use crate::ledger::{OrderRecord, OrderState, RecordError};
use crate::{Protocol, SimError, parse_credentials};

/// Credentials file shape for `ice-microservice`.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// ICE `appID`.
    pub app_id: String,
    /// ICE app token (the secret in the sign).
    pub token: String,
    /// The `access_token` callers must pass (what the privilege service issues).
    pub access_token: String,
    /// Privilege-service `appkey`, to serve `POST /app/auth` (off when absent).
    #[serde(default)]
    pub privilege_appkey: Option<String>,
    /// Privilege-service secret: `signature = md5(appkey + timestamp + secret)`.
    #[serde(default)]
    pub privilege_secret: Option<String>,
    /// The `company` echoed in responses (default 彩生活).
    #[serde(default = "default_company")]
    pub company: String,
    /// Opening balance in fen (default 1 000 000). The protocol has no balance endpoint; see `/_sim/balance`.
    #[serde(default = "default_balance")]
    pub balance_fen: i64,
    /// Catalog by `productId` (default: `HF100` = 100 yuan at 99, `HF50` = 50 yuan at 49.5).
    #[serde(default = "default_products")]
    pub products: BTreeMap<String, Product>,
    /// [ASSUME] Append the literal `false` to the sign string (ICE 1.0; default true).
    #[serde(default = "default_true")]
    pub append_false: bool,
    /// [ASSUME] Accepted clock skew of `ts`, in seconds (default 300; 0 turns the check off).
    #[serde(default = "default_tolerance")]
    pub ts_tolerance_secs: i64,
    /// [ASSUME] `ice` (default): `md5(appID + ts + token [+ "false"])`; `generic`: the fallback convention of
    /// docs/providers/ice-microservice.md §4, see [`generic_sign`].
    #[serde(default)]
    pub sign_style: SignStyle,
}

/// Which signature the service expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignStyle {
    /// The ICE gateway's sign.
    #[default]
    Ice,
    /// Sorted non-empty parameters.
    Generic,
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    /// Face value in fen.
    pub face_fen: i64,
    /// Price in fen.
    pub price_fen: i64,
}

fn default_company() -> String {
    "彩生活".into()
}
fn default_balance() -> i64 {
    1_000_000
}
fn default_true() -> bool {
    true
}
fn default_tolerance() -> i64 {
    300
}
fn default_products() -> BTreeMap<String, Product> {
    BTreeMap::from([
        (
            "HF100".to_owned(),
            Product {
                face_fen: 10_000,
                price_fen: 9_900,
            },
        ),
        (
            "HF50".to_owned(),
            Product {
                face_fen: 5_000,
                price_fen: 4_950,
            },
        ),
    ])
}

/// `md5(appID + ts + token [+ "false"])`, lowercase hex.
pub fn ice_sign(app_id: &str, ts: &str, token: &str, append_false: bool) -> String {
    let tail = if append_false { "false" } else { "" };
    md5_lower(format!("{app_id}{ts}{token}{tail}").as_bytes())
}

/// The generic fallback: every non-empty parameter except `sign`, sorted by ASCII key, joined `k=v&…`, then
/// `&key=SECRET`; MD5, uppercase.
pub fn generic_sign(params: &BTreeMap<String, String>, secret: &str) -> String {
    let joined: Vec<String> = params
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    md5_lower(format!("{}&key={secret}", joined.join("&")).as_bytes()).to_ascii_uppercase()
}

#[derive(Debug)]
struct Ice {
    engine: Arc<Engine>,
    creds: Credentials,
}

/// The seed's placeholder paths, percent-encoded as they arrive on the wire, and ASCII aliases.
pub const ORDER_PATHS: [&str; 2] = [
    "/sign/api/%E4%BA%A7%E5%93%81%E8%AE%A2%E8%B4%AD",
    "/sign/api/order",
];
/// See [`ORDER_PATHS`].
pub const QUERY_PATHS: [&str; 2] = [
    "/sign/api/%E8%AE%A2%E5%8D%95%E7%8A%B6%E6%80%81%E6%9F%A5%E8%AF%A2",
    "/sign/api/query",
];

/// Builds the ice-microservice router.
pub(crate) fn router(
    creds: Value,
    build: impl Fn(i64) -> Arc<Engine>,
) -> Result<(Arc<Engine>, Router), SimError> {
    let creds: Credentials = parse_credentials(Protocol::IceMicroservice, creds)?;
    let engine = build(creds.balance_fen);
    let state = Arc::new(Ice {
        engine: Arc::clone(&engine),
        creds,
    });
    let mut router = Router::new().route("/app/auth", any(app_auth));
    for p in ORDER_PATHS {
        router = router.route(p, any(order));
    }
    for p in QUERY_PATHS {
        router = router.route(p, any(query));
    }
    Ok((engine, router.with_state(state)))
}

/// The message of the in-band error of [`crate::script::Plan::inband_error`] (envelope `code` `"1"`, the
/// same code the protocol uses for every failure, refusals included).
pub const INBAND_ERROR_MESSAGE: &str = "失败";

fn fail(message: &str) -> Response {
    fail_with("1", message)
}

fn fail_with(code: &str, message: &str) -> Response {
    Json(json!({ "code": code, "message": message, "data": "" })).into_response()
}

/// The documented failure envelope (`code 1`) with `message`, or the dialect's code and message for it.
fn fail_as(slot: &Option<CodeText>, message: &str) -> Response {
    let (code, message) = Dialect::code(slot, "1", message);
    fail_with(&code, &message)
}

impl Ice {
    fn ok(&self, slot: &Option<CodeText>, supplier: &str, data: Value) -> Response {
        let (code, message) = Dialect::code(slot, "0", "成功");
        Json(json!({ "code": code, "message": message, "company": self.creds.company, "Supplier": supplier, "data": data }))
            .into_response()
    }

    /// Merges query and body params (ICE reserved words `ts`, `appID`, `sign` come from the query string and
    /// override business params) and checks the ICE sign and the access token. `Err` is the failure message.
    fn authenticate(
        &self,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<BTreeMap<String, String>, &'static str> {
        let from_query = parse_form(query.unwrap_or("").as_bytes(), Charset::Utf8);
        let mut p: BTreeMap<String, String> = parse_form(body, Charset::Utf8).into_iter().collect();
        for (k, v) in from_query {
            p.insert(k, v);
        }
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        if get("appID") != self.creds.app_id {
            return Err("appID错误");
        }
        let expected = match self.creds.sign_style {
            SignStyle::Ice => ice_sign(
                &get("appID"),
                &get("ts"),
                &self.creds.token,
                self.creds.append_false,
            ),
            SignStyle::Generic => generic_sign(&p, &self.creds.token),
        };
        if get("ts").is_empty() || !sign_eq(&expected, &get("sign"), false) {
            return Err("签名错误");
        }
        if self.creds.ts_tolerance_secs > 0 {
            let ts: i64 = get("ts").parse().unwrap_or(0);
            if (unix_secs(SystemTime::now()) - ts).abs() > self.creds.ts_tolerance_secs {
                return Err("ts已过期");
            }
        }
        if get("access_token") != self.creds.access_token {
            return Err("access_token无效");
        }
        Ok(p)
    }
}

/// Order `status` [assumed, docs/providers/ice-microservice.md §3]: 0 accepted, 1 processing, 2 success, 3 failed.
fn status(state: OrderState) -> &'static str {
    match state {
        OrderState::Accepted | OrderState::AwaitingUser => "0",
        OrderState::Processing => "1",
        OrderState::Succeeded | OrderState::Partial => "2",
        OrderState::Failed | OrderState::Reversed => "3",
    }
}

fn data(o: &OrderRecord, d: &Dialect) -> Value {
    json!({
        "orderNo": o.provider_order_id,
        "cstmOrderNo": o.caller_order_id,
        "status": d.status(o.state, status(o.state)),
        "orderId": o.extra("orderId").unwrap_or_default(),
    })
}

async fn order(State(s): State<Arc<Ice>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = match s.authenticate(q.as_deref(), &body) {
        Ok(p) => p,
        Err(m) => return fail(m),
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    for required in [
        "company",
        "Supplier",
        "phoneNo",
        "productId",
        "cstmOrderName",
        "cstmOrderNo",
    ] {
        if get(required).is_empty() {
            return fail("参数错误");
        }
    }
    let Some(product) = s.creds.products.get(&get("productId")) else {
        return fail("产品不存在");
    };
    let (phone, cstm) = (get("phoneNo"), get("cstmOrderNo"));
    let plan = s.engine.plan(&phone, &cstm);
    if plan.refuse {
        return fail_as(&s.engine.dialect.submit_refusal, "该号码暂不支持充值");
    }
    let order_no = s.engine.next_id("VBP");
    let order_id = format!(
        "Y{}",
        md5_lower(order_no.as_bytes()).get(..29).unwrap_or_default()
    );
    let record = OrderRecord {
        provider_order_id: order_no,
        caller_order_id: cstm,
        account: phone,
        product: get("productId"),
        amount_fen: product.face_fen,
        price_fen: product.price_fen,
        state: OrderState::Accepted,
        deliveries: 0,
        arrived_fen: None,
        script: plan.label.clone(),
        callback_url: None,
        submitted_at: get("ts"),
        extra: BTreeMap::from([
            ("orderId".into(), order_id),
            ("Supplier".into(), get("Supplier")),
        ]),
    };
    let order = match s.engine.ledger.record(record) {
        Ok(o) => o,
        Err(RecordError::DuplicateOrderId) => {
            return fail_as(&s.engine.dialect.submit.duplicate, "调用方流水号重复");
        }
        Err(RecordError::InsufficientBalance) => return fail("余额不足"),
    };
    // Query-driven protocol: the lifecycle only moves the status, no callback is sent.
    s.engine.start_lifecycle(order.clone(), plan.clone(), None);
    if plan.hang {
        s.engine.hang().await;
    }
    if plan.http_500 || plan.unknown_answer {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    if plan.inband_error {
        // Recorded, yet answered with the envelope's bare failure code: only a query can tell.
        return fail_as(&s.engine.dialect.submit.busy, INBAND_ERROR_MESSAGE);
    }
    let d = &s.engine.dialect;
    s.ok(&d.submit.accepted, &get("Supplier"), data(&order, d))
}

async fn query(State(s): State<Arc<Ice>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = match s.authenticate(q.as_deref(), &body) {
        Ok(p) => p,
        Err(m) => return fail(m),
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    if get("cstmOrderNo").is_empty() {
        return fail("参数错误");
    }
    match s.engine.search_caller_id(&get("cstmOrderNo")) {
        Some(o) if get("orderNo").is_empty() || get("orderNo") == o.provider_order_id => {
            // The seed lists `Supplier` on the query too: when sent it must be the one the order was placed
            // with (a query for another operator's order finds nothing).
            let placed = o.extra("Supplier").unwrap_or_default().to_owned();
            if !get("Supplier").is_empty() && get("Supplier") != placed {
                return fail("Supplier与订单不符");
            }
            let d = &s.engine.dialect;
            s.ok(&d.query.success, &placed, data(&o, d))
        }
        _ => fail_as(&s.engine.dialect.query.not_found, "订单不存在"),
    }
}

/// `POST /app/auth?appkey=K&signature=md5(K + timestamp + secret)&timestamp=ts` → the access token.
async fn app_auth(State(s): State<Arc<Ice>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let (Some(appkey), Some(secret)) = (&s.creds.privilege_appkey, &s.creds.privilege_secret)
    else {
        return (StatusCode::NOT_FOUND, "privilege service not configured").into_response();
    };
    let mut p: BTreeMap<String, String> = parse_form(&body, Charset::Utf8).into_iter().collect();
    p.extend(parse_form(q.unwrap_or_default().as_bytes(), Charset::Utf8));
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let expected = md5_lower(format!("{appkey}{}{secret}", get("timestamp")).as_bytes());
    if get("appkey") != *appkey || !sign_eq(&expected, &get("signature"), true) {
        return Json(json!({ "code": 1, "message": "signature错误" })).into_response();
    }
    let expire = unix_secs(SystemTime::now()) + 7200;
    Json(
        json!({ "code": 0, "content": { "access_token": s.creds.access_token, "expire": expire } }),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_sign_matches_the_worked_example() {
        assert_eq!(
            ice_sign("ICETESTAPPID01", "1700000000", "TestIceToken0123", true),
            "a72cd4ddb320c46e8e35a2f0619c8499"
        );
    }

    #[test]
    fn privilege_signature_matches_the_worked_example() {
        let s = md5_lower(b"88a2b3c4d5e6f7a8b9c2-FAKE1700000000TestPrivilegeSecret");
        assert_eq!(s, "bb1b61db172000c40d3bfdb5a04baea8");
    }
}

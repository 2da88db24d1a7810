//! 004 兑换系统开放接口 (docs/providers/openapi-rsa.md): header-signed JSON API. Verifies `businessId, nonce, timestamp,
//! sign[, signType]` over `sorted k=v&… + raw body` with SHA256withRSA (merchant public key) or MD5
//! (`MD5(content + signKey)`, uppercase), rejects replayed nonces and timestamps outside ±5 min, answers in the
//! `{status, message, data}` envelope, and sends header-signed JSON callbacks retried on the documented
//! schedule (15 s … 6 h) until the reply is `SUCCESS` (any case).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::Value;

use crate::callback::{CallbackMethod, Notifier, Outgoing, reply_is, secs};
use crate::codec::{md5_upper, sign_eq, unix_millis};
use crate::dialect::{CodeText, Dialect};
use crate::engine::Engine;
use crate::ledger::{OrderRecord, OrderState, RecordError};
use crate::{Protocol, SimError, parse_credentials};

/// Credentials file shape for `openapi-rsa`.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// `businessId` (header and body).
    pub business_id: String,
    /// `merchantId` (body).
    pub merchant_id: String,
    /// MD5 `signKey`: verifies `signType: MD5` requests and signs responses and callbacks.
    pub sign_key: String,
    /// The merchant's RSA public key as PEM text (`-----BEGIN PUBLIC KEY-----`), for SHA256-RSA requests.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// Or a path to that PEM file.
    #[serde(default)]
    pub public_key_file: Option<String>,
    /// Opening balance in fen (default 1 000 000).
    #[serde(default = "default_balance")]
    pub balance_fen: i64,
    /// Catalog by `productCode` (default: `P100` = 100 yuan at 98.5, `VIP-MONTH` = 30 yuan at 28).
    #[serde(default = "default_products")]
    pub products: BTreeMap<String, Product>,
    /// [ASSUME] The `status` of a successful response (default 0).
    #[serde(default)]
    pub success_status: i64,
    /// [ASSUME] Accepted clock skew of the `timestamp` header, in ms (default 300 000 = ±5 min).
    #[serde(default = "default_skew")]
    pub timestamp_tolerance_ms: i64,
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    /// Face value in fen.
    pub face_fen: i64,
    /// Settlement price in fen.
    pub price_fen: i64,
}

fn default_balance() -> i64 {
    1_000_000
}
fn default_skew() -> i64 {
    300_000
}
fn default_products() -> BTreeMap<String, Product> {
    BTreeMap::from([
        (
            "P100".to_owned(),
            Product {
                face_fen: 10_000,
                price_fen: 9_850,
            },
        ),
        (
            "VIP-MONTH".to_owned(),
            Product {
                face_fen: 3_000,
                price_fen: 2_800,
            },
        ),
    ])
}

// Response `status` values. Only 2 (验签失败) is documented; the others are [ASSUME] and only need to differ
// from the success status.
const SIGN_FAILED: i64 = 2;
const NONCE_REPLAYED: i64 = 3;
const STALE_TIMESTAMP: i64 = 4;
const BAD_PARAMS: i64 = 5;
const UNKNOWN_PRODUCT: i64 = 6;
const ACCOUNT_REFUSED: i64 = 7;
const DUPLICATE_BIZ_CODE: i64 = 8;
const INSUFFICIENT_BALANCE: i64 = 9;
const ORDER_NOT_FOUND: i64 = 10;
/// The `status` of the in-band error of [`crate::script::Plan::inband_error`], answered after the order was
/// recorded (501 when an account configures 500 as its success status).
pub const INBAND_ERROR_STATUS: i64 = 500;
/// Its message.
pub const INBAND_ERROR_MESSAGE: &str = "系统繁忙";

/// Order `status` in query data and callbacks [ASSUME]: 1 processing, 2 success, 3 failed.
fn order_status(state: OrderState) -> &'static str {
    match state {
        OrderState::Accepted | OrderState::Processing | OrderState::AwaitingUser => "1",
        // No reversal or partial capability here: both are reported as what the merchant ended up with.
        OrderState::Succeeded | OrderState::Partial => "2",
        OrderState::Failed | OrderState::Reversed => "3",
    }
}

/// `k=v&…` over the non-empty auth headers sorted by name, then the body exactly as sent.
pub fn sign_content(headers: &[(&str, &str)], body: &str) -> String {
    let mut sorted: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    sorted.sort();
    let joined: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{body}", joined.join("&"))
}

/// `MD5(content + signKey)`, uppercase.
pub fn md5_sign(content: &str, sign_key: &str) -> String {
    md5_upper(format!("{content}{sign_key}").as_bytes())
}

/// DER bytes of the first `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS#1) block in `pem`.
/// rustls-pki-types knows no PKCS#1 public label; aws-lc-rs reads both DER forms, so it is read as SPKI.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let pem = pem.replace("RSA PUBLIC KEY-----", "PUBLIC KEY-----");
    SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|der| der.as_ref().to_vec())
}

#[derive(Debug)]
struct Api {
    engine: Arc<Engine>,
    creds: Credentials,
    /// The merchant's public key, parsed once at start (not per request).
    public_key: Option<ParsedPublicKey>,
    nonces: Mutex<Nonces>,
    nonce_seq: std::sync::atomic::AtomicU64,
    notifier: Arc<ApiNotifier>,
}

/// Builds the openapi-rsa router.
pub(crate) fn router(
    creds: Value,
    build: impl Fn(i64) -> Arc<Engine>,
) -> Result<(Arc<Engine>, Router), SimError> {
    let creds: Credentials = parse_credentials(Protocol::OpenapiRsa, creds)?;
    let pem = match (&creds.public_key_pem, &creds.public_key_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => {
            Some(std::fs::read_to_string(path).map_err(|e| SimError::Key(format!("{path}: {e}")))?)
        }
        (None, None) => None,
    };
    let public_key = match pem {
        Some(p) => {
            let der = pem_to_der(&p)
                .ok_or_else(|| SimError::Key("no PUBLIC KEY block in the public key PEM".into()))?;
            Some(
                ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
                    .map_err(|e| SimError::Key(format!("public key refused: {e}")))?,
            )
        }
        None => None,
    };
    let engine = build(creds.balance_fen);
    let notifier = Arc::new(ApiNotifier {
        dialect: engine.dialect.clone(),
        business_id: creds.business_id.clone(),
        sign_key: creds.sign_key.clone(),
        seq: std::sync::atomic::AtomicU64::new(1),
    });
    let state = Arc::new(Api {
        engine: Arc::clone(&engine),
        creds,
        public_key,
        nonces: Mutex::new(Nonces::default()),
        nonce_seq: std::sync::atomic::AtomicU64::new(1),
        notifier,
    });
    let router = Router::new()
        .route("/v1/openapi/order/VIPCharge", post(vip_charge))
        .route("/v1/openapi/order/info", post(order_info))
        .route("/v1/openapi/merchant/business/balance", post(balance))
        .with_state(state);
    Ok((engine, router))
}

/// A JSON value written by hand, so that money goes out as a decimal literal built from fen, never via f64.
enum J {
    S(String),
    N(String),
}

fn obj(fields: &[(&str, J)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                J::S(s) => Value::String(s.clone()).to_string(),
                J::N(n) => n.clone(),
            };
            format!("{}:{v}", Value::String((*k).to_owned()))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

impl Api {
    /// The envelope, signed in the response headers the way callbacks are (MD5, no signType).
    fn envelope(&self, status: i64, message: &str, data: Option<String>) -> Response {
        let body = format!(
            "{{\"status\":{status},\"message\":{},\"data\":{}}}",
            Value::String(message.to_owned()),
            data.unwrap_or_else(|| "null".into())
        );
        let nonce = format!(
            "r{}",
            self.nonce_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ts = unix_millis(SystemTime::now()).to_string();
        let content = sign_content(
            &[
                ("businessId", &self.creds.business_id),
                ("nonce", &nonce),
                ("timestamp", &ts),
            ],
            &body,
        );
        let sign = md5_sign(&content, &self.creds.sign_key);
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        // Header names travel lowercased (HTTP header names are case-insensitive).
        for (name, value) in [
            ("businessid", self.creds.business_id.clone()),
            ("nonce", nonce),
            ("timestamp", ts),
            ("sign", sign),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
        (StatusCode::OK, h, body).into_response()
    }

    fn refuse(&self, status: i64, message: &str) -> Response {
        self.envelope(status, message, None)
    }

    /// The envelope `status` and message for a dialect slot (its code must be a number here), or the
    /// documented ones.
    fn answer_as(&self, slot: &Option<CodeText>, status: i64, message: &str) -> (i64, String) {
        match slot {
            Some(c) => (c.code.parse().unwrap_or(status), c.message.clone()),
            None => (status, message.to_owned()),
        }
    }

    /// Verifies the auth headers over the raw body and parses it. `Err` is the refusal (status, message).
    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, (i64, &'static str)> {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (business_id, nonce, timestamp, sign) =
            (h("businessId"), h("nonce"), h("timestamp"), h("sign"));
        let sign_type_sent = headers.contains_key("signType");
        let sign_type = h("signType");
        if business_id.is_empty() || nonce.is_empty() || timestamp.is_empty() || sign.is_empty() {
            return Err((SIGN_FAILED, "验签失败: 缺少签名请求头"));
        }
        if business_id != self.creds.business_id {
            return Err((SIGN_FAILED, "验签失败: businessId不存在"));
        }
        let text = String::from_utf8_lossy(body).into_owned();
        let mut auth = vec![
            ("businessId", business_id.as_str()),
            ("nonce", nonce.as_str()),
        ];
        // signType is part of the content only when it is actually sent.
        if sign_type_sent {
            auth.push(("signType", sign_type.as_str()));
        }
        auth.push(("timestamp", timestamp.as_str()));
        let content = sign_content(&auth, &text);
        let verified = match sign_type.as_str() {
            "MD5" => sign_eq(&md5_sign(&content, &self.creds.sign_key), &sign, false),
            "" | "SHA256-RSA" => self.verify_rsa(&content, &sign),
            _ => false,
        };
        if !verified {
            return Err((SIGN_FAILED, "验签失败"));
        }
        let now = unix_millis(SystemTime::now());
        let ts: i64 = timestamp.parse().unwrap_or(0);
        if (now - ts).abs() > self.creds.timestamp_tolerance_ms {
            return Err((STALE_TIMESTAMP, "timestamp已过期"));
        }
        {
            let mut seen = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
            // A nonce only needs remembering while its timestamp would still be accepted.
            let horizon = 2 * self.creds.timestamp_tolerance_ms.max(1);
            seen.forget_older_than(now - horizon);
            if !seen.insert(nonce, now) {
                return Err((NONCE_REPLAYED, "nonce重复"));
            }
        }
        serde_json::from_str(&text).map_err(|_| (BAD_PARAMS, "请求体不是JSON"))
    }

    fn verify_rsa(&self, content: &str, sign_b64: &str) -> bool {
        let (Some(key), Ok(sig)) = (&self.public_key, STANDARD.decode(sign_b64.trim())) else {
            return false;
        };
        key.verify_sig(content.as_bytes(), &sig).is_ok()
    }
}

/// The nonces seen recently, with a queue in arrival order so that forgetting the old ones costs only what is
/// forgotten (a scan of the whole set on every request was quadratic over a long run).
#[derive(Debug, Default)]
struct Nonces {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl Nonces {
    /// Forgets the nonces that arrived before `cutoff` (unix ms). Arrival times are the wall clock's, so they
    /// are in order unless the clock stepped back; then some are kept a little longer, never dropped early.
    fn forget_older_than(&mut self, cutoff: i64) {
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.seen.remove(&nonce);
            }
        }
    }

    /// Remembers `nonce`; false if it was already there (a replay).
    fn insert(&mut self, nonce: String, now: i64) -> bool {
        if self.seen.contains_key(&nonce) {
            return false;
        }
        self.seen.insert(nonce.clone(), now);
        self.order.push_back((now, nonce));
        true
    }
}

fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

async fn vip_charge(State(a): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let v = match a.authenticate(&headers, &body) {
        Ok(v) => v,
        Err((status, message)) => return a.refuse(status, message),
    };
    for required in [
        "merchantId",
        "businessId",
        "productCode",
        "account",
        "bizCode",
    ] {
        if text(&v, required).is_empty() {
            return a.refuse(BAD_PARAMS, &format!("{required}不能为空"));
        }
    }
    if text(&v, "merchantId") != a.creds.merchant_id
        || text(&v, "businessId") != a.creds.business_id
    {
        return a.refuse(BAD_PARAMS, "商家或业务不存在");
    }
    let code = text(&v, "productCode");
    let Some(product) = a.creds.products.get(&code) else {
        return a.refuse(UNKNOWN_PRODUCT, "产品不存在");
    };
    let (account, biz) = (text(&v, "account"), text(&v, "bizCode"));
    let plan = a.engine.plan(&account, &biz);
    if plan.refuse {
        if let Some(c) = &a.engine.dialect.submit_refusal {
            return a.refuse(c.code.parse().unwrap_or(ACCOUNT_REFUSED), &c.message);
        }
        return a.refuse(ACCOUNT_REFUSED, "该账号不支持充值");
    }
    // An empty callbackUrl means "the address registered at account opening": the simulator's --callback-url.
    let cb = Some(text(&v, "callbackUrl"))
        .filter(|u| !u.is_empty())
        .or_else(|| a.engine.default_callback_url.clone());
    let record = OrderRecord {
        provider_order_id: a.engine.next_id("O"),
        caller_order_id: biz,
        account,
        product: code,
        amount_fen: product.face_fen,
        price_fen: product.price_fen,
        state: OrderState::Accepted,
        deliveries: 0,
        arrived_fen: None,
        script: plan.label.clone(),
        callback_url: cb,
        submitted_at: String::new(),
        extra: BTreeMap::new(),
    };
    let order = match a.engine.ledger.record(record) {
        Ok(o) => o,
        Err(RecordError::DuplicateOrderId) => {
            let (status, message) = a.answer_as(
                &a.engine.dialect.submit.duplicate,
                DUPLICATE_BIZ_CODE,
                "bizCode已存在",
            );
            return a.refuse(status, &message);
        }
        Err(RecordError::InsufficientBalance) => return a.refuse(INSUFFICIENT_BALANCE, "余额不足"),
    };
    let notifier: Arc<dyn Notifier> = a.notifier.clone();
    a.engine
        .start_lifecycle(order.clone(), plan.clone(), Some(notifier));
    if plan.hang {
        a.engine.hang().await;
    }
    if plan.http_500 || plan.unknown_answer {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    if plan.inband_error {
        // Recorded, yet answered (signed, HTTP 200) with a status no document lists: only a query can tell.
        let status = if a.creds.success_status == INBAND_ERROR_STATUS {
            INBAND_ERROR_STATUS + 1
        } else {
            INBAND_ERROR_STATUS
        };
        let (status, message) =
            a.answer_as(&a.engine.dialect.submit.busy, status, INBAND_ERROR_MESSAGE);
        return a.refuse(status, &message);
    }
    let data = obj(&[
        ("orderCode", J::S(order.provider_order_id.clone())),
        ("bizCode", J::S(order.caller_order_id.clone())),
        ("account", J::S(order.account.clone())),
        (
            "settlementPrice",
            J::N(a.engine.dialect.amount(order.price_fen)),
        ),
    ]);
    let (status, message) = a.answer_as(
        &a.engine.dialect.submit.accepted,
        a.creds.success_status,
        "success",
    );
    a.envelope(status, &message, Some(data))
}

fn order_data(o: &OrderRecord, state: OrderState, d: &Dialect) -> String {
    let status = d.status(state, order_status(state));
    // The documented values are numbers; a dialect's value that is not one travels as a string.
    let status = if status.parse::<i64>().is_ok() {
        J::N(status)
    } else {
        J::S(status)
    };
    obj(&[
        ("orderCode", J::S(o.provider_order_id.clone())),
        ("bizCode", J::S(o.caller_order_id.clone())),
        ("status", status),
        ("account", J::S(o.account.clone())),
        ("productCode", J::S(o.product.clone())),
        ("settlementPrice", J::N(d.amount(o.price_fen))),
    ])
}

async fn order_info(State(a): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let v = match a.authenticate(&headers, &body) {
        Ok(v) => v,
        Err((status, message)) => return a.refuse(status, message),
    };
    let found = match (text(&v, "orderCode"), text(&v, "bizCode")) {
        (oc, _) if !oc.is_empty() => a.engine.search_provider_id(&oc),
        (_, bc) if !bc.is_empty() => a.engine.search_caller_id(&bc),
        _ => return a.refuse(BAD_PARAMS, "orderCode或bizCode不能为空"),
    };
    let d = &a.engine.dialect;
    match found {
        Some(o) => {
            let (status, message) =
                a.answer_as(&d.query.success, a.creds.success_status, "success");
            a.envelope(status, &message, Some(order_data(&o, o.state, d)))
        }
        None => {
            let (status, message) = a.answer_as(&d.query.not_found, ORDER_NOT_FOUND, "订单不存在");
            a.refuse(status, &message)
        }
    }
}

async fn balance(State(a): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let v = match a.authenticate(&headers, &body) {
        Ok(v) => v,
        Err((status, message)) => return a.refuse(status, message),
    };
    if text(&v, "merchantId") != a.creds.merchant_id
        || text(&v, "businessId") != a.creds.business_id
    {
        return a.refuse(BAD_PARAMS, "商家或业务不存在");
    }
    // [ASSUME] amount = balance in yuan, creditLine = credit limit (none here).
    let data = obj(&[
        ("merchantId", J::S(a.creds.merchant_id.clone())),
        ("businessId", J::S(a.creds.business_id.clone())),
        ("creditLine", J::N("0".into())),
        (
            "amount",
            J::N(a.engine.dialect.amount(a.engine.ledger.balance_fen())),
        ),
    ]);
    let (status, message) = a.answer_as(
        &a.engine.dialect.balance.success,
        a.creds.success_status,
        "success",
    );
    a.envelope(status, &message, Some(data))
}

/// Header-signed JSON callbacks (no signType header, so none in the sign content).
#[derive(Debug)]
struct ApiNotifier {
    dialect: Dialect,
    business_id: String,
    sign_key: String,
    seq: std::sync::atomic::AtomicU64,
}

impl Notifier for ApiNotifier {
    fn build(&self, order: &OrderRecord, reported: OrderState) -> Option<Outgoing> {
        let url = order.callback_url.clone()?;
        let body = order_data(order, reported, &self.dialect);
        let nonce = format!(
            "cb{}-{}",
            unix_millis(SystemTime::now()),
            self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ts = unix_millis(SystemTime::now()).to_string();
        let content = sign_content(
            &[
                ("businessId", &self.business_id),
                ("nonce", &nonce),
                ("timestamp", &ts),
            ],
            &body,
        );
        let sign = md5_sign(&content, &self.sign_key);
        Some(Outgoing {
            method: CallbackMethod::Post,
            url,
            headers: vec![
                (
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                ),
                ("businessId".into(), self.business_id.clone()),
                ("nonce".into(), nonce),
                ("timestamp".into(), ts),
                ("sign".into(), sign),
            ],
            body: body.into_bytes(),
        })
    }

    fn is_ack(&self, status: u16, body: &[u8]) -> bool {
        (200..300).contains(&status) && reply_is(body, &["SUCCESS"])
    }

    fn retry_schedule(&self) -> Vec<Duration> {
        // 15 s, 30 s, 3 m, 10 m, 20 m, 30 m, 60 m, 3 h, 6 h after the first attempt [FOUND].
        secs(&[15, 30, 180, 600, 1200, 1800, 3600, 10_800, 21_600])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::yuan;

    #[test]
    fn nonces_refuse_a_replay_until_forgotten() {
        let mut n = Nonces::default();
        assert!(n.insert("a".into(), 1_000));
        assert!(n.insert("b".into(), 2_000));
        assert!(!n.insert("a".into(), 2_500));
        n.forget_older_than(1_000);
        assert!(
            !n.insert("a".into(), 3_000),
            "arrived at the cutoff: still remembered"
        );
        n.forget_older_than(1_001);
        assert!(
            n.insert("a".into(), 3_000),
            "forgotten once older than the cutoff"
        );
        assert!(!n.insert("b".into(), 3_000));
        n.forget_older_than(10_000);
        assert!(n.seen.is_empty() && n.order.is_empty());
    }

    const DOC_BODY: &str = r#"{"businessId":"754ea3e3a699404f9b82e8f881107f19","merchantId":"eb1bb305ca3940f8adf1d4e964555699"}"#;

    #[test]
    fn md5_sign_matches_the_worked_example() {
        let content = sign_content(
            &[
                ("timestamp", "1628772138668"),
                ("businessId", "754ea3e3a699404f9b82e8f881107f19"),
                ("signType", "MD5"),
                ("nonce", "24bc2c17-0fef-440e-ba32-385c47c6cfa4"),
            ],
            DOC_BODY,
        );
        assert_eq!(
            content,
            format!(
                "businessId=754ea3e3a699404f9b82e8f881107f19&nonce=24bc2c17-0fef-440e-ba32-385c47c6cfa4&signType=MD5&timestamp=1628772138668{DOC_BODY}"
            )
        );
        assert_eq!(
            md5_sign(&content, "TestSignKey0123"),
            "09AE596CD5BD8133EE0536CCBE19A56B"
        );
    }

    #[test]
    fn settlement_price_is_written_as_a_decimal_from_fen() {
        assert_eq!(
            obj(&[("a", J::S("x\"y".into())), ("p", J::N(yuan(9_850)))]),
            r#"{"a":"x\"y","p":98.5}"#
        );
    }
}

//! 002 微客云 wikeyun (docs/providers/wikeyun.md): `rest/Recharge/pushOrder`, `rest/Recharge/query`, `rest/User/query`,
//! TOP-style MD5 (`secret + k1v1k2v2… + secret`, uppercase) over the union of query-string and form-body
//! parameters, string `code`s, the status progression including 10 返销 and 11 部分到账, and the JSON callback
//! to `notify_url` resent up to 5 times until the reply is `success`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::any;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::callback::{CallbackMethod, Notifier, Outgoing, reply_is, secs};
use crate::codec::{Charset, md5_upper, parse_form, sign_eq, unix_secs, whole_yuan_to_fen};
use crate::dialect::Dialect;
use crate::engine::Engine;
use crate::ledger::{OrderRecord, OrderState, RecordError};
use crate::{Protocol, SimError, parse_credentials};

/// Credentials file shape for `wikeyun`.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// `app_key` (an integer on the wire; kept as its decimal string).
    pub app_key: String,
    /// `app_secret`.
    pub app_secret: String,
    /// The merchant's `store_id`.
    pub store_id: String,
    /// Opening balance in fen (default 1 000 000).
    #[serde(default = "default_balance")]
    pub balance_fen: i64,
    /// Price as per mille of face value (default 1000: charged at face value).
    #[serde(default = "default_permille")]
    pub price_permille: i64,
    /// [ASSUME] Accepted clock skew of `timestamp` in seconds (default 300; 0 turns the check off).
    #[serde(default = "default_tolerance")]
    pub timestamp_tolerance_secs: i64,
    /// Face values accepted for `money`, in yuan (default 50, 100, 200).
    #[serde(default = "default_moneys")]
    pub moneys: Vec<i64>,
}

fn default_balance() -> i64 {
    1_000_000
}
fn default_permille() -> i64 {
    1000
}
fn default_tolerance() -> i64 {
    300
}
fn default_moneys() -> Vec<i64> {
    vec![50, 100, 200]
}

/// `secret + k1 + v1 + k2 + v2 + … + secret` over `params` sorted by key (a BTreeMap sorts by bytes), `sign`
/// excluded.
pub fn sign_string(params: &BTreeMap<String, String>, secret: &str) -> String {
    let mut s = String::from(secret);
    for (k, v) in params.iter().filter(|(k, _)| k.as_str() != "sign") {
        s.push_str(k);
        s.push_str(v);
    }
    s.push_str(secret);
    s
}

/// Uppercase MD5 of the sign string over UTF-8 bytes.
pub fn sign(params: &BTreeMap<String, String>, secret: &str) -> String {
    md5_upper(sign_string(params, secret).as_bytes())
}

#[derive(Debug)]
struct Wk {
    engine: Arc<Engine>,
    creds: Credentials,
    notifier: Arc<WkNotifier>,
}

/// Builds the wikeyun router.
pub(crate) fn router(
    creds: Value,
    build: impl Fn(i64) -> Arc<Engine>,
) -> Result<(Arc<Engine>, Router), SimError> {
    let creds: Credentials = parse_credentials(Protocol::Wikeyun, creds)?;
    let engine = build(creds.balance_fen);
    let notifier = Arc::new(WkNotifier {
        secret: creds.app_secret.clone(),
        dialect: engine.dialect.clone(),
    });
    let state = Arc::new(Wk {
        engine: Arc::clone(&engine),
        creds,
        notifier,
    });
    let router = Router::new()
        .route("/rest/Recharge/pushOrder", any(push_order))
        .route("/rest/Recharge/query", any(query))
        .route("/rest/User/query", any(user_query))
        .with_state(state);
    Ok((engine, router))
}

fn reply(code: &str, msg: &str, data: Value) -> Response {
    let mut body = json!({ "code": code, "msg": msg, "data": data });
    if code != "0000" {
        // The one documented error carries a `time` field (docs/providers/wikeyun.md §1).
        body["time"] = json!(unix_secs(SystemTime::now()).to_string());
    }
    Json(body).into_response()
}

fn error(code: &str, msg: &str) -> Response {
    reply(code, msg, Value::Null)
}

/// A refusal: `code` and `msg`.
type Refusal = (&'static str, &'static str);

/// The in-band error of [`crate::script::Plan::inband_error`], answered after the order was recorded. The
/// simulator's own table uses `2001` for an unknown store, which is only an assumption too: no public document
/// says what `2001` means, so a gateway must read it as Unknown.
pub const INBAND_ERROR: Refusal = ("2001", "系统繁忙");

/// Checks the common parameters and the signature. `Err` is the refusal to answer.
fn authenticate(
    w: &Wk,
    query: Option<&str>,
    body: &[u8],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut p = BTreeMap::new();
    for (k, v) in parse_form(query.unwrap_or("").as_bytes(), Charset::Utf8) {
        p.insert(k, v);
    }
    for (k, v) in parse_form(body, Charset::Utf8) {
        p.insert(k, v);
    }
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    if get("app_key").is_empty() {
        return Err(("1003", "app_key不能为空"));
    }
    // [ASSUME] codes 1001/1004/1005/1006: only 1003 is public; any non-0000 code means refused.
    if get("app_key") != w.creds.app_key {
        return Err(("1004", "app_key错误"));
    }
    if get("sign").is_empty() || get("timestamp").is_empty() {
        return Err(("1001", "缺少公共参数"));
    }
    if !sign_eq(&sign(&p, &w.creds.app_secret), &get("sign"), false) {
        return Err(("1005", "签名错误"));
    }
    if w.creds.timestamp_tolerance_secs > 0 {
        let ts: i64 = get("timestamp").parse().unwrap_or(0);
        if (unix_secs(SystemTime::now()) - ts).abs() > w.creds.timestamp_tolerance_secs {
            return Err(("1006", "时间戳已过期"));
        }
    }
    Ok(p)
}

/// The wikeyun `status` for a ledger state (docs/providers/wikeyun.md §5).
fn status(state: OrderState) -> &'static str {
    match state {
        OrderState::Accepted | OrderState::AwaitingUser => "1",
        // 7 已匹配: in progress at the channel.
        OrderState::Processing => "7",
        OrderState::Succeeded => "2",
        // The simulator refunds at once, so a failure is reported as 4 退款成功.
        OrderState::Failed => "4",
        OrderState::Reversed => "10",
        OrderState::Partial => "11",
    }
}

async fn push_order(State(w): State<Arc<Wk>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = match authenticate(&w, q.as_deref(), &body) {
        Ok(p) => p,
        Err((code, msg)) => return error(code, msg),
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    for required in ["store_id", "mobile", "order_no", "money", "recharge_type"] {
        if get(required).is_empty() {
            return error("1002", &format!("{required}不能为空"));
        }
    }
    if get("store_id") != w.creds.store_id {
        return error("2001", "店铺不存在");
    }
    let money = get("money");
    let Some(amount_fen) = whole_yuan_to_fen(&money).filter(|f| {
        w.creds
            .moneys
            .iter()
            .any(|m| m.checked_mul(100) == Some(*f))
    }) else {
        return error("2002", "充值金额不支持");
    };
    if !matches!(get("recharge_type").as_str(), "0" | "1") {
        return error("2002", "recharge_type错误");
    }
    let (mobile, order_no) = (get("mobile"), get("order_no"));
    let plan = w.engine.plan(&mobile, &order_no);
    if plan.refuse {
        if let Some(c) = &w.engine.dialect.submit_refusal {
            return error(&c.code, &c.message);
        }
        return error("2005", "该号码暂不支持充值");
    }
    let notify = Some(get("notify_url"))
        .filter(|u| !u.is_empty())
        .or_else(|| w.engine.default_callback_url.clone());
    let record = OrderRecord {
        provider_order_id: w.engine.next_id("W"),
        caller_order_id: order_no,
        account: mobile,
        product: money,
        amount_fen,
        price_fen: amount_fen * w.creds.price_permille / 1000,
        state: OrderState::Accepted,
        deliveries: 0,
        arrived_fen: None,
        script: plan.label.clone(),
        callback_url: notify,
        submitted_at: get("timestamp"),
        extra: BTreeMap::from([("store_id".into(), get("store_id"))]),
    };
    let order = match w.engine.ledger.record(record) {
        Ok(o) => o,
        Err(RecordError::DuplicateOrderId) => {
            let (code, msg) =
                Dialect::code(&w.engine.dialect.submit.duplicate, "2004", "订单号重复");
            return error(&code, &msg);
        }
        Err(RecordError::InsufficientBalance) => return error("2003", "余额不足"),
    };
    let notifier: Arc<dyn Notifier> = w.notifier.clone();
    w.engine
        .start_lifecycle(order.clone(), plan.clone(), Some(notifier));
    if plan.hang {
        w.engine.hang().await;
    }
    if plan.http_500 || plan.unknown_answer {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )
            .into_response();
    }
    if plan.inband_error {
        // Recorded, yet answered with a code that no document calls a refusal: only a query can tell.
        let (code, msg) = Dialect::code(
            &w.engine.dialect.submit.busy,
            INBAND_ERROR.0,
            INBAND_ERROR.1,
        );
        return error(&code, &msg);
    }
    let (code, msg) = Dialect::code(&w.engine.dialect.submit.accepted, "0000", "推送成功");
    reply(
        &code,
        &msg,
        json!({ "order_number": order.provider_order_id }),
    )
}

fn order_json(o: &OrderRecord, d: &Dialect) -> Value {
    let mut v = json!({
        "id": o.provider_order_id.trim_start_matches('W'),
        "order_number": o.provider_order_id,
        "order_no": o.caller_order_id,
        "status": d.status(o.state, status(o.state)),
        "mobile": o.account,
        "amount": d.amount(o.amount_fen),
        "cost_price": d.amount(o.price_fen),
        "fanli": "0",
        "store_id": o.extra("store_id").unwrap_or_default(),
        "reason": if o.state == OrderState::Failed { "充值失败" } else { "" },
    });
    if let Some(a) = o.arrived_fen {
        v["arrived_amount"] = json!(d.amount(a));
    }
    v
}

async fn query(State(w): State<Arc<Wk>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = match authenticate(&w, q.as_deref(), &body) {
        Ok(p) => p,
        Err((code, msg)) => return error(code, msg),
    };
    // `store_id` is optional here (the seed's query sends none, the SDK sends it); when sent it is signed like
    // every other param and must be the merchant's.
    if p.get("store_id")
        .is_some_and(|s| !s.is_empty() && *s != w.creds.store_id)
    {
        return error("2001", "店铺不存在");
    }
    let found = match (
        p.get("order_number").filter(|v| !v.is_empty()),
        p.get("order_no").filter(|v| !v.is_empty()),
    ) {
        // Both sent: they must name the same order.
        (Some(n), Some(no)) => w
            .engine
            .search_provider_id(n)
            .filter(|o| o.caller_order_id == *no),
        (Some(n), None) => w.engine.search_provider_id(n),
        (None, Some(n)) => w.engine.search_caller_id(n),
        (None, None) => return error("1002", "order_number或order_no不能为空"),
    };
    let d = &w.engine.dialect;
    match found {
        Some(o) => {
            let (code, msg) = Dialect::code(&d.query.success, "0000", "获取成功");
            reply(&code, &msg, order_json(&o, d))
        }
        // [ASSUME] code for an unknown order.
        None => {
            let (code, msg) = Dialect::code(&d.query.not_found, "2006", "订单不存在");
            error(&code, &msg)
        }
    }
}

async fn user_query(State(w): State<Arc<Wk>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    if let Err((code, msg)) = authenticate(&w, q.as_deref(), &body) {
        return error(code, msg);
    }
    let id: Value = w
        .creds
        .store_id
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| json!(w.creds.store_id));
    let d = &w.engine.dialect;
    let (code, msg) = Dialect::code(&d.balance.success, "0000", "获取成功");
    reply(
        &code,
        &msg,
        json!({ "money": d.amount(w.engine.ledger.balance_fen()), "id": id }),
    )
}

/// JSON callback, signed TOP-style over its other fields (docs/providers/wikeyun.md §3, an assumed algorithm).
#[derive(Debug)]
struct WkNotifier {
    secret: String,
    dialect: Dialect,
}

impl Notifier for WkNotifier {
    fn build(&self, order: &OrderRecord, reported: OrderState) -> Option<Outgoing> {
        let url = order.callback_url.clone()?;
        let mut p: BTreeMap<String, String> = BTreeMap::new();
        p.insert("order_no".into(), order.caller_order_id.clone());
        p.insert("order_number".into(), order.provider_order_id.clone());
        let d = &self.dialect;
        p.insert("status".into(), d.status(reported, status(reported)));
        p.insert("mobile".into(), order.account.clone());
        p.insert("amount".into(), d.amount(order.amount_fen));
        p.insert("cost_price".into(), d.amount(order.price_fen));
        p.insert("fanli".into(), "0".into());
        if reported == OrderState::Partial
            && let Some(a) = order.arrived_fen
        {
            p.insert("arrived_amount".into(), d.amount(a));
        }
        if reported == OrderState::Failed {
            p.insert("failReason".into(), "充值失败".into());
        }
        let sig = sign(&p, &self.secret);
        p.insert("sign".into(), sig);
        let body = serde_json::to_vec(&p).ok()?;
        Some(Outgoing {
            method: CallbackMethod::Post,
            url,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        })
    }

    fn is_ack(&self, status: u16, body: &[u8]) -> bool {
        // The plain string `success` [SEED].
        (200..300).contains(&status) && reply_is(body, &["success"])
    }

    fn retry_schedule(&self) -> Vec<Duration> {
        // Up to 5 resends [SEED]; the spacing is not public [ASSUME] 1 m, 2 m, 5 m, 10 m, 30 m.
        secs(&[60, 120, 300, 600, 1800])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common() -> BTreeMap<String, String> {
        [
            ("app_key", "100001"),
            ("client", "127.0.0.1"),
            ("format", "json"),
            ("timestamp", "1700000000"),
            ("v", "1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn push_order_sign_matches_the_worked_example() {
        let mut p = common();
        for (k, v) in [
            ("store_id", "1234"),
            ("mobile", "13800138000"),
            ("order_no", "T202401010001"),
            ("money", "100"),
            ("recharge_type", "1"),
            ("notify_url", "https://example.com/notify"),
        ] {
            p.insert(k.into(), v.into());
        }
        assert_eq!(
            sign_string(&p, "TestAppSecret0123"),
            "TestAppSecret0123app_key100001client127.0.0.1formatjsonmobile13800138000money100notify_urlhttps://example.com/notifyorder_noT202401010001recharge_type1store_id1234timestamp1700000000v1.0TestAppSecret0123"
        );
        assert_eq!(
            sign(&p, "TestAppSecret0123"),
            "F639BBE261C82EAFA1DCE8A6B34B5C36"
        );
    }

    #[test]
    fn query_and_user_query_signs_match_the_worked_examples() {
        let mut p = common();
        assert_eq!(
            sign(&p, "TestAppSecret0123"),
            "CBC9BB0DF12916303A5AB0FF0C52156B"
        );
        p.insert("order_number".into(), "W202401010000001".into());
        assert_eq!(
            sign(&p, "TestAppSecret0123"),
            "B2E44C2CC1269A70545007A4BC0D9CF7"
        );
    }
}

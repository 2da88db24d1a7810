//! 000 SMS proxy billing (docs/providers/sms-billing.md): MP 获取交易短信 (returns 1–2 `{sms, accessno}` and an `orderId`),
//! PC 获取验证码 + 验证码支付, authenticated by the plain channel password. The user's MO SMS is simulated by the
//! harness endpoint `POST /_sim/mo/{orderId}`, which triggers the charge and the sync GET
//! (`orderid, cpparam, mobile, port, price, status=DELIVRD|FAIL, time`) to the configured sync URL, retried
//! until the reply is `ok`. Nothing is prepaid here: the end user pays, so the merchant balance stays 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::callback::{CallbackMethod, Notifier, Outgoing, reply_is, secs};
use crate::codec::{Charset, beijing_timestamp, encode_form, md5_upper, parse_form};
use crate::engine::Engine;
use crate::ledger::{OrderRecord, OrderState, RecordError};
use crate::script::{Outcome, Plan};
use crate::{Protocol, SimError, parse_credentials};

/// Credentials file shape for `sms-billing`.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// `channelcode`.
    pub channelcode: String,
    /// The plain-text channel `password`.
    pub password: String,
    /// Catalog by `productcode` (default: `P200` = 2 yuan with one SMS, `P1000` = 10 yuan with two).
    #[serde(default = "default_products")]
    pub products: BTreeMap<String, Product>,
    /// The verification code the PC flow "sends" to the user (default `123456`).
    #[serde(default = "default_code")]
    pub verify_code: String,
    /// [ASSUME] When set, the sync carries `sign = MD5(sorted k=v&… + key)`, uppercase.
    #[serde(default)]
    pub sync_key: Option<String>,
    /// [ASSUME] The reply that acknowledges a sync (default `ok`, any case).
    #[serde(default = "default_ack")]
    pub sync_ack: String,
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    /// What the user is billed, in fen.
    pub price_fen: i64,
    /// The operator short code the MO SMS goes to.
    pub accessno: String,
    /// How many SMS the MP flow returns (1 or 2).
    #[serde(default = "one")]
    pub sms_count: u8,
}

fn one() -> u8 {
    1
}
fn default_code() -> String {
    "123456".into()
}
fn default_ack() -> String {
    "ok".into()
}
fn default_products() -> BTreeMap<String, Product> {
    BTreeMap::from([
        (
            "P200".to_owned(),
            Product {
                price_fen: 200,
                accessno: "1065553610007".into(),
                sms_count: 1,
            },
        ),
        (
            "P1000".to_owned(),
            Product {
                price_fen: 1000,
                accessno: "10658077016622".into(),
                sms_count: 2,
            },
        ),
    ])
}

#[derive(Debug)]
struct Sms {
    engine: Arc<Engine>,
    creds: Credentials,
    notifier: Arc<SyncNotifier>,
}

/// Builds the sms-billing router.
pub(crate) fn router(
    creds: Value,
    build: impl Fn(i64) -> Arc<Engine>,
) -> Result<(Arc<Engine>, Router), SimError> {
    let creds: Credentials = parse_credentials(Protocol::SmsBilling, creds)?;
    let engine = build(0);
    let notifier = Arc::new(SyncNotifier {
        key: creds.sync_key.clone(),
        ack: creds.sync_ack.clone(),
    });
    let state = Arc::new(Sms {
        engine: Arc::clone(&engine),
        creds,
        notifier,
    });
    let router = Router::new()
        .route("/mp/getSms", any(mp_get_sms))
        .route("/pc/getVerifyCode", any(pc_get_code))
        .route("/pc/pay", any(pc_pay))
        .route("/_sim/mo/{order_id}", post(simulate_mo))
        .with_state(state);
    Ok((engine, router))
}

// resultCode values: only "0" (success) is documented; the others are [ASSUME] and carrier-specific.
const BAD_PASSWORD: &str = "1001";
const UNKNOWN_PRODUCT: &str = "1002";
const MISSING_PARAM: &str = "1003";
const USER_REFUSED: &str = "1004";
const DUPLICATE: &str = "1005";
const NO_SUCH_ORDER: &str = "1006";
const ALREADY_PAID: &str = "1007";
const WRONG_CODE: &str = "1008";
const CHARGE_FAILED: &str = "1009";

fn fail(code: &str, desc: &str) -> Response {
    Json(json!({ "resultCode": code, "resultDesc": desc })).into_response()
}

fn params(query: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    let mut p: BTreeMap<String, String> = parse_form(query.unwrap_or("").as_bytes(), Charset::Utf8)
        .into_iter()
        .collect();
    p.extend(parse_form(body, Charset::Utf8));
    p
}

impl Sms {
    /// Checks channel and password, and that `required` are present. `Err` is (resultCode, resultDesc).
    fn check(
        &self,
        p: &BTreeMap<String, String>,
        required: &[&str],
    ) -> Result<(), (&'static str, &'static str)> {
        if required
            .iter()
            .any(|k| p.get(*k).is_none_or(|v| v.is_empty()))
        {
            return Err((MISSING_PARAM, "缺少参数"));
        }
        if p.get("channelcode") != Some(&self.creds.channelcode)
            || p.get("password") != Some(&self.creds.password)
        {
            return Err((BAD_PASSWORD, "渠道或密码错误"));
        }
        Ok(())
    }

    /// Records an order awaiting the user. `Err` is (resultCode, resultDesc).
    fn open(
        &self,
        p: &BTreeMap<String, String>,
        account: &str,
        flow: &str,
    ) -> Result<(OrderRecord, Plan), (&'static str, &'static str)> {
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let Some(product) = self.creds.products.get(&get("productcode")) else {
            return Err((UNKNOWN_PRODUCT, "计费代码不存在"));
        };
        let order_id = self.engine.next_id("SP");
        // cpparam is the CP's own reference and the idempotency key; without one the order id stands in.
        let caller = Some(get("cpparam"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| order_id.clone());
        let plan = self.engine.plan(account, &caller);
        if plan.refuse {
            return Err((USER_REFUSED, "用户受限,无法计费"));
        }
        let record = OrderRecord {
            provider_order_id: order_id,
            caller_order_id: caller,
            account: account.to_owned(),
            product: get("productcode"),
            amount_fen: product.price_fen,
            // The user pays, not the merchant: nothing is debited.
            price_fen: 0,
            state: OrderState::AwaitingUser,
            deliveries: 0,
            arrived_fen: None,
            script: plan.label.clone(),
            callback_url: self.engine.default_callback_url.clone(),
            submitted_at: beijing_timestamp(SystemTime::now()),
            extra: BTreeMap::from([
                ("flow".into(), flow.into()),
                ("cpparam".into(), get("cpparam")),
                ("port".into(), product.accessno.clone()),
                ("mobile".into(), get("phone")),
            ]),
        };
        match self.engine.ledger.record(record) {
            Ok(o) => Ok((o, plan)),
            Err(RecordError::DuplicateOrderId) => Err((DUPLICATE, "订单重复")),
            Err(RecordError::InsufficientBalance) => Err((CHARGE_FAILED, "扣费失败")),
        }
    }

    /// Ends a charge as the plan says and sends the sync (in the background, unless the plan loses it).
    fn settle(self: &Arc<Self>, order: &OrderRecord, plan: Plan) {
        let s = Arc::clone(self);
        let order = order.clone();
        self.engine.spawn(async move {
            s.engine
                .ledger
                .transition(&order.provider_order_id, OrderState::Processing, None);
            if plan.slow {
                tokio::time::sleep(s.engine.timing.scaled(s.engine.timing.long_processing)).await;
            }
            let Some(done) =
                s.engine
                    .ledger
                    .transition(&order.provider_order_id, final_state(&plan), None)
            else {
                return;
            };
            let n: &dyn Notifier = s.notifier.as_ref();
            s.engine.final_callbacks(n, &done, plan.callbacks).await;
        });
    }
}

fn final_state(plan: &Plan) -> OrderState {
    match plan.outcome {
        Outcome::Fail => OrderState::Failed,
        // A phone bill cannot be reversed or part-paid through this protocol.
        Outcome::Succeed | Outcome::SucceedThenReverse | Outcome::Partial => OrderState::Succeeded,
    }
}

async fn mp_get_sms(State(s): State<Arc<Sms>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q.as_deref(), &body);
    if let Err((code, desc)) = s.check(&p, &["productcode", "channelcode", "password", "imsi"]) {
        return fail(code, desc);
    }
    let imsi = p.get("imsi").cloned().unwrap_or_default();
    let (order, plan) = match s.open(&p, &imsi, "mp") {
        Ok(x) => x,
        Err((code, desc)) => return fail(code, desc),
    };
    let count = s
        .creds
        .products
        .get(&order.product)
        .map(|pr| pr.sms_count.clamp(1, 2))
        .unwrap_or(1);
    let port = order.extra("port").unwrap_or_default().to_owned();
    let array: Vec<Value> = (1..=count)
        .map(|i| json!({ "sms": format!("ZF{}#{}#{i}", order.product, order.provider_order_id), "accessno": port }))
        .collect();
    if plan.hang {
        s.engine.hang().await;
    }
    if plan.http_500 || plan.unknown_answer {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    Json(json!({ "resultCode": "0", "resultDesc": "成功", "array": array, "orderId": order.provider_order_id }))
        .into_response()
}

async fn pc_get_code(State(s): State<Arc<Sms>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q.as_deref(), &body);
    if let Err((code, desc)) = s.check(&p, &["productcode", "channelcode", "password", "phone"]) {
        return fail(code, desc);
    }
    let phone = p.get("phone").cloned().unwrap_or_default();
    match s.open(&p, &phone, "pc") {
        Ok((order, _)) => {
            Json(json!({ "resultCode": "0", "resultDesc": "验证码已下发", "orderId": order.provider_order_id }))
                .into_response()
        }
        Err((code, desc)) => fail(code, desc),
    }
}

async fn pc_pay(State(s): State<Arc<Sms>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q.as_deref(), &body);
    if let Err((code, desc)) = s.check(&p, &["verifycode", "channelcode", "password", "orderid"]) {
        return fail(code, desc);
    }
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let Some(order) = s
        .engine
        .ledger
        .by_provider_id(&get("orderid"))
        .filter(|o| o.extra("flow") == Some("pc"))
    else {
        return fail(NO_SUCH_ORDER, "订单不存在");
    };
    if order.state != OrderState::AwaitingUser {
        return fail(ALREADY_PAID, "订单已支付");
    }
    if get("verifycode") != s.creds.verify_code {
        return fail(WRONG_CODE, "验证码错误");
    }
    let plan = s.engine.plan(&order.account, &order.caller_order_id);
    let state = final_state(&plan);
    let Some(done) = s
        .engine
        .ledger
        .transition(&order.provider_order_id, state, None)
    else {
        return fail(NO_SUCH_ORDER, "订单不存在");
    };
    if s.engine.default_callback_url.is_some() {
        let s2 = Arc::clone(&s);
        let callbacks = plan.callbacks;
        s.engine.spawn(async move {
            let n: &dyn Notifier = s2.notifier.as_ref();
            s2.engine.final_callbacks(n, &done, callbacks).await;
        });
    }
    if plan.hang {
        s.engine.hang().await;
    }
    if plan.http_500 || plan.unknown_answer {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    match state {
        OrderState::Succeeded => {
            Json(json!({ "resultCode": "0", "resultDesc": "支付成功" })).into_response()
        }
        _ => fail(CHARGE_FAILED, "扣费失败"),
    }
}

/// Harness: the user sent the MO SMS of MP order `order_id` (optionally `?mobile=` for the sync).
async fn simulate_mo(
    State(s): State<Arc<Sms>>,
    Path(order_id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let Some(order) = s
        .engine
        .ledger
        .by_provider_id(&order_id)
        .filter(|o| o.extra("flow") == Some("mp"))
    else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such MP order" })),
        )
            .into_response();
    };
    if order.state != OrderState::AwaitingUser {
        return (
            StatusCode::CONFLICT,
            Json(json!({ "error": "MO already received" })),
        )
            .into_response();
    }
    let p = params(q.as_deref(), b"");
    let mobile = p
        .get("mobile")
        .cloned()
        .unwrap_or_else(|| "13800138000".into());
    s.engine
        .ledger
        .set_extra(&order.provider_order_id, "mobile", &mobile);
    let order = s.engine.ledger.by_provider_id(&order_id).unwrap_or(order);
    let plan = s.engine.plan(&order.account, &order.caller_order_id);
    s.settle(&order, plan);
    Json(json!({ "orderId": order_id, "mo": "received" })).into_response()
}

/// The sync GET: `orderid, cpparam, mobile, port, price, status, time[, sign]`, acknowledged by `ok`.
#[derive(Debug)]
struct SyncNotifier {
    key: Option<String>,
    ack: String,
}

impl Notifier for SyncNotifier {
    fn build(&self, order: &OrderRecord, reported: OrderState) -> Option<Outgoing> {
        let status = match reported {
            OrderState::Succeeded => "DELIVRD",
            OrderState::Failed => "FAIL",
            // A sync only reports a final charge result.
            OrderState::Accepted
            | OrderState::Processing
            | OrderState::AwaitingUser
            | OrderState::Reversed
            | OrderState::Partial => return None,
        };
        let base = order.callback_url.clone()?;
        let price = order.amount_fen.to_string();
        let time = beijing_timestamp(SystemTime::now());
        let mut p: BTreeMap<&str, &str> = BTreeMap::new();
        p.insert("orderid", &order.provider_order_id);
        p.insert("cpparam", order.extra("cpparam").unwrap_or_default());
        p.insert("mobile", order.extra("mobile").unwrap_or_default());
        p.insert("port", order.extra("port").unwrap_or_default());
        p.insert("price", &price);
        p.insert("status", status);
        p.insert("time", &time);
        let sign = self.key.as_ref().map(|k| {
            let joined: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
            md5_upper(format!("{}{k}", joined.join("&")).as_bytes())
        });
        let mut pairs: Vec<(&str, &str)> = p.into_iter().collect();
        if let Some(s) = &sign {
            pairs.push(("sign", s));
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(Outgoing {
            method: CallbackMethod::Get,
            url: format!("{base}{sep}{}", encode_form(&pairs, Charset::Utf8)),
            headers: vec![],
            body: vec![],
        })
    }

    fn is_ack(&self, status: u16, body: &[u8]) -> bool {
        (200..300).contains(&status) && reply_is(body, &[self.ack.as_str()])
    }

    fn retry_schedule(&self) -> Vec<Duration> {
        // [ASSUME] as suka-xml: 1 m, 2 m, 5 m, 10 m, 30 m.
        secs(&[60, 120, 300, 600, 1800])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_then_stale_sends_no_stale_sync_because_a_sync_cannot_say_processing() {
        let n = SyncNotifier {
            key: None,
            ack: "ok".into(),
        };
        let order = OrderRecord {
            provider_order_id: "SP1".into(),
            caller_order_id: "c".into(),
            account: "460001234560005".into(),
            product: "P200".into(),
            amount_fen: 200,
            price_fen: 0,
            state: OrderState::Succeeded,
            deliveries: 1,
            arrived_fen: None,
            script: "0005".into(),
            callback_url: Some("http://127.0.0.1:1/sync".into()),
            submitted_at: String::new(),
            extra: BTreeMap::new(),
        };
        assert!(n.build(&order, OrderState::Processing).is_none());
        let out = n.build(&order, OrderState::Succeeded).unwrap();
        assert!(
            out.url.contains("status=DELIVRD") && out.url.contains("price=200"),
            "{}",
            out.url
        );
    }
}

//! 001 鼎音 / 速卡 XML family (docs/providers/suka-xml.md): `gameonlinepay.do` submit, `searchpay.do` query,
//! `searchbalance.do` balance, and the GBK form callback to `back_url`. Forms are GBK unless the content type
//! says otherwise; every MD5 is taken over GBK bytes and written uppercase; responses are GBK XML declared
//! GB2312.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;

use crate::callback::{CallbackMethod, Notifier, Outgoing, reply_is, secs};
use crate::codec::{Charset, encode_form, md5_upper, parse_form, sign_eq};
use crate::dialect::Dialect;
use crate::engine::Engine;
use crate::ledger::{OrderRecord, OrderState, RecordError};
use crate::{Protocol, SimError, parse_credentials};

/// Credentials file shape for `suka-xml`.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// Merchant number (`userid`).
    pub userid: String,
    /// MD5 key.
    pub key: String,
    /// Opening balance in fen (default 1 000 000 = 10 000 yuan).
    #[serde(default = "default_balance")]
    pub balance_fen: i64,
    /// Product catalog by `productid` (default: 3312 = 100 yuan game top-up at 98.5, 8801 = 100 yuan
    /// electricity at 99.5).
    #[serde(default = "default_products")]
    pub products: BTreeMap<String, Product>,
    /// Form charset when the request's content type names none (default GBK, as the Go and 梵尘 clients send).
    #[serde(default)]
    pub form_charset_utf8: bool,
    /// [ASSUME] Callback replies that acknowledge, compared case-insensitively (default `ok`, `success`).
    #[serde(default = "default_acks")]
    pub callback_acks: Vec<String>,
    /// [ASSUME] Require a (case-insensitive) sign on `searchpay.do` (default false: the family doc sends none).
    #[serde(default)]
    pub query_sign_required: bool,
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    /// Face value per unit, in fen.
    pub face_fen: i64,
    /// Merchant price per unit, in fen.
    pub price_fen: i64,
    /// `productname` in the response.
    #[serde(default)]
    pub name: String,
}

fn default_acks() -> Vec<String> {
    vec!["ok".into(), "success".into()]
}

fn default_balance() -> i64 {
    1_000_000
}

fn default_products() -> BTreeMap<String, Product> {
    BTreeMap::from([
        (
            "3312".to_owned(),
            Product {
                face_fen: 10_000,
                price_fen: 9_850,
                name: "游戏直充".into(),
            },
        ),
        (
            "8801".to_owned(),
            Product {
                face_fen: 10_000,
                price_fen: 9_950,
                name: "电费直充".into(),
            },
        ),
    ])
}

/// The order of the fields in the submit sign string (docs/providers/suka-xml.md §4: fixed, empties included).
pub const SUBMIT_SIGN_FIELDS: [&str; 8] = [
    "userid",
    "productid",
    "num",
    "areaid",
    "serverid",
    "account",
    "spordertime",
    "sporderid",
];

/// `k1=v1&k2=v2&...&key=KEY` over `fields` in the given order, missing values as empty strings.
pub fn sign_string(params: &BTreeMap<String, String>, fields: &[&str], key: &str) -> String {
    let mut s: String = fields
        .iter()
        .map(|f| format!("{f}={}&", params.get(*f).map(String::as_str).unwrap_or("")))
        .collect();
    s.push_str("key=");
    s.push_str(key);
    s
}

/// Uppercase MD5 over the GBK bytes of `s`.
pub fn sign(s: &str) -> String {
    md5_upper(&Charset::Gbk.encode(s))
}

#[derive(Debug)]
struct Suka {
    engine: Arc<Engine>,
    creds: Credentials,
    notifier: Arc<SukaNotifier>,
}

/// Builds the suka-xml router.
pub(crate) fn router(
    creds: serde_json::Value,
    build: impl Fn(i64) -> Arc<Engine>,
) -> Result<(Arc<Engine>, Router), SimError> {
    let creds: Credentials = parse_credentials(Protocol::SukaXml, creds)?;
    let engine = build(creds.balance_fen);
    let notifier = Arc::new(SukaNotifier {
        userid: creds.userid.clone(),
        key: creds.key.clone(),
        acks: creds.callback_acks.clone(),
        dialect: engine.dialect.clone(),
    });
    let state = Arc::new(Suka {
        engine: Arc::clone(&engine),
        creds,
        notifier,
    });
    let router = Router::new()
        .route("/gameonlinepay.do", any(submit))
        .route("/searchpay.do", any(query))
        .route("/searchbalance.do", any(balance))
        .with_state(state);
    Ok((engine, router))
}

/// Query-string and form-body parameters together (the body wins), decoded in the request's charset.
fn params(
    s: &Suka,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> BTreeMap<String, String> {
    let default = if s.creds.form_charset_utf8 {
        Charset::Utf8
    } else {
        Charset::Gbk
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let charset = Charset::from_content_type(ct, default);
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in parse_form(query.unwrap_or("").as_bytes(), charset) {
        all.insert(k, v);
    }
    for (k, v) in parse_form(body, charset) {
        all.insert(k, v);
    }
    all
}

/// An XML response: GBK bytes declared GB2312.
fn xml(status: StatusCode, root: &str, fields: &[(&str, String)]) -> Response {
    let mut s = format!("<?xml version=\"1.0\" encoding=\"GB2312\"?><{root}>");
    for (k, v) in fields {
        s.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    s.push_str(&format!("</{root}>"));
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=GB2312")],
        Charset::Gbk.encode(&s),
    )
        .into_response()
}

fn escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn order_error(p: &BTreeMap<String, String>, code: &str) -> Response {
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    xml(
        StatusCode::OK,
        "order",
        &[
            ("orderid", String::new()),
            ("sporderid", get("sporderid")),
            ("resultno", code.to_owned()),
        ],
    )
}

/// `resultno` for an order state (family code table: 0 waiting, 2 in progress, 1 success, 9 failed+refunded).
fn resultno(state: OrderState) -> &'static str {
    match state {
        OrderState::Accepted | OrderState::AwaitingUser => "0",
        OrderState::Processing => "2",
        // Reversal and partial cannot happen here (no capability); report them as what the merchant got.
        OrderState::Succeeded | OrderState::Partial => "1",
        OrderState::Failed | OrderState::Reversed => "9",
    }
}

async fn submit(
    State(s): State<Arc<Suka>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&s, &headers, q.as_deref(), &body);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    for required in [
        "userid",
        "num",
        "account",
        "spordertime",
        "sporderid",
        "sign",
    ] {
        if get(required).is_empty() {
            return order_error(&p, "5012");
        }
    }
    if get("userid") != s.creds.userid {
        return order_error(&p, "5001");
    }
    let expected = sign(&sign_string(&p, &SUBMIT_SIGN_FIELDS, &s.creds.key));
    if !sign_eq(&expected, &get("sign"), false) {
        return order_error(&p, "5005");
    }
    // An empty productid asks the platform to detect the carrier; the simulator has no number-to-product table,
    // so it cannot price such an order and answers 5012 (missing parameter) rather than guess.
    let Some(product) = s.creds.products.get(&get("productid")) else {
        let code = if get("productid").is_empty() {
            "5012"
        } else {
            "5003"
        };
        return order_error(&p, code);
    };
    let num: i64 = match get("num").parse() {
        Ok(n) if (1..=100).contains(&n) => n,
        _ => return order_error(&p, "5011"),
    };
    let (account, sporderid) = (get("account"), get("sporderid"));
    let plan = s.engine.plan(&account, &sporderid);
    if plan.refuse {
        // 5003 此商品暂时不可购买: a definite refusal that allows failover (unless the dialect says otherwise).
        return match &s.engine.dialect.submit_refusal {
            Some(c) => order_error(&p, &c.code),
            None => order_error(&p, "5003"),
        };
    }
    let back_url = Some(get("back_url"))
        .filter(|u| !u.is_empty())
        .or_else(|| s.engine.default_callback_url.clone());
    let record = OrderRecord {
        provider_order_id: s.engine.next_id("XS"),
        caller_order_id: sporderid,
        account,
        product: get("productid"),
        amount_fen: product.face_fen * num,
        price_fen: product.price_fen * num,
        state: OrderState::Accepted,
        deliveries: 0,
        arrived_fen: None,
        script: plan.label.clone(),
        callback_url: back_url,
        submitted_at: get("spordertime"),
        extra: BTreeMap::new(),
    };
    let order = match s.engine.ledger.record(record) {
        Ok(o) => o,
        Err(RecordError::DuplicateOrderId) => {
            let (code, _) = Dialect::code(&s.engine.dialect.submit.duplicate, "5006", "");
            return order_error(&p, &code);
        }
        Err(RecordError::InsufficientBalance) => return order_error(&p, "5002"),
    };
    let notifier: Arc<dyn Notifier> = s.notifier.clone();
    s.engine
        .start_lifecycle(order.clone(), plan.clone(), Some(notifier));
    if plan.hang {
        s.engine.hang().await;
    }
    if plan.unknown_answer {
        // 9999 未知错误,需进入平台查询核实: the order exists, the caller must query.
        return order_error(&p, "9999");
    }
    if plan.inband_error {
        // The in-band error after recording: 9999 too, as the code table documents no other such answer,
        // unless the dialect says "busy" its own way.
        let (code, _) = Dialect::code(&s.engine.dialect.submit.busy, "9999", "");
        return order_error(&p, &code);
    }
    if plan.http_500 {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    let mut fields = order_fields(&s, &order, num, product.name.clone());
    fields.push((
        "resultno",
        Dialect::code(&s.engine.dialect.submit.accepted, "0", "").0,
    ));
    xml(StatusCode::OK, "order", &fields)
}

/// The elements that describe an order in the submit and query replies, in the doc's order: what was
/// ordered (`num` of `name`), for how much, under which ids.
fn order_fields(s: &Suka, o: &OrderRecord, num: i64, name: String) -> Vec<(&'static str, String)> {
    vec![
        ("orderid", o.provider_order_id.clone()),
        ("productid", o.product.clone()),
        ("num", num.to_string()),
        ("ordercash", s.engine.dialect.amount(o.price_fen)),
        ("productname", name),
        ("sporderid", o.caller_order_id.clone()),
        ("account", o.account.clone()),
    ]
}

async fn query(
    State(s): State<Arc<Suka>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&s, &headers, q.as_deref(), &body);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    if get("userid").is_empty() || get("sporderid").is_empty() {
        return order_error(&p, "5012");
    }
    if get("userid") != s.creds.userid {
        return order_error(&p, "5001");
    }
    // Assumed (docs/providers/suka-xml.md §3): a missing query sign is accepted (the family doc sends none) unless
    // configured otherwise; a present one is verified case-insensitively (the PHP client sends it lowercase).
    if s.creds.query_sign_required && get("sign").is_empty() {
        return order_error(&p, "5005");
    }
    if let Some(given) = p.get("sign").filter(|g| !g.is_empty()) {
        let expected = sign(&sign_string(&p, &["userid", "sporderid"], &s.creds.key));
        if !sign_eq(&expected, given, true) {
            return order_error(&p, "5005");
        }
    }
    let Some(o) = s.engine.search_caller_id(&get("sporderid")) else {
        let (code, _) = Dialect::code(&s.engine.dialect.query.not_found, "5007", "");
        return order_error(&p, &code);
    };
    let num = s
        .creds
        .products
        .get(&o.product)
        .map(|pr| o.amount_fen / pr.face_fen.max(1))
        .unwrap_or(1);
    let name = s
        .creds
        .products
        .get(&o.product)
        .map(|pr| pr.name.clone())
        .unwrap_or_default();
    let mut fields = order_fields(&s, &o, num, name);
    fields.extend([
        ("merchantsubmittime", o.submitted_at.clone()),
        (
            "resultno",
            s.engine.dialect.status(o.state, resultno(o.state)),
        ),
        ("remark1", String::new()),
        (
            "fundbalance",
            s.engine.dialect.amount(s.engine.ledger.balance_fen()),
        ),
    ]);
    xml(StatusCode::OK, "order", &fields)
}

async fn balance(
    State(s): State<Arc<Suka>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&s, &headers, q.as_deref(), &body);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let fail = |code: &str| {
        xml(
            StatusCode::OK,
            "user",
            &[("userid", get("userid")), ("resultno", code.to_owned())],
        )
    };
    if get("userid").is_empty() {
        return fail("5012");
    }
    if get("userid") != s.creds.userid {
        return fail("5001");
    }
    let expected = sign(&sign_string(&p, &["userid"], &s.creds.key));
    if !sign_eq(&expected, &get("sign"), false) {
        return fail("5005");
    }
    // Here resultno 1 means "balance query succeeded" (docs/providers/suka-xml.md §2).
    xml(
        StatusCode::OK,
        "user",
        &[
            ("userid", s.creds.userid.clone()),
            (
                "balance",
                s.engine.dialect.amount(s.engine.ledger.balance_fen()),
            ),
            (
                "resultno",
                Dialect::code(&s.engine.dialect.balance.success, "1", "").0,
            ),
        ],
    )
}

/// Sends the GBK form callback with the five-field sign.
#[derive(Debug)]
struct SukaNotifier {
    userid: String,
    key: String,
    acks: Vec<String>,
    dialect: Dialect,
}

impl Notifier for SukaNotifier {
    fn build(&self, order: &OrderRecord, reported: OrderState) -> Option<Outgoing> {
        let url = order.callback_url.clone()?;
        let mut p = BTreeMap::new();
        p.insert("userid".to_owned(), self.userid.clone());
        p.insert("orderid".to_owned(), order.provider_order_id.clone());
        p.insert("sporderid".to_owned(), order.caller_order_id.clone());
        p.insert("merchantsubmittime".to_owned(), order.submitted_at.clone());
        p.insert(
            "resultno".to_owned(),
            self.dialect.status(reported, resultno(reported)),
        );
        let fields = [
            "userid",
            "orderid",
            "sporderid",
            "merchantsubmittime",
            "resultno",
        ];
        let sig = sign(&sign_string(&p, &fields, &self.key));
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let parvalue = self.dialect.amount(order.amount_fen);
        let payno = format!("PAY{}", order.provider_order_id);
        // Wire order differs from the sign order on purpose, as on the real platform; the optional fields
        // (parvalue, remark1, payno) are not signed.
        let body = encode_form(
            &[
                ("userid", &get("userid")),
                ("orderid", &get("orderid")),
                ("sporderid", &get("sporderid")),
                ("merchantsubmittime", &get("merchantsubmittime")),
                ("resultno", &get("resultno")),
                ("parvalue", &parvalue),
                ("remark1", ""),
                ("payno", &payno),
                ("sign", &sig),
            ],
            Charset::Gbk,
        );
        Some(Outgoing {
            method: CallbackMethod::Post,
            url,
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded;charset=gbk".into(),
            )],
            body: body.into_bytes(),
        })
    }

    fn is_ack(&self, status: u16, body: &[u8]) -> bool {
        // [ASSUME] any 2xx whose body is one of the configured replies (`ok`, `success`), any case.
        let acks: Vec<&str> = self.acks.iter().map(String::as_str).collect();
        (200..300).contains(&status) && reply_is(body, &acks)
    }

    fn retry_schedule(&self) -> Vec<Duration> {
        // [ASSUME] 1 m, 2 m, 5 m, 10 m, 30 m after the first attempt.
        secs(&[60, 120, 300, 600, 1800])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit_params() -> BTreeMap<String, String> {
        [
            ("userid", "10004927"),
            ("productid", "3312"),
            ("num", "1"),
            ("areaid", ""),
            ("serverid", ""),
            ("account", "13590101510"),
            ("spordertime", "20210224134552"),
            ("sporderid", "2009042800001"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    const KEY: &str = "abcdef0123456789ABCDEF0123456789";

    #[test]
    fn submit_sign_matches_the_worked_example() {
        let s = sign_string(&submit_params(), &SUBMIT_SIGN_FIELDS, KEY);
        assert_eq!(
            s,
            "userid=10004927&productid=3312&num=1&areaid=&serverid=&account=13590101510&spordertime=20210224134552&sporderid=2009042800001&key=abcdef0123456789ABCDEF0123456789"
        );
        assert_eq!(sign(&s), "70C929C81195291EA5B7D6352850873F");
    }

    #[test]
    fn callback_sign_matches_the_worked_example() {
        let n = SukaNotifier {
            userid: "10004927".into(),
            key: KEY.into(),
            acks: default_acks(),
            dialect: Dialect::default(),
        };
        let order = OrderRecord {
            provider_order_id: "XS090428000003".into(),
            caller_order_id: "2009042800001".into(),
            account: "13590101510".into(),
            product: "3312".into(),
            amount_fen: 10_000,
            price_fen: 9_850,
            state: OrderState::Succeeded,
            deliveries: 1,
            arrived_fen: None,
            script: "normal".into(),
            callback_url: Some("http://127.0.0.1:1/cb".into()),
            submitted_at: "20210224134800".into(),
            extra: BTreeMap::new(),
        };
        let out = n.build(&order, OrderState::Succeeded).unwrap();
        let body = String::from_utf8(out.body).unwrap();
        assert!(body.contains("resultno=1&"), "{body}");
        assert!(
            body.ends_with("&sign=CDF8C7CF2DEAA55875F35D951871FA39"),
            "{body}"
        );
    }

    #[test]
    fn responses_are_gbk_bytes_declared_gb2312() {
        let r = xml(
            StatusCode::OK,
            "order",
            &[("productname", "游戏直充".into())],
        );
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/xml; charset=GB2312"
        );
    }
}

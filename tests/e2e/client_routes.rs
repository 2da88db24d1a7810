//! The client routes of issue 18 over HTTP: a carrier-billing order followed and completed with its client
//! secret alone, every refusal with its code, the CORS preflight, and the store round trips of each route
//! (counted at the SDK on DynamoDB Local).

use crate::helpers::*;
use recharge_local::LocalConfig;
use recharge_local::demo::DEMO_VERIFICATION_CODE;
use serde_json::{Value, json};
use std::time::Duration;

/// An origin the demo app lists for its H5 pages, one only demo2 lists, and one nobody lists.
const DEMO_ORIGIN: &str = "https://h5.demo.example.cn";
const DEMO2_ORIGIN: &str = "https://h5.demo2.example.cn";
const STRANGER: &str = "https://evil.example.com";

/// The demo apps, with client settings: demo's secrets live a day; demo2's one second (the expiry case).
fn config() -> LocalConfig {
    serde_json::from_value(json!({"apps": [
        {"id": "demo", "role": "merchant", "secret": "demo-secret",
         "client": {"allowed_origins": [DEMO_ORIGIN]}},
        {"id": "demo2", "role": "merchant", "secret": "demo2-secret",
         "client": {"secret_ttl_secs": 1, "allowed_origins": [DEMO2_ORIGIN]}},
        {"id": "ops", "role": "admin", "secret": "ops-secret"}
    ]}))
    .unwrap()
}

async fn start(calls: Option<recharge_aws::CallCounter>) -> Harness {
    let mut options = options();
    options.config = Some(config());
    options.aws_calls = calls;
    Harness::start_with(options).await
}

fn code_order(no: &str) -> Value {
    json!({"merchant_order_no": no, "product_code": "billing.code.demo", "account": "13800138000"})
}

/// A client's request: only the headers given (no merchant signature unless a test adds one).
async fn client(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", h.stack.base_url()),
        )
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    )
}

fn bearer(secret: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {secret}"))
}

async fn get(h: &Harness, order_id: &str, secret: &str) -> (u16, Value) {
    let (s, v, _) = client(
        h,
        "GET",
        &format!("/v1/client/orders/{order_id}"),
        &[bearer(secret)],
        b"",
    )
    .await;
    (s, v)
}

async fn verify(h: &Harness, order_id: &str, secret: &str, code: &str) -> (u16, Value) {
    let body = json!({ "code": code }).to_string();
    let (s, v, _) = client(
        h,
        "POST",
        &format!("/v1/client/orders/{order_id}/verification"),
        &[
            bearer(secret),
            ("content-type", "application/json".to_owned()),
        ],
        body.as_bytes(),
    )
    .await;
    (s, v)
}

/// Creates an order as the merchant's server; returns (order id, client secret, the create's body).
async fn create(h: &Harness, app: (&str, &str), body: &Value) -> (String, String, Value) {
    let r = h.client(app).create_order(body).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["order_id"].as_str().unwrap().to_owned();
    let secret = r.body["client_secret"].as_str().unwrap().to_owned();
    (id, secret, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_order_is_followed_and_completed_from_the_client_routes_with_the_client_secret_only()
{
    let h = start(None).await;
    let no = order_no("client-pc");
    let (id, secret, created) = create(&h, DEMO, &code_order(&no)).await;
    assert!(secret.starts_with("rcs1_"), "{secret}");
    assert!(created["client_secret_expires_at"].is_string(), "{created}");

    // A replay of the create hands out the same secret; the merchant's GET never shows it.
    let replay = h.demo().create_order(&code_order(&no)).await.unwrap();
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(replay.body["client_secret"], secret.as_str());
    let merchant_view = h.demo().get_order(&no).await.unwrap().body;
    assert!(
        merchant_view.get("client_secret").is_none(),
        "{merchant_view}"
    );

    // The reduced view: status, next action, face value, masked account, updated_at, sequence.
    let (status, view) = get(&h, &id, &secret).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "action_required", "{view}");
    assert_eq!(view["next_action"]["type"], "enter_verification_code");
    assert_eq!(view["face_value_fen"], 200);
    assert_eq!(view["account"], "138****8000");
    assert_eq!(view["order_id"], id.as_str());
    let keys: Vec<&str> = view
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "account",
            "face_value_fen",
            "next_action",
            "order_id",
            "sequence",
            "status",
            "updated_at"
        ],
        "nothing the merchant configured: {view}"
    );

    let (status, after) = verify(&h, &id, &secret, DEMO_VERIFICATION_CODE).await;
    assert_eq!(status, 200, "{after}");
    assert!(
        after["sequence"].as_u64() > view["sequence"].as_u64(),
        "{after}"
    );
    let done = poll_async(Duration::from_secs(20), "the order succeeds", || async {
        let (_, v) = get(&h, &id, &secret).await;
        (v["status"] == "succeeded").then_some(v)
    })
    .await;
    assert_eq!(done["next_action"], Value::Null);
    // The code reached the provider once: a second one is refused, and one delivery in the ledgers.
    let (status, again) = verify(&h, &id, &secret, DEMO_VERIFICATION_CODE).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "verification_not_expected");
    let order = h.stored(DEMO.0, &no).await;
    assert_eq!(deliveries(&h.ledger_of(&order)), 1);
    // And the merchant sees the same outcome.
    assert_eq!(
        h.demo().get_order(&no).await.unwrap().body["status"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_client_routes_has_its_code() {
    let h = start(None).await;
    let (id, secret, created) = create(&h, DEMO, &code_order(&order_no("client-refuse"))).await;
    let (other_id, other_secret, _) =
        create(&h, DEMO, &code_order(&order_no("client-other"))).await;
    let path = format!("/v1/client/orders/{id}");

    // No secret at all, and a merchant's correct HMAC signature instead of one.
    let none = client(&h, "GET", &path, &[], b"").await;
    assert_error(&(none.0, none.1), 401, "missing_client_secret");
    let hmac = client(
        &h,
        "GET",
        &path,
        &signed_headers(DEMO, "GET", &path, b""),
        b"",
    )
    .await;
    assert_error(&(hmac.0, hmac.1), 401, "missing_client_secret");

    // Wrong (one character changed), another order's, a well-formed id of no order: one answer.
    let mut wrong = secret.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let wrong = get(&h, &id, &wrong).await;
    assert_error(&wrong, 401, "invalid_client_secret");
    let other = get(&h, &id, &other_secret).await;
    assert_error(&other, 401, "invalid_client_secret");
    let no_order = get(&h, "AAAAAAAAAAAAAAAAAAAA", &secret).await;
    assert_error(&no_order, 401, "invalid_client_secret");
    let not_an_id = get(&h, "nonsense", &secret).await;
    assert_error(&not_an_id, 401, "invalid_client_secret");
    assert_eq!(wrong.1, no_order.1, "no such order reads as a wrong secret");
    assert_eq!(other.1, not_an_id.1);
    // The verification route refuses the same way, and nothing reached the provider.
    assert_error(
        &verify(&h, &id, &other_secret, DEMO_VERIFICATION_CODE).await,
        401,
        "invalid_client_secret",
    );
    assert_eq!(get(&h, &id, &secret).await.1["status"], "action_required");

    // Expired: demo2's secrets live one second.
    let (old_id, old_secret, _) = create(&h, DEMO2, &code_order(&order_no("client-expired"))).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_error(
        &get(&h, &old_id, &old_secret).await,
        401,
        "client_secret_expired",
    );
    assert_error(
        &verify(&h, &old_id, &old_secret, DEMO_VERIFICATION_CODE).await,
        401,
        "client_secret_expired",
    );

    // A client secret opens no merchant route.
    let merchant_path = format!(
        "/v1/orders/{}",
        created["merchant_order_no"].as_str().unwrap()
    );
    let merchant = client(&h, "GET", &merchant_path, &[bearer(&secret)], b"").await;
    assert_error(&(merchant.0, merchant.1), 401, "missing_auth");
    let merchant_post = client(
        &h,
        "POST",
        &format!("{merchant_path}/verification"),
        &[bearer(&secret)],
        br#"{"code":"123456"}"#,
    )
    .await;
    assert_error(&(merchant_post.0, merchant_post.1), 401, "missing_auth");

    // A page of an origin the order's app does not list (demo2's page, demo's order).
    let foreign_page = client(
        &h,
        "GET",
        &path,
        &[bearer(&secret), ("Origin", DEMO2_ORIGIN.to_owned())],
        b"",
    )
    .await;
    assert_error(&(foreign_page.0, foreign_page.1), 403, "origin_not_allowed");

    // Too many verification attempts: five are taken whatever they say, the sixth is refused.
    for _ in 1..=5 {
        let r = verify(&h, &other_id, &other_secret, "x").await;
        assert_error(&r, 400, "invalid_field");
    }
    let sixth = verify(&h, &other_id, &other_secret, DEMO_VERIFICATION_CODE).await;
    assert_error(&sixth, 429, "too_many_attempts");
    assert_eq!(
        get(&h, &other_id, &other_secret).await.1["status"],
        "action_required",
        "the refused sixth sent nothing"
    );

    // Too many requests for one order from one process: a burst of 10, then 1 per second.
    let (busy_id, busy_secret, _) = create(&h, DEMO, &code_order(&order_no("client-busy"))).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/v1/client/orders/{busy_id}", h.stack.base_url());
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let req = http.get(&url).bearer_auth(&busy_secret);
        burst.spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, resp.json::<Value>().await.unwrap(), retry_after)
        });
    }
    let answers: Vec<(u16, Value, Option<String>)> = burst.join_all().await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.0 != 200).collect();
    // 20 at once: the burst of 10 (and whatever refilled while they ran) passes, the rest wait.
    assert!(ok >= 10, "{answers:?}");
    assert!(!limited.is_empty(), "{answers:?}");
    for (status, body, retry_after) in limited {
        assert_error(&(*status, body.clone()), 429, "rate_limited");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
}

#[tokio::test]
async fn the_preflight_answers_a_listed_origin_refuses_others_and_only_client_routes_answer_cross_origin()
 {
    let h = start(None).await;
    let (id, secret, _) = create(&h, DEMO, &code_order(&order_no("client-cors"))).await;
    let preflight = |path: String, origin: &'static str, method: &'static str| {
        let h = &h;
        async move {
            client(
                h,
                "OPTIONS",
                &path,
                &[
                    ("Origin", origin.to_owned()),
                    ("Access-Control-Request-Method", method.to_owned()),
                    (
                        "Access-Control-Request-Headers",
                        "authorization,content-type".to_owned(),
                    ),
                ],
                b"",
            )
            .await
        }
    };
    let acao = |headers: &reqwest::header::HeaderMap| {
        headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    let order_path = format!("/v1/client/orders/{id}");
    let verification_path = format!("{order_path}/verification");
    let ok = preflight(order_path.clone(), DEMO_ORIGIN, "GET").await;
    assert_eq!(ok.0, 204, "{}", ok.1);
    assert_eq!(acao(&ok.2).as_deref(), Some(DEMO_ORIGIN));
    assert_eq!(ok.2["access-control-allow-methods"], "GET");
    assert!(
        ok.2["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let ok = preflight(verification_path.clone(), DEMO_ORIGIN, "POST").await;
    assert_eq!(ok.0, 204);
    assert_eq!(ok.2["access-control-allow-methods"], "POST");

    let refused = preflight(order_path.clone(), STRANGER, "GET").await;
    assert_error(&(refused.0, refused.1.clone()), 403, "origin_not_allowed");
    assert_eq!(acao(&refused.2), None);
    let wrong_method = preflight(order_path.clone(), DEMO_ORIGIN, "DELETE").await;
    assert_eq!(wrong_method.0, 405);

    // The request itself carries the origin back to a listed page, and to no other.
    let (status, _, headers) = client(
        &h,
        "GET",
        &order_path,
        &[bearer(&secret), ("Origin", DEMO_ORIGIN.to_owned())],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(acao(&headers).as_deref(), Some(DEMO_ORIGIN));
    assert_eq!(headers["cache-control"], "no-store");
    let (_, _, headers) = client(
        &h,
        "GET",
        &order_path,
        &[bearer(&secret), ("Origin", STRANGER.to_owned())],
        b"",
    )
    .await;
    assert_eq!(acao(&headers), None);

    // Merchant routes never answer cross-origin: no preflight, no header on a signed request.
    for path in ["/v1/orders", "/v1/balances", "/v1/callbacks/sms-pc"] {
        let r = preflight(path.to_owned(), DEMO_ORIGIN, "POST").await;
        assert_ne!(r.0, 204, "{path}");
        assert_eq!(acao(&r.2), None, "{path}");
    }
    let signed = [
        signed_headers(DEMO, "GET", "/v1/balances", b""),
        vec![("Origin", DEMO_ORIGIN.to_owned())],
    ]
    .concat();
    let (status, _, headers) = client(&h, "GET", "/v1/balances", &signed, b"").await;
    assert_eq!(
        status, 403,
        "demo is no admin, and the answer is not for a browser either"
    );
    assert_eq!(acao(&headers), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_route_costs_the_store_round_trips_written_down() {
    // Counted at the SDK on DynamoDB Local; the sweep and the balance check are held still, so only the
    // requests below touch the table.
    let calls = recharge_aws::CallCounter::new();
    let mut options = options();
    options.config = Some(config());
    options.aws_calls = Some(calls.clone());
    options.sweep_every = Duration::from_secs(3600);
    options.balance_every = Duration::from_secs(3600);
    let h = Harness::start_with(options).await;
    // Script 0006: the provider sends no sync callback, whose own read and write would race the count.
    let body = json!({"merchant_order_no": order_no("client-budget"), "product_code": "billing.code.demo",
                      "account": "13800130006"});
    let (id, secret, _) = create(&h, DEMO, &body).await;
    let table_calls = || {
        let mut c = calls.snapshot();
        // The balance check's first run at start writes its snapshots; it is no client route's cost.
        c.remove("PutItem");
        c.remove("Query");
        c
    };
    let count = |ops: &[(&str, u64)]| {
        ops.iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect::<std::collections::BTreeMap<_, _>>()
    };

    calls.reset();
    assert_eq!(get(&h, &id, &secret).await.0, 200);
    assert_eq!(table_calls(), count(&[("GetItem", 1)]), "GET: one read");

    calls.reset();
    assert_eq!(get(&h, &id, "rcs1_1_AAAA").await.0, 401);
    assert_eq!(
        get(&h, "AAAAAAAAAAAAAAAAAAAA", &secret).await.0,
        401,
        "no such order"
    );
    assert_eq!(table_calls(), count(&[]), "a refused secret reads nothing");

    calls.reset();
    let preflight = client(
        &h,
        "OPTIONS",
        &format!("/v1/client/orders/{id}"),
        &[
            ("Origin", DEMO_ORIGIN.to_owned()),
            ("Access-Control-Request-Method", "GET".to_owned()),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.0, 204);
    assert_eq!(table_calls(), count(&[]), "a preflight reads nothing");

    calls.reset();
    assert_eq!(
        verify(&h, &id, &secret, DEMO_VERIFICATION_CODE).await.0,
        200
    );
    assert_eq!(
        table_calls(),
        count(&[("GetItem", 1), ("UpdateItem", 3)]),
        "verification: read, count, accepted before the provider call, its outcome after"
    );

    calls.reset();
    assert_eq!(
        verify(&h, &id, &secret, DEMO_VERIFICATION_CODE).await.0,
        409
    );
    assert_eq!(
        table_calls(),
        count(&[("GetItem", 1), ("UpdateItem", 1)]),
        "a code the order does not wait for: read and count only"
    );
}

//! openapi-rsa (004): header auth with SHA256withRSA or MD5, nonce and timestamp checks, envelope, callbacks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use recharge_sim::{OrderState, Protocol, RunningSim, SimConfig};
use serde_json::{Value, json};

use crate::common::*;

const BUSINESS: &str = "754ea3e3a699404f9b82e8f881107f19";
const MERCHANT: &str = "eb1bb305ca3940f8adf1d4e964555699";
const SIGN_KEY: &str = "TestSignKey0123";
const PRIVATE_PEM: &str = include_str!("../fixtures/004_rsa_test_private_key.pem");
const PUBLIC_PEM: &str = include_str!("../fixtures/004_rsa_test_public_key.pem");

static NONCE: AtomicU64 = AtomicU64::new(1);

fn creds(balance_fen: i64) -> Value {
    json!({ "business_id": BUSINESS, "merchant_id": MERCHANT, "sign_key": SIGN_KEY,
            "public_key_pem": PUBLIC_PEM, "balance_fen": balance_fen })
}

async fn sim_with(balance_fen: i64, edit: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut c = config(Protocol::OpenapiRsa, creds(balance_fen));
    edit(&mut c);
    start(c).await
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rsa_sign(content: &str) -> String {
    let b64: String = PRIVATE_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let kp = RsaKeyPair::from_pkcs8(&STANDARD.decode(b64).unwrap()).unwrap();
    let mut sig = vec![0; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        content.as_bytes(),
        &mut sig,
    )
    .unwrap();
    STANDARD.encode(sig)
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    /// signType header omitted: SHA256-RSA by default, and not part of the sign content.
    RsaDefault,
    Md5,
    /// MD5 with a wrong key.
    BadMd5,
    /// RSA over different content.
    BadRsa,
}

struct Call<'a> {
    auth: Auth,
    nonce: Option<&'a str>,
    timestamp: Option<i64>,
}

impl Call<'_> {
    fn plain(auth: Auth) -> Self {
        Call {
            auth,
            nonce: None,
            timestamp: None,
        }
    }
}

/// Sends `body` to `path`, signing exactly as docs/providers/openapi-rsa.md §4 describes.
async fn call(sim: &RunningSim, path: &str, body: &str, c: Call<'_>) -> Value {
    let fresh = format!("n-{}-{}", now_ms(), NONCE.fetch_add(1, Ordering::Relaxed));
    let nonce = c.nonce.unwrap_or(&fresh);
    let ts = c.timestamp.unwrap_or_else(now_ms).to_string();
    let (sign_type, sign) = match c.auth {
        Auth::RsaDefault => (
            None,
            rsa_sign(&format!(
                "businessId={BUSINESS}&nonce={nonce}&timestamp={ts}{body}"
            )),
        ),
        Auth::BadRsa => (
            None,
            rsa_sign(&format!(
                "businessId={BUSINESS}&nonce={nonce}&timestamp={ts}{{}}"
            )),
        ),
        Auth::Md5 | Auth::BadMd5 => {
            let key = if c.auth == Auth::Md5 {
                SIGN_KEY
            } else {
                "other"
            };
            let content =
                format!("businessId={BUSINESS}&nonce={nonce}&signType=MD5&timestamp={ts}{body}");
            (Some("MD5"), md5_upper(format!("{content}{key}").as_bytes()))
        }
    };
    let mut req = client()
        .post(format!("{}{path}", sim.base_url()))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Accept", "application/json")
        .header("businessId", BUSINESS)
        .header("nonce", nonce)
        .header("timestamp", &ts)
        .header("sign", sign);
    if let Some(t) = sign_type {
        req = req.header("signType", t);
    }
    let resp = req.body(body.to_owned()).send().await.unwrap();
    let h = |n: &str| resp.headers()[n].to_str().unwrap().to_owned();
    let (rb, rn, rt, rs) = (h("businessId"), h("nonce"), h("timestamp"), h("sign"));
    let text = resp.text().await.unwrap();
    // Responses are signed the way callbacks are: MD5, no signType.
    let content = format!("businessId={rb}&nonce={rn}&timestamp={rt}{text}");
    assert_eq!(
        rs,
        md5_upper(format!("{content}{SIGN_KEY}").as_bytes()),
        "response sign"
    );
    serde_json::from_str(&text).unwrap()
}

fn charge_body(account: &str, biz: &str, callback: &str) -> String {
    json!({ "merchantId": MERCHANT, "businessId": BUSINESS, "productCode": "P100", "mobile": "15012616978",
            "account": account, "bizCode": biz, "callbackUrl": callback })
    .to_string()
}

async fn charge(sim: &RunningSim, account: &str, biz: &str, callback: &str) -> Value {
    call(
        sim,
        "/v1/openapi/order/VIPCharge",
        &charge_body(account, biz, callback),
        Call::plain(Auth::RsaDefault),
    )
    .await
}

async fn info(sim: &RunningSim, biz: &str) -> Value {
    call(
        sim,
        "/v1/openapi/order/info",
        &json!({ "bizCode": biz }).to_string(),
        Call::plain(Auth::Md5),
    )
    .await
}

/// Verifies a callback's header signature (no signType) and returns its JSON body.
fn verified_callback(r: &Received) -> Value {
    let h = |n: &str| r.headers[n].to_str().unwrap().to_owned();
    assert!(!r.headers.contains_key("signType"));
    let body = String::from_utf8(r.body.clone()).unwrap();
    let content = format!(
        "businessId={}&nonce={}&timestamp={}{body}",
        h("businessId"),
        h("nonce"),
        h("timestamp")
    );
    assert_eq!(
        h("sign"),
        md5_upper(format!("{content}{SIGN_KEY}").as_bytes())
    );
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_worked_examples_are_reproduced_with_the_test_key() {
    let doc_body = format!(r#"{{"businessId":"{BUSINESS}","merchantId":"{MERCHANT}"}}"#);
    let nonce = "24bc2c17-0fef-440e-ba32-385c47c6cfa4";
    let md5 = format!(
        "businessId={BUSINESS}&nonce={nonce}&signType=MD5&timestamp=1628772138668{doc_body}"
    );
    assert_eq!(
        md5_upper(format!("{md5}{SIGN_KEY}").as_bytes()),
        "09AE596CD5BD8133EE0536CCBE19A56B"
    );
    let rsa = format!(
        "businessId={BUSINESS}&nonce={nonce}&signType=SHA256-RSA&timestamp=1628772138668{doc_body}"
    );
    assert!(rsa_sign(&rsa).starts_with(
        "wek13Sv38t4kL8Rk+KuXDXbAWdyowQC/6N3Yw4FzkGMgX1oJi0sUHIdeao0pUXjXzzamB8y+FqGF0/n7nUvQnukF"
    ));
    // docs/providers/openapi-rsa.md §4 elides the header values (…); they are the doc example's businessId and nonce.
    let cb = format!(
        "businessId={BUSINESS}&nonce={nonce}&timestamp=1628772138668{}",
        r#"{"orderCode":"O1","bizCode":"B1"}"#
    );
    assert_eq!(
        md5_upper(format!("{cb}{SIGN_KEY}").as_bytes()),
        "F65D65C95DB72989FE32318FBF64D7D4"
    );
}

#[tokio::test]
async fn an_rsa_signed_charge_is_accepted_and_debited_and_an_md5_balance_query_shows_it() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let r = charge(&sim, "w23b52", "B1", "").await;
    assert_eq!(r["status"], 0, "{r}");
    assert_eq!(r["data"]["bizCode"], "B1");
    assert_eq!(r["data"]["account"], "w23b52");
    assert_eq!(r["data"]["settlementPrice"].to_string(), "98.5");
    let body = json!({ "merchantId": MERCHANT, "businessId": BUSINESS }).to_string();
    let b = call(
        &sim,
        "/v1/openapi/merchant/business/balance",
        &body,
        Call::plain(Auth::Md5),
    )
    .await;
    assert_eq!(b["status"], 0, "{b}");
    assert_eq!(b["data"]["amount"].to_string(), "9901.5");
    assert_eq!(sim.balance_fen(), 990_150);
}

#[tokio::test]
async fn an_explicit_sha256_rsa_sign_type_is_part_of_the_signed_content() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let body = charge_body("w1", "ST1", "");
    let (nonce, ts) = ("explicit-1", now_ms().to_string());
    let content =
        format!("businessId={BUSINESS}&nonce={nonce}&signType=SHA256-RSA&timestamp={ts}{body}");
    let send = |sign: String| {
        client()
            .post(format!("{}/v1/openapi/order/VIPCharge", sim.base_url()))
            .header("businessId", BUSINESS)
            .header("nonce", nonce)
            .header("timestamp", &ts)
            .header("signType", "SHA256-RSA")
            .header("sign", sign)
            .body(body.clone())
            .send()
    };
    // Signed without the signType pair: refused.
    let without = rsa_sign(&format!(
        "businessId={BUSINESS}&nonce={nonce}&timestamp={ts}{body}"
    ));
    let r: Value = send(without).await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], 2);
    let r: Value = send(rsa_sign(&content))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], 0, "{r}");
}

#[tokio::test]
async fn bad_rsa_and_md5_signatures_are_refused_with_status_2() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let body = charge_body("w1", "X1", "");
    for auth in [Auth::BadRsa, Auth::BadMd5] {
        let r = call(
            &sim,
            "/v1/openapi/order/VIPCharge",
            &body,
            Call::plain(auth),
        )
        .await;
        assert_eq!(r["status"], 2, "{r}");
        assert_eq!(r["message"], "验签失败");
    }
    assert!(sim.orders().is_empty());
}

#[tokio::test]
async fn a_replayed_nonce_and_a_timestamp_six_minutes_old_are_refused() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let path = "/v1/openapi/order/info";
    let body = json!({ "bizCode": "none" }).to_string();
    let first = call(
        &sim,
        path,
        &body,
        Call {
            auth: Auth::Md5,
            nonce: Some("same"),
            timestamp: None,
        },
    )
    .await;
    assert_eq!(
        first["status"], 10,
        "unknown order, but authenticated: {first}"
    );
    let replay = call(
        &sim,
        path,
        &body,
        Call {
            auth: Auth::Md5,
            nonce: Some("same"),
            timestamp: None,
        },
    )
    .await;
    assert_eq!(replay["status"], 3);
    let stale = now_ms() - 6 * 60 * 1000;
    let old = call(
        &sim,
        path,
        &body,
        Call {
            auth: Auth::Md5,
            nonce: None,
            timestamp: Some(stale),
        },
    )
    .await;
    assert_eq!(old["status"], 4);
    let recent = now_ms() - 4 * 60 * 1000;
    let ok = call(
        &sim,
        path,
        &body,
        Call {
            auth: Auth::Md5,
            nonce: None,
            timestamp: Some(recent),
        },
    )
    .await;
    assert_eq!(ok["status"], 10);
}

#[tokio::test]
async fn a_duplicate_biz_code_an_unknown_product_and_a_short_balance_are_refused() {
    let sim = sim_with(15_000, |_| {}).await;
    assert_eq!(charge(&sim, "w1", "D1", "").await["status"], 0);
    assert_ne!(charge(&sim, "w1", "D1", "").await["status"], 0);
    let unknown = json!({ "merchantId": MERCHANT, "businessId": BUSINESS, "productCode": "NOPE", "account": "w1",
                          "bizCode": "D2" });
    let r = call(
        &sim,
        "/v1/openapi/order/VIPCharge",
        &unknown.to_string(),
        Call::plain(Auth::Md5),
    )
    .await;
    assert_eq!(r["status"], 6);
    assert_eq!(charge(&sim, "w1", "D3", "").await["status"], 9);
    assert_eq!(sim.orders().len(), 1);
    assert_eq!(sim.balance_fen(), 15_000 - 9_850);
}

#[tokio::test]
async fn the_signed_callback_is_retried_until_the_reply_is_success_in_any_case() {
    let rx = Receiver::start(2, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    charge(&sim, "w1", "CB1", &rx.url).await;
    let got = rx.wait_for(3).await;
    let cb = verified_callback(&got[2]);
    assert_eq!(cb["bizCode"], "CB1");
    assert_eq!(cb["status"], 2);
    assert_eq!(cb["settlementPrice"].to_string(), "98.5");
    assert_ne!(
        got[0].headers["nonce"], got[1].headers["nonce"],
        "each attempt has a fresh nonce"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.received().len(), 3);
    assert_eq!(info(&sim, "CB1").await["data"]["status"], 2);
}

#[tokio::test]
async fn without_success_the_callback_follows_the_nine_step_schedule_and_stops() {
    let rx = Receiver::start(0, "OK").await;
    let sim = sim_with(1_000_000, |c| c.time_scale = 100_000.0).await;
    charge(&sim, "w1", "CB2", &rx.url).await;
    rx.wait_for(10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 10);
}

#[tokio::test]
async fn an_order_without_callback_url_goes_to_the_registered_address() {
    let rx = Receiver::start(0, "SUCCESS").await;
    let url = rx.url.clone();
    let sim = sim_with(1_000_000, |c| c.callback_url = Some(url)).await;
    charge(&sim, "w1", "CB3", "").await;
    assert_eq!(
        verified_callback(&rx.wait_for(1).await[0])["bizCode"],
        "CB3"
    );
}

#[tokio::test]
async fn scripted_accounts_refuse_fail_hang_and_answer_500() {
    let rx = Receiver::start(0, "SUCCESS").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    assert_eq!(charge(&sim, "acct0001", "S1", &rx.url).await["status"], 7);
    assert_eq!(charge(&sim, "acct0002", "S2", &rx.url).await["status"], 0);
    let got = rx.wait_for(1).await;
    assert_eq!(verified_callback(&got[0])["status"], 3);
    wait_order(&sim, "S2", OrderState::Failed).await;
    assert_eq!(sim.balance_fen(), 1_000_000);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        charge(&sim, "acct0003", "S3", ""),
    )
    .await;
    assert!(hung.is_err());
    wait_order(&sim, "S3", OrderState::Succeeded).await;
    let unsigned = client()
        .post(format!("{}/v1/openapi/order/VIPCharge", sim.base_url()))
        .body(charge_body("acct0004", "S4", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsigned.status().as_u16(),
        200,
        "an unsigned request is refused in the envelope"
    );
    assert_eq!(unsigned.json::<Value>().await.unwrap()["status"], 2);
    let ts = now_ms().to_string();
    let body = charge_body("acct0004", "S4", "");
    let content = format!("businessId={BUSINESS}&nonce=n4&signType=MD5&timestamp={ts}{body}");
    let r = client()
        .post(format!("{}/v1/openapi/order/VIPCharge", sim.base_url()))
        .header("businessId", BUSINESS)
        .header("nonce", "n4")
        .header("timestamp", &ts)
        .header("signType", "MD5")
        .header("sign", md5_upper(format!("{content}{SIGN_KEY}").as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    wait_order(&sim, "S4", OrderState::Failed).await;
    assert_eq!(info(&sim, "S4").await["data"]["status"], 3);
}

#[tokio::test]
async fn account_0005_gets_three_callbacks_then_a_stale_one_and_0006_none() {
    let rx = Receiver::start(0, "SUCCESS").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    charge(&sim, "acct0005", "C5", &rx.url).await;
    let got = rx.wait_for(4).await;
    let statuses: Vec<Value> = got
        .iter()
        .map(|r| verified_callback(r)["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(2), json!(2), json!(2), json!(1)]);
    charge(&sim, "acct0006", "C6", &rx.url).await;
    wait_order(&sim, "C6", OrderState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.received().len(), 4);
    assert_eq!(info(&sim, "C6").await["data"]["status"], 2);
}

#[tokio::test]
async fn account_0009_stays_processing_with_status_1() {
    let rx = Receiver::start(0, "SUCCESS").await;
    let sim = sim_with(1_000_000, |c| {
        c.long_processing = Duration::from_secs(3_600_000)
    })
    .await;
    charge(&sim, "acct0009", "P9", &rx.url).await;
    wait_order(&sim, "P9", OrderState::Processing).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(info(&sim, "P9").await["data"]["status"], 1);
    assert!(rx.received().is_empty());
}

#[tokio::test]
async fn account_0010_is_recorded_then_answered_a_signed_status_500_and_still_succeeds_with_its_callback()
 {
    let rx = Receiver::start(0, "SUCCESS").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    // `call` checks the response's header signature.
    let r = charge(&sim, "acct0010", "IB10", &rx.url).await;
    assert_eq!(r["status"], 500, "{r}");
    assert_eq!(r["message"], "系统繁忙");
    assert!(r["data"].is_null(), "{r}");
    let row = ledger_row(&sim, "IB10").await;
    assert_eq!(row["script"], "0010");
    assert_eq!(row["account"], "acct0010");
    assert_eq!(
        sim.balance_fen(),
        1_000_000 - 9_850,
        "charged like any order"
    );
    let got = rx.wait_for(1).await;
    let cb = verified_callback(&got[0]);
    assert_eq!(cb["status"], 2);
    assert_eq!(cb["bizCode"], "IB10");
    let o = wait_order(&sim, "IB10", OrderState::Succeeded).await;
    assert_eq!(o.deliveries, 1);
    let q = info(&sim, "IB10").await;
    assert_eq!(q["status"], 0, "{q}");
    assert_eq!(q["data"]["status"], 2);
    assert_eq!(ledger_row(&sim, "IB10").await["state"], "succeeded");
}

#[tokio::test]
async fn chaos_inband_error_answers_status_500_after_recording_and_a_lost_callback_stays_lost() {
    let rx = Receiver::start(0, "SUCCESS").await;
    let sim = sim_with(1_000_000, |c| {
        c.scripts = false;
        c.chaos = Some(recharge_sim::ChaosConfig {
            seed: 3,
            inband_error: 1.0,
            lost_callback: 1.0,
            ..Default::default()
        });
    })
    .await;
    let r = charge(&sim, "acct0001", "CIB", &rx.url).await;
    assert_eq!(r["status"], 500, "{r}");
    assert_eq!(
        ledger_row(&sim, "CIB").await["script"],
        "chaos:lost_callback+inband_error"
    );
    wait_order(&sim, "CIB", OrderState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.received().is_empty());
    assert_eq!(info(&sim, "CIB").await["data"]["status"], 2);
}

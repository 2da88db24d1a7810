//! sms-billing (000): password check, MP SMS instructions + simulated MO + sync GET, PC verification code.

use std::time::Duration;

use recharge_sim::{OrderState, Protocol, RunningSim, SimConfig};
use serde_json::{Value, json};

use crate::common::*;

fn creds() -> Value {
    json!({ "channelcode": "CH01", "password": "pw-plain", "sync_key": "SyncKey01" })
}

async fn sim_with(edit: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut c = config(Protocol::SmsBilling, creds());
    edit(&mut c);
    start(c).await
}

async fn post(sim: &RunningSim, path: &str, pairs: &[(&str, &str)]) -> Value {
    client()
        .post(format!("{}{path}", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs, false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn get_sms(
    sim: &RunningSim,
    product: &str,
    imsi: &str,
    cpparam: &str,
    password: &str,
) -> Value {
    let p = [
        ("productcode", product),
        ("channelcode", "CH01"),
        ("password", password),
        ("imsi", imsi),
        ("imei", "861234567890123"),
        ("iccid", "89860012345678901234"),
        ("cpparam", cpparam),
    ];
    post(sim, "/mp/getSms", &p).await
}

async fn mo(sim: &RunningSim, order_id: &str) -> u16 {
    client()
        .post(format!(
            "{}/_sim/mo/{order_id}?mobile=13800138000",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Parses the sync's query string and checks its sign: MD5(sorted k=v&… + key), uppercase.
fn verified_sync(r: &Received) -> Vec<(String, String)> {
    assert_eq!(r.method, "GET");
    let q = r.uri.query().unwrap();
    let mut pairs = form_pairs(q.as_bytes(), false);
    let sign = field(&pairs, "sign").to_owned();
    pairs.retain(|(k, _)| k != "sign");
    pairs.sort();
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        sign,
        md5_upper(format!("{}SyncKey01", joined.join("&")).as_bytes())
    );
    pairs
}

#[tokio::test]
async fn mp_returns_one_or_two_sms_instructions_and_a_wrong_password_is_refused() {
    let sim = sim_with(|_| {}).await;
    let one = get_sms(&sim, "P200", "460001234560000", "cp-1", "pw-plain").await;
    assert_eq!(one["resultCode"], "0", "{one}");
    assert_eq!(one["array"].as_array().unwrap().len(), 1);
    assert_eq!(one["array"][0]["accessno"], "1065553610007");
    assert!(!one["orderId"].as_str().unwrap().is_empty());
    let two = get_sms(&sim, "P1000", "460001234560000", "cp-2", "pw-plain").await;
    assert_eq!(two["array"].as_array().unwrap().len(), 2);
    let bad = get_sms(&sim, "P200", "460001234560000", "cp-3", "guess").await;
    assert_ne!(bad["resultCode"], "0");
    assert_eq!(
        get_sms(&sim, "NOPE", "460001234560000", "cp-4", "pw-plain").await["resultCode"],
        "1002"
    );
    assert_eq!(
        get_sms(&sim, "P200", "460001234560000", "cp-1", "pw-plain").await["resultCode"],
        "1005"
    );
    assert_eq!(sim.orders().len(), 2);
}

#[tokio::test]
async fn the_mo_sms_triggers_a_signed_sync_get_retried_until_ok() {
    let rx = Receiver::start(2, "ok").await;
    let url = rx.url.clone();
    let sim = sim_with(|c| c.callback_url = Some(url)).await;
    let r = get_sms(&sim, "P200", "460001234560000", "cp-9", "pw-plain").await;
    let order_id = r["orderId"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.received().is_empty(), "nothing is billed before the MO");
    assert_eq!(mo(&sim, &order_id).await, 200);
    let got = rx.wait_for(3).await;
    let p = verified_sync(&got[2]);
    assert_eq!(field(&p, "status"), "DELIVRD");
    assert_eq!(field(&p, "orderid"), order_id);
    assert_eq!(field(&p, "cpparam"), "cp-9");
    assert_eq!(field(&p, "price"), "200");
    assert_eq!(field(&p, "port"), "1065553610007");
    assert_eq!(field(&p, "mobile"), "13800138000");
    assert_eq!(field(&p, "time").len(), 14);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.received().len(), 3);
    assert_eq!(mo(&sim, &order_id).await, 409, "a second MO bills nothing");
    assert_eq!(sim.orders()[0].deliveries, 1);
    assert_eq!(mo(&sim, "SP-unknown").await, 404);
}

#[tokio::test]
async fn pc_verification_code_payment_succeeds_once_and_refuses_a_wrong_code() {
    let sim = sim_with(|_| {}).await;
    let base = [
        ("productcode", "P1000"),
        ("channelcode", "CH01"),
        ("password", "pw-plain"),
        ("phone", "13800138000"),
    ];
    let r = post(&sim, "/pc/getVerifyCode", &base).await;
    assert_eq!(r["resultCode"], "0", "{r}");
    let order_id = r["orderId"].as_str().unwrap().to_owned();
    let pay = |code: &'static str| {
        let order_id = order_id.clone();
        let sim = &sim;
        async move {
            let p = [
                ("verifycode", code),
                ("channelcode", "CH01"),
                ("password", "pw-plain"),
                ("orderid", order_id.as_str()),
            ];
            post(sim, "/pc/pay", &p).await
        }
    };
    assert_eq!(pay("000000").await["resultCode"], "1008");
    assert_eq!(pay("123456").await["resultCode"], "0");
    assert_eq!(pay("123456").await["resultCode"], "1007");
    let o = wait_order(&sim, &order_id, OrderState::Succeeded).await;
    assert_eq!((o.deliveries, o.amount_fen), (1, 1000));
}

#[tokio::test]
async fn scripted_accounts_refuse_fail_and_lose_the_sync() {
    let rx = Receiver::start(0, "OK").await;
    let url = rx.url.clone();
    let sim = sim_with(|c| c.callback_url = Some(url)).await;
    assert_eq!(
        get_sms(&sim, "P200", "460001234560001", "s1", "pw-plain").await["resultCode"],
        "1004"
    );
    let failing = get_sms(&sim, "P200", "460001234560002", "s2", "pw-plain").await;
    mo(&sim, failing["orderId"].as_str().unwrap()).await;
    let got = rx.wait_for(1).await;
    assert_eq!(field(&verified_sync(&got[0]), "status"), "FAIL");
    wait_order(&sim, "s2", OrderState::Failed).await;
    let silent = get_sms(&sim, "P200", "460001234560006", "s6", "pw-plain").await;
    mo(&sim, silent["orderId"].as_str().unwrap()).await;
    wait_order(&sim, "s6", OrderState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.received().len(), 1, "account 0006 gets no sync");
    let base = [
        ("productcode", "P200"),
        ("channelcode", "CH01"),
        ("password", "pw-plain"),
        ("phone", "13800000002"),
    ];
    let r = post(&sim, "/pc/getVerifyCode", &base).await;
    let p = [
        ("verifycode", "123456"),
        ("channelcode", "CH01"),
        ("password", "pw-plain"),
        ("orderid", r["orderId"].as_str().unwrap()),
    ];
    assert_eq!(post(&sim, "/pc/pay", &p).await["resultCode"], "1009");
}

#[tokio::test]
async fn a_hanging_mp_request_still_records_the_order() {
    let sim = sim_with(|_| {}).await;
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        get_sms(&sim, "P200", "460001234560003", "h3", "pw-plain"),
    )
    .await;
    assert!(hung.is_err());
    let o = wait_for("the 0003 order", 5, || {
        sim.orders().into_iter().find(|o| o.caller_order_id == "h3")
    })
    .await;
    assert_eq!(o.state, OrderState::AwaitingUser);
}

#[tokio::test]
async fn account_0005_gets_three_syncs_and_no_stale_one() {
    let rx = Receiver::start(0, "ok").await;
    let url = rx.url.clone();
    let sim = sim_with(|c| c.callback_url = Some(url)).await;
    let r = get_sms(&sim, "P200", "460001234560005", "s5", "pw-plain").await;
    mo(&sim, r["orderId"].as_str().unwrap()).await;
    let got = rx.wait_for(3).await;
    assert!(
        got.iter()
            .all(|g| field(&verified_sync(g), "status") == "DELIVRD")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.received().len(), 3);
    assert_eq!(sim.orders()[0].deliveries, 1);
}

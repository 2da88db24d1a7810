//! ice-microservice (003): ICE ts/appID/sign, access_token, status advancing on a timer, no callback.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use recharge_sim::{OrderState, Protocol, RunningSim, SimConfig};
use serde_json::{Value, json};

use crate::common::*;

const APP_ID: &str = "ICETESTAPPID01";
const TOKEN: &str = "TestIceToken0123";
const ACCESS: &str = "access-token-1";
const ORDER_PATH: &str = "/sign/api/%E4%BA%A7%E5%93%81%E8%AE%A2%E8%B4%AD"; // 产品订购
const QUERY_PATH: &str = "/sign/api/%E8%AE%A2%E5%8D%95%E7%8A%B6%E6%80%81%E6%9F%A5%E8%AF%A2"; // 订单状态查询

fn creds(tolerance: i64) -> Value {
    json!({ "app_id": APP_ID, "token": TOKEN, "access_token": ACCESS, "ts_tolerance_secs": tolerance,
            "privilege_appkey": "88a2b3c4d5e6f7a8b9c2-FAKE", "privilege_secret": "TestPrivilegeSecret",
            "balance_fen": 20_000 })
}

async fn sim_with(edit: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut c = config(Protocol::IceMicroservice, creds(300));
    edit(&mut c);
    start(c).await
}

fn now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

/// The ICE query string: ts, appID and md5(appID + ts + token + "false") in lowercase hex.
fn ice_query(ts: &str, token: &str) -> String {
    let sign = md5_lower(format!("{APP_ID}{ts}{token}false").as_bytes());
    format!("ts={ts}&appID={APP_ID}&sign={sign}")
}

async fn order_with(
    sim: &RunningSim,
    phone: &str,
    cstm: &str,
    ts: &str,
    token: &str,
    access: &str,
) -> Value {
    let body = form(
        &[
            ("access_token", access),
            ("company", "彩生活"),
            ("Supplier", "中国移动"),
            ("phoneNo", phone),
            ("productId", "HF100"),
            ("cstmOrderName", "gateway"),
            ("cstmOrderNo", cstm),
        ],
        false,
    );
    client()
        .post(format!(
            "{}{ORDER_PATH}?{}",
            sim.base_url(),
            ice_query(ts, token)
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn order(sim: &RunningSim, phone: &str, cstm: &str) -> Value {
    order_with(sim, phone, cstm, &now(), TOKEN, ACCESS).await
}

async fn query(sim: &RunningSim, cstm: &str) -> Value {
    query_with_supplier(sim, cstm, Some("中国移动")).await
}

/// The status query, with `Supplier` or without it.
async fn query_with_supplier(sim: &RunningSim, cstm: &str, supplier: Option<&str>) -> Value {
    let mut pairs = vec![
        ("access_token", ACCESS),
        ("company", "彩生活"),
        ("cstmOrderNo", cstm),
    ];
    if let Some(s) = supplier {
        pairs.push(("Supplier", s));
    }
    let params = form(&pairs, false);
    client()
        .get(format!(
            "{}{QUERY_PATH}?{}&{params}",
            sim.base_url(),
            ice_query(&now(), TOKEN)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_order_is_accepted_with_status_0_and_the_documented_shape() {
    let sim = sim_with(|_| {}).await;
    let r = order(&sim, "13800138000", "test1234567").await;
    assert_eq!(r["code"], "0", "{r}");
    assert_eq!(r["company"], "彩生活");
    assert_eq!(r["Supplier"], "中国移动");
    assert_eq!(r["data"]["status"], "0");
    assert_eq!(r["data"]["cstmOrderNo"], "test1234567");
    let order_no = r["data"]["orderNo"].as_str().unwrap();
    assert!(
        order_no.starts_with("VBP") && order_no.len() == 20,
        "{order_no}"
    );
    assert_eq!(sim.balance_fen(), 20_000 - 9_900);
}

#[tokio::test]
async fn the_worked_example_sign_is_accepted_when_the_clock_check_is_off() {
    let sim = start(config(Protocol::IceMicroservice, creds(0))).await;
    assert_eq!(
        ice_query("1700000000", TOKEN),
        format!("ts=1700000000&appID={APP_ID}&sign=a72cd4ddb320c46e8e35a2f0619c8499")
    );
    let r = order_with(&sim, "13800138000", "K1", "1700000000", TOKEN, ACCESS).await;
    assert_eq!(r["code"], "0", "{r}");
}

#[tokio::test]
async fn a_bad_sign_a_stale_ts_and_a_wrong_access_token_are_answered_code_1() {
    let sim = sim_with(|_| {}).await;
    assert_eq!(
        order_with(&sim, "13800138000", "B1", &now(), "WrongToken", ACCESS).await["code"],
        "1"
    );
    assert_eq!(
        order_with(&sim, "13800138000", "B2", "1700000000", TOKEN, ACCESS).await["code"],
        "1"
    );
    let r = order_with(&sim, "13800138000", "B3", &now(), TOKEN, "stolen").await;
    assert_eq!(r["code"], "1");
    assert_eq!(r["message"], "access_token无效");
    assert!(sim.orders().is_empty());
}

#[tokio::test]
async fn the_status_advances_on_a_timer_from_0_to_2_and_nothing_is_called_back() {
    let sim = sim_with(|c| c.settle = Duration::from_secs(4000)).await; // 2 s per step: room for a loaded machine
    order(&sim, "13800138000", "T1").await;
    assert_eq!(query(&sim, "T1").await["data"]["status"], "0");
    wait_order(&sim, "T1", OrderState::Processing).await;
    assert_eq!(query(&sim, "T1").await["data"]["status"], "1");
    wait_order(&sim, "T1", OrderState::Succeeded).await;
    assert_eq!(query(&sim, "T1").await["data"]["status"], "2");
    assert!(sim.callbacks().is_empty());
    assert_eq!(query(&sim, "NOPE").await["code"], "1");
}

#[tokio::test]
async fn a_duplicate_order_number_and_a_short_balance_are_refused() {
    let sim = sim_with(|_| {}).await;
    assert_eq!(order(&sim, "13800138000", "D1").await["code"], "0");
    assert_eq!(order(&sim, "13800138000", "D1").await["code"], "1");
    assert_eq!(order(&sim, "13800138000", "D2").await["code"], "0");
    let short = order(&sim, "13800138000", "D3").await;
    assert_eq!(short["message"], "余额不足");
    assert_eq!(sim.balance_fen(), 200);
}

#[tokio::test]
async fn scripted_accounts_refuse_fail_hang_and_answer_500() {
    let sim = sim_with(|_| {}).await;
    assert_eq!(order(&sim, "13800000001", "S1").await["code"], "1");
    order(&sim, "13800000002", "S2").await;
    wait_order(&sim, "S2", OrderState::Failed).await;
    assert_eq!(query(&sim, "S2").await["data"]["status"], "3");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), order(&sim, "13800000003", "S3"))
            .await
            .is_err()
    );
    wait_order(&sim, "S3", OrderState::Succeeded).await;
    let r = client()
        .post(format!(
            "{}/sign/api/order?{}",
            sim.base_url(),
            ice_query(&now(), TOKEN)
        ))
        .body(form(
            &[
                ("access_token", ACCESS),
                ("company", "彩生活"),
                ("Supplier", "中国移动"),
                ("phoneNo", "13800000004"),
                ("productId", "HF50"),
                ("cstmOrderName", "gateway"),
                ("cstmOrderNo", "S4"),
            ],
            false,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    wait_order(&sim, "S4", OrderState::Failed).await;
    assert_eq!(
        sim.balance_fen(),
        20_000 - 9_900,
        "only the 0003 order stays charged"
    );
}

#[tokio::test]
async fn account_0009_stays_processing() {
    let sim = sim_with(|c| c.long_processing = Duration::from_secs(3_600_000)).await;
    order(&sim, "13800000009", "P9").await;
    wait_order(&sim, "P9", OrderState::Processing).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(query(&sim, "P9").await["data"]["status"], "1");
}

#[tokio::test]
async fn the_privilege_service_issues_the_access_token_for_a_correct_signature() {
    let sim = sim_with(|_| {}).await;
    let ts = now();
    let sig = md5_lower(format!("88a2b3c4d5e6f7a8b9c2-FAKE{ts}TestPrivilegeSecret").as_bytes());
    let url = |sig: &str| {
        format!(
            "{}/app/auth?appkey=88a2b3c4d5e6f7a8b9c2-FAKE&signature={sig}&timestamp={ts}",
            sim.base_url()
        )
    };
    let ok: Value = client()
        .post(url(&sig))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["code"], 0);
    assert_eq!(ok["content"]["access_token"], ACCESS);
    let bad: Value = client()
        .post(url("00"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad["code"], 1);
}

#[tokio::test]
async fn the_generic_sign_style_signs_sorted_params_with_the_key() {
    let mut creds = creds(300);
    creds["sign_style"] = json!("generic");
    let sim = start(config(Protocol::IceMicroservice, creds)).await;
    let ts = now();
    let mut params = vec![
        ("Supplier", "中国移动"),
        ("access_token", ACCESS),
        ("appID", APP_ID),
        ("company", "彩生活"),
        ("cstmOrderName", "gateway"),
        ("cstmOrderNo", "G1"),
        ("phoneNo", "13800138000"),
        ("productId", "HF100"),
        ("ts", ts.as_str()),
    ];
    params.sort();
    let joined: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let sign = md5_upper(format!("{}&key={TOKEN}", joined.join("&")).as_bytes());
    let send = |sign: &str| {
        let mut all = params.clone();
        all.push(("sign", sign));
        client()
            .post(format!("{}/sign/api/order", sim.base_url()))
            .body(form(&all, false))
            .send()
    };
    let bad: Value = send(&sign.to_lowercase())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad["message"], "签名错误");
    let ok: Value = send(&sign).await.unwrap().json().await.unwrap();
    assert_eq!(ok["code"], "0", "{ok}");
}

#[tokio::test]
async fn account_0010_is_recorded_then_answered_code_1_and_the_query_shows_success() {
    let sim = sim_with(|_| {}).await;
    let r = order(&sim, "13800000010", "IB10").await;
    assert_eq!(r["code"], "1", "{r}");
    assert_eq!(r["message"], "失败");
    let row = ledger_row(&sim, "IB10").await;
    assert_eq!(row["script"], "0010");
    assert_eq!(row["account"], "13800000010");
    assert_eq!(sim.balance_fen(), 20_000 - 9_900, "charged like any order");
    let o = wait_order(&sim, "IB10", OrderState::Succeeded).await;
    assert_eq!(o.deliveries, 1);
    let q = query(&sim, "IB10").await;
    assert_eq!(q["code"], "0", "{q}");
    assert_eq!(q["data"]["status"], "2");
    assert_eq!(q["data"]["orderNo"], o.provider_order_id.as_str());
    assert_eq!(ledger_row(&sim, "IB10").await["state"], "succeeded");
    assert!(sim.callbacks().is_empty(), "a query-driven protocol");
}

#[tokio::test]
async fn chaos_inband_error_answers_code_1_after_recording_the_order() {
    let sim = sim_with(|c| {
        c.scripts = false;
        c.chaos = Some(recharge_sim::ChaosConfig {
            seed: 5,
            inband_error: 1.0,
            ..Default::default()
        });
    })
    .await;
    let r = order(&sim, "13800000001", "CIB").await;
    assert_eq!(r["code"], "1", "{r}");
    assert_eq!(r["message"], "失败");
    assert_eq!(
        ledger_row(&sim, "CIB").await["script"],
        "chaos:inband_error"
    );
    wait_order(&sim, "CIB", OrderState::Succeeded).await;
    assert_eq!(query(&sim, "CIB").await["data"]["status"], "2");
}

#[tokio::test]
async fn the_query_accepts_the_supplier_of_the_order_and_refuses_another() {
    let sim = sim_with(|_| {}).await;
    assert_eq!(order(&sim, "13800138000", "SUP1").await["code"], "0");
    let same = query_with_supplier(&sim, "SUP1", Some("中国移动")).await;
    assert_eq!(same["code"], "0", "{same}");
    assert_eq!(same["Supplier"], "中国移动");
    assert_eq!(same["data"]["cstmOrderNo"], "SUP1");
    let without = query_with_supplier(&sim, "SUP1", None).await;
    assert_eq!(without["code"], "0", "{without}");
    assert_eq!(
        without["Supplier"], "中国移动",
        "the order's own Supplier is echoed"
    );
    let other = query_with_supplier(&sim, "SUP1", Some("中国联通")).await;
    assert_eq!(other["code"], "1", "{other}");
}

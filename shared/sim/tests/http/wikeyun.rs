//! wikeyun (002): TOP-style MD5 over query + body, string codes, status progression, JSON callbacks.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use recharge_sim::{OrderState, Protocol, RunningSim, SimConfig};
use serde_json::{Value, json};

use crate::common::*;

const SECRET: &str = "TestAppSecret0123";

fn creds(balance_fen: i64, tolerance: i64) -> Value {
    json!({ "app_key": "100001", "app_secret": SECRET, "store_id": "1234", "balance_fen": balance_fen,
            "timestamp_tolerance_secs": tolerance })
}

async fn sim_with(balance_fen: i64, edit: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut c = config(Protocol::Wikeyun, creds(balance_fen, 300));
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

/// Sends `business` params to `method` the way the dtapps SDK does: common params and sign in the query,
/// business params plus the common ones (minus sign) in the form body. The sign is computed here from
/// docs/providers/wikeyun.md §4: secret + sorted k+v + secret, MD5, uppercase.
async fn call(
    sim: &RunningSim,
    method: &str,
    business: &[(&str, &str)],
    ts: &str,
    secret: &str,
) -> Value {
    let common = [
        ("app_key", "100001"),
        ("timestamp", ts),
        ("client", "127.0.0.1"),
        ("format", "json"),
        ("v", "1.0"),
    ];
    let all: BTreeMap<&str, &str> = common.iter().chain(business.iter()).copied().collect();
    let sign_str: String = format!(
        "{secret}{}{secret}",
        all.iter()
            .map(|(k, v)| format!("{k}{v}"))
            .collect::<String>()
    );
    let sign = md5_upper(sign_str.as_bytes());
    let query = format!("{}&sign={sign}", form(&common, false));
    let body_pairs: Vec<(&str, &str)> = business.iter().chain(common.iter()).copied().collect();
    client()
        .post(format!("{}/rest/{method}?{query}", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&body_pairs, false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn push(sim: &RunningSim, mobile: &str, order_no: &str, money: &str, notify: &str) -> Value {
    let mut p = vec![
        ("store_id", "1234"),
        ("mobile", mobile),
        ("order_no", order_no),
        ("money", money),
        ("recharge_type", "1"),
        ("change", "0"),
    ];
    if !notify.is_empty() {
        p.push(("notify_url", notify));
    }
    call(sim, "Recharge/pushOrder", &p, &now(), SECRET).await
}

async fn query_no(sim: &RunningSim, order_no: &str) -> Value {
    call(
        sim,
        "Recharge/query",
        &[("order_no", order_no), ("store_id", "1234")],
        &now(),
        SECRET,
    )
    .await
}

fn callback_json(r: &Received) -> BTreeMap<String, String> {
    serde_json::from_slice(&r.body).unwrap()
}

/// Verifies the callback's TOP-style sign over its other fields.
fn assert_signed(cb: &BTreeMap<String, String>) {
    let rest: String = cb
        .iter()
        .filter(|(k, _)| k.as_str() != "sign")
        .map(|(k, v)| format!("{k}{v}"))
        .collect();
    assert_eq!(
        cb["sign"],
        md5_upper(format!("{SECRET}{rest}{SECRET}").as_bytes())
    );
}

#[tokio::test]
async fn a_signed_push_order_is_accepted_and_the_balance_drops_by_the_face_value() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let r = push(&sim, "13800138000", "T1", "100", "").await;
    assert_eq!(r["code"], "0000", "{r}");
    assert_eq!(r["msg"], "推送成功");
    let number = r["data"]["order_number"].as_str().unwrap().to_owned();
    let u = call(&sim, "User/query", &[], &now(), SECRET).await;
    assert_eq!(u["code"], "0000");
    assert_eq!(u["data"]["money"], "9900");
    let q = call(
        &sim,
        "Recharge/query",
        &[("order_number", &number)],
        &now(),
        SECRET,
    )
    .await;
    assert_eq!(q["data"]["order_no"], "T1");
    assert_eq!(q["data"]["amount"], "100");
}

#[tokio::test]
async fn the_worked_example_request_is_accepted_when_the_clock_check_is_off() {
    let sim = start(config(Protocol::Wikeyun, creds(1_000_000, 0))).await;
    let query = "app_key=100001&client=127.0.0.1&format=json&timestamp=1700000000&v=1.0&sign=F639BBE261C82EAFA1DCE8A6B34B5C36";
    let body = "store_id=1234&mobile=13800138000&order_no=T202401010001&money=100&recharge_type=1&notify_url=https%3A%2F%2Fexample.com%2Fnotify";
    let r: Value = client()
        .post(format!(
            "{}/rest/Recharge/pushOrder?{query}",
            sim.base_url()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["code"], "0000", "{r}");
    let u = call(&sim, "User/query", &[], "1700000000", SECRET).await;
    assert_eq!(u["code"], "0000");
}

#[tokio::test]
async fn a_bad_sign_a_missing_app_key_and_a_stale_timestamp_are_refused() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let bad = call(&sim, "User/query", &[], &now(), "WrongSecret").await;
    assert_eq!(bad["code"], "1005");
    let stale = call(&sim, "User/query", &[], "1700000000", SECRET).await;
    assert_eq!(stale["code"], "1006");
    let r: Value = client()
        .post(format!("{}/rest/User/query", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["code"], "1003");
    assert_eq!(r["msg"], "app_key不能为空");
    assert!(r["data"].is_null());
    // A body param that was not signed breaks the signature: body params are part of the signed set.
    let ts = now();
    let common = [
        ("app_key", "100001"),
        ("timestamp", ts.as_str()),
        ("client", "1"),
        ("format", "json"),
        ("v", "1.0"),
    ];
    let s: String = common
        .iter()
        .copied()
        .collect::<BTreeMap<_, _>>()
        .iter()
        .map(|(k, v)| format!("{k}{v}"))
        .collect();
    let sign = md5_upper(format!("{SECRET}{s}{SECRET}").as_bytes());
    let send = |body: &'static str| {
        client()
            .post(format!(
                "{}/rest/User/query?{}&sign={sign}",
                sim.base_url(),
                form(&common, false)
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let clean: Value = send("").await.unwrap().json().await.unwrap();
    assert_eq!(clean["code"], "0000", "{clean}");
    let tampered: Value = send("store_id=9999").await.unwrap().json().await.unwrap();
    assert_eq!(tampered["code"], "1005");
}

#[tokio::test]
async fn a_duplicate_order_no_an_unsupported_amount_and_a_short_balance_are_refused() {
    let sim = sim_with(15_000, |_| {}).await;
    assert_eq!(
        push(&sim, "13800138000", "D1", "100", "").await["code"],
        "0000"
    );
    assert_eq!(
        push(&sim, "13800138000", "D1", "50", "").await["code"],
        "2004"
    );
    assert_eq!(
        push(&sim, "13800138000", "D2", "30", "").await["code"],
        "2002"
    );
    assert_eq!(
        push(&sim, "13800138000", "D3", "100", "").await["code"],
        "2003"
    );
    assert_eq!(sim.orders().len(), 1);
    assert_eq!(sim.balance_fen(), 5_000);
}

#[tokio::test]
async fn query_by_either_id_follows_the_status_progression_to_2() {
    let sim = sim_with(1_000_000, |c| c.settle = Duration::from_secs(4000)).await;
    push(&sim, "13800138000", "S1", "50", "").await;
    let first = query_no(&sim, "S1").await;
    assert!(
        ["1", "7"].contains(&first["data"]["status"].as_str().unwrap()),
        "{first}"
    );
    wait_order(&sim, "S1", OrderState::Succeeded).await;
    assert_eq!(query_no(&sim, "S1").await["data"]["status"], "2");
    let missing = query_no(&sim, "NOPE").await;
    assert_ne!(missing["code"], "0000");
}

#[tokio::test]
async fn the_json_callback_is_resent_until_the_reply_is_success() {
    let rx = Receiver::start(2, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    push(&sim, "13800138000", "CB1", "100", &rx.url).await;
    let got = rx.wait_for(3).await;
    assert!(
        got[2].headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let cb = callback_json(&got[2]);
    assert_eq!(cb["status"], "2");
    assert_eq!(cb["order_no"], "CB1");
    assert_eq!(cb["amount"], "100");
    assert_signed(&cb);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.received().len(), 3);
}

#[tokio::test]
async fn a_reply_other_than_success_gets_one_try_and_five_resends() {
    let rx = Receiver::start(0, "ok").await;
    let sim = sim_with(1_000_000, |c| c.time_scale = 10_000.0).await;
    push(&sim, "13800138000", "CB2", "100", &rx.url).await;
    rx.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.received().len(), 6);
    assert!(sim.callbacks().iter().all(|a| !a.acknowledged));
}

#[tokio::test]
async fn account_0001_is_refused_and_0002_fails_with_status_4_and_a_refund() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    assert_ne!(
        push(&sim, "13800000001", "R1", "100", &rx.url).await["code"],
        "0000"
    );
    assert_eq!(
        push(&sim, "13800000002", "F1", "100", &rx.url).await["code"],
        "0000"
    );
    let got = rx.wait_for(1).await;
    assert_eq!(callback_json(&got[0])["status"], "4");
    wait_order(&sim, "F1", OrderState::Failed).await;
    assert_eq!(sim.balance_fen(), 1_000_000);
}

#[tokio::test]
async fn account_0003_hangs_and_0004_answers_500_but_both_orders_exist() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let short = tokio::time::timeout(
        Duration::from_millis(300),
        push(&sim, "13800000003", "H1", "100", ""),
    )
    .await;
    assert!(short.is_err(), "submit must hang past the caller's timeout");
    let common = [
        ("app_key", "100001"),
        ("timestamp", &now()[..]),
        ("client", "1"),
        ("format", "json"),
        ("v", "1.0"),
    ];
    let business = [
        ("store_id", "1234"),
        ("mobile", "13800000004"),
        ("order_no", "E1"),
        ("money", "100"),
        ("recharge_type", "1"),
    ];
    let all: BTreeMap<&str, &str> = common.iter().chain(business.iter()).copied().collect();
    let s: String = all.iter().map(|(k, v)| format!("{k}{v}")).collect();
    let sign = md5_upper(format!("{SECRET}{s}{SECRET}").as_bytes());
    let pairs: Vec<(&str, &str)> = all
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain([("sign", sign.as_str())])
        .collect();
    let r = client()
        .post(format!("{}/rest/Recharge/pushOrder", sim.base_url()))
        .body(form(&pairs, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    wait_order(&sim, "H1", OrderState::Succeeded).await;
    wait_order(&sim, "E1", OrderState::Failed).await;
    assert_eq!(query_no(&sim, "E1").await["data"]["status"], "4");
}

#[tokio::test]
async fn account_0005_gets_three_success_callbacks_then_a_stale_processing_one() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    push(&sim, "13800000005", "C5", "100", &rx.url).await;
    let got = rx.wait_for(4).await;
    let statuses: Vec<String> = got
        .iter()
        .map(|r| callback_json(r)["status"].clone())
        .collect();
    assert_eq!(statuses, ["2", "2", "2", "7"]);
    assert_eq!(sim.orders()[0].deliveries, 1);
}

#[tokio::test]
async fn account_0006_gets_no_callback_but_the_query_shows_success() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    push(&sim, "13800000006", "N6", "100", &rx.url).await;
    wait_order(&sim, "N6", OrderState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.received().is_empty());
    assert_eq!(query_no(&sim, "N6").await["data"]["status"], "2");
}

#[tokio::test]
async fn account_0007_succeeds_then_is_reversed_with_status_10() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    push(&sim, "13800000007", "V7", "100", &rx.url).await;
    let got = rx.wait_for(2).await;
    let statuses: Vec<String> = got
        .iter()
        .map(|r| callback_json(r)["status"].clone())
        .collect();
    assert_eq!(statuses, ["2", "10"]);
    let o = wait_order(&sim, "V7", OrderState::Reversed).await;
    assert_eq!(o.deliveries, 1);
    assert_eq!(
        sim.balance_fen(),
        1_000_000,
        "the reversed price is refunded"
    );
    assert_eq!(query_no(&sim, "V7").await["data"]["status"], "10");
}

#[tokio::test]
async fn account_0008_is_a_partial_success_with_arrived_amount() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    push(&sim, "13800000008", "P8", "100", &rx.url).await;
    let got = rx.wait_for(1).await;
    let cb = callback_json(&got[0]);
    assert_eq!(cb["status"], "11");
    assert_eq!(cb["arrived_amount"], "50");
    assert_signed(&cb);
    let q = query_no(&sim, "P8").await;
    assert_eq!(q["data"]["arrived_amount"], "50");
    assert_eq!(sim.balance_fen(), 1_000_000 - 5_000);
}

#[tokio::test]
async fn account_0009_stays_processing_and_no_scripts_turns_scripts_off() {
    let sim = sim_with(1_000_000, |c| {
        c.long_processing = Duration::from_secs(3_600_000)
    })
    .await;
    push(&sim, "13800000009", "P9", "100", "").await;
    wait_order(&sim, "P9", OrderState::Processing).await;
    assert_eq!(query_no(&sim, "P9").await["data"]["status"], "7");
    let clean = sim_with(1_000_000, |c| c.scripts = false).await;
    assert_eq!(
        push(&clean, "13800000001", "NS", "100", "").await["code"],
        "0000"
    );
}

fn chaos(edit: impl FnOnce(&mut recharge_sim::ChaosConfig)) -> impl FnOnce(&mut SimConfig) {
    move |c: &mut SimConfig| {
        let mut ch = recharge_sim::ChaosConfig {
            seed: 99,
            ..Default::default()
        };
        edit(&mut ch);
        c.scripts = false;
        c.chaos = Some(ch);
    }
}

#[tokio::test]
async fn chaos_with_the_same_seed_makes_the_same_choices() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = sim_with(
            1_000_000,
            chaos(|c| {
                c.refuse = 0.3;
                c.lost_callback = 0.3;
                c.duplicate_callback = 0.3;
            }),
        )
        .await;
        let mut codes = Vec::new();
        for i in 0..20 {
            codes.push(push(&sim, "13800138000", &format!("K{i}"), "50", "").await["code"].clone());
        }
        let labels: Vec<String> = sim.orders().into_iter().map(|o| o.script).collect();
        runs.push((codes, labels));
    }
    assert_eq!(runs[0], runs[1]);
    let (codes, labels) = &runs[0];
    assert!(
        codes.iter().any(|c| c == "0000") && codes.iter().any(|c| c != "0000"),
        "{codes:?}"
    );
    assert!(labels.iter().any(|l| l != "chaos:none"), "{labels:?}");
}

#[tokio::test]
async fn chaos_duplicate_callbacks_deliver_value_once_and_lost_ones_never_arrive() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, chaos(|c| c.duplicate_callback = 1.0)).await;
    push(&sim, "13800138000", "DUP", "100", &rx.url).await;
    let got = rx.wait_for(2).await;
    assert_eq!(callback_json(&got[0]), callback_json(&got[1]));
    assert_eq!(sim.orders()[0].deliveries, 1);
    let quiet = Receiver::start(0, "success").await;
    let lost = sim_with(1_000_000, chaos(|c| c.lost_callback = 1.0)).await;
    push(&lost, "13800138000", "LOST", "100", &quiet.url).await;
    wait_order(&lost, "LOST", OrderState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(quiet.received().is_empty());
}

#[tokio::test]
async fn chaos_5xx_records_the_order_and_late_failure_fails_it_after_long_processing() {
    let sim = sim_with(1_000_000, |c| {
        chaos(|ch| {
            ch.http_500 = 1.0;
            ch.late_failure = 1.0;
        })(c);
        c.long_processing = Duration::from_secs(100);
    })
    .await;
    let ts = now();
    let common = [
        ("app_key", "100001"),
        ("timestamp", ts.as_str()),
        ("client", "1"),
        ("format", "json"),
        ("v", "1.0"),
    ];
    let business = [
        ("store_id", "1234"),
        ("mobile", "13800138000"),
        ("order_no", "C500"),
        ("money", "100"),
        ("recharge_type", "1"),
    ];
    let all: BTreeMap<&str, &str> = common.iter().chain(business.iter()).copied().collect();
    let s: String = all.iter().map(|(k, v)| format!("{k}{v}")).collect();
    let sign = md5_upper(format!("{SECRET}{s}{SECRET}").as_bytes());
    let pairs: Vec<(&str, &str)> = all
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain([("sign", sign.as_str())])
        .collect();
    let r = client()
        .post(format!("{}/rest/Recharge/pushOrder", sim.base_url()))
        .body(form(&pairs, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    wait_order(&sim, "C500", OrderState::Processing).await;
    let o = wait_order(&sim, "C500", OrderState::Failed).await;
    assert_eq!(o.script, "chaos:http_500+late_failure");
    assert_eq!(sim.balance_fen(), 1_000_000);
}

#[tokio::test]
async fn account_0010_is_recorded_then_answered_2001_and_still_succeeds_with_its_callback() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    let r = push(&sim, "13800000010", "IB10", "100", &rx.url).await;
    assert_eq!(r["code"], "2001", "{r}");
    assert_eq!(r["msg"], "系统繁忙");
    assert!(r["data"].is_null(), "{r}");
    let row = ledger_row(&sim, "IB10").await;
    assert_eq!(row["script"], "0010");
    assert_eq!(row["account"], "13800000010");
    assert_eq!(
        sim.balance_fen(),
        1_000_000 - 10_000,
        "charged like any order"
    );
    let got = rx.wait_for(1).await;
    let cb = callback_json(&got[0]);
    assert_eq!(cb["status"], "2");
    assert_eq!(cb["order_no"], "IB10");
    assert_signed(&cb);
    let o = wait_order(&sim, "IB10", OrderState::Succeeded).await;
    assert_eq!(o.deliveries, 1);
    let q = query_no(&sim, "IB10").await;
    assert_eq!(q["code"], "0000", "{q}");
    assert_eq!(q["data"]["status"], "2");
    assert_eq!(ledger_row(&sim, "IB10").await["state"], "succeeded");
}

#[tokio::test]
async fn chaos_inband_error_answers_2001_after_recording_and_the_planned_failure_still_applies() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |c| {
        chaos(|ch| {
            ch.inband_error = 1.0;
            ch.late_failure = 1.0;
        })(c);
        c.long_processing = Duration::from_secs(100);
    })
    .await;
    let r = push(&sim, "13800138000", "CIB", "100", &rx.url).await;
    assert_eq!(r["code"], "2001", "{r}");
    assert_eq!(r["msg"], "系统繁忙");
    let row = ledger_row(&sim, "CIB").await;
    assert_eq!(row["script"], "chaos:late_failure+inband_error");
    let got = rx.wait_for(1).await;
    assert_eq!(callback_json(&got[0])["status"], "4");
    wait_order(&sim, "CIB", OrderState::Failed).await;
    assert_eq!(query_no(&sim, "CIB").await["data"]["status"], "4");
    assert_eq!(sim.balance_fen(), 1_000_000, "refunded");
}

#[tokio::test]
async fn the_query_takes_a_signed_store_id_and_finds_the_order_by_order_number_or_order_no() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let r = push(&sim, "13800138000", "Q9", "50", "").await;
    let number = r["data"]["order_number"].as_str().unwrap().to_owned();
    let ask = |business: Vec<(&'static str, String)>| {
        let sim = &sim;
        async move {
            let pairs: Vec<(&str, &str)> = business.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(sim, "Recharge/query", &pairs, &now(), SECRET).await
        }
    };
    for business in [
        vec![
            ("order_number", number.clone()),
            ("store_id", "1234".into()),
        ],
        vec![("order_no", "Q9".into()), ("store_id", "1234".into())],
        vec![("order_number", number.clone())],
        vec![
            ("order_number", number.clone()),
            ("order_no", "Q9".into()),
            ("store_id", "1234".into()),
        ],
    ] {
        let q = ask(business.clone()).await;
        assert_eq!(q["code"], "0000", "{business:?}: {q}");
        assert_eq!(q["data"]["order_no"], "Q9");
        assert_eq!(q["data"]["order_number"], number.as_str());
        assert_eq!(q["data"]["store_id"], "1234");
    }
    let other_store = ask(vec![("order_no", "Q9".into()), ("store_id", "9999".into())]).await;
    assert_eq!(other_store["code"], "2001", "{other_store}");
    let mismatched = ask(vec![
        ("order_number", number.clone()),
        ("order_no", "OTHER".into()),
    ])
    .await;
    assert_eq!(mismatched["code"], "2006", "{mismatched}");
    let unknown_number = ask(vec![
        ("order_number", "W0".into()),
        ("store_id", "1234".into()),
    ])
    .await;
    assert_eq!(unknown_number["code"], "2006", "{unknown_number}");
}

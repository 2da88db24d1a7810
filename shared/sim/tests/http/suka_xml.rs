//! suka-xml (001): GBK forms, uppercase MD5 over GBK bytes, GB2312-declared XML, resultno codes, form callbacks.

use std::time::Duration;

use recharge_sim::{OrderState, Protocol, RunningSim, SimConfig};
use serde_json::json;

use crate::common::*;

const KEY: &str = "abcdef0123456789ABCDEF0123456789";
const USERID: &str = "10004927";

fn creds(balance_fen: i64) -> serde_json::Value {
    json!({ "userid": USERID, "key": KEY, "balance_fen": balance_fen })
}

async fn sim_with(balance_fen: i64, edit: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut c = config(Protocol::SukaXml, creds(balance_fen));
    edit(&mut c);
    start(c).await
}

/// The submit sign string exactly as docs/providers/suka-xml.md §1 writes it.
fn submit_body(
    productid: &str,
    account: &str,
    sporderid: &str,
    back_url: &str,
    key: &str,
) -> String {
    let sign_str = format!(
        "userid={USERID}&productid={productid}&num=1&areaid=&serverid=&account={account}&spordertime=20210224134552&sporderid={sporderid}&key={key}"
    );
    let sign = md5_upper(&encoding_rs::GBK.encode(&sign_str).0);
    form(
        &[
            ("userid", USERID),
            ("productid", productid),
            ("num", "1"),
            ("areaid", ""),
            ("serverid", ""),
            ("account", account),
            ("spordertime", "20210224134552"),
            ("sporderid", sporderid),
            ("sign", &sign),
            ("back_url", back_url),
            ("userip", "10.0.0.1"),
        ],
        true,
    )
}

struct Reply {
    status: u16,
    text: String,
    content_type: String,
}

async fn post(sim: &RunningSim, path: &str, body: String) -> Reply {
    let r = client()
        .post(format!("{}{path}", sim.base_url()))
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=gbk",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = r.bytes().await.unwrap();
    Reply {
        status,
        text: encoding_rs::GBK.decode(&bytes).0.into_owned(),
        content_type,
    }
}

fn tag(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    xml[start..end].to_owned()
}

async fn submit(sim: &RunningSim, account: &str, sporderid: &str, back_url: &str) -> Reply {
    post(
        sim,
        "/gameonlinepay.do",
        submit_body("3312", account, sporderid, back_url, KEY),
    )
    .await
}

async fn query(sim: &RunningSim, sporderid: &str) -> String {
    let sign = md5_upper(format!("userid={USERID}&sporderid={sporderid}&key={KEY}").as_bytes());
    post(
        sim,
        "/searchpay.do",
        form(
            &[
                ("userid", USERID),
                ("sporderid", sporderid),
                ("sign", &sign),
            ],
            true,
        ),
    )
    .await
    .text
}

async fn balance_yuan(sim: &RunningSim) -> String {
    let sign = md5_upper(format!("userid={USERID}&key={KEY}").as_bytes());
    let xml = post(
        sim,
        "/searchbalance.do",
        form(&[("userid", USERID), ("sign", &sign)], true),
    )
    .await
    .text;
    assert_eq!(tag(&xml, "resultno"), "1", "{xml}");
    tag(&xml, "balance")
}

#[tokio::test]
async fn a_correctly_signed_submit_is_accepted_debited_and_answered_in_gb2312_xml() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let r = submit(&sim, "13590101510", "2009042800001", "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.to_lowercase().contains("gb2312"),
        "{}",
        r.content_type
    );
    assert!(
        r.text
            .starts_with("<?xml version=\"1.0\" encoding=\"GB2312\"?><order>"),
        "{}",
        r.text
    );
    assert_eq!(tag(&r.text, "resultno"), "0");
    assert_eq!(tag(&r.text, "ordercash"), "98.5");
    assert_eq!(tag(&r.text, "productname"), "游戏直充");
    assert_eq!(tag(&r.text, "sporderid"), "2009042800001");
    assert_eq!(balance_yuan(&sim).await, "9901.5");
    assert_eq!(sim.balance_fen(), 990_150);
}

#[tokio::test]
async fn the_worked_example_signature_is_accepted() {
    let sim = sim_with(1_000_000, |_| {}).await;
    // The known answer from docs/providers/suka-xml.md §4, written out rather than recomputed.
    let body = form(
        &[
            ("userid", "10004927"),
            ("productid", "3312"),
            ("num", "1"),
            ("areaid", ""),
            ("serverid", ""),
            ("account", "13590101510"),
            ("spordertime", "20210224134552"),
            ("sporderid", "2009042800001"),
            ("sign", "70C929C81195291EA5B7D6352850873F"),
        ],
        true,
    );
    let r = post(&sim, "/gameonlinepay.do", body).await;
    assert_eq!(tag(&r.text, "resultno"), "0", "{}", r.text);
}

#[tokio::test]
async fn an_electricity_account_with_chinese_is_signed_over_gbk_bytes() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let account = r#"{"product_type":"3","userid":"123123123","username":"","type":"1","area":"江苏","city":"南京"}"#;
    let sign_str = format!(
        "userid=10004927&productid=8801&num=1&areaid=13800138000&serverid=&account={account}&spordertime=20210224134552&sporderid=DF2021022400001&key={KEY}"
    );
    let gbk_sign = md5_upper(&encoding_rs::GBK.encode(&sign_str).0);
    assert_eq!(gbk_sign, "624D03A3AE309ED6B3D5B5842E1322FB");
    let body = |sign: &str| {
        form(
            &[
                ("userid", USERID),
                ("productid", "8801"),
                ("num", "1"),
                ("areaid", "13800138000"),
                ("serverid", ""),
                ("account", account),
                ("spordertime", "20210224134552"),
                ("sporderid", "DF2021022400001"),
                ("sign", sign),
            ],
            true,
        )
    };
    assert!(
        body(&gbk_sign).contains("%BD%AD%CB%D5"),
        "account travels as GBK bytes"
    );
    // The UTF-8 signature of docs/providers/suka-xml.md §4 is wrong and must be refused.
    let wrong = post(
        &sim,
        "/gameonlinepay.do",
        body("6B29390D55D908F4CC7B98B7AC14E2AA"),
    )
    .await;
    assert_eq!(tag(&wrong.text, "resultno"), "5005");
    let ok = post(&sim, "/gameonlinepay.do", body(&gbk_sign)).await;
    assert_eq!(tag(&ok.text, "resultno"), "0", "{}", ok.text);
    assert_eq!(sim.orders()[0].account, account);
}

#[tokio::test]
async fn a_bad_signature_is_refused_with_5005_and_nothing_is_recorded() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let r = post(
        &sim,
        "/gameonlinepay.do",
        submit_body("3312", "13590101510", "S1", "", "wrongkey"),
    )
    .await;
    assert_eq!(tag(&r.text, "resultno"), "5005");
    // A lowercase submit sign is not what the doc specifies either.
    let lower = submit_body("3312", "13590101510", "S1", "", KEY);
    let sign_pos = lower.find("sign=").unwrap() + 5;
    let lowered = format!("{}{}", &lower[..sign_pos], lower[sign_pos..].to_lowercase());
    assert_eq!(
        tag(
            &post(&sim, "/gameonlinepay.do", lowered).await.text,
            "resultno"
        ),
        "5005"
    );
    assert!(sim.orders().is_empty());
    assert_eq!(sim.balance_fen(), 1_000_000);
}

#[tokio::test]
async fn a_duplicate_sporderid_is_answered_5006_and_charged_once() {
    let sim = sim_with(1_000_000, |_| {}).await;
    assert_eq!(
        tag(
            &submit(&sim, "13590101510", "D1", "").await.text,
            "resultno"
        ),
        "0"
    );
    assert_eq!(
        tag(
            &submit(&sim, "13590101511", "D1", "").await.text,
            "resultno"
        ),
        "5006"
    );
    assert_eq!(sim.orders().len(), 1);
    assert_eq!(sim.balance_fen(), 1_000_000 - 9_850);
}

#[tokio::test]
async fn an_unknown_product_is_answered_5003_and_a_short_balance_5002() {
    let sim = sim_with(10_000, |_| {}).await;
    let r = post(
        &sim,
        "/gameonlinepay.do",
        submit_body("9999", "13590101510", "U1", "", KEY),
    )
    .await;
    assert_eq!(tag(&r.text, "resultno"), "5003");
    assert_eq!(
        tag(
            &submit(&sim, "13590101510", "U2", "").await.text,
            "resultno"
        ),
        "0"
    );
    assert_eq!(
        tag(
            &submit(&sim, "13590101510", "U3", "").await.text,
            "resultno"
        ),
        "5002"
    );
    assert_eq!(sim.balance_fen(), 150);
    assert_eq!(balance_yuan(&sim).await, "1.5");
}

#[tokio::test]
async fn balance_with_a_bad_sign_is_refused_with_5005() {
    let sim = sim_with(10_000, |_| {}).await;
    let xml = post(
        &sim,
        "/searchbalance.do",
        form(&[("userid", USERID), ("sign", "00")], true),
    )
    .await
    .text;
    assert_eq!(tag(&xml, "resultno"), "5005");
}

#[tokio::test]
async fn query_answers_5007_for_an_unknown_id_and_1_once_the_order_succeeded() {
    let sim = sim_with(1_000_000, |_| {}).await;
    assert_eq!(tag(&query(&sim, "NOPE").await, "resultno"), "5007");
    submit(&sim, "13590101510", "Q1", "").await;
    wait_order(&sim, "Q1", OrderState::Succeeded).await;
    let xml = query(&sim, "Q1").await;
    assert_eq!(tag(&xml, "resultno"), "1", "{xml}");
    assert_eq!(tag(&xml, "merchantsubmittime"), "20210224134552");
    // No sign at all is accepted for queries; a wrong one is not.
    let unsigned = post(
        &sim,
        "/searchpay.do",
        form(&[("userid", USERID), ("sporderid", "Q1")], true),
    )
    .await
    .text;
    assert_eq!(tag(&unsigned, "resultno"), "1");
    let bad = post(
        &sim,
        "/searchpay.do",
        form(
            &[("userid", USERID), ("sporderid", "Q1"), ("sign", "AA")],
            true,
        ),
    )
    .await;
    assert_eq!(tag(&bad.text, "resultno"), "5005");
}

#[tokio::test]
async fn the_callback_is_retried_until_acknowledged_and_carries_the_five_field_gbk_sign() {
    let rx = Receiver::start(2, "ok").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    submit(&sim, "13590101510", "CB1", &rx.url).await;
    let got = rx.wait_for(3).await;
    let b = &got[2];
    assert_eq!(b.method, "POST");
    assert!(b.headers["content-type"].to_str().unwrap().contains("gbk"));
    let p = form_pairs(&b.body, true);
    let sign_str = format!(
        "userid={}&orderid={}&sporderid={}&merchantsubmittime={}&resultno={}&key={KEY}",
        field(&p, "userid"),
        field(&p, "orderid"),
        field(&p, "sporderid"),
        field(&p, "merchantsubmittime"),
        field(&p, "resultno")
    );
    assert_eq!(
        field(&p, "sign"),
        md5_upper(&encoding_rs::GBK.encode(&sign_str).0)
    );
    assert_eq!(field(&p, "resultno"), "1");
    assert_eq!(field(&p, "sporderid"), "CB1");
    let attempts = wait_for("three ledger attempts", 5, || {
        let a = sim.callbacks();
        (a.len() == 3).then_some(a)
    })
    .await;
    assert_eq!(
        attempts.iter().map(|a| a.acknowledged).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(attempts[0].http_status, Some(500));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rx.received().len(),
        3,
        "nothing is sent after the acknowledgement"
    );
    assert_eq!(sim.orders()[0].deliveries, 1);
}

#[tokio::test]
async fn a_receiver_that_never_acknowledges_gets_six_attempts_then_nothing() {
    let rx = Receiver::start(100, "ok").await;
    let sim = sim_with(1_000_000, |c| c.time_scale = 10_000.0).await;
    submit(&sim, "13590101510", "CB2", &rx.url).await;
    rx.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.received().len(), 6);
}

#[tokio::test]
async fn account_0001_is_refused_at_submit_with_5003() {
    let sim = sim_with(1_000_000, |_| {}).await;
    assert_eq!(
        tag(
            &submit(&sim, "13800000001", "R1", "").await.text,
            "resultno"
        ),
        "5003"
    );
    assert!(sim.orders().is_empty());
}

#[tokio::test]
async fn account_0002_is_accepted_then_fails_refunded_with_a_resultno_9_callback() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    assert_eq!(
        tag(
            &submit(&sim, "13800000002", "F1", &rx.url).await.text,
            "resultno"
        ),
        "0"
    );
    let got = rx.wait_for(1).await;
    assert_eq!(field(&form_pairs(&got[0].body, true), "resultno"), "9");
    let o = wait_order(&sim, "F1", OrderState::Failed).await;
    assert_eq!(o.deliveries, 0);
    assert_eq!(sim.balance_fen(), 1_000_000);
    assert_eq!(tag(&query(&sim, "F1").await, "resultno"), "9");
}

#[tokio::test]
async fn account_0003_hangs_past_the_client_timeout_but_the_order_is_recorded_and_succeeds() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let short = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = short
        .post(format!("{}/gameonlinepay.do", sim.base_url()))
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=gbk",
        )
        .body(submit_body("3312", "13800000003", "H1", "", KEY))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    wait_order(&sim, "H1", OrderState::Succeeded).await;
    assert_eq!(tag(&query(&sim, "H1").await, "resultno"), "1");
}

#[tokio::test]
async fn account_0004_answers_http_500_but_records_the_order_which_later_fails() {
    let sim = sim_with(1_000_000, |_| {}).await;
    let r = submit(&sim, "13800000004", "E1", "").await;
    assert_eq!(r.status, 500);
    wait_order(&sim, "E1", OrderState::Failed).await;
    assert_eq!(tag(&query(&sim, "E1").await, "resultno"), "9");
}

#[tokio::test]
async fn account_0005_gets_three_success_callbacks_then_a_stale_processing_one() {
    let rx = Receiver::start(0, "ok").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    submit(&sim, "13800000005", "C5", &rx.url).await;
    let got = rx.wait_for(4).await;
    let codes: Vec<String> = got
        .iter()
        .map(|r| field(&form_pairs(&r.body, true), "resultno").to_owned())
        .collect();
    assert_eq!(codes, ["1", "1", "1", "2"]);
    assert_eq!(
        sim.orders()[0].deliveries,
        1,
        "repeated callbacks deliver nothing twice"
    );
}

#[tokio::test]
async fn account_0006_never_gets_a_callback_and_only_a_query_shows_success() {
    let rx = Receiver::start(0, "ok").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    submit(&sim, "13800000006", "N6", &rx.url).await;
    wait_order(&sim, "N6", OrderState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.received().is_empty());
    assert_eq!(tag(&query(&sim, "N6").await, "resultno"), "1");
}

#[tokio::test]
async fn account_0009_stays_processing() {
    let sim = sim_with(1_000_000, |c| {
        c.long_processing = Duration::from_secs(3600 * 1000)
    })
    .await;
    submit(&sim, "13800000009", "P9", "").await;
    wait_order(&sim, "P9", OrderState::Processing).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(tag(&query(&sim, "P9").await, "resultno"), "2");
}

#[tokio::test]
async fn no_scripts_makes_account_0001_an_ordinary_success() {
    let sim = sim_with(1_000_000, |c| c.scripts = false).await;
    assert_eq!(
        tag(
            &submit(&sim, "13800000001", "NS1", "").await.text,
            "resultno"
        ),
        "0"
    );
    wait_order(&sim, "NS1", OrderState::Succeeded).await;
}

#[tokio::test]
async fn chaos_with_a_refusal_rate_of_one_refuses_every_order() {
    let sim = sim_with(1_000_000, |c| {
        c.chaos = Some(recharge_sim::ChaosConfig {
            seed: 42,
            refuse: 1.0,
            ..Default::default()
        })
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            tag(
                &submit(&sim, "13590101510", &format!("X{i}"), "").await.text,
                "resultno"
            ),
            "5003"
        );
    }
}

#[tokio::test]
async fn the_ledger_endpoints_list_orders_with_fen_amounts_and_callback_attempts() {
    let rx = Receiver::start(1, "ok").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    submit(&sim, "13590101510", "L1", &rx.url).await;
    rx.wait_for(2).await;
    let orders: serde_json::Value = client()
        .get(format!("{}/_sim/orders", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(orders[0]["caller_order_id"], "L1");
    assert_eq!(orders[0]["amount_fen"], 10_000);
    assert_eq!(orders[0]["price_fen"], 9_850);
    wait_for("two attempts in the ledger", 5, || {
        (sim.callbacks().len() == 2).then_some(())
    })
    .await;
    let cbs: serde_json::Value = client()
        .get(format!("{}/_sim/callbacks", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cbs[0]["http_status"], 500);
    assert_eq!(cbs[1]["acknowledged"], true);
    assert_eq!(cbs[1]["target"], rx.url.as_str());
}

#[tokio::test]
async fn a_custom_schedule_and_acknowledgement_are_honoured() {
    let rx = Receiver::start(0, "ok").await;
    let mut c = config(
        Protocol::SukaXml,
        json!({ "userid": USERID, "key": KEY, "callback_acks": ["RECEIVED"], "query_sign_required": true }),
    );
    c.callback_schedule = Some(vec![Duration::from_secs(1), Duration::from_secs(1)]);
    let sim = start(c).await;
    submit(&sim, "13590101510", "A1", &rx.url).await;
    rx.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rx.received().len(),
        3,
        "`ok` is not the configured reply: one try and two retries"
    );
    let unsigned = post(
        &sim,
        "/searchpay.do",
        form(&[("userid", USERID), ("sporderid", "A1")], true),
    )
    .await;
    assert_eq!(tag(&unsigned.text, "resultno"), "5005");
    assert_eq!(tag(&query(&sim, "A1").await, "resultno"), "1");
}

#[tokio::test]
async fn chaos_unknown_answers_9999_but_the_order_exists_and_a_query_finds_it() {
    let sim = sim_with(1_000_000, |c| {
        c.chaos = Some(recharge_sim::ChaosConfig {
            seed: 1,
            unknown_answer: 1.0,
            ..Default::default()
        })
    })
    .await;
    assert_eq!(
        tag(
            &submit(&sim, "13590101510", "U9", "").await.text,
            "resultno"
        ),
        "9999"
    );
    wait_order(&sim, "U9", OrderState::Succeeded).await;
    assert_eq!(tag(&query(&sim, "U9").await, "resultno"), "1");
    assert_eq!(
        tag(
            &submit(&sim, "13590101510", "U9", "").await.text,
            "resultno"
        ),
        "5006",
        "resubmitting the same id is a safe probe"
    );
}

#[tokio::test]
async fn accounts_0007_and_0008_are_plain_successes_because_001_cannot_express_reversal_or_partial()
{
    let rx = Receiver::start(0, "ok").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    submit(&sim, "13800000007", "R7", &rx.url).await;
    submit(&sim, "13800000008", "R8", &rx.url).await;
    let got = rx.wait_for(2).await;
    assert!(
        got.iter()
            .all(|r| field(&form_pairs(&r.body, true), "resultno") == "1")
    );
    wait_order(&sim, "R7", OrderState::Succeeded).await;
    wait_order(&sim, "R8", OrderState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.received().len(), 2);
    assert_eq!(sim.balance_fen(), 1_000_000 - 2 * 9_850);
}

#[tokio::test]
async fn account_0010_is_answered_9999_after_recording_and_still_succeeds_with_its_callback() {
    let rx = Receiver::start(0, "success").await;
    let sim = sim_with(1_000_000, |_| {}).await;
    assert_eq!(
        tag(
            &submit(&sim, "13800000010", "IB10", &rx.url).await.text,
            "resultno"
        ),
        "9999",
        "001 documents no other in-band error after recording"
    );
    assert_eq!(ledger_row(&sim, "IB10").await["script"], "0010");
    let got = rx.wait_for(1).await;
    assert_eq!(field(&form_pairs(&got[0].body, true), "resultno"), "1");
    let o = wait_order(&sim, "IB10", OrderState::Succeeded).await;
    assert_eq!(o.deliveries, 1);
    assert_eq!(tag(&query(&sim, "IB10").await, "resultno"), "1");
}

#[tokio::test]
async fn a_late_searchable_dialect_answers_5007_for_a_recorded_order_until_its_time_has_passed() {
    // 3,000 s before scaling at FAST: three seconds of real time.
    let sim = sim_with(1_000_000, |c| {
        c.dialect = recharge_sim::Dialect {
            not_searchable_secs: 3000.0,
            ..recharge_sim::Dialect::default()
        };
    })
    .await;
    let r = submit(&sim, "13590101510", "LATE1", "").await;
    assert_eq!(tag(&r.text, "resultno"), "0", "{}", r.text);
    // Recorded (and soon delivered), yet a search does not find it yet.
    wait_order(&sim, "LATE1", OrderState::Succeeded).await;
    assert_eq!(tag(&query(&sim, "LATE1").await, "resultno"), "5007");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(tag(&query(&sim, "LATE1").await, "resultno"), "1");
    // The duplicate check is not a search: the id is taken at once.
    let again = submit(&sim, "13590101510", "LATE1", "").await;
    assert_ne!(tag(&again.text, "resultno"), "0", "{}", again.text);
}

#[tokio::test]
async fn a_dialect_refuses_with_its_own_code_and_is_served_at_sim_dialect() {
    let dialect = recharge_sim::Dialect {
        name: "test".into(),
        submit_refusal: Some(recharge_sim::dialect::CodeText {
            code: "8123".into(),
            message: "渠道维护中".into(),
        }),
        ..recharge_sim::Dialect::default()
    };
    let d = dialect.clone();
    let sim = sim_with(1_000_000, move |c| {
        c.dialect = d;
        c.chaos = Some(recharge_sim::ChaosConfig {
            seed: 1,
            refuse: 1.0,
            ..recharge_sim::ChaosConfig::default()
        });
    })
    .await;
    let r = submit(&sim, "13590101510", "REF1", "").await;
    assert_eq!(tag(&r.text, "resultno"), "8123", "{}", r.text);
    assert!(sim.orders().is_empty(), "a refusal records nothing");
    let served: serde_json::Value = client()
        .get(format!("{}/_sim/dialect", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, serde_json::to_value(&dialect).unwrap());
}

#[tokio::test]
async fn a_planted_double_delivery_shows_in_the_ledger() {
    let sim = sim_with(1_000_000, |c| {
        c.dialect.planted_double_delivery = true;
    })
    .await;
    submit(&sim, "13590101510", "TWICE", "").await;
    let o = wait_order(&sim, "TWICE", OrderState::Succeeded).await;
    assert_eq!(o.deliveries, 2);
}

#[tokio::test]
async fn a_dialect_file_moves_codes_statuses_amount_units_and_the_acknowledgement() {
    let dialect = recharge_sim::Dialect::from_json(
        r#"{
            "submit": {"accepted": {"code": "8200", "message": ""}, "duplicate": {"code": "8201", "message": ""}},
            "query": {"not_found": {"code": "8202", "message": ""}},
            "balance": {"success": {"code": "8203", "message": ""}},
            "statuses": {"succeeded": "61"},
            "amounts": "fen",
            "callback_ack": {"text": "OK", "case_sensitive": true},
            "callback_retries": 1
        }"#,
    )
    .expect("a good dialect");
    // The receiver answers `ok`: the documented acknowledgement, but not this dialect's exact-case `OK`.
    let rx = Receiver::start(0, "ok").await;
    let sim = sim_with(1_000_000, move |c| {
        c.dialect = dialect;
        c.time_scale = 10_000.0;
    })
    .await;
    let r = submit(&sim, "13590101510", "DIA1", &rx.url).await;
    assert_eq!(tag(&r.text, "resultno"), "8200", "{}", r.text);
    assert_eq!(tag(&r.text, "ordercash"), "9850", "fen: {}", r.text);
    let again = submit(&sim, "13590101510", "DIA1", &rx.url).await;
    assert_eq!(tag(&again.text, "resultno"), "8201", "{}", again.text);
    assert_eq!(tag(&query(&sim, "NOSUCH").await, "resultno"), "8202");
    wait_order(&sim, "DIA1", OrderState::Succeeded).await;
    let q = query(&sim, "DIA1").await;
    assert_eq!(tag(&q, "resultno"), "61", "{q}");
    assert_eq!(tag(&q, "fundbalance"), "990150", "{q}");
    let sign = md5_upper(format!("userid={USERID}&key={KEY}").as_bytes());
    let b = post(
        &sim,
        "/searchbalance.do",
        form(&[("userid", USERID), ("sign", &sign)], true),
    )
    .await
    .text;
    assert_eq!(tag(&b, "resultno"), "8203", "{b}");
    assert_eq!(tag(&b, "balance"), "990150", "{b}");
    // The first attempt and one retry, none acknowledged; every one reports the dialect's status.
    let got = rx.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 2, "one retry, then nothing");
    for g in &got {
        let p = form_pairs(&g.body, true);
        assert_eq!(field(&p, "resultno"), "61");
        assert_eq!(field(&p, "parvalue"), "10000");
    }
    assert!(sim.callbacks().iter().all(|a| !a.acknowledged));
}

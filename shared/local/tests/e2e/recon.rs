//! The daily reconciliation (docs/reconciliation.md) through the local stack: a day with planted divergences (a
//! late reversal only a re-query shows, a price above the route cost, a balance top-up, an order the provider
//! has and we do not) lists each one as a mismatch; a clean day lists none; `recharge-ops recon show` prints it;
//! the merchant's statement matches the orders.

use crate::helpers::*;
use recharge_core::AttemptNo;
use recharge_core::recon::{BEIJING_OFFSET_MINUTES, ReconDay};
use recharge_local::StoreChoice;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const WIKEYUN: &str = "wikeyun-main";

async fn sim_post(url: String, body: Value) -> (u16, Value) {
    send_raw(&url, "POST", "", &[], body.to_string().into_bytes()).await
}

fn today() -> String {
    ReconDay::containing(
        recharge_core::Timestamp::from_millis(now_secs() * 1000),
        BEIJING_OFFSET_MINUTES,
    )
    .date()
}

/// A `mobile.100` order (wikeyun first) for `account`, followed to success.
async fn succeeded(h: &Harness, account: &str) -> (String, String) {
    let demo = h.demo();
    let no = order_no("recon");
    let created = demo
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "mobile.100", "account": account}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    wait_status(&demo, &no, "succeeded", Duration::from_secs(60)).await;
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    (no, id)
}

/// Ops routes, signed as the admin app.
async fn ops_send(h: &Harness, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let r = h.client(OPS).send(method, path, &body).await.unwrap();
    (r.status, r.body)
}

fn options_without_balance_tick(store: Option<StoreChoice>) -> recharge_local::LocalOptions {
    let mut o = options();
    // Snapshots only where the test takes them (one more at start-up).
    o.balance_every = Duration::from_secs(3600);
    if let Some(s) = store {
        o.store = s;
    }
    o
}

#[tokio::test]
async fn a_day_with_planted_divergences_lists_each_one_and_the_statement_matches_the_orders() {
    let h = Harness::start_with(options_without_balance_tick(None)).await;
    let state = h.stack.state();
    let sim = h.sim(WIKEYUN).base_url().to_owned();
    recharge_api::balance_check::check_balances(state).await;

    let (no_a, id_a) = succeeded(&h, "13800138000").await;
    // 0011: charged, and reported, above the agreed price.
    let (no_b, id_b) = succeeded(&h, "13800130011").await;
    let (no_c, id_c) = succeeded(&h, "13800138012").await;
    // After C was final, the provider reverses it (返销) with no callback: only a re-query shows it.
    let c = h.stored("demo", &no_c).await;
    let caller = c.attempt_id(AttemptNo::FIRST).to_string();
    let (status, changed) = sim_post(
        format!("{sim}/_sim/orders/{caller}/change"),
        json!({"state": "reversed"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    recharge_api::balance_check::check_balances(state).await;
    let (status, _) = sim_post(format!("{sim}/_sim/balance/top-up"), json!({"fen": 5_000})).await;
    assert_eq!(status, 200);
    recharge_api::balance_check::check_balances(state).await;
    // An order the provider has and we never sent.
    let (status, _) = sim_post(format!("{sim}/_sim/foreign-order"), json!({"fen": 3_000})).await;
    assert_eq!(status, 200);
    recharge_api::balance_check::check_balances(state).await;

    let date = today();
    let (status, run) = ops_send(
        &h,
        "POST",
        "/ops/recon/run",
        &json!({"date": date, "account": WIKEYUN}),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let report = &run["reports"][0];
    assert_eq!(report["account"], WIKEYUN, "{run}");
    let mismatches = report["mismatches"].as_array().unwrap();
    let by_kind: BTreeMap<&str, &Value> = mismatches
        .iter()
        .map(|m| (m["kind"].as_str().unwrap(), m))
        .collect();
    assert_eq!(mismatches.len(), 4, "{report:#}");
    assert_eq!(
        by_kind.keys().copied().collect::<Vec<_>>(),
        [
            "balance_top_up",
            "late_reversal",
            "price_mismatch",
            "unexplained_balance_drop"
        ],
        "{report:#}"
    );
    assert_eq!(by_kind["price_mismatch"]["order_id"], id_b.as_str());
    assert_eq!(by_kind["price_mismatch"]["amount_fen"], 100);
    assert_eq!(by_kind["late_reversal"]["order_id"], id_c.as_str());
    assert_eq!(by_kind["late_reversal"]["ours"], "succeeded");
    assert_eq!(by_kind["balance_top_up"]["amount_fen"], 5_000);
    assert_eq!(by_kind["unexplained_balance_drop"]["amount_fen"], 3_000);
    assert_eq!(report["totals"][0]["status"], "succeeded", "{report:#}");
    assert_eq!(report["totals"][0]["orders"], 3);
    assert_eq!(report["requery"]["queried"], 3, "{report:#}");
    assert_eq!(report["requery"]["diverged"], 1);
    assert!(!mismatches.iter().any(|m| m["order_id"] == id_a.as_str()));

    // Stored: the report and its mismatches read back, with each order's status now.
    let (status, shown) = ops_send(
        &h,
        "GET",
        &format!("/ops/recon?date={date}&account={WIKEYUN}"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(&shown["reports"][0], report);
    let (status, listed) = ops_send(
        &h,
        "GET",
        &format!("/ops/recon/mismatches?date={date}&kind=late_reversal"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["mismatches"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["order_status_now"], "succeeded");
    assert_eq!(listed[0]["alarm"], true);

    // The CLI prints it.
    let cli = <recharge_ops::Cli as clap::Parser>::try_parse_from([
        "recharge-ops",
        "--base",
        h.stack.base_url(),
        "--app",
        OPS.0,
        "--secret",
        OPS.1,
        "recon",
        "show",
        "--account",
        WIKEYUN,
        "--date",
        &date,
    ])
    .unwrap();
    let client = recharge_ops::client_for(&cli).await.unwrap();
    let out = recharge_ops::run(&client, &cli.command).await.unwrap();
    // Three raise the alarm; the top-up is shown.
    assert!(out.text.contains("3 MISMATCH(ES)"), "{}", out.text);
    for kind in [
        "late_reversal",
        "price_mismatch",
        "balance_top_up",
        "unexplained_balance_drop",
    ] {
        assert!(out.text.contains(kind), "{}", out.text);
    }
    assert!(out.text.contains(&id_c), "{}", out.text);

    // The merchant's statement: the three orders, as they are, with what each is charged.
    let path = format!("/v1/statements/{date}");
    let (status, statement) = send_raw(
        h.stack.base_url(),
        "GET",
        &path,
        &signed_headers(DEMO, "GET", &path, b""),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200, "{statement}");
    let lines = statement["lines"].as_array().unwrap();
    let nos: Vec<&str> = lines
        .iter()
        .map(|l| l["merchant_order_no"].as_str().unwrap())
        .collect();
    assert_eq!(nos, [no_a.as_str(), no_b.as_str(), no_c.as_str()]);
    for l in lines {
        assert_eq!(l["status"], "succeeded");
        assert_eq!(l["final"], true);
        assert_eq!(l["face_value_fen"], 10_000);
        assert_eq!(l["charged_fen"], l["price_fen"]);
    }
    assert_eq!(statement["orders"], 3);
    assert_eq!(
        statement["charged_fen"].as_i64().unwrap(),
        3 * lines[0]["price_fen"].as_i64().unwrap()
    );
    // The same as CSV.
    let mut headers = signed_headers(DEMO, "GET", &path, b"");
    headers.push(("accept", "text/csv".to_owned()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = http.get(format!("{}{path}", h.stack.base_url()));
    for (k, v) in &headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[0].starts_with("order_id,merchant_order_no"), "{csv}");
    assert!(
        rows[3].contains(&no_c) && rows[3].contains(",succeeded,true,10000,"),
        "{csv}"
    );
    // Another app's statement does not hold them.
    let (status, other) = send_raw(
        h.stack.base_url(),
        "GET",
        &path,
        &signed_headers(DEMO2, "GET", &path, b""),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(other["orders"], 0, "{other}");
}

async fn clean_day(store: Option<StoreChoice>) {
    let h = Harness::start_with(options_without_balance_tick(store)).await;
    let state = h.stack.state();
    recharge_api::balance_check::check_balances(state).await;
    succeeded(&h, "13800138000").await;
    succeeded(&h, "13800138021").await;
    recharge_api::balance_check::check_balances(state).await;
    let date = today();
    let (status, run) = ops_send(&h, "POST", "/ops/recon/run", &json!({"date": date})).await;
    assert_eq!(status, 200, "{run}");
    let reports = run["reports"].as_array().unwrap();
    assert!(reports.len() >= 2, "every configured account: {run}");
    for r in reports {
        assert_eq!(r["mismatches"], json!([]), "{r:#}");
    }
    let wikeyun = reports.iter().find(|r| r["account"] == WIKEYUN).unwrap();
    assert_eq!(wikeyun["totals"][0]["orders"], 2, "{wikeyun:#}");
    assert_eq!(wikeyun["balance"]["judged"], true, "{wikeyun:#}");
    assert_eq!(wikeyun["requery"]["queried"], 2, "{wikeyun:#}");
    assert_eq!(wikeyun["requery"]["diverged"], 0);
    let (status, listed) = ops_send(
        &h,
        "GET",
        &format!("/ops/recon/mismatches?date={date}"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["mismatches"], json!([]), "{listed}");
}

#[tokio::test]
async fn a_clean_day_lists_no_mismatch_on_dynamodb() {
    clean_day(None).await;
}

#[tokio::test]
async fn a_clean_day_lists_no_mismatch_on_the_in_memory_store() {
    clean_day(Some(StoreChoice::Memory)).await;
}

#[tokio::test]
async fn recon_routes_refuse_bad_dates_accounts_and_methods() {
    let h = Harness::start_with(options_without_balance_tick(Some(StoreChoice::Memory))).await;
    let (status, body) = ops_send(&h, "GET", "/ops/recon?date=2025-02-30", &Value::Null).await;
    assert_error(&(status, body), 400, "invalid_parameter");
    let (status, body) = ops_send(&h, "GET", "/ops/recon?account=nobody", &Value::Null).await;
    assert_error(&(status, body), 400, "invalid_parameter");
    let (status, body) = ops_send(&h, "POST", "/ops/recon/run", &json!({"when": "now"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = ops_send(&h, "DELETE", "/ops/recon", &Value::Null).await;
    assert_eq!(status, 405);
    // Yesterday by default: never run, so no report.
    let (status, body) = ops_send(&h, "GET", "/ops/recon", &Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reports"], json!([]));
    let path = "/v1/statements/2025-13-01";
    let reply = send_raw(
        h.stack.base_url(),
        "GET",
        path,
        &signed_headers(DEMO, "GET", path, b""),
        Vec::new(),
    )
    .await;
    assert_error(&reply, 400, "invalid_parameter");
}

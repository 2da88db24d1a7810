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

/// Ops routes' GETs, signed as the admin app.
async fn ops_get(h: &Harness, path: &str) -> (u16, Value) {
    ops_send(h, "GET", path, &Value::Null).await
}

/// `POST /ops/recon/run` with `body`; returns the reports it answered with (200).
async fn run_recon(h: &Harness, body: Value) -> Value {
    let (status, run) = ops_send(h, "POST", "/ops/recon/run", &body).await;
    assert_eq!(status, 200, "{run}");
    run
}

/// The provider reverses (返销) the final order `no` on wikeyun with no callback: only a re-query shows it.
async fn reverse_quietly(h: &Harness, no: &str) {
    let sim = h.sim(WIKEYUN).base_url();
    let caller = h.stored("demo", no).await.attempt_id(AttemptNo::FIRST);
    let (status, changed) = sim_post(
        format!("{sim}/_sim/orders/{caller}/change"),
        json!({"state": "reversed"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
}

/// A merchant's signed `GET path`, as `app`.
async fn signed_get(h: &Harness, app: (&str, &str), path: &str) -> (u16, Value) {
    let headers = signed_headers(app, "GET", path, b"");
    send_raw(h.stack.base_url(), "GET", path, &headers, Vec::new()).await
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
    recharge_api::usecases::balance_check::check_balances(state).await;

    let (no_a, id_a) = succeeded(&h, "13800138000").await;
    // 0011: charged, and reported, above the agreed price.
    let (no_b, id_b) = succeeded(&h, "13800130011").await;
    let (no_c, id_c) = succeeded(&h, "13800138012").await;
    // After C was final, the provider reverses it (返销) with no callback: only a re-query shows it.
    reverse_quietly(&h, &no_c).await;
    recharge_api::usecases::balance_check::check_balances(state).await;
    let (status, _) = sim_post(format!("{sim}/_sim/balance/top-up"), json!({"fen": 5_000})).await;
    assert_eq!(status, 200);
    recharge_api::usecases::balance_check::check_balances(state).await;
    // An order the provider has and we never sent.
    let (status, _) = sim_post(format!("{sim}/_sim/foreign-order"), json!({"fen": 3_000})).await;
    assert_eq!(status, 200);
    recharge_api::usecases::balance_check::check_balances(state).await;

    let date = today();
    let run = run_recon(&h, json!({"date": date, "account": WIKEYUN})).await;
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
    let (status, shown) = ops_get(&h, &format!("/ops/recon?date={date}&account={WIKEYUN}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(&shown["reports"][0], report);
    let (status, listed) = ops_get(
        &h,
        &format!("/ops/recon/mismatches?date={date}&kind=late_reversal"),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["mismatches"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["order_status_now"], "succeeded");
    assert_eq!(listed[0]["alarm"], true);

    // The CLI prints it.
    let out = h
        .ops_cli(&["recon", "show", "--account", WIKEYUN, "--date", &date])
        .await
        .unwrap();
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
    let (status, statement) = signed_get(&h, DEMO, &path).await;
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
    let (status, other) = signed_get(&h, DEMO2, &path).await;
    assert_eq!(status, 200);
    assert_eq!(other["orders"], 0, "{other}");
}

async fn clean_day(store: Option<StoreChoice>) {
    let h = Harness::start_with(options_without_balance_tick(store)).await;
    let state = h.stack.state();
    recharge_api::usecases::balance_check::check_balances(state).await;
    succeeded(&h, "13800138000").await;
    succeeded(&h, "13800138021").await;
    recharge_api::usecases::balance_check::check_balances(state).await;
    let date = today();
    let run = run_recon(&h, json!({"date": date})).await;
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
    let (status, listed) = ops_get(&h, &format!("/ops/recon/mismatches?date={date}")).await;
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
    let (status, body) = ops_get(&h, "/ops/recon?date=2025-02-30").await;
    assert_error(&(status, body), 400, "invalid_parameter");
    let (status, body) = ops_get(&h, "/ops/recon?account=nobody").await;
    assert_error(&(status, body), 400, "invalid_parameter");
    let (status, body) = ops_send(&h, "POST", "/ops/recon/run", &json!({"when": "now"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = ops_send(&h, "DELETE", "/ops/recon", &Value::Null).await;
    assert_eq!(status, 405);
    // Yesterday by default: never run, so no report.
    let (status, body) = ops_get(&h, "/ops/recon").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reports"], json!([]));
    let path = "/v1/statements/2025-13-01";
    let reply = signed_get(&h, DEMO, path).await;
    assert_error(&reply, 400, "invalid_parameter");
}

/// Succeeded `mobile.100` orders on wikeyun, of which the provider reverses `reversed` after they were final
/// (only a re-query shows it). Returns every order id and the reversed ones.
async fn day_with_late_reversals(h: &Harness, orders: usize, reversed: &[usize]) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..orders {
        let (no, id) = succeeded(h, &format!("1380013{:04}", 8100 + i)).await;
        if reversed.contains(&i) {
            reverse_quietly(h, &no).await;
        }
        ids.push(id);
    }
    ids
}

fn mismatch_keys(r: &recharge_core::recon::ReconReport) -> Vec<String> {
    let mut keys: Vec<String> = r.mismatches.iter().map(|m| m.key()).collect();
    keys.sort();
    keys
}

/// A re-query budget that allows only part of the day per pass: the minute tick's continuations finish it,
/// pass after pass from the stored cursor, with the same mismatches (each once) as one unbounded run.
async fn requery_resumes(store: Option<StoreChoice>) {
    use recharge_api::state::ReconOptions;
    use recharge_api::usecases::recon::{Pass, continue_unfinished, run_pass};
    use std::time::Instant;
    let h = Harness::start_with(options_without_balance_tick(store)).await;
    let state = h.stack.state();
    let ids = day_with_late_reversals(&h, 7, &[1, 5]).await;
    let day = ReconDay::containing(state.clock.now(), state.settings.recon_utc_offset_minutes);
    let wikeyun = [recharge_core::ProviderAccountId::parse(WIKEYUN).unwrap()];
    let far = || Instant::now() + Duration::from_secs(120);
    let fast = ReconOptions {
        queries_per_second: 0.0,
        ..ReconOptions::default()
    };

    // One unbounded run: the reference.
    let whole = run_pass(state, day, &wikeyun, Pass::Restart, &fast, far())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(whole.requery.eligible, 7, "{whole:#?}");
    assert_eq!(whole.requery.queried, 7);
    assert_eq!(whole.requery.remaining, 0);
    assert_eq!(whole.requery.diverged, 2);
    let late: Vec<&str> = whole
        .mismatches
        .iter()
        .filter(|m| m.kind == recharge_core::recon::MismatchKind::LateReversal)
        .filter_map(|m| m.order_id.as_ref().map(|o| o.as_str()))
        .collect();
    assert_eq!(late.len(), 2, "{whole:#?}");
    assert!(late.contains(&ids[1].as_str()) && late.contains(&ids[5].as_str()));

    // The same day again, 3 re-queries a pass: the first pass leaves 4 for later, and says so.
    let part = ReconOptions {
        max_queries: 3,
        ..fast.clone()
    };
    let first = run_pass(state, day, &wikeyun, Pass::Restart, &part, far())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (
            first.requery.eligible,
            first.requery.queried,
            first.requery.remaining
        ),
        (7, 3, 4),
        "{first:#?}"
    );
    assert_eq!(first.requery.passes, 1);
    assert!(first.requery.cursor.is_some());
    let stored = state
        .balances
        .recon(&wikeyun[0], &day.date())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.requery, first.requery);
    // The tick continues it: 4 more need two passes; then nothing is left to continue.
    let mut passes = 0;
    let mut last = first;
    loop {
        let continued = continue_unfinished(state, 1, &part, far()).await.unwrap();
        let Some(r) = continued.into_iter().find(|r| r.account == wikeyun[0]) else {
            break;
        };
        assert!(r.requery.remaining < last.requery.remaining, "{r:#?}");
        last = r;
        passes += 1;
        assert!(passes <= 3, "the day never finishes: {last:#?}");
    }
    assert_eq!(passes, 2);
    assert_eq!(last.requery.queried, 7, "{last:#?}");
    assert_eq!(last.requery.remaining, 0);
    assert_eq!(last.requery.passed_open, 0);
    assert_eq!(last.requery.passes, 3);
    assert_eq!(last.requery.diverged, 2);
    assert_eq!(mismatch_keys(&last), mismatch_keys(&whole));
    assert_eq!(
        last.balance, whole.balance,
        "the corrections of every pass count"
    );
    let stored = state
        .balances
        .recon(&wikeyun[0], &day.date())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mismatch_keys(&stored), mismatch_keys(&whole));
    // A run of the finished day from the ops route asks everything again (and finds the same, once each).
    let rerun = run_recon(&h, json!({"date": day.date(), "account": WIKEYUN})).await;
    assert_eq!(rerun["reports"][0]["requery"]["queried"], 7, "{rerun}");
    assert_eq!(rerun["reports"][0]["requery"]["passes"], 1, "{rerun}");
    assert_eq!(
        rerun["reports"][0]["mismatches"].as_array().unwrap().len(),
        whole.mismatches.len()
    );
}

#[tokio::test]
async fn a_requery_budget_for_part_of_the_day_finishes_it_over_passes_on_dynamodb() {
    requery_resumes(None).await;
}

#[tokio::test]
async fn a_requery_budget_for_part_of_the_day_finishes_it_over_passes_on_the_in_memory_store() {
    requery_resumes(Some(StoreChoice::Memory)).await;
}

/// An operator settles a mismatch through the route and the CLI: the list shows it settled, the alarm's figure
/// no longer counts it, a second settlement is refused, an unknown key is 404, and a rerun keeps it.
#[tokio::test]
async fn a_settled_mismatch_stays_settled_through_a_rerun_and_stops_counting() {
    let h = Harness::start_with(options_without_balance_tick(None)).await;
    let ids = day_with_late_reversals(&h, 3, &[0, 2]).await;
    let date = today();
    let run = run_recon(&h, json!({"date": date, "account": WIKEYUN})).await;
    let mismatches = run["reports"][0]["mismatches"].as_array().unwrap().clone();
    assert_eq!(mismatches.len(), 2, "{run:#}");
    assert!(mismatches.iter().all(|m| m["open"] == true));
    let key_of = |id: &str| {
        mismatches.iter().find(|m| m["order_id"] == id).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (key_of(&ids[0]), key_of(&ids[2]));

    // The route.
    let settle = |key: &str, operator: &str| {
        json!({"account": WIKEYUN, "date": date, "key": key, "operator": operator,
               "note": "merchant refunded 100.00", "evidence": "provider ticket 13800138000 / R-9"})
    };
    let (status, settled) = ops_send(
        &h,
        "POST",
        "/ops/recon/mismatches/settle",
        &settle(&first, "li"),
    )
    .await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["mismatch"]["open"], false);
    assert_eq!(settled["mismatch"]["settlement"]["operator"], "li");
    // Long digit runs are masked, as in every operator note.
    let evidence = settled["mismatch"]["settlement"]["evidence"]
        .as_str()
        .unwrap();
    assert!(!evidence.contains("13800138000"), "{evidence}");
    let (status, again) = ops_send(
        &h,
        "POST",
        "/ops/recon/mismatches/settle",
        &settle(&first, "wang"),
    )
    .await;
    assert_error(&(status, again), 409, "already_settled");
    let (status, unknown) = ops_send(
        &h,
        "POST",
        "/ops/recon/mismatches/settle",
        &settle("late_reversal:nothing", "li"),
    )
    .await;
    assert_error(&(status, unknown), 404, "unknown_mismatch");
    let mut no_note = settle(&second, "li");
    no_note["note"] = json!(" ");
    let (status, refused) = ops_send(&h, "POST", "/ops/recon/mismatches/settle", &no_note).await;
    assert_error(&(status, refused), 400, "invalid_field");
    let (status, refused) = ops_get(&h, "/ops/recon/mismatches/settle").await;
    assert_eq!(status, 405, "{refused}");

    // The CLI settles the other one and shows both settled.
    let out = h
        .ops_cli(&[
            "recon",
            "resolve",
            "--account",
            WIKEYUN,
            "--date",
            &date,
            "--key",
            &second,
            "--operator",
            "zhao",
            "--note",
            "credited back",
            "--evidence",
            "statement line 4",
        ])
        .await
        .unwrap();
    assert!(
        out.text.contains(&format!("settled {second}")),
        "{}",
        out.text
    );
    assert!(out.text.contains("by zhao"), "{}", out.text);
    let out = h
        .ops_cli(&["recon", "show", "--account", WIKEYUN, "--date", &date])
        .await
        .unwrap();
    assert!(out.text.contains("clean (2 settled)"), "{}", out.text);
    assert!(out.text.contains("settled by li"), "{}", out.text);

    // The list: both settled, none open.
    let (_, open) = ops_get(
        &h,
        &format!("/ops/recon/mismatches?date={date}&account={WIKEYUN}&state=open"),
    )
    .await;
    assert_eq!(open["mismatches"], json!([]), "{open}");
    let (status, bad) = ops_get(
        &h,
        &format!("/ops/recon/mismatches?date={date}&state=maybe"),
    )
    .await;
    assert_error(&(status, bad), 400, "invalid_parameter");

    // A rerun from the start finds both again and keeps both settlements; the alarm's figure is 0.
    let reports = recharge_api::usecases::recon::run_pass(
        h.stack.state(),
        ReconDay::parse(&date, BEIJING_OFFSET_MINUTES).unwrap(),
        &[recharge_core::ProviderAccountId::parse(WIKEYUN).unwrap()],
        recharge_api::usecases::recon::Pass::Restart,
        &h.stack.state().settings.recon,
        std::time::Instant::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(reports[0].mismatches.len(), 2, "{reports:#?}");
    assert_eq!(reports[0].alarming(), 0, "{reports:#?}");
    let (_, listed) = ops_get(
        &h,
        &format!("/ops/recon/mismatches?date={date}&account={WIKEYUN}"),
    )
    .await;
    let listed = listed["mismatches"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for m in listed {
        assert_eq!(m["open"], false, "{m}");
        assert_eq!(
            m["alarm"], true,
            "a settled late reversal is still of an alarming kind"
        );
    }
    let by: BTreeMap<&str, &str> = listed
        .iter()
        .map(|m| {
            (
                m["key"].as_str().unwrap(),
                m["settlement"]["operator"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(by[first.as_str()], "li");
    assert_eq!(by[second.as_str()], "zhao");
}

/// With `recon_every` the local stack reconciles on its own (a scaled day): a report of today appears with
/// no one running it.
#[tokio::test]
async fn the_local_stack_reconciles_on_its_own_scaled_tick_when_asked_to() {
    let mut o = options_without_balance_tick(Some(StoreChoice::Memory));
    o.recon_every = Some(Duration::from_millis(300));
    let h = Harness::start_with(o).await;
    let (_, id) = succeeded(&h, "13800138031").await;
    let date = today();
    let started = std::time::Instant::now();
    loop {
        let (status, shown) =
            ops_get(&h, &format!("/ops/recon?date={date}&account={WIKEYUN}")).await;
        assert_eq!(status, 200, "{shown}");
        if let Some(r) = shown["reports"].get(0)
            && r["requery"]["queried"] == 1
        {
            assert_eq!(r["totals"][0]["orders"], 1, "{r:#}");
            assert_eq!(r["mismatches"], json!([]), "{id}: {r:#}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no report of {date} appeared: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! The operator console (docs/console.md) in headless Chromium, on a local stack holding a stuck order: the page
//! is loud about it, the operator resolves it with evidence through the page and drains a provider account, and
//! the API shows what the page did; a reconciliation run from the page lists an overcharge as a mismatch that
//! leads to its order. And `recharge-ops console`'s proxy against the same stack in HMAC mode.
//!
//! `RECHARGE_CONSOLE_SCREENSHOT=docs/console.png` makes the browser tests save the console's screenshots there
//! and beside it as `console-recon.png` (how docs/console.png and docs/console-recon.png were made).

use crate::browser::{Driver, Session};
use crate::helpers::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn ops_get(h: &Harness, path: &str) -> Value {
    let r = h.client(OPS).send("GET", path, b"").await.unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body
}

/// A stuck order: 0009 keeps it processing on the provider side (1 h / time scale 100 = 36 s). Its account's
/// escalation limit is first lowered to the least allowed (60 s / 100), so the order enters the operator queue
/// at once and the operator has most of those 36 s to act, however loaded the machine. Returns (merchant order
/// no, order id).
async fn stuck_order(h: &Harness) -> (String, String) {
    let lowered = h
        .client(OPS)
        .send(
            "PUT",
            "/ops/accounts/wikeyun-main",
            json!({"escalate_after_secs": 60, "operator": "test"})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(lowered.status, 200, "{}", lowered.body);
    let no = order_no("console");
    let created = h
        .demo()
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "mobile.100",
                              "account": "13800130009", "notify_url": h.inbox.url(&no)}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    poll_async(
        Duration::from_secs(60),
        "the order in the operator queue",
        || async {
            let queue = ops_get(h, "/ops/orders?needs_operator=true").await;
            queue["orders"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["order_id"] == id.as_str())
                .then_some(())
        },
    )
    .await;
    (no, id)
}

async fn wait_attribute(session: &Session<'_>, css: &str, name: &str, want: &str) {
    let started = Instant::now();
    loop {
        let now = session
            .script(
                "const e = document.querySelector(arguments[0]); return e && e.getAttribute(arguments[1]);",
                json!([css, name]),
            )
            .await;
        if now == want {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let text = session
                .script(
                    "const e = document.querySelector(arguments[0]); return e && e.textContent;",
                    json!([css]),
                )
                .await;
            panic!(
                "{css} never had {name}={want:?} (it has {now}, text {text}); error line: {:?}",
                session.text("#error").await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks a two-click button until it is armed. A click can land on a button the page replaces a moment
/// later (a re-render after the navigation or the refresh tick), and the new button is not armed; an armed
/// button is never clicked here, so this cannot apply the change.
async fn arm(session: &Session<'_>, css: &str) {
    let started = Instant::now();
    loop {
        let armed = session
            .script(
                "const e = document.querySelector(arguments[0]); return e && e.getAttribute('data-armed');",
                json!([css]),
            )
            .await;
        if armed == "true" {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{css} was never armed (it has {armed})"
        );
        session.click(css).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resolves_a_stuck_order_and_drains_an_account_through_the_console_in_headless_chromium()
 {
    let h = Harness::start().await;
    let driver = Driver::start().await;
    let profile = std::env::temp_dir().join(format!("recharge-console-{}", order_no("profile")));
    let session = driver.session(&profile).await;
    session.window(1280, 800).await;
    let console = format!("{}/ops/console/", h.stack.base_url());
    session.post("/url", json!({ "url": console })).await;

    // Calm while nothing is wrong.
    wait_attribute(&session, "body", "data-state", "calm").await;
    assert_eq!(
        session.text("#health").await,
        "All clear: nothing needs an operator."
    );

    // A stuck order; once it is in the queue the next refresh shows it (the page also refreshes every 15 s).
    let (no, id) = stuck_order(&h).await;
    session.click("#refresh").await;

    // Loud: the queue count on top, the banner, the order in the queue.
    wait_attribute(&session, "#count-queue", "data-count", "1").await;
    assert_eq!(
        session.attribute("#count-queue", "data-level").await,
        "alarm"
    );
    wait_attribute(&session, "body", "data-state", "alarm").await;
    assert!(
        session.text("#health").await.starts_with("Needs attention"),
        "{}",
        session.text("#health").await
    );
    assert_eq!(
        session.attribute("#count-disabled", "data-count").await,
        "0"
    );
    let row = format!("#queue-table tr[data-order-id='{id}']");
    session
        .wait_for(
            &row,
            "the stuck order in the queue",
            Duration::from_secs(15),
        )
        .await;
    if let Some(path) = std::env::var_os("RECHARGE_CONSOLE_SCREENSHOT") {
        std::fs::write(&path, session.screenshot().await).unwrap();
    }

    // The operator opens it: every attempt, the masked account, the audit trail so far.
    session.type_into("#operator", "alice").await;
    session.click(&row).await;
    wait_attribute(&session, "#detail", "data-order-id", &id).await;
    session
        .wait_for(
            "#attempts-table tr[data-attempt='1']",
            "the attempts",
            Duration::from_secs(10),
        )
        .await;
    let detail = session.text("#detail").await;
    assert!(
        detail.contains("138****0009") && !detail.contains("13800130009"),
        "{detail}"
    );
    assert!(detail.contains("wikeyun-main"), "{detail}");
    assert!(session.exists("#audit-table tbody tr").await);

    // Resolves attempt 1 as succeeded, with evidence.
    session
        .type_into("#resolve-reason", "provider support confirmed the credit")
        .await;
    session
        .type_into(
            "#resolve-evidence",
            "wikeyun ticket 7731, call with 13800138000 at 10:02",
        )
        .await;
    session.click("#resolve-submit").await;
    wait_attribute(&session, "#resolve-result", "data-status", "ok").await;
    wait_attribute(&session, "#detail", "data-status", "succeeded").await;

    // What the page did is what the API records: the outcome, who, why, the evidence (masked), the merchant told.
    let shown = ops_get(&h, &format!("/ops/orders/{id}")).await;
    assert_eq!(shown["order"]["status"], "succeeded", "{shown}");
    assert_eq!(shown["order"]["needs_operator"], false);
    let audit = shown["order"]["audit"].as_array().unwrap();
    let by_operator = audit
        .iter()
        .find(|e| e["summary"].as_str().unwrap().contains("(operator)"))
        .unwrap_or_else(|| panic!("no operator entry: {audit:?}"));
    let detail: Value = serde_json::from_str(by_operator["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["operator"], "alice");
    assert_eq!(detail["principal"], "app:ops");
    assert_eq!(detail["outcome"], "succeeded");
    assert_eq!(
        detail["evidence"],
        "wikeyun ticket 7731, call with 138****8000 at 10:02"
    );
    let last = h
        .inbox
        .wait_sequence(
            &no,
            DEMO.1,
            shown["order"]["sequence"].as_u64().unwrap(),
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(last.last().unwrap()["status"], "succeeded");
    assert!(h.assert_at_most_one_delivery(&id) <= 1);

    // The queue is empty again: calm.
    session.click("#refresh").await;
    wait_attribute(&session, "#count-queue", "data-count", "0").await;

    // Drains a provider account (two clicks: arm, confirm); the count of accounts not taking orders shows it.
    session
        .post("/url", json!({ "url": format!("{console}#accounts") }))
        .await;
    let drain = "#accounts-table tr[data-account='openapi-main'] button[data-mode='draining']";
    session
        .wait_for(drain, "the accounts", Duration::from_secs(15))
        .await;
    arm(&session, drain).await;
    session.click(drain).await;
    wait_attribute(
        &session,
        "#accounts-table tr[data-account='openapi-main']",
        "data-mode",
        "draining",
    )
    .await;
    wait_attribute(&session, "#count-disabled", "data-count", "1").await;
    wait_attribute(&session, "body", "data-state", "warn").await;
    let account = ops_get(&h, "/ops/accounts/openapi-main").await;
    assert_eq!(account["account"]["mode"], "draining", "{account}");
    assert_eq!(account["account"]["takes_new_orders"], false);
    assert!(
        account["account"]["updated_by"]
            .as_str()
            .unwrap()
            .starts_with("alice"),
        "{account}"
    );

    session.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}

#[tokio::test]
async fn recharge_ops_console_signs_the_page_s_calls_against_the_local_stack_in_hmac_mode() {
    let h = Harness::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // `recharge-ops console` as its command builds it: bound on loopback, a token in the URL it prints.
    let serve = |secret: &str| {
        let client = recharge_ops::OpsClient::hmac(h.stack.base_url(), OPS.0, secret);
        async move {
            let bound = recharge_ops::console::Bound::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let url = bound.url();
            let task = tokio::spawn(async move { bound.serve(client).await.unwrap() });
            (url, task)
        }
    };
    let (url, task) = serve(OPS.1).await;
    let (page, token) = url.split_once("#token=").unwrap();
    assert!(
        page.starts_with("http://127.0.0.1:") && page.ends_with("/ops/console/"),
        "{url}"
    );
    let html = http.get(page).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Recharge operations"));

    let call = |base: &str, path: &str, token: &str| {
        http.get(format!("{base}api/{path}"))
            .header(recharge_ops::console::CONSOLE_HEADER, "1")
            .header(recharge_ops::console::TOKEN_HEADER, token)
            .send()
    };
    let r = call(page, "accounts", token).await.unwrap();
    assert_eq!(r.status(), 200);
    let through_console: Value = r.json().await.unwrap();
    let direct = ops_get(&h, "/ops/accounts").await;
    let ids = |v: &Value| -> Vec<String> {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["provider_account"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&through_console), ids(&direct));
    assert!(ids(&direct).contains(&"wikeyun-main".to_owned()));

    // A lookup with a query string, signed as sent.
    let r = call(page, "orders?needs_operator=true&limit=5", token)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page_json: Value = r.json().await.unwrap();
    assert!(page_json["orders"].is_array(), "{page_json}");

    // Without the token nothing is signed; with a wrong secret the gateway's own refusal comes back as is.
    assert_eq!(call(page, "accounts", "nope").await.unwrap().status(), 401);
    task.abort();
    let (url, task) = serve("not-the-secret").await;
    let (page, token) = url.split_once("#token=").unwrap();
    let r = call(page, "accounts", token).await.unwrap();
    assert_eq!(r.status(), 401);
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "bad_signature", "{refused}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_mismatch_run_from_the_console_is_loud_and_leads_to_its_order_in_headless_chromium()
 {
    let h = Harness::start().await;
    // 0011: the provider delivers and charges (and reports) more than the agreed price: a price mismatch that
    // only the daily reconciliation sees.
    let no = order_no("overcharged");
    let created = h
        .demo()
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800130011"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    wait_for(&h.demo(), &no, Duration::from_secs(30), "succeeded", |v| {
        v["status"] == "succeeded"
    })
    .await;
    let today = recharge_core::recon::ReconDay::containing(
        h.stack.state().clock.now(),
        h.stack.state().settings.recon_utc_offset_minutes,
    )
    .date();

    let driver = Driver::start().await;
    let profile = std::env::temp_dir().join(format!("recharge-console-{}", order_no("profile")));
    let session = driver.session(&profile).await;
    session.window(1280, 800).await;
    let console = format!("{}/ops/console/", h.stack.base_url());
    session
        .post("/url", json!({ "url": format!("{console}#recon/{today}") }))
        .await;
    // Nothing has been reconciled yet: no report, no mismatch, and nothing else wrong.
    wait_attribute(&session, "#recon-summary", "data-reports", "0").await;
    wait_attribute(&session, "#count-mismatches", "data-count", "0").await;

    // The operator runs the day now: the mismatch is listed with the order, and the count on top is loud.
    session.click("#recon-run").await;
    let row = format!("#mismatches-table tr[data-kind='price_mismatch'][data-order-id='{id}']");
    session
        .wait_for(&row, "the price mismatch", Duration::from_secs(60))
        .await;
    wait_attribute(&session, "#count-mismatches", "data-level", "alarm").await;
    wait_attribute(&session, "body", "data-state", "alarm").await;
    if let Some(path) = std::env::var_os("RECHARGE_CONSOLE_SCREENSHOT") {
        let path = std::path::PathBuf::from(path).with_file_name("console-recon.png");
        std::fs::write(path, session.screenshot().await).unwrap();
    }
    let listed = session.text(&row).await;
    assert!(listed.contains("wikeyun-main"), "{listed}");
    let count: u64 = session
        .attribute("#count-mismatches", "data-count")
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 1, "{count}");

    // The page shows what the API stored.
    let stored = ops_get(&h, &format!("/ops/recon/mismatches?date={today}")).await;
    let mismatches = stored["mismatches"].as_array().unwrap();
    assert!(
        mismatches
            .iter()
            .any(|m| m["kind"] == "price_mismatch" && m["order_id"] == id.as_str()),
        "{stored}"
    );
    assert_eq!(
        u64::try_from(mismatches.iter().filter(|m| m["alarm"] == true).count()).unwrap(),
        count,
        "the count on top is the alarming mismatches of the day: {stored}"
    );

    // The operator settles the mismatch itself, with a note and evidence: the row shows who settled it, the
    // count on top no longer counts it, and the API has the settlement.
    session.type_into("#operator", "carol").await;
    session.click(&format!("{row} button.settle-open")).await;
    session
        .wait_for("#settle-form", "the settle form", Duration::from_secs(10))
        .await;
    session
        .type_into("#settle-note", "provider refunded the 1.00 overcharge")
        .await;
    session
        .type_into("#settle-evidence", "provider ticket OC-77")
        .await;
    session.click("#settle-submit").await;
    wait_attribute(&session, &row, "data-state", "settled").await;
    let settled_row = session.text(&row).await;
    assert!(settled_row.contains("by carol"), "{settled_row}");
    wait_attribute(
        &session,
        "#count-mismatches",
        "data-count",
        &(count - 1).to_string(),
    )
    .await;
    let stored = ops_get(
        &h,
        &format!("/ops/recon/mismatches?date={today}&state=settled"),
    )
    .await;
    let settled = stored["mismatches"].as_array().unwrap();
    assert_eq!(settled.len(), 1, "{stored}");
    assert_eq!(settled[0]["order_id"], id.as_str());
    assert_eq!(settled[0]["open"], false);
    assert_eq!(settled[0]["settlement"]["operator"], "carol");
    assert_eq!(
        settled[0]["settlement"]["evidence"],
        "provider ticket OC-77"
    );
    assert!(
        settled[0]["settlement"]["principal"]
            .as_str()
            .unwrap()
            .starts_with("app:"),
        "{stored}"
    );

    // The mismatch leads to its order, where it is resolved.
    session.click(&format!("{row} a")).await;
    wait_attribute(&session, "#detail", "data-order-id", &id).await;
    session
        .wait_for("#resolve-form", "the resolve form", Duration::from_secs(10))
        .await;

    session.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}

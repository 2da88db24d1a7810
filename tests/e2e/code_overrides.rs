//! The operators' code overrides at runtime (docs/operations.md §3), end to end through the local stack: a
//! provider account whose submit refusal speaks a code no table lists keeps such orders Unknown, never failed
//! over (the first law); the operator maps the code to a refusal with `recharge-ops accounts codes`, and the
//! next refused order on that account fails over to the backup route (or fails with `provider_refused` where
//! there is none), within the control cache's TTL, with no restart; cleared, the code is unlisted again. Bad
//! overrides are refused with a 400 naming the phase, code or meaning, or the loader's message.

use crate::helpers::*;
use recharge_core::{AttemptState, Order};
use recharge_local::LocalOptions;
use recharge_ops::CliError;
use recharge_sim::Dialect;
use recharge_sim::dialect::CodeText;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// wikeyun-main's simulator refuses (script 0001) with `7777`, which neither the protocol's table nor the
/// demo account's `codes` list.
fn refusing_with_7777() -> LocalOptions {
    let mut o = options();
    o.dialects.insert(
        "wikeyun-main".into(),
        Dialect {
            name: "e2e-refusal-7777".into(),
            submit_refusal: Some(CodeText {
                code: "7777".into(),
                message: "号码暂停服务".into(),
            }),
            ..Dialect::default()
        },
    );
    o
}

async fn put(h: &Harness, account: &str, body: &Value) -> (u16, Value) {
    let r = h
        .client(OPS)
        .send(
            "PUT",
            &format!("/ops/accounts/{account}"),
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
    (r.status, r.body)
}

/// Places a refused (0001) order of `product` and returns its merchant order number.
async fn refused_order(h: &Harness, label: &str, product: &str) -> String {
    let no = order_no(label);
    let r = h
        .demo()
        .create_order(
            &json!({"merchant_order_no": no, "product_code": product, "account": "13800130001"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    no
}

fn first_state(order: &Order) -> &AttemptState {
    order.attempts()[0].state()
}

/// Waits until the order's first attempt has the provider's answer recorded (it is no longer submitting).
async fn answered(h: &Harness, no: &str) -> Order {
    poll_async(
        Duration::from_secs(20),
        "the submit answer recorded",
        || async {
            let o = h.stored("demo", no).await;
            (!matches!(first_state(&o), AttemptState::Submitting)).then_some(o)
        },
    )
    .await
}

#[tokio::test]
async fn an_unlisted_refusal_code_mapped_at_runtime_fails_over_the_next_order_with_no_restart() {
    let h = Harness::start_with(refusing_with_7777()).await;
    let demo = h.demo();

    // Unlisted: the order may exist at the provider, so it is Unknown and stays on its route (first law).
    let before = refused_order(&h, "codes-before", "mobile.100").await;
    let o = answered(&h, &before).await;
    assert!(
        matches!(first_state(&o), AttemptState::Unknown { .. }),
        "{:?}",
        first_state(&o)
    );
    // Several sweeps later (the stack runs 100 times faster: minutes of queries), still one attempt, open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let o = h.stored("demo", &before).await;
    assert_eq!(o.attempts().len(), 1, "no failover on an unlisted code");
    assert!(
        matches!(first_state(&o), AttemptState::Unknown { .. }),
        "{:?}",
        first_state(&o)
    );
    let view = demo.get_order(&before).await.unwrap().body;
    assert_eq!(view["status"], "processing", "{view}");

    // Bad overrides are refused with 400, naming what is wrong, and nothing is stored.
    for (account, overrides, names) in [
        (
            "wikeyun-main",
            json!({"submit": {"7777": "refused"}}),
            &["submit.7777", "refused"][..],
        ),
        (
            "wikeyun-main",
            json!({"balance": {"7777": "refusal"}}),
            &["balance", "not a phase"][..],
        ),
        (
            "wikeyun-main",
            json!({"submit": {"7777": 1}}),
            &["submit.7777"][..],
        ),
        // openapi-rsa must keep a query code meaning success: the loader's message comes back.
        (
            "openapi-main",
            json!({"query": {"2": "accepted"}}),
            &["does not load", "codes.query", "success"][..],
        ),
    ] {
        let reply = put(
            &h,
            account,
            &json!({"code_overrides": overrides, "operator": "dave"}),
        )
        .await;
        assert_error(&reply, 400, "invalid_code_overrides");
        let message = reply.1["error"]["message"].as_str().unwrap();
        for n in names {
            assert!(message.contains(n), "{overrides}: {message}");
        }
    }
    let shown = h
        .ops_cli(&["--json", "accounts", "show", "wikeyun-main"])
        .await
        .unwrap();
    assert_eq!(shown.json["account"]["code_overrides"], Value::Null);
    // The CLI refuses a malformed --set before sending anything.
    match h
        .ops_cli(&[
            "accounts",
            "codes",
            "wikeyun-main",
            "--set",
            "7777=refusal",
            "--operator",
            "dave",
        ])
        .await
    {
        Err(CliError::Usage(m)) => assert!(m.contains("PHASE:CODE=MEANING"), "{m}"),
        other => panic!("{other:?}"),
    }

    // The operator maps 7777 to a refusal through the CLI.
    let mapped = h
        .ops_cli(&[
            "accounts",
            "codes",
            "wikeyun-main",
            "--set",
            "submit:7777=refusal",
            "--operator",
            "dave",
        ])
        .await
        .unwrap();
    let changed = Instant::now();
    assert_eq!(
        mapped.json["account"]["code_overrides"],
        json!({"submit": {"7777": "refusal"}}),
        "{}",
        mapped.json
    );
    assert_eq!(
        mapped.json["account"]["codes"]["submit"]["2005"], "refusal",
        "the account's configured codes stay under the operator's"
    );
    assert!(
        mapped
            .text
            .contains("wikeyun-main code overrides: submit:7777=refusal"),
        "{}",
        mapped.text
    );

    // A new refused order on that account is a refusal now: it fails over to the backup route and succeeds.
    let after = poll_async(
        Duration::from_secs(60),
        "a 7777 refusal failed over",
        || async {
            let no = refused_order(&h, "codes-after", "mobile.100").await;
            let o = answered(&h, &no).await;
            matches!(first_state(&o), AttemptState::Rejected { .. }).then_some((no, o))
        },
    )
    .await;
    assert!(
        changed.elapsed() < Duration::from_secs(60),
        "{:?}",
        changed.elapsed()
    );
    let (after, o) = after;
    assert_eq!(
        o.attempts()[0].route().provider_account.as_str(),
        "wikeyun-main"
    );
    wait_status(&demo, &after, "succeeded", Duration::from_secs(30)).await;
    let o = h.stored("demo", &after).await;
    assert_eq!(o.attempts().len(), 2, "{:?}", o.attempts());
    assert_eq!(
        o.attempts()[1].route().provider_account.as_str(),
        "suka-backup"
    );
    h.assert_at_most_one_delivery(o.id().as_str());

    // Where there is no backup route, the order fails with the stable refusal code.
    let single = refused_order(&h, "codes-single", "mobile.single.100").await;
    let failed = wait_status(&demo, &single, "failed", Duration::from_secs(20)).await;
    assert_eq!(failed["failure"]["code"], "provider_refused", "{failed}");

    // The order answered before the mapping keeps its recorded answer: a mapping judges new answers only.
    let o = h.stored("demo", &before).await;
    assert_eq!(o.attempts().len(), 1);

    // Shown in force; then cleared, and the code is unlisted again (Unknown, no failover).
    let shown = h
        .ops_cli(&["accounts", "show", "wikeyun-main"])
        .await
        .unwrap();
    assert!(
        shown.text.contains("code overrides: submit:7777=refusal"),
        "{}",
        shown.text
    );
    assert_eq!(
        shown.json["account"]["code_overrides_in_force"],
        json!({"submit": {"7777": "refusal"}})
    );
    let cleared = h
        .ops_cli(&[
            "accounts",
            "codes",
            "wikeyun-main",
            "--clear",
            "--operator",
            "dave",
        ])
        .await
        .unwrap();
    assert_eq!(cleared.json["account"]["code_overrides"], Value::Null);
    assert!(
        cleared.text.contains("code overrides: none"),
        "{}",
        cleared.text
    );
    poll_async(
        Duration::from_secs(60),
        "a 7777 refusal unknown again",
        || async {
            let no = refused_order(&h, "codes-cleared", "mobile.100").await;
            let o = answered(&h, &no).await;
            matches!(first_state(&o), AttemptState::Unknown { .. }).then_some(())
        },
    )
    .await;
}

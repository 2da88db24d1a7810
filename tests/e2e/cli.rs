//! `recharge-ops` (tools/ops) against the local stack, as an operator types it: arguments parsed by the CLI,
//! requests signed by it (HMAC as the admin app), answers shown as its tables and JSON.

use crate::helpers::*;
use recharge_ops::{Cli, CliError, client_for, run};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn a_stuck_order_is_found_and_resolved_with_evidence_through_the_cli() {
    let h = Harness::start().await;
    let demo = h.demo();
    // 0009 on wikeyun: the provider recorded it and keeps it processing; wikeyun cannot answer "not found".
    let (no, id) = h.create_stuck_order("cli-stuck").await;

    let listed = poll_async(
        Duration::from_secs(40),
        "the order in the CLI's queue",
        || async {
            let out = h
                .ops_cli(&[
                    "orders",
                    "list",
                    "--needs-operator",
                    "--app-filter",
                    "demo",
                    "--all",
                ])
                .await
                .unwrap();
            order_ids(&out.json).contains(&id).then_some(out)
        },
    )
    .await;
    assert!(listed.text.starts_with("ORDER"), "{}", listed.text);
    let row = listed.text.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("stuck_attempt since"), "{row}");
    assert!(row.contains("wikeyun-main"), "{row}");

    // Found by the merchant's number, shown with its attempts.
    let shown = h
        .ops_cli(&["orders", "show", &format!("demo/{no}")])
        .await
        .unwrap();
    assert_eq!(shown.json["order"]["order_id"], id.as_str());
    assert!(shown.text.contains("NEEDS AN OPERATOR"), "{}", shown.text);
    assert!(shown.text.contains("accepted"), "{}", shown.text);

    let before = demo.get_order(&no).await.unwrap().body["sequence"]
        .as_u64()
        .unwrap();
    let resolved = h
        .ops_cli(&[
            "orders",
            "resolve",
            &id,
            "--attempt",
            "1",
            "--outcome",
            "succeeded",
            "--reason",
            "provider confirmed delivery by phone",
            "--evidence",
            "wikeyun ticket 9912",
            "--operator",
            "carol",
        ])
        .await
        .unwrap();
    assert_eq!(resolved.json["order"]["status"], "succeeded");
    assert!(resolved.text.starts_with("resolved."), "{}", resolved.text);

    // The merchant hears the new status; the order leaves the queue; the audit names the operator.
    let bodies = h
        .inbox
        .wait_sequence(&no, DEMO.1, before + 1, Duration::from_secs(10))
        .await;
    assert_eq!(bodies.last().unwrap()["status"], "succeeded");
    let queue = h
        .ops_cli(&["orders", "list", "--needs-operator", "--app-filter", "demo"])
        .await
        .unwrap();
    assert!(!order_ids(&queue.json).contains(&id));
    let shown = h.ops_cli(&["--json", "orders", "show", &id]).await.unwrap();
    let audit = shown.json["order"]["audit"].as_array().unwrap().clone();
    let entry = audit
        .iter()
        .find(|e| e["summary"].as_str().unwrap_or("").contains("(operator)"))
        .unwrap();
    let detail: Value = serde_json::from_str(entry["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["operator"], "carol");
    assert_eq!(detail["evidence"], "wikeyun ticket 9912");

    // A second resolution is refused with the machine's reason, as a CLI error.
    let again = h
        .ops_cli(&[
            "orders",
            "resolve",
            &id,
            "--attempt",
            "1",
            "--outcome",
            "failed",
            "--reason",
            "r",
            "--evidence",
            "e",
            "--operator",
            "carol",
        ])
        .await;
    match again {
        Err(CliError::Api { status, code, .. }) => {
            assert_eq!(
                (status, code.as_str()),
                (409, "conflicts_with_final_result")
            );
        }
        other => panic!("expected a 409, got {other:?}"),
    }
}

#[tokio::test]
async fn the_cli_queries_notifies_and_shows_balances() {
    let h = Harness::start().await;
    let demo = h.demo();
    let no = order_no("cli-misc");
    let created = demo
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "game.demo.60",
                              "account": "player-7", "notify_url": h.inbox.url(&no)}),
        )
        .await
        .unwrap();
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    wait_status(&demo, &no, "succeeded", Duration::from_secs(20)).await;

    match h.ops_cli(&["orders", "query", &id]).await {
        Err(CliError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (409, "no_open_attempt"))
        }
        other => panic!("a final order has nothing to query: {other:?}"),
    }
    let notified = h.ops_cli(&["orders", "notify", &id]).await.unwrap();
    assert_eq!(notified.json["delivered"], true, "{}", notified.json);
    assert!(
        notified.text.starts_with("delivered sequence"),
        "{}",
        notified.text
    );
    let abandoned = h.ops_cli(&["notifications"]).await.unwrap();
    assert!(!order_ids(&abandoned.json).contains(&id));

    let balances = poll_async(Duration::from_secs(20), "a balance snapshot", || async {
        let out = h.ops_cli(&["balances"]).await.unwrap();
        out.json["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["balance_fen"].is_i64())
            .then_some(out)
    })
    .await;
    assert!(balances.text.starts_with("ACCOUNT"), "{}", balances.text);
    assert!(balances.text.contains("suka-main"), "{}", balances.text);

    // A merchant app's key opens nothing here.
    let base = h.stack.base_url().to_owned();
    let parsed = <Cli as clap::Parser>::try_parse_from([
        "recharge-ops",
        "--base",
        &base,
        "--app",
        DEMO.0,
        "--secret",
        DEMO.1,
        "balances",
    ])
    .unwrap();
    let client = client_for(&parsed).await.unwrap();
    match run(&client, &parsed.command).await {
        Err(CliError::Api { status, .. }) => assert_eq!(status, 403),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_account_disabled_through_the_cli_sends_the_next_order_to_the_backup_route() {
    let h = Harness::start().await;
    let demo = h.demo();
    let first_route =
        |order: &recharge_core::Order| order.attempts()[0].route().provider_account.to_string();
    let no = order_no("cli-before");
    assert_eq!(
        demo.create_order(
            &json!({"merchant_order_no": no, "product_code": "mobile.100",
                                          "account": "13800138000"})
        )
        .await
        .unwrap()
        .status,
        201
    );
    assert_eq!(first_route(&h.stored("demo", &no).await), "wikeyun-main");

    let disabled = h
        .ops_cli(&["accounts", "disable", "wikeyun-main", "--operator", "dave"])
        .await
        .unwrap();
    assert_eq!(
        disabled.json["account"]["mode"], "disabled",
        "{}",
        disabled.json
    );
    assert!(
        disabled.text.contains("wikeyun-main is disabled"),
        "{}",
        disabled.text
    );
    let changed = std::time::Instant::now();
    // No restart: the stack's functions see the change through their control cache (60 s at most).
    let routed = poll_async(Duration::from_secs(60), "an order on the backup route", || async {
        let no = order_no("cli-after");
        let r = demo
            .create_order(&json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800138000"}))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        let route = first_route(&h.stored("demo", &no).await);
        (route == "suka-backup").then_some(no)
    })
    .await;
    assert!(changed.elapsed() < Duration::from_secs(60));
    wait_status(&demo, &routed, "succeeded", Duration::from_secs(20)).await;
    // The single-route product has nowhere to go.
    let single = demo
        .create_order(&json!({"merchant_order_no": order_no("cli-single"), "product_code": "mobile.single.100",
                              "account": "13800138000"}))
        .await
        .unwrap();
    assert_eq!(single.status, 422, "{}", single.body);
    assert_eq!(single.body["error"]["code"], "no_route");

    let listed = h.ops_cli(&["accounts", "list"]).await.unwrap();
    let row = listed
        .text
        .lines()
        .find(|l| l.starts_with("wikeyun-main"))
        .unwrap();
    assert!(
        row.contains("disabled") && row.contains("dave (app:ops)"),
        "{row}"
    );
    // Drained, then enabled again: routing comes back to it.
    let drained = h
        .ops_cli(&["accounts", "drain", "wikeyun-main", "--operator", "dave"])
        .await
        .unwrap();
    assert_eq!(drained.json["account"]["takes_new_orders"], false);
    h.ops_cli(&["accounts", "enable", "wikeyun-main", "--operator", "dave"])
        .await
        .unwrap();
    poll_async(Duration::from_secs(60), "an order on the first route again", || async {
        let no = order_no("cli-back");
        demo.create_order(&json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800138000"}))
            .await
            .unwrap();
        (first_route(&h.stored("demo", &no).await) == "wikeyun-main").then_some(())
    })
    .await;
    match h
        .ops_cli(&["accounts", "disable", "nobody", "--operator", "dave"])
        .await
    {
        Err(CliError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (400, "unknown_account"))
        }
        other => panic!("{other:?}"),
    }
}

//! The operators' API (docs/operations.md §1) through the local stack, signed as the admin app `ops`: a stuck order
//! found in the queue, resolved with evidence and notified to the merchant; lookups; the audit trail; refusals with
//! stable codes; redelivery of an abandoned notification; authorisation.

use crate::helpers::*;
use recharge_core::store::{Recorded, record};
use recharge_core::{Event, Policy};
use serde_json::{Value, json};
use std::time::Duration;

fn ops(h: &Harness) -> recharge_local::SigningClient {
    h.client(OPS)
}

async fn get(client: &recharge_local::SigningClient, path: &str) -> (u16, Value) {
    let r = client.send("GET", path, b"").await.unwrap();
    (r.status, r.body)
}

async fn post(client: &recharge_local::SigningClient, path: &str, body: &Value) -> (u16, Value) {
    let r = client
        .send("POST", path, body.to_string().as_bytes())
        .await
        .unwrap();
    (r.status, r.body)
}

#[tokio::test]
async fn a_stuck_order_is_queued_resolved_with_evidence_and_the_merchant_is_told() {
    let h = Harness::start().await;
    let demo = h.demo();
    let ops = ops(&h);
    // 0009: the provider took it and keeps it processing far past the 30-minute limit of a fast top-up.
    let (no, id) = h.create_stuck_order("stuck").await;

    // Not in the queue at first; in it once the limit (30 min / time scale 100 = 18 s) has passed.
    let (status, queue) = get(&ops, "/ops/orders?needs_operator=true&app=demo").await;
    assert_eq!(status, 200, "{queue}");
    assert!(!order_ids(&queue).contains(&id), "{queue}");
    let entry = poll_async(
        Duration::from_secs(40),
        "order in the operator queue",
        || async {
            let (_, queue) = get(&ops, "/ops/orders?needs_operator=true&app=demo").await;
            queue["orders"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["order_id"] == id.as_str())
                .cloned()
        },
    )
    .await;
    assert_eq!(entry["attention"]["reason"], "stuck_attempt", "{entry}");
    assert_eq!(entry["needs_operator"], true);
    assert_eq!(entry["provider_account"], "wikeyun-main");

    // The operator looks, then resolves with evidence (say, the provider's support confirmed the credit).
    let (status, shown) = get(&ops, &format!("/ops/orders/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    let attempt = shown["order"]["attempts"][0].clone();
    assert_eq!(attempt["state"]["state"], "accepted", "{shown}");
    assert_eq!(
        shown["order"]["account"], "138****0009",
        "the recharge account is masked"
    );
    let before = demo.get_order(&no).await.unwrap().body;
    let (status, resolved) = post(
        &ops,
        &format!("/ops/orders/{id}/resolve"),
        &json!({"attempt": 1, "outcome": "succeeded", "reason": "provider support confirmed the credit",
                "evidence": "wikeyun ticket 7731, call with 13800138000 at 10:02", "operator": "alice"}),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["order"]["status"], "succeeded");
    assert_eq!(resolved["order"]["needs_operator"], false);

    // The merchant is notified like after any change, with the new status and a higher sequence.
    let seq = before["sequence"].as_u64().unwrap() + 1;
    let bodies = h
        .inbox
        .wait_sequence(&no, DEMO.1, seq, Duration::from_secs(10))
        .await;
    let last = bodies.last().unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(
        demo.get_order(&no).await.unwrap().body["status"],
        "succeeded"
    );

    // The audit trail says who, why and with what evidence (numbers masked); the queue no longer holds it.
    let (_, shown) = get(&ops, &format!("/ops/orders/{id}")).await;
    let audit = shown["order"]["audit"].as_array().unwrap();
    let by_operator = audit
        .iter()
        .find(|e| e["summary"].as_str().unwrap().contains("(operator)"))
        .unwrap_or_else(|| panic!("no operator entry: {audit:?}"));
    let detail: Value = serde_json::from_str(by_operator["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["operator"], "alice");
    assert_eq!(detail["principal"], "app:ops");
    assert_eq!(
        detail["evidence"],
        "wikeyun ticket 7731, call with 138****8000 at 10:02"
    );
    let (_, queue) = get(&ops, "/ops/orders?needs_operator=true&app=demo").await;
    assert!(!order_ids(&queue).contains(&id), "{queue}");
    assert!(h.assert_at_most_one_delivery(&id) <= 1);
}

#[tokio::test]
async fn an_order_is_found_by_merchant_number_and_by_attempt_id_and_listed_by_filters() {
    let h = Harness::start().await;
    let demo = h.demo();
    let ops = ops(&h);
    let no = order_no("find");
    let created = demo
        .create_order(&json!({"merchant_order_no": no, "product_code": "game.demo.60", "account": "player-42"}))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    wait_status(&demo, &no, "succeeded", Duration::from_secs(20)).await;

    let (status, by_no) = get(
        &ops,
        &format!("/ops/orders?app=demo&merchant_order_no={no}"),
    )
    .await;
    assert_eq!(status, 200, "{by_no}");
    assert_eq!(order_ids(&by_no), vec![id.clone()]);
    let (_, by_attempt) = get(&ops, &format!("/ops/orders?attempt_id={id}01")).await;
    assert_eq!(order_ids(&by_attempt), vec![id.clone()]);
    let (_, other_app) = get(
        &ops,
        &format!("/ops/orders?app=demo2&merchant_order_no={no}"),
    )
    .await;
    assert!(order_ids(&other_app).is_empty(), "{other_app}");

    let (_, succeeded) = get(
        &ops,
        "/ops/orders?status=succeeded&app=demo&provider_account=suka-main",
    )
    .await;
    assert!(order_ids(&succeeded).contains(&id), "{succeeded}");
    let (_, failed) = get(&ops, "/ops/orders?status=failed&app=demo").await;
    assert!(!order_ids(&failed).contains(&id), "{failed}");
    let (_, old) = get(&ops, "/ops/orders?app=demo&older_than=1d").await;
    assert!(!order_ids(&old).contains(&id), "created seconds ago: {old}");

    // The operators' view keeps the raw provider exchange in its audit trail; bad parameters are 400s.
    let (_, shown) = get(&ops, &format!("/ops/orders/{id}")).await;
    assert_eq!(
        shown["order"]["attempts"][0]["attempt_id"],
        format!("{id}01")
    );
    assert!(
        shown["order"]["audit"].as_array().unwrap().len() >= 2,
        "{shown}"
    );
    assert_error(
        &get(&ops, "/ops/orders?status=lost").await,
        400,
        "invalid_parameter",
    );
    assert_error(
        &get(&ops, "/ops/orders?limit=0").await,
        400,
        "invalid_parameter",
    );
    assert_error(
        &get(&ops, "/ops/orders?cursor=xyz").await,
        400,
        "invalid_parameter",
    );
    assert_error(
        &get(&ops, "/ops/orders/NOTANORDER").await,
        404,
        "order_not_found",
    );
}

#[tokio::test]
async fn the_machine_s_refusals_are_409s_with_stable_codes() {
    let h = Harness::start().await;
    let demo = h.demo();
    let ops = ops(&h);
    let no = order_no("refuse");
    let created = demo
        .create_order(&json!({"merchant_order_no": no, "product_code": "game.demo.60", "account": "player-43"}))
        .await
        .unwrap();
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    wait_status(&demo, &no, "succeeded", Duration::from_secs(20)).await;
    let resolve = |outcome: &str| json!({"attempt": 1, "outcome": outcome, "reason": "test", "evidence": "none", "operator": "bob"});
    let path = format!("/ops/orders/{id}/resolve");
    // A success is final: "not submitted" and "failed" contradict it; "succeeded" again changes nothing.
    assert_error(
        &post(&ops, &path, &resolve("not_submitted")).await,
        409,
        "conflicts_with_final_result",
    );
    assert_error(
        &post(&ops, &path, &resolve("failed")).await,
        409,
        "conflicts_with_final_result",
    );
    assert_error(
        &post(&ops, &path, &resolve("succeeded")).await,
        409,
        "already_resolved",
    );
    let mut wrong = resolve("succeeded");
    wrong["attempt"] = json!(7);
    assert_error(&post(&ops, &path, &wrong).await, 400, "unknown_attempt");
    assert_error(
        &post(&ops, &path, &resolve("maybe")).await,
        400,
        "invalid_field",
    );
    let mut no_evidence = resolve("succeeded");
    no_evidence["evidence"] = json!(" ");
    assert_error(&post(&ops, &path, &no_evidence).await, 400, "invalid_field");
    // Nothing to query on a final order; the merchant view is unchanged.
    assert_error(
        &post(&ops, &format!("/ops/orders/{id}/query"), &json!({})).await,
        409,
        "no_open_attempt",
    );
    assert_eq!(
        demo.get_order(&no).await.unwrap().body["status"],
        "succeeded"
    );

    // An accepted attempt reached the provider: it cannot be "not submitted".
    let slow = order_no("refuse-accepted");
    let created = demo
        .create_order(
            &json!({"merchant_order_no": slow, "product_code": "mobile.single.100",
                              "account": "13800130009"}),
        )
        .await
        .unwrap();
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    let (_, shown) = get(&ops, &format!("/ops/orders/{id}")).await;
    assert_eq!(
        shown["order"]["attempts"][0]["state"]["state"], "accepted",
        "{shown}"
    );
    assert_error(
        &post(
            &ops,
            &format!("/ops/orders/{id}/resolve"),
            &resolve("not_submitted"),
        )
        .await,
        409,
        "outcome_not_applicable",
    );
    assert_eq!(
        demo.get_order(&slow).await.unwrap().body["status"],
        "processing"
    );
}

#[tokio::test]
async fn an_abandoned_notification_is_listed_and_redelivered_on_demand() {
    let h = Harness::start().await;
    let demo = h.demo();
    let ops = ops(&h);
    let no = order_no("abandon");
    h.inbox.refuse_first(&no, 1_000);
    let created = demo
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "game.demo.60",
                              "account": "player-44", "notify_url": h.inbox.url(&no)}),
        )
        .await
        .unwrap();
    let id = created.body["order_id"].as_str().unwrap().to_owned();
    wait_status(&demo, &no, "succeeded", Duration::from_secs(20)).await;
    poll(Duration::from_secs(10), "a refused notification", || {
        (!h.inbox.received(&no).is_empty()).then_some(())
    })
    .await;
    // The schedule's end (15 tries over a day) recorded as the notifier records it: abandoned.
    let state = h.stack.state();
    let mut gave_up = false;
    for _ in 0..20 {
        let order = h.stored("demo", &no).await;
        let event = Event::Notified {
            sequence: order.sequence(),
            delivered: false,
            retry_at: None,
        };
        if let Recorded::Applied(_) = record(
            &*state.store,
            order,
            &event,
            state.clock.now(),
            &Policy::default(),
            None,
        )
        .await
        .unwrap()
        {
            gave_up = true;
            break;
        }
    }
    assert!(gave_up);
    assert!(h.stored("demo", &no).await.notification_abandoned());

    let (status, abandoned) = get(&ops, "/ops/notifications?abandoned=true").await;
    assert_eq!(status, 200, "{abandoned}");
    assert!(order_ids(&abandoned).contains(&id), "{abandoned}");
    assert_eq!(
        abandoned["orders"][0]["attention"]["reason"],
        "notification_abandoned"
    );
    assert_error(
        &get(&ops, "/ops/notifications").await,
        400,
        "invalid_parameter",
    );

    // Still refused: the redelivery reports it and the order stays abandoned.
    let path = format!("/ops/orders/{id}/notify");
    let (status, again) = post(&ops, &path, &json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["delivered"], false, "{again}");
    // The merchant is back: redelivered, acknowledged, out of the queue.
    h.inbox.refuse_first(&no, 0);
    let (_, done) = post(&ops, &path, &json!({})).await;
    assert_eq!(done["delivered"], true, "{done}");
    assert_eq!(done["order"]["notification"]["abandoned"], false, "{done}");
    let last = h.inbox.received(&no).last().cloned().unwrap();
    let body: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["status"], "succeeded");
    check_notifications(&h.inbox.received(&no), DEMO.1);
    let (_, abandoned) = get(&ops, "/ops/notifications?abandoned=true").await;
    assert!(!order_ids(&abandoned).contains(&id), "{abandoned}");
}

#[tokio::test]
async fn ops_routes_are_for_admin_apps_only() {
    let h = Harness::start().await;
    assert_error(&get(&h.demo(), "/ops/orders").await, 403, "forbidden");
    let unsigned = send_raw(h.stack.base_url(), "GET", "/ops/orders", &[], vec![]).await;
    assert_error(&unsigned, 401, "missing_auth");
    let (status, _) = get(&ops(&h), "/ops/orders").await;
    assert_eq!(status, 200);
    assert_error(
        &post(&ops(&h), "/ops/orders", &json!({})).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn a_pc_billing_code_never_entered_expires_as_failed_with_nothing_charged() {
    let h = Harness::start_with(recharge_local::LocalOptions {
        verification_expiry: Some(Duration::from_secs(3)),
        ..options()
    })
    .await;
    let demo = h.demo();
    let no = order_no("expire");
    let created = demo
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "billing.code.demo",
                              "account": "13800138000"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["status"], "action_required",
        "{}",
        created.body
    );
    // The stack's expiry (3 s here; 15 minutes in production): the sweep expires it.
    let v = wait_status(&demo, &no, "failed", Duration::from_secs(30)).await;
    assert_eq!(v["failure"]["code"], "expired", "{v}");
    let order = h.stored("demo", &no).await;
    assert_eq!(
        h.ledger_of(&order)
            .iter()
            .map(|(_, o)| o.deliveries)
            .sum::<u32>(),
        0
    );
    // Too late for the code now.
    let r = demo.verify(&no, "123456").await.unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
}

//! The DynamoDB round trips of each ops route (docs/operations.md §1), counted at the SDK on DynamoDB Local with
//! the sweep and the balance check held still, so only the requests below touch the table. Each route is
//! counted warm (its function's app and control caches filled by the requests just before), as most requests
//! find them; a cold cache adds 1 `GetItem` per app record (the admin app's; the merchant's to sign a
//! notification) and 1 `Query` (the account controls).

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

fn count(ops: &[(&str, u64)]) -> BTreeMap<String, u64> {
    ops.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ops_route_costs_the_round_trips_written_down() {
    let calls = recharge_aws::CallCounter::new();
    let mut options = options();
    options.aws_calls = Some(calls.clone());
    options.sweep_every = Duration::from_secs(3600);
    options.balance_every = Duration::from_secs(3600);
    // Warm means warm: with the default 1 s caches a loaded machine let the controls expire between the
    // warm-up read and the counted request (GET /ops/balances counted 2 Queries instead of 1, 2026-12-02).
    options.cache_ttl = Duration::from_secs(600);
    let h = Harness::start_with(options).await;
    let demo = h.demo();
    let ops = h.client(OPS);
    // 0009 on wikeyun: recorded and kept processing (the sweep is still, so nothing else touches it).
    let (no, id) = h.create_stuck_order("trips").await;
    // The balance check's run at start writes its snapshots: wait for them, they are no route's cost.
    poll_async(
        Duration::from_secs(20),
        "the first balance check",
        || async {
            let r = ops.send("GET", "/ops/balances", b"").await.unwrap();
            r.body["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| !a["balance_fen"].is_null())
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = h.stored("demo", &no).await;
    let attempt_id = stored.attempt_id(stored.attempts()[0].no()).to_string();

    // (method, path, body, expected round trips when warm)
    let lookup = format!("/ops/orders?app=demo&merchant_order_no={no}");
    let by_attempt = format!("/ops/orders?attempt_id={attempt_id}");
    let show = format!("/ops/orders/{id}");
    let query = format!("/ops/orders/{id}/query");
    let resolve = format!("/ops/orders/{id}/resolve");
    let notify = format!("/ops/orders/{id}/notify");
    let resolve_body = json!({"attempt": 1, "outcome": "succeeded", "reason": "provider support confirmed",
                              "evidence": "ticket 1", "operator": "dave"});
    let put_body = json!({"mode": "draining", "operator": "dave"});
    let routes: Vec<(&str, &str, Value, BTreeMap<String, u64>)> = vec![
        // 8 shards of one status.
        (
            "GET",
            "/ops/orders?status=processing",
            json!(null),
            count(&[("Query", 8)]),
        ),
        // Six statuses, 8 shards each.
        ("GET", "/ops/orders", json!(null), count(&[("Query", 48)])),
        (
            "GET",
            "/ops/orders?needs_operator=true",
            json!(null),
            count(&[("Query", 8)]),
        ),
        ("GET", &lookup, json!(null), count(&[("GetItem", 1)])),
        ("GET", &by_attempt, json!(null), count(&[("GetItem", 1)])),
        (
            "GET",
            &show,
            json!(null),
            count(&[("GetItem", 1), ("Query", 1)]),
        ),
        // Read, then the query's answer written.
        (
            "POST",
            &query,
            json!({}),
            count(&[("GetItem", 1), ("UpdateItem", 1)]),
        ),
        // Read, the operator's outcome written (its notification made due: the sweep sends it).
        (
            "POST",
            &resolve,
            resolve_body,
            count(&[("GetItem", 1), ("UpdateItem", 1)]),
        ),
        // Read, sent now, the acknowledgement written.
        (
            "POST",
            &notify,
            json!({}),
            count(&[("GetItem", 1), ("UpdateItem", 1)]),
        ),
        (
            "GET",
            "/ops/notifications?abandoned=true",
            json!(null),
            count(&[("Query", 8)]),
        ),
        ("GET", "/ops/balances", json!(null), count(&[("Query", 1)])),
        ("GET", "/ops/accounts", json!(null), count(&[("Query", 2)])),
        (
            "GET",
            "/ops/accounts/wikeyun-main",
            json!(null),
            count(&[("Query", 2)]),
        ),
        // Controls read, the control written, balances read for the answer.
        (
            "PUT",
            "/ops/accounts/wikeyun-main",
            put_body,
            count(&[("PutItem", 1), ("Query", 2)]),
        ),
    ];
    let mut report = String::new();
    let mut wrong = Vec::new();
    for (method, path, body, want) in &routes {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        // Warm the caches (the admin app, the controls) with a read that costs nothing else of interest.
        let warm = ops.send("GET", "/ops/balances", b"").await.unwrap();
        assert_eq!(warm.status, 200);
        // And the merchant app's record, which a notification is signed for.
        assert_eq!(demo.get_order(&no).await.unwrap().status, 200);
        calls.reset();
        let r = ops.send(method, path, &bytes).await.unwrap();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        let got = calls.snapshot();
        report.push_str(&format!("{method} {path}: {got:?}\n"));
        if &got != want {
            wrong.push(format!(
                "{method} {path}: counted {got:?}, written down {want:?}"
            ));
        }
    }
    println!("{report}");
    assert!(wrong.is_empty(), "{}\n\n{report}", wrong.join("\n"));
}

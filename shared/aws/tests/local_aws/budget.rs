//! The DynamoDB round-trip budget of docs/storage.md §4, counted at the SDK (every HTTP attempt) on DynamoDB Local.

use crate::store;
use recharge_aws::CallCounter;
use recharge_core::store::contract::{T0, sample_order};
use recharge_core::store::{AuditEntry, Created, OrderStore, Recorded, record};
use recharge_core::{AttemptNo, Event, Outcome, Policy, Source, apply};
use std::collections::BTreeMap;

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn accepted() -> Event {
    Event::Outcome {
        attempt: AttemptNo::FIRST,
        source: Source::Submit,
        outcome: Outcome::Accepted {
            provider_ref: Some("P1".into()),
        },
        report: Default::default(),
    }
}

fn succeeded() -> Event {
    Event::Outcome {
        attempt: AttemptNo::FIRST,
        source: Source::Callback,
        outcome: Outcome::Succeeded { provider_ref: None },
        report: Default::default(),
    }
}

#[tokio::test]
async fn create_is_one_conditional_write() {
    let calls = CallCounter::new();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-create");
    calls.reset();
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    assert_eq!(calls.snapshot(), counts(&[("PutItem", 1)]));
}

#[tokio::test]
async fn a_duplicate_create_writes_nothing_and_reads_at_most_once() {
    let calls = CallCounter::new();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-dup");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    calls.reset();
    let again = store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    assert_eq!(again, Created::Existing(order.clone()));
    // The conditional put is refused (nothing written); the stored order comes back with the refusal, or,
    // where the server does not return it, from one read.
    let seen = calls.snapshot();
    assert_eq!(seen.get("PutItem"), Some(&1));
    assert!(seen.get("GetItem").copied().unwrap_or(0) <= 1, "{seen:?}");
    assert_eq!(
        seen.len(),
        seen.contains_key("GetItem") as usize + 1,
        "{seen:?}"
    );
    assert_eq!(
        store.audit_trail(order.id()).await.unwrap().len(),
        1,
        "no write happened"
    );
}

#[tokio::test]
async fn recording_an_outcome_on_a_current_order_is_one_conditional_write() {
    let calls = CallCounter::new();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-outcome");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    calls.reset();
    let r = record(&store, order, &accepted(), T0, &Policy::default(), None)
        .await
        .unwrap();
    assert!(matches!(r, Recorded::Applied(_)));
    assert_eq!(calls.snapshot(), counts(&[("UpdateItem", 1)]));
}

#[tokio::test]
async fn a_callback_is_one_read_by_key_and_one_conditional_write() {
    let calls = CallCounter::new();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-callback");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    // The callback carries the provider-facing attempt id; it resolves to the key without an index.
    let attempt_id = order.attempt_id(AttemptNo::FIRST);
    calls.reset();
    let key = recharge_core::AttemptId::parse(attempt_id.as_str())
        .unwrap()
        .order_id();
    let current = store.get(&key).await.unwrap().unwrap();
    record(&store, current, &succeeded(), T0, &Policy::default(), None)
        .await
        .unwrap();
    assert_eq!(
        calls.snapshot(),
        counts(&[("GetItem", 1), ("UpdateItem", 1)])
    );
    // A duplicate of that callback: one read, and no write at all.
    calls.reset();
    let current = store.get(&key).await.unwrap().unwrap();
    let r = record(&store, current, &succeeded(), T0, &Policy::default(), None)
        .await
        .unwrap();
    assert!(matches!(r, Recorded::Refused { .. }));
    assert_eq!(calls.snapshot(), counts(&[("GetItem", 1)]));
}

#[tokio::test]
async fn a_lost_race_reads_once_then_writes_again() {
    let calls = CallCounter::new();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-race");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let winner = apply(&order, &accepted(), T0, &Policy::default()).unwrap();
    store
        .replace(&winner.order, &AuditEntry::for_applied(&winner, None))
        .await
        .unwrap();
    calls.reset();
    // Holding the stale version 1, the callback loses once, learns the current order, and applies on it.
    // The current order comes back with the refusal (ReturnValuesOnConditionCheckFailure), so a read is
    // needed only where the server does not return it (this DynamoDB Local build does not).
    let r = record(&store, order, &succeeded(), T0, &Policy::default(), None)
        .await
        .unwrap();
    assert!(matches!(r, Recorded::Applied(_)));
    let seen = calls.snapshot();
    assert_eq!(seen.get("UpdateItem"), Some(&2), "{seen:?}");
    assert!(seen.get("GetItem").copied().unwrap_or(0) <= 1, "{seen:?}");
    assert!(
        seen.keys().all(|k| k == "GetItem" || k == "UpdateItem"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_merchant_get_is_one_read() {
    let calls = CallCounter::new();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-get");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    calls.reset();
    // The merchant names its own order number; the key is derived, not looked up.
    let id = recharge_core::OrderId::derive(order.app_id(), order.merchant_order_no());
    assert_eq!(store.get(&id).await.unwrap().as_ref(), Some(&order));
    assert_eq!(calls.snapshot(), counts(&[("GetItem", 1)]));
}

#[tokio::test]
async fn the_sweep_finds_due_orders_with_one_query_per_shard() {
    let calls = CallCounter::new();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-due");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    calls.reset();
    let due_at = order.due_at().unwrap();
    let mut found = false;
    for shard in 0..store.due_shards() {
        found |= store
            .due(shard, due_at, 10_000)
            .await
            .unwrap()
            .iter()
            .any(|d| &d.order_id == order.id());
    }
    assert!(found);
    assert_eq!(
        calls.snapshot(),
        counts(&[("Query", u64::from(store.due_shards()))])
    );
}

#[tokio::test]
async fn a_lifecycle_writes_at_most_half_the_table_units_of_the_transactional_layout() {
    // ReturnConsumedCapacity on every call: create, accepted and final of an order with short audit lines.
    let calls = CallCounter::metering();
    let store = store(Some(&calls)).await;
    let order = sample_order("budget-units");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let mut current = order;
    for event in [accepted(), succeeded()] {
        match record(&store, current, &event, T0, &Policy::default(), None)
            .await
            .unwrap()
        {
            Recorded::Applied(a) => current = a.order,
            Recorded::Refused { refusal, .. } => panic!("refused: {refusal}"),
        }
    }
    let metered = calls.metered();
    let ops: Vec<&str> = metered.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(ops, ["PutItem", "UpdateItem", "UpdateItem"]);
    // A plain write costs 1 unit per KB of the order item on the table (its audit entry inside), its index
    // changes on top. The transactional layout wrote the order item (no smaller) and a separate audit item,
    // each at 2 units per KB: at least 2 x (table + 1) table units per change. The index changes are the
    // same in both layouts (docs/storage.md §6 has the figures).
    let mut after = 0.0;
    let mut before = 0.0;
    for (op, u) in &metered {
        let table = u.write - u.index;
        assert!((1.0..=2.0).contains(&table), "{op}: {u:?}");
        after += table;
        before += 2.0 * (table + 1.0);
    }
    assert!(
        after * 2.0 <= before,
        "table units: after {after} vs before {before}: {metered:?}"
    );
}

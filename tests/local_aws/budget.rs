//! The DynamoDB round-trip budget of docs/storage.md §4, counted at the SDK (every HTTP attempt) on DynamoDB Local.

use crate::store;
use recharge_aws::{CallCounter, DynamoOrderStore};
use recharge_core::store::contract::{T0, new_order, sample_order};
use recharge_core::store::{AuditEntry, Created, OrderStore, Recorded, record};
use recharge_core::{
    AppId, AttemptNo, Event, MerchantOrderNo, Order, Outcome, Policy, ProviderAccountId, Source,
    Timestamp, apply,
};
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// A store counting its calls into `calls`, and an order tagged `tag` created in it; the count starts after.
async fn created(calls: &CallCounter, tag: &str) -> (DynamoOrderStore, Order) {
    let store = store(Some(calls)).await;
    let order = sample_order(tag);
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    calls.reset();
    (store, order)
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
    let (store, order) = created(&calls, "budget-dup").await;
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
    let (store, order) = created(&calls, "budget-outcome").await;
    let r = record(&store, order, &accepted(), T0, &Policy::default(), None)
        .await
        .unwrap();
    assert!(matches!(r, Recorded::Applied(_)));
    assert_eq!(calls.snapshot(), counts(&[("UpdateItem", 1)]));
}

#[tokio::test]
async fn a_callback_is_one_read_by_key_and_one_conditional_write() {
    let calls = CallCounter::new();
    let (store, order) = created(&calls, "budget-callback").await;
    // The callback carries the provider-facing attempt id; it resolves to the key without an index.
    let attempt_id = order.attempt_id(AttemptNo::FIRST);
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
    let (store, order) = created(&calls, "budget-race").await;
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
    let (store, order) = created(&calls, "budget-get").await;
    // The merchant names its own order number; the key is derived, not looked up.
    let id = recharge_core::OrderId::derive(order.app_id(), order.merchant_order_no());
    assert_eq!(store.get(&id).await.unwrap().as_ref(), Some(&order));
    assert_eq!(calls.snapshot(), counts(&[("GetItem", 1)]));
}

#[tokio::test]
async fn the_sweep_finds_due_orders_with_one_query_per_shard() {
    let calls = CallCounter::new();
    let (store, order) = created(&calls, "budget-due").await;
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

/// The write units of the same five writes in the layout before 2026-12-01, measured then on DynamoDB Local
/// with this test's order: each change a `TransactWriteItems` of the order item (1 to 2 KB: 2 units) and its
/// audit item (under 1 KB: 1 unit), both billed twice by AWS, 2 x (2 + 1) = 6 table units per write, and the
/// index changes 3 + 2 + 5 + 2 + 1 = 13 (the same keys as now): 5 x 6 + 13 = 43. Without the claim (the
/// four writes the bench's lifecycle row counts): 4 x 6 + 11 = 35. docs/storage.md §6.
const BEFORE_FIVE_WRITES: f64 = 43.0;
const BEFORE_WITHOUT_CLAIM: f64 = 35.0;

async fn applied(store: &DynamoOrderStore, order: Order, event: Event, now: Timestamp) -> Order {
    match record(store, order, &event, now, &Policy::default(), None)
        .await
        .unwrap()
    {
        Recorded::Applied(a) => a.order,
        Recorded::Refused { refusal, .. } => panic!("{event:?} refused: {refusal}"),
    }
}

#[tokio::test]
async fn a_lifecycle_writes_at_most_half_the_units_of_the_transactional_layout() {
    use std::time::Duration;
    // ReturnConsumedCapacity = INDEXES on every call: an order with a notify_url from create to its
    // notification delivered, through the store as the handlers and the sweep drive it.
    let calls = CallCounter::metering();
    let store = store(Some(&calls)).await;
    let mut doc = serde_json::to_value(sample_order("budget-units")).unwrap();
    doc["notify_url"] = serde_json::json!("https://merchant.example.com/notify/recharge");
    let order: Order = serde_json::from_value(doc).unwrap();
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let at = |secs: u64| T0.plus(Duration::from_secs(secs));
    let mut current = order;
    current = applied(&store, current, accepted(), at(1)).await;
    current = applied(&store, current, succeeded(), at(60)).await;
    let claim = Event::NotifyClaimed {
        sequence: current.sequence(),
        until: at(90),
    };
    current = applied(&store, current, claim, at(60)).await;
    let delivered = Event::Notified {
        sequence: current.sequence(),
        delivered: true,
        retry_at: None,
    };
    current = applied(&store, current, delivered, at(61)).await;
    assert_eq!(current.due_at(), None, "nothing left to do");
    let metered = calls.metered_by_index();
    let ops: Vec<&str> = metered.iter().map(|(op, _, _)| op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "PutItem",
            "UpdateItem",
            "UpdateItem",
            "UpdateItem",
            "UpdateItem"
        ]
    );
    let names = ["create", "accepted", "final", "notify claimed", "notified"];
    let mut total = 0.0;
    for (name, (op, u, by_index)) in names.iter().zip(&metered) {
        println!(
            "{name}: {op} {} WCU = table {} + indexes {by_index:?}",
            u.write,
            u.write - u.index
        );
        // The order item with its inline audit stays under 1 KB (the doc deflated): 1 unit per write.
        assert_eq!(u.write - u.index, 1.0, "{name}: {u:?}");
        total += u.write;
    }
    let claim_units = metered[3].1.write;
    println!(
        "lifecycle: {total} WCU against {BEFORE_FIVE_WRITES} before; without the claim {} against {BEFORE_WITHOUT_CLAIM}",
        total - claim_units
    );
    assert!(
        total * 2.0 <= BEFORE_FIVE_WRITES,
        "{total} WCU: {metered:?}"
    );
    assert!(
        (total - claim_units) * 2.0 <= BEFORE_WITHOUT_CLAIM,
        "{total} WCU: {metered:?}"
    );
    // The trail has every event.
    let trail = store.audit_trail(current.id()).await.unwrap();
    assert_eq!(
        trail.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
}

/// A provider callback's read before its write (docs/storage.md §6): one strongly consistent `GetItem` of an
/// item under 4 KB, 1 read unit, beside the write's units.
#[tokio::test]
async fn a_callback_read_costs_one_read_unit() {
    let calls = CallCounter::metering();
    let (store, order) = created(&calls, "budget-callback-units").await;
    let current = record(&store, order, &accepted(), T0, &Policy::default(), None)
        .await
        .unwrap();
    let Recorded::Applied(current) = current else {
        panic!("accepted refused")
    };
    calls.reset();
    let read = store.get(current.order.id()).await.unwrap().unwrap();
    record(&store, read, &succeeded(), T0, &Policy::default(), None)
        .await
        .unwrap();
    let metered = calls.metered();
    println!("callback: {metered:?}");
    assert_eq!(metered.len(), 2);
    assert_eq!(metered[0].0, "GetItem");
    assert_eq!(metered[0].1.read, 1.0);
    assert_eq!(metered[1].0, "UpdateItem");
    assert_eq!(metered[1].1.read, 0.0);
}

/// `n` new orders of `app` on `account`, numbered `{prefix}-{i}` and created `spacing_ms` apart from `first`.
fn day_of_orders(
    n: usize,
    app: &str,
    prefix: &str,
    account: &ProviderAccountId,
    first: Timestamp,
    spacing_ms: i64,
) -> Vec<Order> {
    (0..n)
        .map(|i| {
            new_order(
                AppId::parse(app).unwrap(),
                MerchantOrderNo::parse(&format!("{prefix}-{i}")).unwrap(),
                account.clone(),
                Timestamp::from_millis(first.millis() + i as i64 * spacing_ms),
            )
        })
        .collect()
}

/// Creates `orders` in 16 concurrent streams, each order followed by `events` (recorded at its creation).
async fn create_all(store: &Arc<DynamoOrderStore>, orders: Vec<Order>, events: &[Event]) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in orders.chunks(orders.len() / 16) {
        let chunk = chunk.to_vec();
        let store = Arc::clone(store);
        let events = events.to_vec();
        tasks.spawn(async move {
            for o in chunk {
                store
                    .create(&o, &AuditEntry::for_create(&o, None))
                    .await
                    .unwrap();
                let mut current = o;
                for event in &events {
                    let at = current.created_at();
                    match record(&*store, current, event, at, &Policy::default(), None)
                        .await
                        .unwrap()
                    {
                        Recorded::Applied(a) => current = a.order,
                        Recorded::Refused { refusal, .. } => panic!("refused: {refusal}"),
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// The daily reconciliation's reads (docs/reconciliation.md §5), counted: the day's orders from the `by_status`
/// index (one Query per status and shard while a partition's entries fit one 1 MB page) and 1 BatchGetItem per
/// 100 orders. 2,000 orders here; 10,000 cost 6 × shards Queries and 100 BatchGetItems.
#[tokio::test]
async fn a_day_of_orders_is_read_with_one_query_per_index_partition_and_one_batch_get_per_hundred()
{
    let calls = CallCounter::new();
    let store = Arc::new(store(Some(&calls)).await);
    // A window no other test writes into.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let from = Timestamp::from_millis(T0.millis() + 86_400_000 * (1 + (nanos % 10_000) as i64));
    const N: usize = 2_000;
    let account = ProviderAccountId::parse("acct-a").unwrap();
    let orders = day_of_orders(N, "reconbench", &format!("rb-{nanos}"), &account, from, 1);
    create_all(&store, orders, &[]).await;
    calls.reset();
    let to = Timestamp::from_millis(from.millis() + 86_400_000);
    let found = store.created_between(from, to).await.unwrap();
    assert_eq!(found.len(), N);
    let queries = calls.get("Query");
    let ids: Vec<_> = found.into_iter().map(|s| s.order_id).collect();
    let mut read = 0;
    for chunk in ids.chunks(500) {
        read += store.get_many(chunk).await.unwrap().len();
    }
    assert_eq!(read, N);
    let shards = u64::from(store.due_shards());
    println!(
        "recon reads of {N} orders: {queries} Query, {} BatchGetItem ({shards} shards)",
        calls.get("BatchGetItem")
    );
    assert_eq!(queries, 6 * shards);
    assert_eq!(calls.get("BatchGetItem"), (N / 100) as u64);
    assert_eq!(calls.total(), queries + (N / 100) as u64);
}

/// The read units of a daily reconciliation run (docs/reconciliation.md §5), metered with
/// `ReturnConsumedCapacity` on DynamoDB Local: the store calls `recharge_api::usecases::recon::run_pass` makes for one
/// account (its stored report, the day's orders from the `by_status` index, the orders 500 at a time, the
/// balance history, the report's write) over 2,000 orders, each created, accepted and succeeded. The bound:
/// every order item is under 4 KB with its three audit entries (0.5 unit, eventually consistent), and the
/// index pages hold small projected entries, so the run reads under 0.6 units per order.
#[tokio::test]
async fn a_recon_run_reads_about_half_a_unit_per_order() {
    use recharge_core::ProviderAccountId;
    use recharge_core::recon::{ReconDay, ReconReport};
    use recharge_core::store::BalanceStore;
    let calls = CallCounter::metering();
    let store = Arc::new(store(Some(&calls)).await);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // A day no other test writes into (a Beijing day, as the run reads it).
    let day = ReconDay::containing(
        Timestamp::from_millis(T0.millis() + 86_400_000 * (20_000 + (nanos % 10_000) as i64)),
        480,
    );
    const N: usize = 2_000;
    let account = ProviderAccountId::parse(&format!("acct-units-{}", nanos % 1_000_000)).unwrap();
    let orders = day_of_orders(
        N,
        "reconunits",
        &format!("ru-{nanos}"),
        &account,
        day.start(),
        1_000,
    );
    create_all(&store, orders, &[accepted(), succeeded()]).await;
    calls.reset();
    // The run's reads, in its order.
    assert_eq!(store.recon(&account, &day.date()).await.unwrap(), None);
    let found = store.created_between(day.start(), day.end()).await.unwrap();
    assert_eq!(found.len(), N);
    let ids: Vec<_> = found.into_iter().map(|s| s.order_id).collect();
    let mut read = Vec::with_capacity(N);
    for chunk in ids.chunks(500) {
        read.extend(store.get_many(chunk).await.unwrap());
    }
    assert_eq!(read.len(), N);
    assert!(
        read.iter()
            .all(|o| o.public_view().status.as_str() == "succeeded")
    );
    store
        .balance_history(&account, day.start(), day.end())
        .await
        .unwrap();
    store
        .put_recon(&ReconReport::empty(account.clone(), day, T0))
        .await
        .unwrap();
    let units = calls.units();
    let of = |op: &str| units.get(op).copied().unwrap_or_default();
    let read_units: f64 = units.values().map(|u| u.read).sum();
    let per_10k = read_units * 10_000.0 / N as f64;
    println!(
        "recon run over {N} orders: {read_units:.1} read units (Query {:.1}, BatchGetItem {:.1}); \
         {per_10k:.0} per 10,000 orders; writes {:.1}",
        of("Query").read,
        of("BatchGetItem").read,
        units.values().map(|u| u.write).sum::<f64>()
    );
    // Each order item read once, eventually consistent: at least half a unit each, not a full one.
    assert!(of("BatchGetItem").read >= 0.5 * N as f64, "{units:?}");
    assert!(read_units <= 0.6 * N as f64, "{units:?}");
}

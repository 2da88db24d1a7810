//! The contract of `OrderStore`: one suite, run against every implementation. Invoke
//! `recharge_core::order_store_contract!(factory)` in a test module, where `factory` is an `async fn() ->
//! Arc<dyn OrderStore>`; each case becomes a `#[tokio::test]`. Cases use fresh order numbers, so they may
//! share one table.
//!
//! This is test code compiled into the library (behind the `contract` feature) so that other crates' tests can
//! run it; like any test, it unwraps and panics to fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::ids::{AppId, MerchantOrderNo, ProductCode, ProviderAccountId};
use crate::machine::{Event, Policy, apply};
use crate::money::Fen;
use crate::order::{NewOrder, Order, Route};
use crate::outcome::{Outcome, Reason, Source};
use crate::store::{AuditEntry, Created, OrderStore, Recorded, Replaced, record};
use crate::time::Timestamp;
use crate::{AttemptNo, PublicStatus};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A time well in the past, so due times computed from it are due "now" in every test.
pub const T0: Timestamp = Timestamp::from_millis(1_763_000_000_000);

/// A unique merchant order number per call, across processes sharing a table.
pub fn fresh_order_no(tag: &str) -> MerchantOrderNo {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let text = format!("{tag}-{}-{nanos}-{n}", std::process::id());
    MerchantOrderNo::parse(&text[..text.len().min(64)]).unwrap()
}

/// A new order of the demo app, attempt 1 on `acct-a`.
pub fn sample_order(tag: &str) -> Order {
    fn p<T>(r: Result<T, crate::IdError>) -> T {
        r.unwrap()
    }
    let new = NewOrder {
        app_id: p(AppId::parse("contract")),
        merchant_order_no: fresh_order_no(tag),
        product_code: p(ProductCode::parse("mobile.100")),
        account: "13800138000".to_owned(),
        extra: BTreeMap::new(),
        face_value: Fen::new(10_000),
        notify_url: None,
        request_digest: "00".repeat(32),
    };
    let route = Route {
        provider_account: p(ProviderAccountId::parse("acct-a")),
        provider_product: "100".to_owned(),
        cost: Fen::new(9_850),
    };
    Order::new(new, route, T0, Policy::default().call_timeout)
}

fn accepted(attempt: AttemptNo, source: Source) -> Event {
    Event::Outcome {
        attempt,
        source,
        outcome: Outcome::Accepted {
            provider_ref: Some("P1".into()),
        },
        report: Default::default(),
    }
}

fn succeeded(attempt: AttemptNo) -> Event {
    Event::Outcome {
        attempt,
        source: Source::Callback,
        outcome: Outcome::Succeeded { provider_ref: None },
        report: Default::default(),
    }
}

pub async fn create_then_get_returns_the_same_order(store: Arc<dyn OrderStore>) {
    let order = sample_order("get");
    let created = store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    assert_eq!(created, Created::New(order.clone()));
    assert_eq!(store.get(order.id()).await.unwrap(), Some(order));
}

pub async fn get_of_an_unknown_order_is_none(store: Arc<dyn OrderStore>) {
    let order = sample_order("none");
    assert_eq!(store.get(order.id()).await.unwrap(), None);
}

pub async fn duplicate_create_returns_the_stored_order_and_writes_nothing(
    store: Arc<dyn OrderStore>,
) {
    let order = sample_order("dup");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    // The same id with a different body (as a conflicting replay would have) must not overwrite.
    let mut other = order.clone();
    other.request_digest = "ff".repeat(32);
    let again = store
        .create(&other, &AuditEntry::for_create(&other, None))
        .await
        .unwrap();
    assert_eq!(again, Created::Existing(order.clone()));
    assert_eq!(store.get(order.id()).await.unwrap(), Some(order.clone()));
    assert_eq!(store.audit_trail(order.id()).await.unwrap().len(), 1);
}

pub async fn replace_applies_only_on_the_expected_version(store: Arc<dyn OrderStore>) {
    let order = sample_order("ver");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let policy = Policy::default();
    let a1 = apply(
        &order,
        &accepted(AttemptNo::FIRST, Source::Submit),
        T0,
        &policy,
    )
    .unwrap();
    assert_eq!(
        store
            .replace(&a1.order, &AuditEntry::for_applied(&a1, None))
            .await
            .unwrap(),
        Replaced::Applied
    );
    // A second change computed from the old version loses, and learns the current order.
    let stale = apply(&order, &succeeded(AttemptNo::FIRST), T0, &policy).unwrap();
    match store
        .replace(&stale.order, &AuditEntry::for_applied(&stale, None))
        .await
        .unwrap()
    {
        Replaced::Conflict {
            current: Some(current),
        } => assert_eq!(*current, a1.order),
        other => panic!("expected a conflict with the current order, got {other:?}"),
    }
    assert_eq!(store.get(order.id()).await.unwrap(), Some(a1.order));
}

pub async fn replace_of_a_missing_order_conflicts_with_nothing(store: Arc<dyn OrderStore>) {
    let order = sample_order("missing");
    let a1 = apply(
        &order,
        &accepted(AttemptNo::FIRST, Source::Submit),
        T0,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        store
            .replace(&a1.order, &AuditEntry::for_applied(&a1, None))
            .await
            .unwrap(),
        Replaced::Conflict { current: None }
    );
    assert_eq!(store.get(order.id()).await.unwrap(), None);
}

pub async fn audit_trail_is_append_only_in_version_order(store: Arc<dyn OrderStore>) {
    let order = sample_order("audit");
    store
        .create(
            &order,
            &AuditEntry::for_create(&order, Some("submit request".into())),
        )
        .await
        .unwrap();
    let policy = Policy::default();
    let mut current = order.clone();
    for event in [
        accepted(AttemptNo::FIRST, Source::Submit),
        succeeded(AttemptNo::FIRST),
    ] {
        match record(
            &*store,
            current.clone(),
            &event,
            T0,
            &policy,
            Some("raw".into()),
        )
        .await
        .unwrap()
        {
            Recorded::Applied(applied) => current = applied.order,
            Recorded::Refused { refusal, .. } => panic!("refused: {refusal}"),
        }
    }
    let trail = store.audit_trail(order.id()).await.unwrap();
    let versions: Vec<u64> = trail.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(trail[0].detail.as_deref(), Some("submit request"));
    assert!(trail[2].summary.contains("succeeded"), "{:?}", trail[2]);
}

pub async fn due_index_holds_open_orders_until_they_are_final(store: Arc<dyn OrderStore>) {
    let order = sample_order("due");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let shard = order.id().shard(store.due_shards());
    let deadline = order.due_at().unwrap();
    let id = order.id().clone();
    let in_shard = |due: Vec<crate::store::DueOrder>| due.iter().any(|d| d.order_id == id);

    // Not due before the call deadline; due at it; never in another shard.
    let before = Timestamp::from_millis(deadline.millis() - 1);
    assert!(!in_shard(store.due(shard, before, 1000).await.unwrap()));
    assert!(in_shard(store.due(shard, deadline, 1000).await.unwrap()));
    let other = (shard + 1) % store.due_shards();
    if other != shard {
        assert!(!in_shard(store.due(other, deadline, 1000).await.unwrap()));
    }

    // Accepted: due again at the first poll.
    let policy = Policy::default();
    let a = match record(
        &*store,
        order,
        &accepted(AttemptNo::FIRST, Source::Submit),
        T0,
        &policy,
        None,
    )
    .await
    .unwrap()
    {
        Recorded::Applied(a) => a.order,
        Recorded::Refused { refusal, .. } => panic!("{refusal}"),
    };
    let poll = a.due_at().unwrap();
    assert_eq!(poll, T0.plus(policy.poll_backoff[0]));
    assert!(in_shard(store.due(shard, poll, 1000).await.unwrap()));

    // Final: gone from the index.
    let done = match record(&*store, a, &succeeded(AttemptNo::FIRST), T0, &policy, None)
        .await
        .unwrap()
    {
        Recorded::Applied(d) => d.order,
        Recorded::Refused { refusal, .. } => panic!("{refusal}"),
    };
    assert_eq!(done.public_view().status, PublicStatus::Succeeded);
    let far = T0.plus(Duration::from_secs(365 * 86_400));
    assert!(!in_shard(store.due(shard, far, 10_000).await.unwrap()));
}

pub async fn due_is_earliest_first_and_limited(store: Arc<dyn OrderStore>) {
    let shards = store.due_shards();
    // Three orders in one shard with different deadlines.
    let mut picked: Vec<Order> = Vec::new();
    let mut target = None;
    let mut i = 0u64;
    while picked.len() < 3 {
        let mut o = sample_order("order");
        o.created_at = Timestamp::from_millis(T0.millis() - 3_600_000 + (i as i64) * 1000);
        o.attempts[0].next_poll_at = Some(o.created_at);
        let s = o.id().shard(shards);
        if *target.get_or_insert(s) == s {
            picked.push(o);
        }
        i += 1;
    }
    for o in picked.iter().rev() {
        store
            .create(o, &AuditEntry::for_create(o, None))
            .await
            .unwrap();
    }
    let due = store.due(target.unwrap_or(0), T0, 100_000).await.unwrap();
    let positions: Vec<usize> = picked
        .iter()
        .map(|o| {
            due.iter()
                .position(|d| &d.order_id == o.id())
                .expect("picked order is due")
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "not earliest first: {positions:?}"
    );
    assert!(due.windows(2).all(|w| w[0].due_at <= w[1].due_at));
    assert_eq!(
        store.due(target.unwrap_or(0), T0, 2).await.unwrap().len(),
        2
    );
}

pub async fn concurrent_creates_of_one_order_write_once_and_agree(store: Arc<dyn OrderStore>) {
    let order = sample_order("race-create");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let order = order.clone();
            tokio::spawn(async move {
                store
                    .create(&order, &AuditEntry::for_create(&order, None))
                    .await
            })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Created::New(o) => {
                new += 1;
                assert_eq!(o, order);
            }
            Created::Existing(o) => assert_eq!(o, order),
        }
    }
    assert_eq!(new, 1, "exactly one create must win");
    assert_eq!(store.audit_trail(order.id()).await.unwrap().len(), 1);
}

pub async fn concurrent_transitions_from_one_version_apply_once(store: Arc<dyn OrderStore>) {
    let order = sample_order("race-replace");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let policy = Policy::default();
    // Twenty different changes, all computed from version 1.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let event = Event::Outcome {
                attempt: AttemptNo::FIRST,
                source: Source::Submit,
                outcome: Outcome::Accepted {
                    provider_ref: Some(format!("P{i}")),
                },
                report: Default::default(),
            };
            let next = apply(&order, &event, T0, &policy).unwrap();
            tokio::spawn(async move {
                store
                    .replace(&next.order, &AuditEntry::for_applied(&next, None))
                    .await
                    .map(|r| (r, next.order))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (result, attempted) = t.await.unwrap().unwrap();
        if result == Replaced::Applied {
            winners.push(attempted);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one transition must win");
    assert_eq!(
        store.get(order.id()).await.unwrap().as_ref(),
        winners.first()
    );
    assert_eq!(store.audit_trail(order.id()).await.unwrap().len(), 2);
}

pub async fn racing_events_through_record_each_take_effect_once(store: Arc<dyn OrderStore>) {
    let order = sample_order("race-record");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let policy = Policy::default();
    // Ten copies of one success callback and ten of the submit's "accepted", all holding version 1.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let order = order.clone();
            let policy = policy.clone();
            let event = if i % 2 == 0 {
                succeeded(AttemptNo::FIRST)
            } else {
                accepted(AttemptNo::FIRST, Source::Submit)
            };
            tokio::spawn(async move { record(&*store, order, &event, T0, &policy, None).await })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Recorded::Applied(_) => applied += 1,
            Recorded::Refused { .. } => {}
        }
    }
    let stored = store.get(order.id()).await.unwrap().unwrap();
    assert_eq!(stored.public_view().status, PublicStatus::Succeeded);
    // At most: accepted once, succeeded once. Everything else was a duplicate or stale.
    assert!((1..=2).contains(&applied), "applied {applied} times");
    assert_eq!(stored.version(), 1 + applied);
    assert_eq!(
        store.audit_trail(order.id()).await.unwrap().len() as u64,
        stored.version()
    );
}

pub async fn failover_history_round_trips_through_the_store(store: Arc<dyn OrderStore>) {
    let order = sample_order("roundtrip");
    store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap();
    let policy = Policy::default();
    let steps = [
        Event::Outcome {
            attempt: AttemptNo::FIRST,
            source: Source::Submit,
            outcome: Outcome::Rejected {
                failover_allowed: true,
                reason: Reason::new("5002", "余额不足"),
            },
            report: Default::default(),
        },
        Event::OpenAttempt {
            route: order.attempts()[0].route().clone(),
        },
    ];
    let mut current = order;
    for e in &steps {
        current = match record(&*store, current, e, T0, &policy, None)
            .await
            .unwrap()
        {
            Recorded::Applied(a) => a.order,
            Recorded::Refused { refusal, .. } => panic!("{refusal}"),
        };
    }
    let stored = store.get(current.id()).await.unwrap().unwrap();
    assert_eq!(stored, current);
    assert_eq!(stored.attempts().len(), 2);
}

pub async fn client_attempts_are_counted_up_to_the_limit_per_order(store: Arc<dyn OrderStore>) {
    let a = sample_order("attempts-a");
    let b = sample_order("attempts-b");
    let expires = Timestamp::from_millis(T0.millis() + 86_400_000);
    for n in 1..=3 {
        assert!(
            store
                .count_client_attempt(a.id(), 3, expires)
                .await
                .unwrap(),
            "attempt {n} of 3"
        );
    }
    assert!(
        !store
            .count_client_attempt(a.id(), 3, expires)
            .await
            .unwrap(),
        "the fourth is over the limit"
    );
    assert!(
        !store
            .count_client_attempt(a.id(), 3, expires)
            .await
            .unwrap(),
        "and stays so"
    );
    assert!(
        store
            .count_client_attempt(b.id(), 3, expires)
            .await
            .unwrap(),
        "another order has its own count"
    );
    // Concurrent attempts: exactly `limit` are counted.
    let c = sample_order("attempts-c");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        let id = c.id().clone();
        tasks.push(tokio::spawn(async move {
            store.count_client_attempt(&id, 5, expires).await.unwrap()
        }));
    }
    let mut counted = 0;
    for t in tasks {
        counted += usize::from(t.await.unwrap());
    }
    assert_eq!(counted, 5);
}

fn fresh_account(tag: &str) -> crate::ProviderAccountId {
    let no = fresh_order_no(tag).as_str().to_ascii_lowercase();
    crate::ProviderAccountId::parse(&no[..no.len().min(40)]).unwrap()
}

pub async fn a_newer_balance_replaces_an_older_one_and_not_the_reverse(
    store: Arc<dyn crate::store::BalanceStore>,
) {
    use crate::store::BalanceSnapshot;
    let account = fresh_account("bal");
    let at = |s: i64| Timestamp::from_millis(T0.millis() + s * 1000);
    let snap = |fen: i64, t: i64| BalanceSnapshot {
        account: account.clone(),
        balance: Fen::new(fen),
        at: at(t),
    };
    assert!(store.put_balance(&snap(10_000, 10)).await.unwrap());
    assert!(store.put_balance(&snap(9_000, 20)).await.unwrap());
    assert!(
        !store.put_balance(&snap(50_000, 15)).await.unwrap(),
        "an older snapshot is ignored"
    );
    let mine: Vec<_> = store
        .balances()
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.account == account)
        .collect();
    assert_eq!(mine, vec![snap(9_000, 20)]);
}

pub async fn balances_of_every_account_come_back_together(
    store: Arc<dyn crate::store::BalanceStore>,
) {
    use crate::store::BalanceSnapshot;
    let accounts: Vec<_> = (0..3).map(|i| fresh_account(&format!("all{i}"))).collect();
    for (i, account) in accounts.iter().enumerate() {
        store
            .put_balance(&BalanceSnapshot {
                account: account.clone(),
                balance: Fen::new(i as i64 - 1),
                at: T0,
            })
            .await
            .unwrap();
    }
    let all = store.balances().await.unwrap();
    for (i, account) in accounts.iter().enumerate() {
        let b = all
            .iter()
            .find(|b| &b.account == account)
            .expect("stored balance");
        assert_eq!(
            b.balance,
            Fen::new(i as i64 - 1),
            "negative balances survive too"
        );
    }
}

/// Expands to one `#[tokio::test]` per balance-store contract case.
#[macro_export]
macro_rules! balance_store_contract {
    ($factory:path) => {
        $crate::order_store_contract!(@cases_balance $factory;
            a_newer_balance_replaces_an_older_one_and_not_the_reverse,
            balances_of_every_account_come_back_together,
        );
    };
}

/// Expands to one `#[tokio::test]` per contract case, each given a store from `$factory().await`.
#[macro_export]
macro_rules! order_store_contract {
    ($factory:path) => {
        $crate::order_store_contract!(@cases $factory;
            create_then_get_returns_the_same_order,
            get_of_an_unknown_order_is_none,
            duplicate_create_returns_the_stored_order_and_writes_nothing,
            replace_applies_only_on_the_expected_version,
            replace_of_a_missing_order_conflicts_with_nothing,
            audit_trail_is_append_only_in_version_order,
            due_index_holds_open_orders_until_they_are_final,
            due_is_earliest_first_and_limited,
            concurrent_creates_of_one_order_write_once_and_agree,
            concurrent_transitions_from_one_version_apply_once,
            racing_events_through_record_each_take_effect_once,
            failover_history_round_trips_through_the_store,
            client_attempts_are_counted_up_to_the_limit_per_order,
        );
    };
    (@cases_balance $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::store::contract::$case($factory().await).await
            }
        )*
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::store::contract::$case($factory().await).await
            }
        )*
    };
}

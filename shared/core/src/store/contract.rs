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
use crate::store::{AuditEntry, Created, OrderFilter, OrderStore, Recorded, Replaced, record};
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
    new_order(
        AppId::parse("contract").unwrap(),
        fresh_order_no(tag),
        ProviderAccountId::parse("acct-a").unwrap(),
        T0,
    )
}

/// A new `mobile.100` order (100 yuan, route cost 98.50) of `app` numbered `no`, attempt 1 on `account`,
/// created at `created`; recharge-aws' budget tests build their days of orders with it.
pub fn new_order(
    app: AppId,
    no: MerchantOrderNo,
    account: ProviderAccountId,
    created: Timestamp,
) -> Order {
    let new = NewOrder {
        app_id: app,
        merchant_order_no: no,
        product_code: ProductCode::parse("mobile.100").unwrap(),
        account: "13800138000".to_owned(),
        extra: BTreeMap::new(),
        face_value: Fen::new(10_000),
        notify_url: None,
        request_digest: "00".repeat(32),
    };
    let route = Route {
        provider_account: account,
        provider_product: "100".to_owned(),
        cost: Fen::new(9_850),
    };
    Order::new(new, route, created, Policy::default().call_timeout)
}

/// An app id no other case or process uses, so a listing filtered by it sees only this case's orders.
fn fresh_app(tag: &str) -> AppId {
    let text = fresh_order_no(tag).as_str().replace(['.', ':'], "-");
    AppId::parse(&text[..text.len().min(32)]).unwrap()
}

/// A new order of `app` on `account`, created at `created`.
fn order_of(app: &AppId, account: &str, created: Timestamp) -> Order {
    let mut o = sample_order("list");
    o.app_id = app.clone();
    o.id = crate::ids::OrderId::derive(app, &o.merchant_order_no);
    o.attempts[0].route.provider_account = ProviderAccountId::parse(account).unwrap();
    o.created_at = created;
    o.updated_at = created;
    o.attempts[0].opened_at = created;
    o.attempts[0].updated_at = created;
    o
}

async fn stored(store: &dyn OrderStore, o: &Order) {
    assert!(matches!(
        store
            .create(o, &AuditEntry::for_create(o, None))
            .await
            .unwrap(),
        Created::New(_)
    ));
}

async fn record_ok(store: &dyn OrderStore, o: Order, event: Event, now: Timestamp) -> Order {
    match record(store, o, &event, now, &Policy::default(), None)
        .await
        .unwrap()
    {
        Recorded::Applied(a) => a.order,
        Recorded::Refused { refusal, .. } => panic!("refused: {refusal}"),
    }
}

/// Every page of a listing, following the cursors.
async fn all_pages(
    store: &dyn OrderStore,
    filter: &OrderFilter,
    now: Timestamp,
    limit: usize,
) -> Vec<Vec<crate::ids::OrderId>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(filter, now, limit, after.as_deref())
            .await
            .unwrap();
        assert!(page.orders.len() <= limit);
        pages.push(page.orders.iter().map(|s| s.order_id.clone()).collect());
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 100, "the listing does not end");
    }
}

pub async fn listing_is_newest_first_and_pages_without_gaps_or_repeats(store: Arc<dyn OrderStore>) {
    let app = fresh_app("page");
    let mut orders = Vec::new();
    for i in 0..5 {
        let o = order_of(
            &app,
            "acct-a",
            Timestamp::from_millis(T0.millis() + i * 1000),
        );
        stored(&*store, &o).await;
        orders.push(o);
    }
    let filter = OrderFilter {
        app: Some(app.clone()),
        ..OrderFilter::default()
    };
    let pages = all_pages(&*store, &filter, T0, 2).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    let listed: Vec<_> = pages.concat();
    let newest_first: Vec<_> = orders.iter().rev().map(|o| o.id().clone()).collect();
    assert_eq!(listed, newest_first);
    // A summary carries what the index holds.
    let page = store.list(&filter, T0, 1, None).await.unwrap();
    let first = &page.orders[0];
    assert_eq!(first.app, app);
    assert_eq!(first.status, PublicStatus::Processing);
    assert_eq!(
        first.provider_account.as_ref().map(|a| a.as_str()),
        Some("acct-a")
    );
    assert_eq!(first.product_code.as_str(), "mobile.100");
    assert_eq!(first.created_at, orders[4].created_at());
    // A cursor that is not one is refused, not sent to the index.
    assert!(store.list(&filter, T0, 2, Some("garbage")).await.is_err());
}

pub async fn listing_filters_by_status_account_and_age(store: Arc<dyn OrderStore>) {
    let app = fresh_app("filter");
    let old = order_of(&app, "acct-a", T0);
    let young = order_of(&app, "acct-b", T0.plus(Duration::from_secs(3600)));
    stored(&*store, &old).await;
    stored(&*store, &young).await;
    let done = record_ok(&*store, young.clone(), succeeded(AttemptNo::FIRST), T0).await;
    let ids = |page: crate::store::OrderPage| -> Vec<crate::ids::OrderId> {
        page.orders.into_iter().map(|s| s.order_id).collect()
    };
    let base = OrderFilter {
        app: Some(app.clone()),
        ..OrderFilter::default()
    };
    let succeeded_only = OrderFilter {
        status: Some(PublicStatus::Succeeded),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list(&succeeded_only, T0, 10, None).await.unwrap()),
        vec![done.id().clone()]
    );
    let processing = OrderFilter {
        status: Some(PublicStatus::Processing),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list(&processing, T0, 10, None).await.unwrap()),
        vec![old.id().clone()]
    );
    let on_b = OrderFilter {
        provider_account: Some(ProviderAccountId::parse("acct-b").unwrap()),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list(&on_b, T0, 10, None).await.unwrap()),
        vec![young.id().clone()]
    );
    let older = OrderFilter {
        created_before: Some(T0.plus(Duration::from_secs(60))),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list(&older, T0, 10, None).await.unwrap()),
        vec![old.id().clone()]
    );
    let nothing = OrderFilter {
        status: Some(PublicStatus::Failed),
        ..base
    };
    assert!(
        store
            .list(&nothing, T0, 10, None)
            .await
            .unwrap()
            .orders
            .is_empty()
    );
}

pub async fn the_operator_queue_holds_stuck_attempts_and_abandoned_notifications(
    store: Arc<dyn OrderStore>,
) {
    let app = fresh_app("queue");
    let limit = crate::order::DEFAULT_ESCALATE_AFTER;
    // Stuck: unknown since T0.
    let stuck = order_of(&app, "acct-a", T0);
    stored(&*store, &stuck).await;
    let stuck = record_ok(
        &*store,
        stuck,
        Event::Outcome {
            attempt: AttemptNo::FIRST,
            source: Source::Submit,
            outcome: Outcome::Unknown {
                reason: Reason::new("timeout", "no answer"),
            },
            report: Default::default(),
        },
        T0,
    )
    .await;
    // Abandoned: succeeded, its notification given up at T0 + 60 s.
    let mut noisy = order_of(&app, "acct-b", T0.plus(Duration::from_secs(1)));
    noisy.notify_url = Some("https://merchant.example/n".into());
    stored(&*store, &noisy).await;
    let noisy = record_ok(&*store, noisy, succeeded(AttemptNo::FIRST), T0).await;
    let at = T0.plus(Duration::from_secs(60));
    let noisy = record_ok(
        &*store,
        noisy.clone(),
        Event::Notified {
            sequence: noisy.sequence(),
            delivered: false,
            retry_at: None,
        },
        at,
    )
    .await;
    // A slow order, unknown since T0 as well, but with a limit of 72 hours.
    let slow = order_of(&app, "acct-a", T0).with_escalation(Duration::from_secs(72 * 3600));
    stored(&*store, &slow).await;

    let queue = OrderFilter {
        app: Some(app.clone()),
        needs_operator: true,
        ..OrderFilter::default()
    };
    let ids = |page: crate::store::OrderPage| -> Vec<crate::ids::OrderId> {
        page.orders.into_iter().map(|s| s.order_id).collect()
    };
    // Before the limit only the abandoned notification is there; after it both, oldest entry first.
    let before = T0.plus(limit - Duration::from_secs(1));
    assert_eq!(
        ids(store.list(&queue, before, 10, None).await.unwrap()),
        vec![noisy.id().clone()]
    );
    let after = T0.plus(limit);
    let page = store.list(&queue, after, 10, None).await.unwrap();
    assert_eq!(page.orders.len(), 2, "{page:?}");
    assert_eq!(page.orders[0].order_id, noisy.id().clone());
    assert_eq!(
        page.orders[0].attention,
        Some((at, crate::order::Attention::NotificationAbandoned))
    );
    assert_eq!(page.orders[1].order_id, stuck.id().clone());
    assert_eq!(
        page.orders[1].attention,
        Some((after, crate::order::Attention::StuckAttempt))
    );
    // Paged one at a time, the same two.
    assert_eq!(
        all_pages(&*store, &queue, after, 1).await.concat(),
        vec![noisy.id().clone(), stuck.id().clone()]
    );
    // Only abandoned notifications.
    let abandoned = OrderFilter {
        attention: Some(crate::order::Attention::NotificationAbandoned),
        ..queue.clone()
    };
    assert_eq!(
        ids(store.list(&abandoned, after, 10, None).await.unwrap()),
        vec![noisy.id().clone()]
    );
    // Resolved, the stuck order leaves the queue.
    record_ok(&*store, stuck, succeeded(AttemptNo::FIRST), after).await;
    let far = T0.plus(Duration::from_secs(100 * 3600));
    let left: Vec<_> = ids(store.list(&queue, far, 10, None).await.unwrap());
    assert_eq!(left, vec![noisy.id().clone(), slow.id().clone()]);
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

/// A history longer than a store keeps in one place (the DynamoDB store moves older entries out of the order
/// item): every entry still comes back once, in version order, with its detail.
pub async fn a_long_history_keeps_every_audit_entry_once_in_version_order(
    store: Arc<dyn OrderStore>,
) {
    let order = sample_order("long-audit");
    let detail = |v: u64| Some(format!("v{v} {}", "x".repeat(300)));
    store
        .create(&order, &AuditEntry::for_create(&order, detail(1)))
        .await
        .unwrap();
    let policy = Policy::default();
    let mut current = order.clone();
    let mut events = vec![
        accepted(AttemptNo::FIRST, Source::Submit),
        succeeded(AttemptNo::FIRST),
    ];
    for _ in 0..10 {
        // Filled in below with the order's current sequence: failed notification tries, each a change.
        events.push(Event::Notified {
            sequence: 0,
            delivered: false,
            retry_at: Some(T0.plus(Duration::from_secs(60))),
        });
    }
    for event in events {
        let event = match event {
            Event::Notified {
                delivered,
                retry_at,
                ..
            } => Event::Notified {
                sequence: current.sequence(),
                delivered,
                retry_at,
            },
            other => other,
        };
        let v = current.version() + 1;
        match record(&*store, current.clone(), &event, T0, &policy, detail(v))
            .await
            .unwrap()
        {
            Recorded::Applied(applied) => current = applied.order,
            Recorded::Refused { refusal, .. } => panic!("refused at v{v}: {refusal}"),
        }
    }
    assert_eq!(current.version(), 13);
    let trail = store.audit_trail(order.id()).await.unwrap();
    let versions: Vec<u64> = trail.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=13).collect::<Vec<u64>>());
    for e in &trail {
        assert_eq!(e.detail, detail(e.version), "entry {}", e.version);
    }
    assert!(
        trail[12].summary.contains("notification"),
        "{:?}",
        trail[12]
    );
    assert_eq!(store.get(order.id()).await.unwrap(), Some(current));
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

/// One sender per change: twenty senders racing to claim the same due notification (the callback's follow-up,
/// the sweep, a retry), each through `record` from the version it read: exactly one claim applies, and the
/// order is not due for that notification until the claim ends.
pub async fn racing_notification_claims_give_the_change_one_sender(store: Arc<dyn OrderStore>) {
    let mut order = sample_order("race-claim");
    order.notify_url = Some("https://merchant.example/notify".into());
    stored(&*store, &order).await;
    let order = record_ok(&*store, order, succeeded(AttemptNo::FIRST), T0).await;
    let sequence = order.sequence();
    assert_eq!(order.notify_due_at(), Some(T0));
    let until = T0.plus(Duration::from_secs(30));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let order = order.clone();
            let event = Event::NotifyClaimed { sequence, until };
            tokio::spawn(async move {
                record(&*store, order, &event, T0, &Policy::default(), None).await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if let Recorded::Applied(_) = t.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one sender may hold the notification");
    let stored = store.get(order.id()).await.unwrap().unwrap();
    assert_eq!(stored.notify_due_at(), Some(until));
    assert_eq!(stored.version(), order.version() + 1);
    // The due index follows the claim: not due at T0 any more, due again once the claim expires.
    let due_now: Vec<_> = store
        .due(order.id().shard(store.due_shards()), T0, 10_000)
        .await
        .unwrap();
    assert!(!due_now.iter().any(|d| &d.order_id == order.id()));
    let due_later = store
        .due(order.id().shard(store.due_shards()), until, 10_000)
        .await
        .unwrap();
    assert!(due_later.iter().any(|d| &d.order_id == order.id()));
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

pub async fn account_controls_are_stored_replaced_and_listed_together(
    store: Arc<dyn crate::store::BalanceStore>,
) {
    use crate::store::{AccountControl, AccountMode};
    let account = ProviderAccountId::parse(fresh_app("ctl").as_str()).unwrap();
    let mut control = AccountControl {
        account: account.clone(),
        mode: AccountMode::Disabled,
        low_balance_fen: Some(50_000),
        escalate_after_secs: Some(600),
        code_overrides: Some(serde_json::json!({"query": {"9": "unknown"}})),
        updated_at: T0,
        updated_by: "alice (app:ops)".into(),
    };
    store.put_account_control(&control).await.unwrap();
    let mine = |all: Vec<AccountControl>| {
        all.into_iter()
            .filter(|c| c.account == account)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mine(store.account_controls().await.unwrap()),
        vec![control.clone()]
    );
    control.mode = AccountMode::Draining;
    control.code_overrides = None;
    store.put_account_control(&control).await.unwrap();
    assert_eq!(mine(store.account_controls().await.unwrap()), vec![control]);
}

fn app_record(id: &AppId, version: u64) -> crate::store::AppRecord {
    crate::store::AppRecord {
        app: id.clone(),
        status: crate::store::AppStatus::Enabled,
        config: serde_json::json!({"id": id.as_str(), "role": "merchant",
                                   "client": {"secret_ttl_secs": 600, "allowed_origins": ["https://h5.example.com"]}}),
        secret_version: 1,
        previous_secret_valid_until: None,
        version,
        created_at: T0,
        updated_at: T0,
        updated_by: "alice (app:ops)".into(),
    }
}

pub async fn an_app_is_created_once_and_replaced_only_on_the_expected_version(
    store: Arc<dyn crate::store::AppStore>,
) {
    use crate::store::AppStatus;
    let id = fresh_app("app");
    assert_eq!(store.get_app(&id).await.unwrap(), None);
    let first = app_record(&id, 1);
    assert!(
        store.put_app(&first).await.unwrap(),
        "the create is written"
    );
    assert_eq!(store.get_app(&id).await.unwrap(), Some(first.clone()));
    let mut rival = first.clone();
    rival.updated_by = "bob (app:ops)".into();
    assert!(
        !store.put_app(&rival).await.unwrap(),
        "a second create of the same id writes nothing"
    );
    assert_eq!(store.get_app(&id).await.unwrap(), Some(first.clone()));

    let mut disabled = first.clone();
    disabled.status = AppStatus::Disabled;
    disabled.version = 2;
    disabled.updated_at = T0.plus(Duration::from_secs(60));
    let mut rotated = first.clone();
    rotated.version = 2;
    rotated.secret_version = 2;
    rotated.previous_secret_valid_until = Some(T0.plus(Duration::from_secs(86_400)));
    assert!(store.put_app(&disabled).await.unwrap());
    assert!(
        !store.put_app(&rotated).await.unwrap(),
        "a change computed from version 1 after version 2 was written is refused"
    );
    assert_eq!(store.get_app(&id).await.unwrap(), Some(disabled.clone()));
    let mut stale = disabled.clone();
    stale.version = 4;
    assert!(
        !store.put_app(&stale).await.unwrap(),
        "skipping a version is refused"
    );
    rotated.version = 3;
    rotated.status = AppStatus::Disabled;
    assert!(store.put_app(&rotated).await.unwrap());
    assert_eq!(store.get_app(&id).await.unwrap(), Some(rotated));
}

pub async fn apps_are_listed_together_in_id_order(store: Arc<dyn crate::store::AppStore>) {
    let base = fresh_app("lst");
    let ids: Vec<AppId> = ["c", "a", "b"]
        .iter()
        .map(|s| {
            AppId::parse(&format!(
                "{}{s}",
                &base.as_str()[..base.as_str().len().min(30)]
            ))
            .unwrap()
        })
        .collect();
    for id in &ids {
        assert!(store.put_app(&app_record(id, 1)).await.unwrap());
    }
    let listed: Vec<AppId> = store
        .list_apps()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.app)
        .filter(|a| ids.contains(a))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

/// Expands to one `#[tokio::test]` per app-store contract case.
#[macro_export]
macro_rules! app_store_contract {
    ($factory:path) => {
        $crate::order_store_contract!(@cases_balance $factory;
            an_app_is_created_once_and_replaced_only_on_the_expected_version,
            apps_are_listed_together_in_id_order,
        );
    };
}

/// Expands to one `#[tokio::test]` per balance-store contract case.
#[macro_export]
macro_rules! balance_store_contract {
    ($factory:path) => {
        $crate::order_store_contract!(@cases_balance $factory;
            a_newer_balance_replaces_an_older_one_and_not_the_reverse,
            balances_of_every_account_come_back_together,
            account_controls_are_stored_replaced_and_listed_together,
            balance_history_gives_the_range_with_the_opening_snapshot_before_it,
            a_recon_report_round_trips_and_a_shorter_rerun_replaces_it,
            a_settlement_is_written_once_and_outlives_a_rerun_of_its_day,
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
            a_long_history_keeps_every_audit_entry_once_in_version_order,
            due_index_holds_open_orders_until_they_are_final,
            due_is_earliest_first_and_limited,
            concurrent_creates_of_one_order_write_once_and_agree,
            concurrent_transitions_from_one_version_apply_once,
            racing_events_through_record_each_take_effect_once,
            racing_notification_claims_give_the_change_one_sender,
            failover_history_round_trips_through_the_store,
            listing_is_newest_first_and_pages_without_gaps_or_repeats,
            listing_filters_by_status_account_and_age,
            the_operator_queue_holds_stuck_attempts_and_abandoned_notifications,
            client_attempts_are_counted_up_to_the_limit_per_order,
            orders_created_in_a_range_are_found_and_read_back_in_batches,
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

pub async fn orders_created_in_a_range_are_found_and_read_back_in_batches(
    store: Arc<dyn OrderStore>,
) {
    let app = fresh_app("range");
    let hour = |h: u64| T0.plus(Duration::from_secs(h * 3600));
    let before = order_of(&app, "acct-a", hour(0));
    let first = order_of(&app, "acct-a", hour(1));
    let last = order_of(&app, "acct-b", Timestamp::from_millis(hour(2).millis() - 1));
    let after = order_of(&app, "acct-a", hour(2));
    for o in [&before, &first, &last, &after] {
        stored(&*store, o).await;
    }
    // One of them final, so the range spans more than one status partition.
    let done = record_ok(&*store, first.clone(), succeeded(AttemptNo::FIRST), hour(1)).await;
    let mut found: Vec<crate::ids::OrderId> = store
        .created_between(hour(1), hour(2))
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.app == app)
        .map(|s| s.order_id)
        .collect();
    found.sort();
    let mut want = vec![first.id().clone(), last.id().clone()];
    want.sort();
    assert_eq!(
        found, want,
        "[from, to): the end is excluded, the start included"
    );
    assert!(
        store
            .created_between(hour(2), hour(1))
            .await
            .unwrap()
            .is_empty()
    );
    let mut ids: Vec<crate::ids::OrderId> = (0..130)
        .map(|_| crate::ids::OrderId::derive(&app, &fresh_order_no("none")))
        .collect();
    ids.push(done.id().clone());
    ids.push(before.id().clone());
    let mut got = store.get_many(&ids).await.unwrap();
    got.sort_by(|a, b| a.id().cmp(b.id()));
    let mut want = vec![done.clone(), before.clone()];
    want.sort_by(|a, b| a.id().cmp(b.id()));
    assert_eq!(
        got, want,
        "only the ones that exist, whole, past a batch of 100"
    );
}

pub async fn balance_history_gives_the_range_with_the_opening_snapshot_before_it(
    store: Arc<dyn crate::store::BalanceStore>,
) {
    use crate::store::BalanceSnapshot;
    let account = fresh_account("hist");
    let at = |s: i64| Timestamp::from_millis(T0.millis() + s * 1000);
    let snap = |fen: i64, t: i64| BalanceSnapshot {
        account: account.clone(),
        balance: Fen::new(fen),
        at: at(t),
    };
    let expires = at(86_400);
    for (fen, t) in [
        (10_000, 5),
        (9_000, 9),
        (8_000, 10),
        (12_000, 15),
        (7_000, 20),
    ] {
        store
            .put_balance_history(&snap(fen, t), expires)
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .balance_history(&account, at(10), at(20))
            .await
            .unwrap(),
        vec![snap(9_000, 9), snap(8_000, 10), snap(12_000, 15)],
        "the last one before the range, then the range, oldest first, the end excluded"
    );
    assert_eq!(
        store.balance_history(&account, at(0), at(5)).await.unwrap(),
        vec![],
        "nothing before the first snapshot"
    );
    assert_eq!(
        store
            .balance_history(&fresh_account("none"), at(0), at(99))
            .await
            .unwrap(),
        vec![]
    );
}

pub async fn a_recon_report_round_trips_and_a_shorter_rerun_replaces_it(
    store: Arc<dyn crate::store::BalanceStore>,
) {
    use crate::recon::{Mismatch, MismatchKind, ReconDay, ReconReport};
    let account = fresh_account("recon");
    let day = ReconDay::parse("2025-11-13", 480).unwrap();
    let mismatch = |i: i64| Mismatch {
        kind: if i % 2 == 0 {
            MismatchKind::PriceMismatch
        } else {
            MismatchKind::LateReversal
        },
        order_id: Some(crate::ids::OrderId::derive(
            &AppId::parse("contract").unwrap(),
            &fresh_order_no("m"),
        )),
        attempt_id: None,
        ours: format!("route cost {i}"),
        theirs: "reported 价格".to_owned(),
        amount_fen: Some(i),
        evidence: "e".to_owned(),
        settlement: None,
    };
    let mut report = ReconReport::empty(account.clone(), day, T0);
    report.mismatches = (0..30).map(mismatch).collect();
    store.put_recon(&report).await.unwrap();
    assert_eq!(
        store.recon(&account, "2025-11-13").await.unwrap(),
        Some(report.clone())
    );
    assert_eq!(store.recon(&account, "2025-11-14").await.unwrap(), None);
    let mut rerun = ReconReport::empty(account.clone(), day, T0.plus(Duration::from_secs(60)));
    rerun.mismatches = vec![mismatch(7)];
    store.put_recon(&rerun).await.unwrap();
    assert_eq!(
        store.recon(&account, "2025-11-13").await.unwrap(),
        Some(rerun),
        "the rerun's one mismatch, none of the earlier run's"
    );
}

pub async fn a_settlement_is_written_once_and_outlives_a_rerun_of_its_day(
    store: Arc<dyn crate::store::BalanceStore>,
) {
    use crate::recon::{Mismatch, MismatchKind, ReconDay, ReconReport, Settlement};
    let account = fresh_account("settle");
    let day = ReconDay::parse("2025-11-14", 480).unwrap();
    let order =
        crate::ids::OrderId::derive(&AppId::parse("contract").unwrap(), &fresh_order_no("s"));
    let reversal = Mismatch {
        kind: MismatchKind::LateReversal,
        order_id: Some(order.clone()),
        attempt_id: Some(format!("{order}-1")),
        ours: "succeeded".to_owned(),
        theirs: "reversed".to_owned(),
        amount_fen: Some(10_000),
        evidence: "re-query".to_owned(),
        settlement: None,
    };
    let drop = Mismatch {
        kind: MismatchKind::UnexplainedBalanceDrop,
        order_id: None,
        attempt_id: None,
        ours: "delivered 0 fen".to_owned(),
        theirs: "net movement -300 fen".to_owned(),
        amount_fen: Some(300),
        evidence: "opening 1000".to_owned(),
        settlement: None,
    };
    let mut report = ReconReport::empty(account.clone(), day, T0);
    report.mismatches = vec![reversal.clone(), drop.clone()];
    store.put_recon(&report).await.unwrap();
    let settlement = Settlement {
        key: reversal.key(),
        operator: "李四".to_owned(),
        principal: "arn:aws:iam::1:user/ops".to_owned(),
        note: "refunded the merchant".to_owned(),
        evidence: "provider ticket 42".to_owned(),
        at: T0.plus(Duration::from_secs(5)),
    };
    assert!(
        store
            .settle_mismatch(&account, "2025-11-14", &settlement)
            .await
            .unwrap()
    );
    let again = Settlement {
        operator: "someone else".to_owned(),
        ..settlement.clone()
    };
    assert!(
        !store
            .settle_mismatch(&account, "2025-11-14", &again)
            .await
            .unwrap(),
        "the first settlement stands"
    );
    let read = store.recon(&account, "2025-11-14").await.unwrap().unwrap();
    assert_eq!(read.mismatches[0].settlement.as_ref(), Some(&settlement));
    assert_eq!(read.mismatches[1].settlement, None);
    assert_eq!(read.alarming(), 1);
    // A rerun writes its mismatches again (here with the settlement it read, and another drop): the
    // settlement is kept apart, attached to the same finding, and to nothing else.
    let mut rerun = ReconReport::empty(account.clone(), day, T0.plus(Duration::from_secs(60)));
    rerun.mismatches = vec![
        Mismatch {
            amount_fen: Some(200),
            ..drop.clone()
        },
        read.mismatches[0].clone(),
    ];
    store.put_recon(&rerun).await.unwrap();
    let read = store.recon(&account, "2025-11-14").await.unwrap().unwrap();
    assert_eq!(read.mismatches.len(), 2);
    assert_eq!(read.mismatches[0].settlement, None);
    assert_eq!(read.mismatches[1].settlement.as_ref(), Some(&settlement));
    // Another day of the same account has none of it.
    let other = ReconReport {
        date: "2025-11-15".to_owned(),
        ..report.clone()
    };
    store.put_recon(&other).await.unwrap();
    let read = store.recon(&account, "2025-11-15").await.unwrap().unwrap();
    assert!(read.mismatches.iter().all(Mismatch::is_open));
}

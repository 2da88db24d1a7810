//! A crash between the `Submitting` write and the provider call (invariant 1): the order is created in the store
//! exactly as `POST /v1/orders` writes it just before calling the provider, and the provider is never called.
//! The sweep must call the attempt Unknown once its call deadline has passed and query the provider. Where the
//! provider cannot say "not found", the attempt stays Unknown for an operator. On the 001 family, which refuses
//! a reused order id, "not found" past the grace window leads to the safe probe (docs/providers/README.md §4 rule 4):
//! the same attempt id is resubmitted to the same account, so the order is delivered once, under that id, or refused
//! and failed over. No provider ever delivers more than once.

use crate::helpers::*;
use recharge_core::store::{AuditEntry, Created};
use recharge_core::{
    AppId, AttemptState, Fen, MerchantOrderNo, NewOrder, Order, Policy, ProductCode, Route,
};
use recharge_local::{LocalConfig, LocalOptions};
use serde_json::json;
use std::time::Duration;

/// Writes the order as `create_order` does before it calls the provider, then "crashes" (calls nothing).
async fn created_then_crashed(
    h: &Harness,
    product: &str,
    account: &str,
    no: &str,
) -> (Order, Policy) {
    let state = h.stack.state();
    let code = ProductCode::parse(product).unwrap();
    let p = state.catalog.product(&code).unwrap();
    let first = &p.routes[0];
    let route = Route {
        provider_account: first.provider_account.clone(),
        provider_product: first.provider_product.clone(),
        cost: Fen::new(first.cost_fen),
    };
    let policy = state.policy(&route.provider_account);
    let new = NewOrder {
        app_id: AppId::parse(DEMO.0).unwrap(),
        merchant_order_no: MerchantOrderNo::parse(no).unwrap(),
        product_code: code,
        account: account.to_owned(),
        extra: Default::default(),
        face_value: p.face_value(),
        notify_url: Some(h.inbox.url(no)),
        request_digest: "0".repeat(64),
    };
    let order = Order::new(new, route, state.clock.now(), policy.call_timeout);
    match state
        .store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await
        .unwrap()
    {
        Created::New(order) => (order, policy),
        Created::Existing(o) => panic!("{no} existed: {o:?}"),
    }
}

/// Waits until the sweep has called the first attempt Unknown; checks it did not before the call deadline.
async fn unknown_after_the_deadline(h: &Harness, no: &str, policy: &Policy) {
    let view = h.demo().get_order(no).await.unwrap();
    assert_eq!(
        (view.status, &view.body["status"]),
        (200, &json!("processing")),
        "{}",
        view.body
    );
    let unknown = poll_async(
        Duration::from_secs(15),
        "the attempt called Unknown",
        || async {
            let order = h.stored(DEMO.0, no).await;
            let first = order.attempts()[0].clone();
            (!matches!(first.state(), AttemptState::Submitting)).then_some(first)
        },
    )
    .await;
    assert!(
        matches!(unknown.state(), AttemptState::Unknown { .. }),
        "a lost submit is Unknown, never failed at once: {unknown:?}"
    );
    let waited = unknown.updated_at().since(unknown.opened_at());
    assert!(
        waited >= policy.call_timeout,
        "called Unknown after {waited:?}, before the call deadline {:?}",
        policy.call_timeout
    );
}

/// A stored order made one attempt only.
#[track_caller]
fn assert_never_failed_over(order: &Order) {
    assert_eq!(
        order.attempts().len(),
        1,
        "never failed over: {:#?}",
        order.attempts()
    );
}

#[tokio::test]
async fn a_submit_lost_in_a_crash_stays_unknown_where_the_provider_cannot_say_not_found() {
    let h = Harness::start().await;
    let no = order_no("crash-wikeyun");
    // wikeyun has no public "no such order" answer: a failed query says nothing, so the attempt stays Unknown
    // (for an operator) and the clean backup of mobile.100 is never tried.
    let (order, policy) = created_then_crashed(&h, "mobile.100", "13800138000", &no).await;
    unknown_after_the_deadline(&h, &no, &policy).await;
    // Well past the grace window in which a not-found answer could have failed it.
    tokio::time::sleep(policy.not_found_grace + Duration::from_secs(2)).await;
    let view = h.demo().get_order(&no).await.unwrap().body;
    assert_eq!(view["status"], "processing", "{view}");
    let stored = h.stored(DEMO.0, &no).await;
    assert_never_failed_over(&stored);
    let attempt = &stored.attempts()[0];
    assert!(
        matches!(attempt.state(), AttemptState::Unknown { .. }),
        "{attempt:?}"
    );
    assert!(attempt.polls() >= 3, "the sweep keeps asking: {attempt:?}");
    assert!(
        h.ledger(order.id().as_str()).is_empty(),
        "{:#?}",
        h.ledger(order.id().as_str())
    );
    assert!(
        h.inbox.received(&no).is_empty(),
        "nothing changed for the merchant"
    );
}

/// game.demo.60 with a clean 001-family backup route, for the probe tests.
async fn dual_route_harness() -> Harness {
    let mut config = LocalConfig::demo_with(None).unwrap();
    let catalog = config.catalog.as_mut().unwrap();
    catalog["products"]["game.dual.60"] = json!({
        "kind": "game", "name": "游戏直充 60 元 (两个通道)", "face_value_fen": 6000, "price_fen": 6000,
        "routes": [
            {"provider_account": "suka-main", "provider_product": "G60", "cost_fen": 5900},
            {"provider_account": "suka-backup", "provider_product": "G60", "cost_fen": 5900}
        ]
    });
    Harness::start_with(LocalOptions {
        config: Some(LocalConfig {
            apps: None,
            accounts: None,
            catalog: config.catalog,
        }),
        ..options()
    })
    .await
}

#[tokio::test]
async fn a_submit_lost_in_a_crash_on_the_001_family_is_resubmitted_under_its_own_id_after_the_grace_window()
 {
    // A backup route exists, and must not be used: the probe resubmits attempt 1 to the same account.
    let h = dual_route_harness().await;
    let no = order_no("crash-suka");
    let (order, policy) = created_then_crashed(&h, "game.dual.60", "gamer8000", &no).await;
    unknown_after_the_deadline(&h, &no, &policy).await;

    let view = wait_status(&h.demo(), &no, "succeeded", Duration::from_secs(45)).await;
    let stored = h.stored(DEMO.0, &no).await;
    assert_never_failed_over(&stored);
    let attempt = &stored.attempts()[0];
    assert_eq!(attempt.route().provider_account.as_str(), "suka-main");
    let track = attempt.not_found().expect("not found answers were counted");
    assert!(track.answers >= policy.not_found_min_answers, "{track:?}");
    let probed_after = attempt.updated_at().since(attempt.opened_at());
    assert!(
        probed_after >= policy.not_found_grace,
        "resubmitted after {probed_after:?}, inside the grace window {:?}",
        policy.not_found_grace
    );
    let ledger = h.ledger(order.id().as_str());
    assert_eq!(ledger.len(), 1, "{ledger:#?}");
    assert_eq!(ledger[0].0, "suka-main", "{ledger:#?}");
    assert_eq!(h.assert_at_most_one_delivery(order.id().as_str()), 1);
    h.assert_notified_last(&no, &view).await;
}

#[tokio::test]
async fn a_lost_submit_whose_probe_is_refused_fails_over_once_it_is_surely_not_there() {
    // Account 0001: the 001 simulator refuses it (5003) whenever it is submitted, so the probe's answer is a
    // definite refusal: nothing exists under that id, and the order may move to the backup.
    let h = dual_route_harness().await;
    let no = order_no("crash-dual");
    let (order, policy) = created_then_crashed(&h, "game.dual.60", "gamer0001", &no).await;
    unknown_after_the_deadline(&h, &no, &policy).await;

    let view = wait_status(&h.demo(), &no, "succeeded", Duration::from_secs(45)).await;
    let stored = h.stored(DEMO.0, &no).await;
    let accounts = attempt_accounts(&stored);
    assert_eq!(
        accounts,
        ["suka-main", "suka-backup"],
        "{:#?}",
        stored.attempts()
    );
    let first = &stored.attempts()[0];
    assert!(
        matches!(first.state(), AttemptState::Rejected { reason, .. } if reason.code == "5003"),
        "{first:?}"
    );
    assert!(
        first.updated_at().since(first.opened_at()) >= policy.not_found_grace,
        "{first:?}"
    );
    let ledger = h.ledger(order.id().as_str());
    assert!(
        ledger.iter().all(|(a, _)| a == "suka-backup"),
        "{ledger:#?}"
    );
    assert_eq!(ledger.len(), 1, "{ledger:#?}");
    assert_eq!(h.assert_at_most_one_delivery(order.id().as_str()), 1);
    h.assert_notified_last(&no, &view).await;
}

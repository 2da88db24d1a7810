//! Bulkheads (issue 15): a provider callback is acknowledged without waiting on the merchant's server, and the
//! notification of each change has one sender, counted at the merchant's receiver.

use crate::helpers::*;
use recharge_sim::codec::md5_upper;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The demo suka-main account's credentials (shared/local/src/demo.rs).
const USERID: &str = "10004927";
const KEY: &str = "abcdef0123456789ABCDEF0123456789";

/// The local stack's notifier timeout (shared/local/src/stack.rs): an inline send to a hanging server would
/// hold the callback at least this long.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

fn suka_success_callback(sporderid: &str) -> String {
    let (orderid, time, resultno) = ("XS20260101000001", "20260101000000", "1");
    let sign = md5_upper(
        format!(
            "userid={USERID}&orderid={orderid}&sporderid={sporderid}&merchantsubmittime={time}&resultno={resultno}&key={KEY}"
        )
        .as_bytes(),
    );
    format!(
        "userid={USERID}&orderid={orderid}&sporderid={sporderid}&merchantsubmittime={time}&resultno={resultno}&sign={sign}"
    )
}

/// A merchant server that holds every notification for a minute before answering, counting arrivals.
struct Hanging {
    url: String,
    arrived: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hanging_server() -> Hanging {
    let arrived = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&arrived);
    let router = axum::Router::new().route(
        "/notify",
        axum::routing::post(move || {
            let count = Arc::clone(&count);
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Hanging { url, arrived, task }
}

#[tokio::test]
async fn a_callback_for_an_app_whose_notify_url_hangs_is_acknowledged_without_waiting_for_it() {
    let h = Harness::start().await;
    let hanging = hanging_server().await;
    let demo = h.demo();
    // 0009: the provider keeps it processing and never calls back by itself; the test sends the callback.
    let no = order_no("hang");
    let body = json!({"merchant_order_no": no, "product_code": "game.demo.60", "account": "gamer0009",
                      "notify_url": hanging.url});
    let r = demo.create_order(&body).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let stored = h.stored(DEMO.0, &no).await;
    let attempt = stored
        .attempt_id(recharge_core::AttemptNo::FIRST)
        .to_string();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = Instant::now();
    let reply = http
        .post(format!("{}/v1/callbacks/suka-main", h.stack.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(suka_success_callback(&attempt))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(reply.status().as_u16(), 200);
    // The state change is stored before the answer ...
    let after = h.stored(DEMO.0, &no).await;
    assert_eq!(after.public_view().status.as_str(), "succeeded");
    // ... and the answer did not wait for the merchant: an inline send would have held it for the notifier's
    // whole timeout, since this server never answers in time.
    assert!(
        took < NOTIFY_TIMEOUT,
        "the callback took {took:?}: it waited on the merchant's server"
    );
    // The notification is still sent, by the sweep's notification lane.
    poll(
        Duration::from_secs(60),
        "the notification reached the merchant's server",
        || (hanging.arrived.load(Ordering::SeqCst) >= 1).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn each_change_is_notified_once_when_callbacks_and_the_sweep_race() {
    let h = Harness::start().await;
    let demo = h.demo();
    // Plain accounts: accepted at submit, then the simulator's callback settles each one while the sweep
    // polls; both the callback path and the sweep could notify the change.
    let n = 30;
    let mut orders = Vec::new();
    for i in 0..n {
        let no = order_no("once");
        let body = json!({"merchant_order_no": no, "product_code": "mobile.100",
                          "account": format!("1380013{:04}", 2000 + i), "notify_url": h.inbox.url(&no)});
        let r = demo.create_order(&body).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        orders.push(no);
    }
    for no in &orders {
        wait_status(&demo, no, "succeeded", Duration::from_secs(120)).await;
    }
    // Every change notified and acknowledged ...
    for no in &orders {
        poll_async(
            Duration::from_secs(60),
            "the last change acknowledged",
            || async {
                let o = h.stored(DEMO.0, no).await;
                (o.notified_sequence() == o.sequence()).then_some(())
            },
        )
        .await;
    }
    // ... and, a few sweeps later, still only once per (order, sequence) at the receiver.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut twice = BTreeMap::new();
    for no in &orders {
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for body in check_notifications(&h.inbox.received(no), DEMO.1) {
            *seen.entry(body["sequence"].as_u64().unwrap()).or_default() += 1;
        }
        assert!(!seen.is_empty(), "{no}: never notified");
        for (sequence, count) in seen {
            if count > 1 {
                twice.insert(format!("{no}#{sequence}"), count);
            }
        }
    }
    assert!(twice.is_empty(), "notified more than once: {twice:?}");
}

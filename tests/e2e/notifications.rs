//! Merchant notifications (docs/merchant-api.md §5): notify URLs are SSRF-guarded (loopback allowed in local mode
//! only), and a notification the merchant does not acknowledge is retried, signed the same way, until it is.

use crate::helpers::*;
use recharge_local::LocalOptions;
use serde_json::json;
use std::time::Duration;

const REFUSED_EVERYWHERE: &[&str] = &[
    "https://10.0.0.1/notify",
    "https://172.16.5.4/notify",
    "https://192.168.1.1/notify",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/notify",
    "https://0.0.0.0/notify",
    "https://[fd00::1]/notify",
    "https://[fe80::1]/notify",
    "https://[::ffff:10.0.0.1]/notify",
    "https://[::ffff:169.254.169.254]/notify",
    // IPv6 forms embedding a private IPv4 address, and IPv6 special-purpose ranges.
    "https://[::169.254.169.254]/notify",
    "https://[::ffff:0:10.0.0.1]/notify",
    "https://[64:ff9b::a9fe:a9fe]/notify",
    "https://[64:ff9b:1::a00:1]/notify",
    "https://[2002:a9fe:a9fe::1]/notify",
    "https://[2001:0:808:808::f5ff:fffe]/notify",
    "https://[fec0::1]/notify",
    "https://[2001:db8::1]/notify",
    "https://user:pw@merchant.example.com/notify",
    "ftp://merchant.example.com/notify",
    "file:///etc/passwd",
    "not a url",
];

#[tokio::test]
async fn notify_urls_to_loopback_or_private_addresses_are_refused_outside_local_mode() {
    let h = Harness::start_with(LocalOptions {
        local_mode: false,
        ..options()
    })
    .await;
    let demo = h.demo();
    let loopback = h.inbox.url("ssrf");
    let refused_in_production = [
        loopback.as_str(),
        "https://127.0.0.1/notify",
        "https://127.1.2.3:8443/notify",
        "https://localhost/notify",
        "https://api.localhost/notify",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://[::1]/notify",
        "https://[::ffff:127.0.0.1]/notify",
        // Plain http is refused even to a public host.
        "http://merchant.example.com/notify",
    ];
    for url in refused_in_production.iter().chain(REFUSED_EVERYWHERE) {
        let no = order_no("ssrf");
        let body = json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800138000",
                          "notify_url": url});
        let r = demo.create_order(&body).await.unwrap();
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert_eq!(
            r.body["error"]["code"], "invalid_notify_url",
            "{url}: {}",
            r.body
        );
        assert_eq!(
            demo.get_order(&no).await.unwrap().status,
            404,
            "{url}: no order"
        );
    }
    for (_, sim) in h.stack.sims() {
        assert!(
            sim.orders().is_empty(),
            "nothing reached a provider: {:#?}",
            sim.orders()
        );
    }
    assert!(h.inbox.received("ssrf").is_empty());

    // Outside local mode the stack does not show its secrets either.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let info = http
        .get(format!("{}/_local", h.stack.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 404);
}

#[tokio::test]
async fn local_mode_allows_loopback_notify_urls_but_no_other_private_address() {
    let h = Harness::start().await;
    let demo = h.demo();
    for url in REFUSED_EVERYWHERE
        .iter()
        .chain(&["http://10.0.0.1/notify", "http://192.168.0.1/x"])
    {
        let no = order_no("local-ssrf");
        let body = json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800138000",
                          "notify_url": url});
        let r = demo.create_order(&body).await.unwrap();
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert_eq!(
            r.body["error"]["code"], "invalid_notify_url",
            "{url}: {}",
            r.body
        );
    }
    let no = order_no("local-ok");
    let body = json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800138000",
                      "notify_url": h.inbox.url(&no)});
    let r = demo.create_order(&body).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let done = wait_status(&demo, &no, "succeeded", Duration::from_secs(30)).await;
    h.assert_notified_last(&no, &done).await;
}

#[tokio::test]
async fn a_notification_the_merchant_refuses_is_retried_until_acknowledged() {
    let h = Harness::start().await;
    let demo = h.demo();
    let no = order_no("retry");
    // 503 three times: retries after 15 s, 30 s and 60 s (scaled down), all signed, all the same view.
    h.inbox.refuse_first(&no, 3);
    let body = json!({"merchant_order_no": no, "product_code": "vip.demo.month", "account": "vip-user-8000",
                      "notify_url": h.inbox.url(&no)});
    let r = demo.create_order(&body).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let done = wait_status(&demo, &no, "succeeded", Duration::from_secs(30)).await;
    poll(
        Duration::from_secs(20),
        "four tries of the notification",
        || (h.inbox.received(&no).len() >= 4).then_some(()),
    )
    .await;
    let stored = poll_async(Duration::from_secs(10), "the delivery recorded", || async {
        let order = h.stored(DEMO.0, &no).await;
        (order.notified_sequence() == order.sequence()).then_some(order)
    })
    .await;
    assert!(stored.notify_due_at().is_none());
    // Once acknowledged, the retries stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = h.inbox.received(&no).len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        h.inbox.received(&no).len(),
        settled,
        "retries went on after the acknowledgement"
    );
    let bodies = check_notifications(&h.inbox.received(&no), DEMO.1);
    assert!(
        bodies.len() >= 4,
        "three refusals, then the acknowledged try: {bodies:#?}"
    );
    assert!(
        bodies.iter().all(|b| b["sequence"] == done["sequence"]),
        "{bodies:#?}"
    );
    assert_eq!(comparable(&bodies[0]), comparable(&done));
}

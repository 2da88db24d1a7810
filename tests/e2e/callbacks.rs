//! Provider callbacks from outside the simulators (the test plays a provider, or someone pretending to be
//! one), on the 001 family's form callbacks: a forged one changes nothing and is refused; a genuine one that
//! contradicts a final result changes nothing either and is still acknowledged (so it is not resent); one for
//! an order that does not exist is refused.

use crate::helpers::*;
use recharge_sim::codec::md5_upper;
use serde_json::json;
use std::time::Duration;

/// The demo suka-main account's credentials (shared/local/src/demo.rs).
const USERID: &str = "10004927";
const KEY: &str = "abcdef0123456789ABCDEF0123456789";

fn suka_callback(sporderid: &str, resultno: &str, sign: Option<&str>) -> String {
    let (orderid, time) = ("XS20260101000001", "20260101000000");
    let signed = md5_upper(
        format!(
            "userid={USERID}&orderid={orderid}&sporderid={sporderid}&merchantsubmittime={time}&resultno={resultno}&key={KEY}"
        )
        .as_bytes(),
    );
    format!(
        "userid={USERID}&orderid={orderid}&sporderid={sporderid}&merchantsubmittime={time}&resultno={resultno}&sign={}",
        sign.unwrap_or(&signed)
    )
}

async fn post_callback(base: &str, account: &str, form: String) -> (u16, String) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(format!("{base}/v1/callbacks/{account}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn forged_contradicting_and_stray_callbacks_change_nothing() {
    let h = Harness::start().await;
    let demo = h.demo();
    let base = h.stack.base_url();

    // An order the provider keeps processing (0009): forged results, either way, are refused.
    let open = order_no("forged");
    let body = json!({"merchant_order_no": open, "product_code": "game.demo.60", "account": "gamer0009",
                      "notify_url": h.inbox.url(&open)});
    let created = demo.create_order(&body).await.unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let attempt = format!("{}01", created.body["order_id"].as_str().unwrap());
    let open_sequence = created.body["sequence"].clone();
    for resultno in ["1", "9"] {
        let forged = suka_callback(&attempt, resultno, Some("0123456789ABCDEF0123456789ABCDEF"));
        assert_eq!(
            post_callback(base, "suka-main", forged).await,
            (400, "fail".to_owned())
        );
        // Signed with the right key, but sent to another account's callback URL.
        let elsewhere = suka_callback(&attempt, resultno, None);
        assert_eq!(
            post_callback(base, "suka-backup", elsewhere).await,
            (400, "fail".to_owned())
        );
    }
    // An account that does not exist.
    assert_eq!(
        post_callback(base, "nobody", suka_callback(&attempt, "1", None))
            .await
            .0,
        404
    );

    // A finished order: a genuine callback saying it failed contradicts the final result; it is acknowledged
    // (the provider stops resending) and ignored.
    let done = order_no("done");
    let body = json!({"merchant_order_no": done, "product_code": "game.demo.60", "account": "gamer8000",
                      "notify_url": h.inbox.url(&done)});
    let created = demo.create_order(&body).await.unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let finished = wait_status(&demo, &done, "succeeded", Duration::from_secs(30)).await;
    let done_attempt = format!("{}01", finished["order_id"].as_str().unwrap());
    let contradiction = suka_callback(&done_attempt, "9", None);
    assert_eq!(
        post_callback(base, "suka-main", contradiction).await,
        (200, "ok".to_owned())
    );
    let after = demo.get_order(&done).await.unwrap().body;
    assert_eq!(after["status"], "succeeded", "{after}");
    assert_eq!(after["sequence"], finished["sequence"], "{after}");

    // A genuine callback for an order that does not exist.
    let stray = suka_callback("AAAAAAAAAAAAAAAAAAAA01", "1", None);
    assert_eq!(
        post_callback(base, "suka-main", stray).await,
        (400, "fail".to_owned())
    );

    let view = demo.get_order(&open).await.unwrap().body;
    assert_eq!(view["status"], "processing", "{view}");
    assert_eq!(view["sequence"], open_sequence, "{view}");
    assert!(
        h.inbox.received(&open).is_empty(),
        "nothing changed for the merchant"
    );
    let stored = h.stored(DEMO.0, &open).await;
    assert_eq!(stored.attempts().len(), 1);
    assert!(
        stored.attempts()[0].state().is_open(),
        "{:?}",
        stored.attempts()[0]
    );
}

/// Counts the log lines of this process that contain `needle` (a process-wide subscriber; nextest runs each
/// test in its own process).
#[derive(Clone, Default)]
struct LogCount(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCount {
    fn install() -> LogCount {
        let sink = LogCount::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "recharge_providers=info",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        sink
    }

    fn lines_with(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

#[tokio::test]
async fn forged_callbacks_cause_at_most_the_budgeted_provider_queries_per_minute() {
    let logs = LogCount::install();
    // No sweep during the test: every query of the suka-main query endpoint comes from a callback.
    let h = Harness::start_with(recharge_local::LocalOptions {
        sweep_every: Duration::from_secs(3600),
        ..options()
    })
    .await;
    let demo = h.demo();
    let no = order_no("budget");
    let body =
        json!({"merchant_order_no": no, "product_code": "game.demo.60", "account": "gamer0009"});
    let created = demo.create_order(&body).await.unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let attempt = format!("{}01", created.body["order_id"].as_str().unwrap());
    let per_minute = h.stack.state().settings.callback_queries_per_minute as usize;
    let sent = 2 * per_minute + 20;
    for _ in 0..sent {
        let forged = suka_callback(&attempt, "1", Some("0123456789ABCDEF0123456789ABCDEF"));
        assert_eq!(
            post_callback(h.stack.base_url(), "suka-main", forged).await,
            (400, "fail".to_owned())
        );
    }
    let queries = logs.lines_with("/searchpay.do");
    // Within one minute, or across one minute boundary: never more than two minutes' budgets.
    assert!(queries >= 1, "a forged callback still causes a query");
    assert!(
        queries <= 2 * per_minute,
        "{sent} forged callbacks caused {queries} provider queries (budget {per_minute}/min)"
    );
    assert_eq!(
        demo.get_order(&no).await.unwrap().body["status"],
        "processing",
        "and none changed the order"
    );
}

#[tokio::test]
async fn unsigned_by_protocol_callbacks_are_each_confirmed_by_a_query_past_the_forged_callback_budget()
 {
    // wikeyun's callbacks carry no signature anyone can check: each is the provider's own report, confirmed
    // by one query. Throttling them like forged ones would lose results (a reversal after success is only
    // ever learned this way).
    let logs = LogCount::install();
    let h = Harness::start_with(recharge_local::LocalOptions {
        sweep_every: Duration::from_secs(3600),
        ..options()
    })
    .await;
    let demo = h.demo();
    let no = order_no("unsigned-budget");
    let body = json!({"merchant_order_no": no, "product_code": "mobile.single.100", "account": "13800139009"});
    let created = demo.create_order(&body).await.unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let attempt = format!("{}01", created.body["order_id"].as_str().unwrap());
    let per_minute = h.stack.state().settings.callback_queries_per_minute as usize;
    let sent = 2 * per_minute + 10;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..sent {
        let r = http
            .post(format!("{}/v1/callbacks/wikeyun-main", h.stack.base_url()))
            .header("content-type", "application/json")
            .body(json!({"order_no": attempt, "status": "1"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let queries = logs.lines_with("/rest/Recharge/query");
    assert!(
        queries >= sent,
        "{sent} unsigned callbacks caused only {queries} queries (budget {per_minute}/min)"
    );
}

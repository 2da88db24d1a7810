//! No secret in any log line (docs/security.md §2, §6): the end-to-end flows run through the local stack with every log
//! line of the process captured (our crates at `trace`, every other crate at `debug`), and every configured
//! secret value is looked for in that output. The flows include what makes error paths log: the scripted
//! simulator accounts (refusals, hangs past the timeout, HTTP 500, reversals), provider accounts whose endpoint
//! refuses connections (with credentials in the URL's query and userinfo, as wikeyun's `app_key` and ICE's
//! `access_token` travel), merchant notifications refused or sent to a closed port with a token in the query,
//! tampered callbacks and badly signed merchant requests.

use crate::helpers::*;
use recharge_local::{LocalConfig, LocalOptions, SigningClient};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Secret values of the accounts that point at a closed port; distinctive, so a hit cannot be a coincidence.
const DEAD_WIKEYUN_APP_KEY: i64 = 918_273_645;
const DEAD_WIKEYUN_SECRET: &str = "DeadWikeyunAppSecret77";
const DEAD_ICE_TOKEN: &str = "DeadIceAppToken55";
const DEAD_ICE_ACCESS: &str = "DeadIceAccessToken33";
const URL_PASSWORD: &str = "EndpointUserinfoPass11";
const NOTIFY_TOKEN: &str = "MerchantNotifyQueryToken99";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the process-wide subscriber (nextest runs each test in its own process) writing into a buffer.
fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "debug,recharge_api=trace,recharge_core=trace,recharge_providers=trace,recharge_aws=trace,\
             recharge_local=trace,recharge_sim=trace",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber of this process");
    captured
}

/// Every value of a secret's JSON, as the strings that would betray it: string and number leaves, and each
/// base64 line of a PEM key.
fn leaves(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if s.contains("-----BEGIN") => {
            for line in s
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            {
                out.insert(line.to_owned());
            }
        }
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Number(n) => {
            out.insert(n.to_string());
        }
        Value::Object(m) => m.values().for_each(|x| leaves(x, out)),
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// Whether `line` contains `secret`. A numeric value (wikeyun's `app_key`) counts only as a whole number, not
/// inside a longer one (a provider order number such as `XS17961413008100001` is not the key `100001`).
fn leaks(line: &str, secret: &str) -> bool {
    if !secret.bytes().all(|b| b.is_ascii_digit()) {
        return line.contains(secret);
    }
    line.match_indices(secret).any(|(i, _)| {
        let before = line[..i].bytes().next_back();
        let after = line[i + secret.len()..].bytes().next();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

#[test]
fn a_numeric_secret_leaks_as_a_whole_number_only() {
    assert!(leaks("url=/q?app_key=100001&sign=AB", "100001"));
    assert!(leaks("100001", "100001"));
    assert!(!leaks("order=XS17961413008100001 attempt=1", "100001"));
    assert!(leaks("x TestAppSecret0123y", "TestAppSecret0123"));
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The demo configuration plus two provider accounts (wikeyun and ICE protocols) whose endpoints refuse
/// connections, with credentials in their URLs, and a product routed over both.
fn config_with_dead_accounts(port: u16) -> LocalConfig {
    let mut config = LocalConfig::demo_with(None).unwrap();
    let accounts = config.accounts.as_mut().unwrap();
    let dead = |id: &str, template: &str, secret: Value| {
        let mut a = accounts
            .iter()
            .find(|a| a.account["id"] == template)
            .unwrap()
            .clone();
        a.account["id"] = json!(id);
        a.account["secret_name"] = json!(format!("local/provider/{id}"));
        let endpoints = a.account["endpoints"].as_object_mut().unwrap();
        for v in endpoints.values_mut() {
            let path = v.as_str().unwrap().replace("{sim}", "");
            *v = json!(format!(
                "http://gateway:{URL_PASSWORD}@127.0.0.1:{port}{path}"
            ));
        }
        a.secret = secret;
        a.simulator = None;
        a
    };
    let wikeyun = dead(
        "wikeyun-dead",
        "wikeyun-main",
        json!({"app_key": DEAD_WIKEYUN_APP_KEY, "app_secret": DEAD_WIKEYUN_SECRET}),
    );
    let ice = dead(
        "ice-dead",
        "ice-main",
        json!({"app_id": "DeadIceAppId4242", "token": DEAD_ICE_TOKEN, "access_token": DEAD_ICE_ACCESS}),
    );
    accounts.push(wikeyun);
    accounts.push(ice);
    let catalog = config.catalog.as_mut().unwrap();
    catalog["products"]["mobile.dead.100"] = json!({
        "kind": "mobile_fast", "name": "话费 100 元 (不通)", "face_value_fen": 10000, "price_fen": 10050,
        "routes": [
            {"provider_account": "wikeyun-dead", "provider_product": "100", "cost_fen": 10000},
            {"provider_account": "ice-dead", "provider_product": "HF100", "cost_fen": 9900}
        ]
    });
    config
}

/// Polls an order until its status is final or `deadline` passes; either way returns (the flows only have to
/// run, their outcomes are other tests' business).
async fn settle(client: &SigningClient, no: &str, deadline: Instant) {
    while Instant::now() < deadline {
        if let Ok(r) = client.get_order(no).await
            && recharge_local::client::is_final(r.body["status"].as_str().unwrap_or(""))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn no_configured_secret_appears_in_any_log_line_of_the_end_to_end_flows() {
    let logs = capture_logs();
    let port = closed_port();
    let h = Harness::start_with(LocalOptions {
        config: Some(config_with_dead_accounts(port)),
        ..options()
    })
    .await;
    let demo = h.demo();
    let mut orders: Vec<String> = Vec::new();
    let mut place = async |product: &str, account: &str, extra: Value, notify: Option<String>| {
        let no = order_no("logs");
        let mut body = json!({"merchant_order_no": no, "product_code": product, "account": account,
                              "extra": extra});
        body["notify_url"] = json!(notify.unwrap_or_else(|| h.inbox.url(&no)));
        let r = demo.create_order(&body).await.unwrap();
        assert!(
            matches!(r.status, 200 | 201),
            "{product} {account}: {}",
            r.body
        );
        orders.push(no.clone());
        (no, r.body)
    };

    // The scripted accounts on every protocol: success, refusal, failover, hang, HTTP 500, duplicate and stale
    // callbacks, no callback, reversal, partial.
    for suffix in [
        "8000", "0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008",
    ] {
        let none = || json!({});
        place("mobile.100", &format!("1380013{suffix}"), none(), None).await;
        place("mobile.slow.100", &format!("1390013{suffix}"), none(), None).await;
        place("game.demo.60", &format!("gamer{suffix}"), none(), None).await;
        place(
            "vip.demo.month",
            &format!("vip-user-{suffix}"),
            none(),
            None,
        )
        .await;
    }
    place(
        "electricity.sgcc.100",
        "3300123458000",
        json!({"area": "江苏", "city": "南京", "phone": "13800138000"}),
        None,
    )
    .await;
    place(
        "billing.sms.demo",
        "13800138000",
        json!({"imsi": "460013800138000", "imei": "860000000000001", "iccid": "89860000000000000001"}),
        None,
    )
    .await;
    let (code_no, _) = place("billing.code.demo", "13800138000", json!({}), None).await;
    // Providers that refuse connections, and a notify URL that does too, with a token in its query.
    place("mobile.dead.100", "13800138000", json!({}), None).await;
    let (dead_notify, _) = place(
        "mobile.100",
        "13800138000",
        json!({}),
        Some(format!(
            "http://127.0.0.1:{port}/notify?token={NOTIFY_TOKEN}"
        )),
    )
    .await;
    // A merchant that refuses its first notifications.
    let refusing = order_no("logs-refused");
    h.inbox.refuse_first(&refusing, 2);
    let r = demo
        .create_order(
            &json!({"merchant_order_no": refusing, "product_code": "vip.demo.month",
                              "account": "vip-user-8100", "notify_url": h.inbox.url(&refusing)}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    orders.push(refusing);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = demo
        .verify(&code_no, recharge_local::demo::DEMO_VERIFICATION_CODE)
        .await
        .unwrap();
    assert!(matches!(v.status, 200 | 409), "{}", v.body);

    // Refused requests: a tampered callback on each account with a simulator, a wrong merchant signature, a
    // stale timestamp, a non-admin asking for balances, and an admin reading them.
    for (account, _) in h.stack.sims() {
        let (status, _) = send_raw(
            h.stack.base_url(),
            "POST",
            &format!("/v1/callbacks/{account}"),
            &[],
            b"orderid=X&status=1&sign=00".to_vec(),
        )
        .await;
        assert!(status < 500 || status == 503, "{account}: {status}");
    }
    let wrong = h.client((DEMO.0, "not-the-secret"));
    assert_eq!(wrong.get_order(&dead_notify).await.unwrap().status, 401);
    let mut headers = signed_headers(DEMO, "GET", "/v1/balances", b"");
    headers[1].1 = (now_secs() - 400).to_string();
    let (status, _) = send_raw(h.stack.base_url(), "GET", "/v1/balances", &headers, vec![]).await;
    assert_eq!(status, 401);
    assert_eq!(demo.balances().await.unwrap().status, 403);
    assert_eq!(h.client(OPS).balances().await.unwrap().status, 200);

    // Some never finish (0009 stays processing, the dead accounts stay unknown): one deadline for all.
    let deadline = Instant::now() + Duration::from_secs(15);
    for no in &orders {
        settle(&demo, no, deadline).await;
    }
    // A few more sweeps: queries of open attempts, notification retries.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut secrets = BTreeSet::new();
    for (_, json) in h.stack.secret_values() {
        leaves(&serde_json::from_str(json).unwrap(), &mut secrets);
    }
    secrets.insert(URL_PASSWORD.to_owned());
    secrets.insert(NOTIFY_TOKEN.to_owned());
    for must in [
        DEAD_WIKEYUN_SECRET,
        DEAD_ICE_TOKEN,
        DEAD_ICE_ACCESS,
        "demo-secret",
    ] {
        assert!(
            secrets.contains(must),
            "{must} is among the secrets looked for"
        );
    }
    drop(h);

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let lines = text.lines().count();
    // The capture works and saw the error paths (the closed port, the failed notifications).
    assert!(lines > 500, "only {lines} log lines captured");
    assert!(
        text.contains("wikeyun-dead"),
        "the dead account's calls are logged"
    );
    assert!(
        text.contains("merchant notification failed"),
        "failed notifications are logged"
    );
    // Short values (channel codes, store ids) are identifiers that also occur by chance (in ports, ids and
    // timestamps); every other value must not occur at all.
    let hits: Vec<(String, Vec<&str>)> = secrets
        .iter()
        .filter(|s| s.len() >= 6)
        .filter_map(|s| {
            let found: Vec<&str> = text.lines().filter(|l| leaks(l, s)).take(3).collect();
            (!found.is_empty()).then(|| (s.clone(), found))
        })
        .collect();
    assert!(
        hits.is_empty(),
        "{} secret values in {lines} log lines: {hits:#?}",
        hits.len()
    );
}

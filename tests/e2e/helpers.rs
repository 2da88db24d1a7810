//! What every end-to-end test shares: a local stack on ephemeral ports over DynamoDB Local, a merchant's own
//! request signing, a loopback receiver for merchant notifications, bounded polls, and the checks that hold for
//! every order (signed and sequenced notifications, never two deliveries across the simulators).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use recharge_core::order::Order;
use recharge_core::{AppId, MerchantOrderNo, OrderId};
use recharge_local::{LocalOptions, LocalStack, SigningClient, StoreChoice};
use recharge_sim::{CallbackAttempt, OrderRecord, RunningSim};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// Divides every provider timing, grace window and retry schedule: the 10-minute not-found grace window takes
/// 6 s, a poll backoff of 10 s takes 100 ms, a simulator settles in 20 ms.
pub const TIME_SCALE: f64 = 100.0;
/// How long a hanging simulator holds a submit: well past the demo accounts' 2 s provider call timeout.
pub const SIM_HANG: Duration = Duration::from_secs(4);
/// The demo merchant app and its secret (shared/local/src/demo.rs).
pub const DEMO: (&str, &str) = ("demo", "demo-secret");
pub const DEMO2: (&str, &str) = ("demo2", "demo2-secret");
pub const OPS: (&str, &str) = ("ops", "ops-secret");

/// A table of its own for every stack: a sweep must never pick up another test's orders (it would ask its
/// own simulators about them).
fn unique_table() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "e2e-{}-{millis}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A merchant order number no other test run uses.
pub fn order_no(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{label}-{millis}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The options every test starts from: loopback, ephemeral port, DynamoDB Local, fast clocks.
pub fn options() -> LocalOptions {
    LocalOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        store: StoreChoice::DynamoDb {
            endpoint: Some(crate::common::loopback_endpoint(
                "AWS_ENDPOINT_URL_DYNAMODB",
            )),
            table: unique_table(),
        },
        time_scale: TIME_SCALE,
        sweep_every: Duration::from_millis(200),
        sim_hang: SIM_HANG,
        ..LocalOptions::default()
    }
}

/// A running stack and the merchant's side of it.
pub struct Harness {
    pub stack: LocalStack,
    pub inbox: Inbox,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(options()).await
    }

    pub async fn start_with(options: LocalOptions) -> Harness {
        let stack = LocalStack::start(options)
            .await
            .unwrap_or_else(|e| panic!("local stack: {e:?}"));
        assert!(stack.base_url().starts_with("http://127.0.0.1:"));
        let inbox = Inbox::start().await;
        Harness { stack, inbox }
    }

    pub fn client(&self, app: (&str, &str)) -> SigningClient {
        SigningClient::new(self.stack.base_url(), app.0, app.1)
    }

    pub fn demo(&self) -> SigningClient {
        self.client(DEMO)
    }

    /// A `mobile.100` order for 0009 on wikeyun with a notify URL: the provider records it and keeps it
    /// processing (docs/simulators.md §5), and wikeyun cannot answer "not found", so it waits for an operator once
    /// its escalation limit passes. Returns (merchant order no, order id).
    pub async fn create_stuck_order(&self, label: &str) -> (String, String) {
        let no = order_no(label);
        let created = self
            .demo()
            .create_order(
                &serde_json::json!({"merchant_order_no": no, "product_code": "mobile.100",
                "account": "13800130009", "notify_url": self.inbox.url(&no)}),
            )
            .await
            .unwrap();
        assert_eq!(created.status, 201, "{}", created.body);
        let id = created.body["order_id"].as_str().unwrap().to_owned();
        (no, id)
    }

    /// `recharge-ops ARGS...` as an operator types it against this stack, signed as the admin app.
    pub async fn ops_cli(
        &self,
        args: &[&str],
    ) -> Result<recharge_ops::Output, recharge_ops::CliError> {
        let base = self.stack.base_url().to_owned();
        let mut all = vec![
            "recharge-ops",
            "--base",
            &base,
            "--app",
            OPS.0,
            "--secret",
            OPS.1,
        ];
        all.extend_from_slice(args);
        let parsed = <recharge_ops::Cli as clap::Parser>::try_parse_from(all).unwrap();
        let client = recharge_ops::client_for(&parsed).await.unwrap();
        recharge_ops::run(&client, &parsed.command).await
    }

    pub fn sim(&self, account: &str) -> &RunningSim {
        self.stack
            .sim(account)
            .unwrap_or_else(|| panic!("no simulator for {account}"))
    }

    /// The order as stored (attempts and all), read straight from the store.
    pub async fn stored(&self, app: &str, merchant_order_no: &str) -> Order {
        let id = OrderId::derive(
            &AppId::parse(app).unwrap(),
            &MerchantOrderNo::parse(merchant_order_no).unwrap(),
        );
        self.stack
            .state()
            .store
            .get(&id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("order {merchant_order_no} is not stored"))
    }

    /// Every simulator's ledger entries for an order: those keyed by one of its attempt ids (which start with
    /// the order id).
    pub fn ledger(&self, order_id: &str) -> Vec<(String, OrderRecord)> {
        self.ledger_matching(|o| o.caller_order_id.starts_with(order_id))
    }

    /// Every simulator's ledger entries for a stored order: keyed by an attempt id, or by the provider order id
    /// an attempt recorded (the PC carrier-billing flow sends the provider no id of ours).
    pub fn ledger_of(&self, order: &Order) -> Vec<(String, OrderRecord)> {
        let id = order.id().as_str();
        let refs: Vec<&str> = order
            .attempts()
            .iter()
            .filter_map(|a| a.provider_ref())
            .collect();
        self.ledger_matching(|o| {
            o.caller_order_id.starts_with(id) || refs.contains(&o.provider_order_id.as_str())
        })
    }

    fn ledger_matching(&self, keep: impl Fn(&OrderRecord) -> bool) -> Vec<(String, OrderRecord)> {
        self.stack
            .sims()
            .flat_map(|(account, sim)| {
                sim.orders()
                    .into_iter()
                    .filter(|o| keep(o))
                    .map(|o| (account.clone(), o))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every simulator's callback attempts for an order.
    pub fn callbacks(&self, order_id: &str) -> Vec<(String, CallbackAttempt)> {
        self.stack
            .sims()
            .flat_map(|(account, sim)| {
                sim.callbacks()
                    .into_iter()
                    .filter(|c| c.caller_order_id.starts_with(order_id))
                    .map(|c| (account.clone(), c))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits for the demo app's notification of `view`'s sequence for order `no` (checking every one, as
    /// `Inbox::wait_sequence` does) and asserts the last one received is `view`.
    pub async fn assert_notified_last(&self, no: &str, view: &Value) {
        let seq = view["sequence"].as_u64().unwrap();
        let bodies = self
            .inbox
            .wait_sequence(no, DEMO.1, seq, Duration::from_secs(10))
            .await;
        assert_eq!(comparable(bodies.last().unwrap()), comparable(view));
    }

    /// The first law, across every simulator: value was delivered at most once for this order.
    pub fn assert_at_most_one_delivery(&self, order_id: &str) -> u32 {
        deliveries(&self.ledger(order_id))
    }
}

/// The provider account of each of a stored order's attempts, in order (a failover shows as a second one).
pub fn attempt_accounts(order: &Order) -> Vec<String> {
    order
        .attempts()
        .iter()
        .map(|a| a.route().provider_account.to_string())
        .collect()
}

/// The deliveries in a ledger extract; panics if there are more than one.
pub fn deliveries(ledger: &[(String, OrderRecord)]) -> u32 {
    let total: u32 = ledger.iter().map(|(_, o)| o.deliveries).sum();
    assert!(total <= 1, "delivered {total} times: {ledger:#?}");
    total
}

/// Polls `GET /v1/orders/{no}` every 100 ms until `done` holds; panics with the last view after `timeout`.
pub async fn wait_for(
    client: &SigningClient,
    no: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let reply = client.get_order(no).await.unwrap();
        assert_eq!(reply.status, 200, "GET {no}: {}", reply.body);
        if done(&reply.body) {
            return reply.body;
        }
        assert!(
            started.elapsed() < timeout,
            "{no}: not {what} within {timeout:?}; last view {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_status(
    client: &SigningClient,
    no: &str,
    status: &str,
    timeout: Duration,
) -> Value {
    wait_for(client, no, timeout, status, |v| v["status"] == status).await
}

/// Polls `probe` every 50 ms until it returns `Some`; panics after `timeout`.
pub async fn poll<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls an async `probe` every 50 ms until it returns `Some`; panics after `timeout`.
pub async fn poll_async<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- a merchant's own signing (docs/merchant-api.md §1), independent of the gateway's code
// --------------------------------

pub fn hex_hmac(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// `hex HMAC-SHA256(secret, METHOD \n PATH \n QUERY \n TIMESTAMP \n NONCE \n hex SHA-256(body))`.
pub fn request_signature(
    secret: &str,
    method: &str,
    path: &str,
    query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = data_encoding::HEXLOWER.encode(&Sha256::digest(body));
    let sts = format!("{method}\n{path}\n{query}\n{timestamp}\n{nonce}\n{body_hash}");
    hex_hmac(secret, sts.as_bytes())
}

/// The four auth headers of a correctly signed request (timestamp now, a fresh nonce).
pub fn signed_headers(
    app: (&str, &str),
    method: &str,
    path: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    static N: AtomicU64 = AtomicU64::new(0);
    let ts = now_secs().to_string();
    let nonce = format!(
        "nonce-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let sig = request_signature(app.1, method, path, "", &ts, &nonce, body);
    vec![
        ("X-Recharge-App", app.0.to_owned()),
        ("X-Recharge-Timestamp", ts),
        ("X-Recharge-Nonce", nonce),
        ("X-Recharge-Signature", sig),
    ]
}

/// Sends a request with exactly these headers; returns the status and the JSON body (`Null` if not JSON).
pub async fn send_raw(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{base}{path}"),
        )
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts an error answer: the status and `{"error":{"code":…}}`.
#[track_caller]
pub fn assert_error(reply: &(u16, Value), status: u16, code: &str) {
    assert_eq!(
        reply.0, status,
        "expected {status} {code}, got {} {}",
        reply.0, reply.1
    );
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
    assert!(
        reply.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error carries a message: {}",
        reply.1
    );
}

// ---- the merchant's notification endpoint ------------------------------------------------------------------

/// One notification as the merchant received it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
struct InboxState {
    received: BTreeMap<String, Vec<Notification>>,
    /// Per key: how many more notifications to answer with HTTP 503.
    refuse: HashMap<String, u32>,
}

/// A loopback HTTP server that takes merchant notifications at `/notify/{key}`.
pub struct Inbox {
    base: String,
    state: Arc<Mutex<InboxState>>,
    task: JoinHandle<()>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn take_notification(
    State(state): State<Arc<Mutex<InboxState>>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut s = state.lock().unwrap();
    s.received
        .entry(key.clone())
        .or_default()
        .push(Notification {
            timestamp: header("x-recharge-timestamp"),
            signature: header("x-recharge-signature"),
            body: body.to_vec(),
        });
    match s.refuse.get_mut(&key) {
        Some(n) if *n > 0 => {
            *n -= 1;
            (StatusCode::SERVICE_UNAVAILABLE, "busy")
        }
        _ => (StatusCode::OK, "ok"),
    }
}

impl Inbox {
    pub async fn start() -> Inbox {
        let state = Arc::new(Mutex::new(InboxState::default()));
        let router = axum::Router::new()
            .route("/notify/{key}", axum::routing::post(take_notification))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Inbox { base, state, task }
    }

    pub fn url(&self, key: &str) -> String {
        format!("{}/notify/{key}", self.base)
    }

    /// Answer the next `n` notifications for `key` with 503.
    pub fn refuse_first(&self, key: &str, n: u32) {
        self.state.lock().unwrap().refuse.insert(key.to_owned(), n);
    }

    pub fn received(&self, key: &str) -> Vec<Notification> {
        self.state
            .lock()
            .unwrap()
            .received
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until a notification of `sequence` (or later) arrived for `key`; checks them all (signatures,
    /// sequences) and returns their bodies in arrival order.
    pub async fn wait_sequence(
        &self,
        key: &str,
        secret: &str,
        sequence: u64,
        timeout: Duration,
    ) -> Vec<Value> {
        poll(
            timeout,
            &format!("notification of {key} with sequence {sequence}"),
            || {
                self.received(key)
                    .iter()
                    .any(|n| {
                        serde_json::from_slice::<Value>(&n.body)
                            .is_ok_and(|v| v["sequence"].as_u64() >= Some(sequence))
                    })
                    .then_some(())
            },
        )
        .await;
        check_notifications(&self.received(key), secret)
    }
}

/// The merchant's checks of docs/merchant-api.md §5 on every notification it got for one order: a fresh timestamp, a
/// valid `X-Recharge-Signature = hex HMAC-SHA256(app_secret, timestamp + "." + body)`, and a `sequence` that only
/// increases (a repeat of a sequence, a retry, carries the same view). Returns the bodies in arrival order.
pub fn check_notifications(list: &[Notification], secret: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    let mut by_sequence: BTreeMap<u64, Value> = BTreeMap::new();
    let mut first_seen: Vec<u64> = Vec::new();
    for n in list {
        let ts = n
            .timestamp
            .as_deref()
            .expect("X-Recharge-Timestamp is sent");
        let ts_secs: i64 = ts.parse().expect("the timestamp is unix seconds");
        assert!(
            (now_secs() - ts_secs).abs() <= 300,
            "timestamp {ts} is not fresh"
        );
        let mut message = format!("{ts}.").into_bytes();
        message.extend_from_slice(&n.body);
        assert_eq!(
            n.signature.as_deref(),
            Some(hex_hmac(secret, &message).as_str()),
            "notification signature of {}",
            String::from_utf8_lossy(&n.body)
        );
        let body: Value = serde_json::from_slice(&n.body).expect("a notification is JSON");
        let seq = body["sequence"]
            .as_u64()
            .expect("a notification has a sequence");
        let mut comparable = body.clone();
        comparable["updated_at"] = Value::Null;
        match by_sequence.get(&seq) {
            Some(seen) => assert_eq!(seen, &comparable, "two views carry sequence {seq}"),
            None => {
                assert!(
                    first_seen.last().is_none_or(|last| *last < seq),
                    "sequence {seq} arrived after {first_seen:?}"
                );
                first_seen.push(seq);
                by_sequence.insert(seq, comparable);
            }
        }
        bodies.push(body);
    }
    bodies
}

/// The view fields a notification and a later GET of the same sequence agree on (`updated_at` also moves when
/// a notification is recorded).
pub fn comparable(view: &Value) -> Value {
    let mut v = view.clone();
    v["updated_at"] = Value::Null;
    v
}

/// Plays the end user of an MP carrier-billing order: waits for the order in `account`'s simulator ledger,
/// then tells the simulator the user's SMS arrived (`/_sim/mo`). Returns the provider's order id.
pub async fn user_sends_the_sms(h: &Harness, account: &str, order_id: &str) -> String {
    let sim = h.sim(account);
    let provider_id = poll(Duration::from_secs(5), "the MP order in the ledger", || {
        sim.orders()
            .into_iter()
            .find(|o| o.caller_order_id.starts_with(order_id))
            .map(|o| o.provider_order_id)
    })
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mo = http
        .post(format!("{}/_sim/mo/{provider_id}", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(mo.status(), 200, "MO for {provider_id}");
    provider_id
}

/// The order ids of an ops listing (`{"orders": [{"order_id": ...}, ...]}`).
pub fn order_ids(page: &Value) -> Vec<String> {
    page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect()
}

//! Shared test helpers: starting a simulator, a callback receiver, bounded waiting, MD5.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::any;
use md5::{Digest, Md5};
use recharge_sim::{OrderRecord, Protocol, RunningSim, SimConfig};

/// A time scale that turns minutes into tens of milliseconds.
pub const FAST: f64 = 1000.0;

/// A config with a fast clock and short hang.
pub fn config(protocol: Protocol, creds: serde_json::Value) -> SimConfig {
    let mut c = SimConfig::new(protocol, creds);
    c.time_scale = FAST;
    c.settle = Duration::from_secs(20); // 20 ms after scaling
    c.hang = Duration::from_millis(1500);
    c.callback_timeout = Duration::from_secs(2);
    c
}

pub async fn start(c: SimConfig) -> RunningSim {
    recharge_sim::start(c).await.expect("simulator starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn md5_upper(bytes: &[u8]) -> String {
    md5_lower(bytes).to_uppercase()
}

pub fn md5_lower(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Polls `f` every 5 ms until it returns `Some`, failing the test after `secs` seconds.
pub async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the order with this caller id is in a terminal state (and the lifecycle moved past it).
pub async fn wait_order(
    sim: &RunningSim,
    caller: &str,
    state: recharge_sim::OrderState,
) -> OrderRecord {
    wait_for(&format!("order {caller} to be {state:?}"), 10, || {
        sim.orders()
            .into_iter()
            .find(|o| o.caller_order_id == caller && o.state == state)
    })
    .await
}

/// One request received by the [`Receiver`].
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Debug)]
struct ReceiverState {
    fail_first: usize,
    ack: String,
    got: Mutex<Vec<Received>>,
}

/// A loopback callback receiver: answers HTTP 500 to the first `fail_first` requests, then `ack`.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start(fail_first: usize, ack: &str) -> Receiver {
        let state = Arc::new(ReceiverState {
            fail_first,
            ack: ack.to_owned(),
            got: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/{*path}", any(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/notify"),
            state,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        wait_for(&format!("{n} callbacks"), 10, || {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn receive(
    State(s): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let n = {
        let mut got = s.got.lock().unwrap();
        got.push(Received {
            method,
            uri,
            headers,
            body: body.to_vec(),
        });
        got.len()
    };
    if n <= s.fail_first {
        (StatusCode::INTERNAL_SERVER_ERROR, "fail".to_owned())
    } else {
        (StatusCode::OK, s.ack.clone())
    }
}

/// Parses a form body or query string as UTF-8 or GBK pairs.
pub fn form_pairs(bytes: &[u8], gbk: bool) -> Vec<(String, String)> {
    bytes
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let dec = |raw: &[u8]| {
                let raw: Vec<u8> = raw
                    .iter()
                    .map(|b| if *b == b'+' { b' ' } else { *b })
                    .collect();
                let bytes: Vec<u8> = percent_encoding::percent_decode(&raw).collect();
                if gbk {
                    encoding_rs::GBK.decode(&bytes).0.into_owned()
                } else {
                    String::from_utf8(bytes).unwrap()
                }
            };
            (dec(it.next().unwrap()), dec(it.next().unwrap_or_default()))
        })
        .collect()
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// Percent-encodes a value's bytes (GBK or UTF-8) for a form body.
pub fn enc(value: &str, gbk: bool) -> String {
    let bytes = if gbk {
        encoding_rs::GBK.encode(value).0.into_owned()
    } else {
        value.as_bytes().to_vec()
    };
    percent_encoding::percent_encode(&bytes, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A form body from pairs.
pub fn form(pairs: &[(&str, &str)], gbk: bool) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v, gbk)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The ledger as served over HTTP: `GET /_sim/orders`.
pub async fn ledger_over_http(sim: &RunningSim) -> Vec<serde_json::Value> {
    client()
        .get(format!("{}/_sim/orders", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The ledger row (over HTTP) of the order with this caller id; fails the test when there is none.
pub async fn ledger_row(sim: &RunningSim, caller: &str) -> serde_json::Value {
    ledger_over_http(sim)
        .await
        .into_iter()
        .find(|o| o["caller_order_id"] == caller)
        .unwrap_or_else(|| panic!("order {caller} is not in GET /_sim/orders"))
}

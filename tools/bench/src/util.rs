//! Small helpers: a metered DynamoDB Local stack, a seedable generator, signed merchant requests for calling the handlers directly, a
//! provider's signed callback, and percentiles.

use recharge_api::ApiRequest;
use recharge_api::http::auth::{
    HEADER_APP, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, hmac_hex, string_to_sign,
};
use recharge_aws::CallCounter;
use recharge_local::{LocalOptions, StoreChoice};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A local stack on a fresh DynamoDB Local table (`<prefix>-<millis>`, returned with the options) whose AWS
/// calls `calls` meters, at `time_scale`, with the sweep and the balance check an hour apart so that only the
/// bench's own calls are counted.
pub fn metered_dynamo(
    prefix: &str,
    calls: &CallCounter,
    time_scale: f64,
) -> anyhow::Result<(String, LocalOptions)> {
    let table = format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let options = LocalOptions {
        listen: "127.0.0.1:0".parse()?,
        store: StoreChoice::DynamoDb {
            endpoint: None,
            table: table.clone(),
        },
        time_scale,
        sweep_every: std::time::Duration::from_secs(3600),
        balance_every: std::time::Duration::from_secs(3600),
        aws_calls: Some(calls.clone()),
        ..LocalOptions::default()
    };
    Ok((table, options))
}

/// SplitMix64: tiny and seedable; the campaign's choices depend only on the seed and the order index.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// A merchant request signed as docs/merchant-api.md §1 says, ready for `recharge_api::http::routes::handle`.
pub fn signed_request(
    app: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> ApiRequest {
    static N: AtomicU64 = AtomicU64::new(0);
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let nonce = format!("bench{:016x}", N.fetch_add(1, Ordering::Relaxed));
    let sts = string_to_sign(method, path, "", &ts, &nonce, &body);
    let signature = hmac_hex(secret.as_bytes(), sts.as_bytes());
    ApiRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        raw_query: String::new(),
        headers: vec![
            (HEADER_APP.to_owned(), app.to_owned()),
            (HEADER_TIMESTAMP.to_owned(), ts),
            (HEADER_NONCE.to_owned(), nonce),
            (HEADER_SIGNATURE.to_owned(), signature),
            ("content-type".to_owned(), "application/json".to_owned()),
        ],
        body,
    }
}

/// The `p`-th percentile (0–100) of `sorted` by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The wikeyun account's signed success callback for an order the simulator holds (what the provider would
/// send), as a request to `/v1/callbacks/wikeyun-main`.
pub(crate) fn wikeyun_success_callback(rec: &recharge_sim::OrderRecord) -> ApiRequest {
    let mut p: BTreeMap<String, String> = BTreeMap::new();
    p.insert("order_no".into(), rec.caller_order_id.clone());
    p.insert("order_number".into(), rec.provider_order_id.clone());
    p.insert("status".into(), "2".into());
    p.insert("mobile".into(), rec.account.clone());
    p.insert("amount".into(), recharge_sim::codec::yuan(rec.amount_fen));
    p.insert(
        "cost_price".into(),
        recharge_sim::codec::yuan(rec.price_fen),
    );
    p.insert("fanli".into(), "0".into());
    // The demo wikeyun account's app secret (recharge-local's demo configuration).
    let sig = recharge_sim::wikeyun::sign(&p, "TestAppSecret0123");
    p.insert("sign".into(), sig);
    ApiRequest {
        method: "POST".into(),
        path: "/v1/callbacks/wikeyun-main".into(),
        raw_query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_string(&p).unwrap_or_default().into_bytes(),
    }
}

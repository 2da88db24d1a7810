//! A small signing client of the merchant API (docs/merchant-api.md §1): what a merchant back end does, in Rust. Used
//! by `recharge-local order …` and by the end-to-end tests.

use recharge_api::http::auth::{
    HEADER_APP, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, hmac_hex, string_to_sign,
};
use serde_json::Value;

/// A merchant app's view of the gateway.
#[derive(Debug, Clone)]
pub struct SigningClient {
    base: String,
    app: String,
    secret: String,
    http: reqwest::Client,
}

/// A response: status and JSON body (`Value::Null` if the body is not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl SigningClient {
    pub fn new(base: &str, app: &str, secret: &str) -> SigningClient {
        SigningClient {
            base: base.trim_end_matches('/').to_owned(),
            app: app.to_owned(),
            secret: secret.to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
        }
    }

    /// Sends a signed request. `path` may carry a query string, which is signed as sent.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Reply, reqwest::Error> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let nonce = nonce();
        let sts = string_to_sign(method, path, query, &ts, &nonce, body);
        let signature = hmac_hex(self.secret.as_bytes(), sts.as_bytes());
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let resp = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .header(HEADER_APP, &self.app)
            .header(HEADER_TIMESTAMP, ts)
            .header(HEADER_NONCE, nonce)
            .header(HEADER_SIGNATURE, signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    pub async fn create_order(&self, order: &Value) -> Result<Reply, reqwest::Error> {
        self.send("POST", "/v1/orders", order.to_string().as_bytes())
            .await
    }

    pub async fn get_order(&self, merchant_order_no: &str) -> Result<Reply, reqwest::Error> {
        self.send("GET", &format!("/v1/orders/{merchant_order_no}"), b"")
            .await
    }

    pub async fn verify(
        &self,
        merchant_order_no: &str,
        code: &str,
    ) -> Result<Reply, reqwest::Error> {
        let body = serde_json::json!({ "code": code }).to_string();
        self.send(
            "POST",
            &format!("/v1/orders/{merchant_order_no}/verification"),
            body.as_bytes(),
        )
        .await
    }

    pub async fn balances(&self) -> Result<Reply, reqwest::Error> {
        self.send("GET", "/v1/balances", b"").await
    }
}

/// 24 characters of `[A-Za-z0-9]` from the clock and a counter: unique per process, which is all a nonce
/// needs here (the server checks its shape, not its history).
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("n{:x}{:x}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Whether a status is final for a merchant (nothing more will change but anomalies).
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "succeeded" | "failed" | "partially_succeeded" | "reversed"
    )
}

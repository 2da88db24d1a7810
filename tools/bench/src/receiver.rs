//! A loopback merchant server for `notify_url`: checks each notification's signature, refuses a seeded share
//! of first tries (so the gateway's retries run), and keeps every acknowledged notification.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One acknowledged notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub sequence: u64,
    pub status: String,
}

#[derive(Debug, Default)]
struct Inner {
    by_order: HashMap<String, Vec<Notice>>,
    tries: HashMap<(String, u64), u32>,
    refused: u64,
    bad_signature: u64,
    unparsable: u64,
}

#[derive(Debug)]
struct Shared {
    secret: String,
    refuse_rate: f64,
    seed: u64,
    inner: Mutex<Inner>,
}

/// A running receiver. Dropping it stops the server.
#[derive(Debug)]
pub struct Receiver {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    /// Starts on an ephemeral loopback port. `refuse_rate` of (order, sequence) pairs get a 503 on their first
    /// try.
    pub async fn start(secret: &str, refuse_rate: f64, seed: u64) -> anyhow::Result<Receiver> {
        let shared = Arc::new(Shared {
            secret: secret.to_owned(),
            refuse_rate,
            seed,
            inner: Mutex::new(Inner::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/notify", axum::routing::post(receive))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            url: format!("http://{addr}/notify"),
            shared,
            server,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The acknowledged notification with the highest sequence for an order id.
    pub fn last(&self, order_id: &str) -> Option<Notice> {
        let inner = self.shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .by_order
            .get(order_id)
            .and_then(|v| v.iter().max_by_key(|n| n.sequence).cloned())
    }

    /// How many notifications an order got acknowledged.
    pub fn count(&self, order_id: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_order.get(order_id).map_or(0, Vec::len)
    }

    /// (acknowledged, refused on purpose, bad signature, unparsable).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let inner = self.shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        let acked = inner.by_order.values().map(|v| v.len() as u64).sum();
        (acked, inner.refused, inner.bad_signature, inner.unparsable)
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let ts = header(recharge_api::usecases::notify::HEADER_TIMESTAMP)
        .and_then(|t| t.parse::<i64>().ok());
    let sig = header(recharge_api::usecases::notify::HEADER_SIGNATURE);
    let view: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let (Some(ts), Some(sig)) = (ts, sig) else {
        inner.bad_signature += 1;
        return StatusCode::UNAUTHORIZED;
    };
    if recharge_api::usecases::notify::signature(shared.secret.as_bytes(), ts, &body) != sig {
        inner.bad_signature += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let parsed = view.and_then(|v| {
        Some((
            v.get("order_id")?.as_str()?.to_owned(),
            v.get("sequence")?.as_u64()?,
            v.get("status")?.as_str()?.to_owned(),
        ))
    });
    let Some((order_id, sequence, status)) = parsed else {
        inner.unparsable += 1;
        return StatusCode::BAD_REQUEST;
    };
    let tries = inner.tries.entry((order_id.clone(), sequence)).or_insert(0);
    *tries += 1;
    if *tries == 1 && shared.refuse_rate > 0.0 {
        let mut h = shared.seed ^ sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in order_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        if (crate::util::Rng::new(h).unit()) < shared.refuse_rate {
            inner.refused += 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    inner
        .by_order
        .entry(order_id)
        .or_default()
        .push(Notice { sequence, status });
    StatusCode::NO_CONTENT
}

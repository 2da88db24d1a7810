//! The retrying callback sender: a protocol module says how to build one callback request and what counts as
//! the acknowledgement ([`Notifier`]); this module sends it, records every attempt in the ledger, and retries
//! on the protocol's schedule (divided by the time scale) until acknowledged or out of retries.

use std::time::Duration;

use crate::dialect::Dialect;
use crate::ledger::{CallbackAttempt, Ledger, OrderRecord, OrderState};
use crate::timing::Timing;

/// What sending callbacks needs of the simulator it belongs to (the engine lends it: `Engine::sender`).
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// Client for callbacks.
    pub http: &'a reqwest::Client,
    /// Where every attempt is recorded.
    pub ledger: &'a Ledger,
    /// Divides the retry delays.
    pub timing: &'a Timing,
    /// Replaces the protocol's retry delays (unscaled) when set.
    pub schedule: Option<&'a [Duration]>,
    /// Retry count and acknowledgement of the account's dialect.
    pub dialect: &'a Dialect,
}

/// HTTP method of a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMethod {
    /// Body-less GET (sms-billing sync).
    Get,
    /// POST with a body.
    Post,
}

/// One callback request, fully built and signed.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// GET or POST.
    pub method: CallbackMethod,
    /// Full URL, query string included.
    pub url: String,
    /// Extra headers (content type, signature headers).
    pub headers: Vec<(String, String)>,
    /// The body bytes (empty for GET).
    pub body: Vec<u8>,
}

/// How one protocol sends callbacks.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Builds the callback reporting `reported` for `order`, freshly signed (called again for each attempt),
    /// or `None` when there is nowhere to send it or the protocol cannot express that state.
    fn build(&self, order: &OrderRecord, reported: OrderState) -> Option<Outgoing>;
    /// Whether a reply is the documented acknowledgement.
    fn is_ack(&self, status: u16, body: &[u8]) -> bool;
    /// Delays before each retry after the first attempt, unscaled.
    fn retry_schedule(&self) -> Vec<Duration>;
}

/// Sends one callback for `order` reporting `reported`, retrying until acknowledged. Returns whether it was.
pub async fn deliver(
    engine: &Sender<'_>,
    notifier: &dyn Notifier,
    order: &OrderRecord,
    reported: OrderState,
) -> bool {
    let mut schedule = engine
        .schedule
        .map(<[Duration]>::to_vec)
        .unwrap_or_else(|| notifier.retry_schedule());
    if let Some(retries) = engine.dialect.callback_retries {
        schedule.truncate(retries);
    }
    for attempt in 0..=schedule.len() {
        let Some(out) = notifier.build(order, reported) else {
            return false;
        };
        let (http_status, reply) = send(engine, &out).await;
        // The dialect's acknowledgement, when it names one, replaces the protocol's.
        let acknowledged = http_status.is_some_and(|s| match &engine.dialect.callback_ack {
            Some(ack) => (200..300).contains(&s) && ack.matches(reply.as_bytes()),
            None => notifier.is_ack(s, reply.as_bytes()),
        });
        tracing::debug!(
            order = %order.provider_order_id,
            attempt = attempt + 1,
            target = %out.url,
            ?http_status,
            acknowledged,
            "callback attempt"
        );
        engine.ledger.push_callback(CallbackAttempt {
            provider_order_id: order.provider_order_id.clone(),
            caller_order_id: order.caller_order_id.clone(),
            attempt: attempt as u32 + 1,
            target: out.url.clone(),
            reported_state: reported,
            http_status,
            reply: reply.chars().take(200).collect(),
            acknowledged,
        });
        if acknowledged {
            return true;
        }
        if let Some(delay) = schedule.get(attempt) {
            tokio::time::sleep(engine.timing.scaled(*delay)).await;
        }
    }
    false
}

async fn send(engine: &Sender<'_>, out: &Outgoing) -> (Option<u16>, String) {
    let mut req = match out.method {
        CallbackMethod::Get => engine.http.get(&out.url),
        CallbackMethod::Post => engine.http.post(&out.url).body(out.body.clone()),
    };
    for (k, v) in &out.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            (Some(status), body)
        }
        Err(e) => (None, format!("transport error: {e}")),
    }
}

/// Whether `body` trimmed equals one of `words`, ignoring ASCII case.
pub fn reply_is(body: &[u8], words: &[&str]) -> bool {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    words.iter().any(|w| t.eq_ignore_ascii_case(w))
}

/// Seconds to `Duration`, for schedules.
pub fn secs(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs(*s)).collect()
}

//! 004 wire vocabulary: the `{status, message, data}` envelope, ordered JSON bodies, and the configurable
//! order-status mapping (PROVIDERS 004 "Order status values": unknown, simulator default 1/2/3).

use recharge_core::{Outcome, Reason};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A JSON scalar as text: strings as they are, numbers in decimal.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

pub use crate::codec::ordered_json;

/// The response envelope.
#[derive(Debug)]
pub struct Envelope {
    pub status: i64,
    pub message: String,
    pub data: Value,
}

pub fn envelope(body: &[u8]) -> Option<Envelope> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let status = match v.get("status")? {
        Value::Number(n) => n.as_i64()?,
        // Lenient: a numeric string.
        Value::String(s) => s.trim().parse().ok()?,
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    Some(Envelope {
        status,
        message: text(v.get("message")).unwrap_or_default(),
        data: v.get("data").cloned().unwrap_or(Value::Null),
    })
}

/// Envelope status 2: 验签失败 (the only documented code).
pub const STATUS_SIGN_FAILED: i64 = 2;

/// Which `data.<field>` values mean what. Unlisted values are `Unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusMap {
    pub field: String,
    pub processing: Vec<String>,
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
}

impl Default for StatusMap {
    /// [ASSUME] simulator default: `status` 1 processing, 2 success, 3 failed.
    fn default() -> StatusMap {
        StatusMap {
            field: "status".to_owned(),
            processing: vec!["1".to_owned()],
            succeeded: vec!["2".to_owned()],
            failed: vec!["3".to_owned()],
        }
    }
}

impl StatusMap {
    /// Maps an order object (query `data` or callback body).
    pub fn classify(&self, order: &Value) -> Outcome {
        let provider_ref = text(order.get("orderCode")).filter(|s| !s.is_empty());
        let Some(v) = text(order.get(&self.field)) else {
            return Outcome::Unknown {
                reason: Reason::new("no_status", format!("no {} in order", self.field)),
            };
        };
        let has = |list: &[String]| list.iter().any(|x| x == &v);
        if has(&self.succeeded) {
            Outcome::Succeeded { provider_ref }
        } else if has(&self.failed) {
            Outcome::Failed {
                // A terminal failure reported by the platform: safe to fail over (§0.3 rule 1).
                failover_allowed: true,
                reason: Reason::new(v, text(order.get("message")).unwrap_or_default()),
            }
        } else if has(&self.processing) {
            Outcome::Accepted { provider_ref }
        } else {
            Outcome::Unknown {
                reason: Reason::new(v, "undocumented order status"),
            }
        }
    }
}

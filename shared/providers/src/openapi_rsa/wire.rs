//! 004 wire vocabulary: the `{status, message, data}` envelope, ordered JSON bodies, and the default code
//! table (docs/providers/openapi-rsa.md §5: only `status 2` is documented; order-status values are unknown).

use crate::codes::{Meaning, Phase};
use serde_json::Value;

pub use crate::json::text;

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

/// The documented codes: at submit only `2` 验签失败 is a refusal; every other status but the account's
/// success status is UNKNOWN (docs/providers/README.md §4 rule 1). The success status and the order-status values are
/// not documented (the seed's 961 is a smart-doc placeholder): the account states them (docs/providers/README.md §4
/// rule 2).
pub const DEFAULT_CODES: &[(Phase, &[(&str, Meaning)])] =
    &[(Phase::Submit, &[("2", Meaning::Refusal)])];

//! 003 wire vocabulary: the `{code, message, data|content}` answer (ICE also uses `result`/`reason`), and the
//! default code table (docs/providers/ice-microservice.md §5: only `0` is documented).

use crate::codes::{Meaning, Phase};
use serde_json::Value;

pub use crate::json::text;

/// The answer's parts. `code` comes from `code`, else ICE's `result`; the payload from `data`, else `content`.
#[derive(Debug)]
pub struct Answer {
    pub code: String,
    pub message: String,
    pub data: Value,
}

pub fn answer(body: &[u8]) -> Option<Answer> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = text(v.get("code")).or_else(|| text(v.get("result")))?;
    let message = text(v.get("message"))
        .or_else(|| text(v.get("reason")))
        .unwrap_or_default();
    let data = match v.get("data") {
        Some(d) if !d.is_null() => d.clone(),
        // Through the ICE gateway the payload may be wrapped as `content`: accept both.
        _ => v.get("content").cloned().unwrap_or(Value::Null),
    };
    Some(Answer {
        code,
        message,
        data,
    })
}

/// The documented codes: at submit the envelope `code` `0` is the order taken (the order endpoint only ever
/// returns `data.status "0"`, 订单已受理). `code 1` is a bare 失败 with no table behind it, so it is UNKNOWN
/// (docs/providers/README.md §4 rule 1). Order-status values are not documented at all: the account states them in
/// `codes.query` (docs/providers/README.md §4 rule 2; the adapter refuses to load without a success status there).
pub const DEFAULT_CODES: &[(Phase, &[(&str, Meaning)])] =
    &[(Phase::Submit, &[("0", Meaning::Accepted)])];

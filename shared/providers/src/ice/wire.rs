//! 003 wire vocabulary: the `{code, message, data|content}` answer (ICE also uses `result`/`reason`), and the
//! configurable order-status mapping (PROVIDERS 003 "Responses": only `0` is documented).

use recharge_core::{Outcome, Reason};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

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

/// Status values and what they mean. Unlisted values are `Unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusMap {
    pub processing: Vec<String>,
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
}

impl Default for StatusMap {
    /// [ASSUME] proposed default: 0 accepted, 1 processing, 2/7/0007 success, 3/8/0008 failed.
    fn default() -> StatusMap {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
        StatusMap {
            processing: v(&["0", "1"]),
            succeeded: v(&["2", "7", "0007"]),
            failed: v(&["3", "8", "0008"]),
        }
    }
}

impl StatusMap {
    pub fn classify(&self, data: &Value) -> Outcome {
        let provider_ref = text(data.get("orderNo")).filter(|s| !s.is_empty());
        let Some(s) = text(data.get("status")) else {
            return Outcome::Unknown {
                reason: Reason::new("no_status", "order without status"),
            };
        };
        let has = |list: &[String]| list.iter().any(|x| x == &s);
        if has(&self.succeeded) {
            Outcome::Succeeded { provider_ref }
        } else if has(&self.failed) {
            Outcome::Failed {
                failover_allowed: true,
                reason: Reason::new(s, text(data.get("msg")).unwrap_or_default()),
            }
        } else if has(&self.processing) {
            Outcome::Accepted { provider_ref }
        } else {
            Outcome::Unknown {
                reason: Reason::new(s, "undocumented order status"),
            }
        }
    }
}

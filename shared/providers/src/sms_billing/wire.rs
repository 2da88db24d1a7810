//! 000 wire vocabulary: `{resultCode, resultDesc, array?, orderId}` answers ("0 为成功，其他为失败"; no code
//! table) and the sync's `status` (DELIVRD = billed).

use recharge_core::SmsInstruction;
use serde_json::Value;

pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[derive(Debug)]
pub struct Answer {
    pub result_code: String,
    pub result_desc: String,
    pub order_id: Option<String>,
    /// MP only: the messages to send, in order. `None` if any entry lacks `sms` or `accessno`.
    pub messages: Option<Vec<SmsInstruction>>,
}

pub fn answer(body: &[u8]) -> Option<Answer> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let result_code = text(v.get("resultCode"))?;
    let messages = match v.get("array") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                Some(SmsInstruction {
                    to: text(i.get("accessno")).filter(|s| !s.is_empty())?,
                    body: text(i.get("sms")).filter(|s| !s.is_empty())?,
                })
            })
            .collect::<Option<Vec<_>>>(),
        _ => Some(Vec::new()),
    };
    Some(Answer {
        result_code,
        result_desc: text(v.get("resultDesc")).unwrap_or_default(),
        order_id: text(v.get("orderId")).filter(|s| !s.is_empty()),
        messages,
    })
}

/// `resultCode` "0" is the only success value.
pub const RESULT_OK: &str = "0";

/// Sync `status` meaning "billed" (operator status report DELIVRD).
pub const DELIVERED: &str = "DELIVRD";

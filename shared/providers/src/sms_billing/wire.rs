//! 000 wire vocabulary: `{resultCode, resultDesc, array?, orderId}` answers ("0 为成功，其他为失败"; no code
//! table) and the sync's `status` (DELIVRD = billed).

use crate::codes::{Meaning, Phase};
use recharge_core::SmsInstruction;
use serde_json::Value;

pub use crate::json::text;

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

/// The documented codes. `codes.submit` classifies the 验证码支付 answer (the one step that charges):
/// `resultCode 0` 交易成功; the seed's "其他为失败" gives no table, so every other code is UNKNOWN unless the
/// account lists it (docs/providers/README.md §4 rule 1). `codes.callback` classifies the sync `status`: only `DELIVRD`
/// is known; failure statuses vary by channel and must be stated by the account (docs/providers/README.md §4 rule 2).
pub const DEFAULT_CODES: &[(Phase, &[(&str, Meaning)])] = &[
    (Phase::Submit, &[(RESULT_OK, Meaning::Success)]),
    (Phase::Callback, &[(DELIVERED, Meaning::Success)]),
];

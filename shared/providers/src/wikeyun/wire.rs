//! 002 wire vocabulary: the `{code,msg,data}` envelope read leniently (the seed has strings where the SDK has
//! integers) and the order `status` table (PROVIDERS 002 "Order status") mapped exhaustively.

use recharge_core::{Fen, Outcome, Reason};
use serde_json::Value;

/// `code` of the envelope: `"0000"` is success (`client.const.go` `CodeSuccess`).
pub const CODE_SUCCESS: &str = "0000";

/// A JSON scalar as text: strings as they are, numbers in decimal. Anything else is absent.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The envelope's parts.
#[derive(Debug)]
pub struct Envelope {
    pub code: String,
    pub msg: String,
    pub data: Value,
}

pub fn envelope(body: &[u8]) -> Option<Envelope> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = text(v.get("code"))?;
    Some(Envelope {
        code,
        msg: text(v.get("msg")).unwrap_or_default(),
        data: v.get("data").cloned().unwrap_or(Value::Null),
    })
}

/// Meaning of a documented status value.
pub fn meaning(status: &str) -> &'static str {
    match status {
        "0" => "待支付",
        "1" => "已付 充值中",
        "2" => "充值成功",
        "3" => "充值失败 需要退款",
        "4" => "退款成功",
        "5" => "已超时",
        "6" => "待充值",
        "7" => "已匹配",
        "8" => "已存单",
        "9" => "已取消",
        "10" => "返销",
        "11" => "部分到账",
        "12" => "取消中",
        _ => "undocumented status",
    }
}

/// Maps an order status (query or callback). `arrived_amount` is read only for 11 (partial).
pub fn classify_status(
    status: &str,
    provider_ref: Option<String>,
    arrived_amount: Option<&str>,
    fail_reason: Option<&str>,
) -> Outcome {
    let reason = |s: &str| {
        let mut m = meaning(s).to_owned();
        if let Some(r) = fail_reason.filter(|r| !r.is_empty()) {
            m = format!("{m}: {r}");
        }
        Reason::new(s, m)
    };
    match status {
        // Row 0 待支付: PROCESSING (an API order should not stay here). Rows 1, 6, 7, 8, 12: PROCESSING.
        "0" | "1" | "6" | "7" | "8" | "12" => Outcome::Accepted { provider_ref },
        "2" => Outcome::Succeeded { provider_ref },
        // Rows 3 (refund pending) and 4 (refunded): FAILED; §0.3 rule 1 lists wikeyun 3/4/9 as failover-safe.
        "3" | "4" | "9" => Outcome::Failed {
            failover_allowed: true,
            reason: reason(status),
        },
        // Row 5 已超时: FAILED [ASSUME].
        "5" => Outcome::Failed {
            failover_allowed: true,
            reason: reason(status),
        },
        // Row 10 返销: REVERSED, alerted by the state machine.
        "10" => Outcome::Reversed {
            reason: reason(status),
        },
        // Row 11 部分到账: PARTIAL with `arrived_amount` (yuan). Without a readable amount we cannot say how
        // much arrived: stay Unknown and let a person look.
        "11" => match arrived_amount.map(Fen::parse_yuan) {
            Some(Ok(delivered)) => Outcome::PartiallySucceeded { delivered },
            _ => Outcome::Unknown {
                reason: Reason::new("11", "部分到账 without a readable arrived_amount"),
            },
        },
        _ => Outcome::Unknown {
            reason: reason(status),
        },
    }
}

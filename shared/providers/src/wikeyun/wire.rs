//! 002 wire vocabulary: the `{code,msg,data}` envelope read leniently (the seed has strings where the SDK has
//! integers) and the order `status` table (docs/providers/wikeyun.md §5) mapped exhaustively.

use crate::codes::{Meaning, Phase};
use serde_json::Value;

pub use crate::json::text;

/// `code` of the envelope: `"0000"` is success (`client.const.go` `CodeSuccess`).
pub const CODE_SUCCESS: &str = "0000";

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

use Meaning::{Accepted, Failure, Partial, Refusal, Reversed, Success};

/// The documented codes per phase: the pushOrder envelope `code`, and the order `status` of queries and
/// callbacks (docs/providers/wikeyun.md §5).
pub const DEFAULT_CODES: &[(Phase, &[(&str, Meaning)])] = &[
    (
        Phase::Submit,
        &[
            (CODE_SUCCESS, Accepted),
            // The one public error (`app_key不能为空`): the request was refused before any order existed.
            // Every other pushOrder code is UNKNOWN (docs/providers/README.md §4 rule 1): the order may have been
            // recorded first.
            ("1003", Refusal),
        ],
    ),
    (Phase::Query, STATUSES),
    (Phase::Callback, STATUSES),
];

const STATUSES: &[(&str, Meaning)] = &[
    // Row 0 待支付 (an API order should not stay here) and rows 1, 6, 7, 8, 12: PROCESSING.
    ("0", Accepted),
    ("1", Accepted),
    ("6", Accepted),
    ("7", Accepted),
    ("8", Accepted),
    ("12", Accepted),
    ("2", Success),
    // Rows 3 (refund pending), 4 (refunded), 9 (cancelled): FAILED; docs/providers/README.md §3 rule 1 lists 3/4/9 as
    // failover-safe.
    ("3", Failure),
    ("4", Failure),
    ("9", Failure),
    // Row 10 返销: REVERSED, alerted by the state machine.
    ("10", Reversed),
    // Row 11 部分到账: PARTIAL with `arrived_amount` (yuan).
    ("11", Partial),
    // Row 5 已超时 is an [ASSUME] "FAILED" only: left out, so it is Unknown until an account states it.
];

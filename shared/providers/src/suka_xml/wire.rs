//! 001 wire vocabulary: the `resultno` code table (docs/providers/suka-xml.md §5), per phase, as the
//! default [`CodeTable`](crate::codes::CodeTable) of every 001 account. An account's `codes` may add or
//! override entries; a code in no table is Unknown (docs/providers/README.md §4 rule 1).

use crate::codes::{Meaning, Phase};

/// Meaning of a documented `resultno`, for reasons shown to operators.
pub fn meaning(code: &str) -> &'static str {
    match code {
        "0" => "等待充值",
        "1" => "充值成功",
        "2" => "充值中",
        "9" => "充值失败已退款",
        "5001" => "代理商不存在",
        "5002" => "代理商余额不足",
        "5003" => "此商品暂时不可购买",
        "5004" => "充值号码与所选商品不符",
        "5005" => "充值请求验证错误",
        "5006" => "代理商订单号重复",
        "5007" => "所查询的订单不存在",
        "5008" => "交易亏损不能充值",
        "5009" => "IP不符",
        "5010" => "商品编号与充值金额不符",
        "5011" => "商品数量不支持",
        "5012" => "缺少必要参数或参数值不合法",
        "5013" => "相同号码已经提交充值或被加入平台黑名单",
        "9001" => "充值失败卡有效",
        "9002" => "充值失败卡失效",
        "9999" => "未知错误,需进入平台查询核实",
        _ => "undocumented code",
    }
}

use Meaning::{Accepted, Duplicate, Failure, NotFound, Refusal, Success, Unknown};

/// The documented codes per phase.
pub const DEFAULT_CODES: &[(Phase, &[(&str, Meaning)])] = &[
    (
        Phase::Submit,
        &[
            ("0", Accepted),
            // Row 1: "SUCCESS (some clients accept 1 at submit)".
            ("1", Success),
            // Row 2: 充值中 at submit is acceptance (梵尘 accepts 0/2).
            ("2", Accepted),
            // Row 9: failed and refunded, failover allowed.
            ("9", Failure),
            // Rows 5001–5005, 5008–5013: refusals before acceptance (auth/sign, balance, product, mismatch,
            // params, IP): nothing was charged (docs/providers/README.md §3 rule 1). The code tells operators which
            // alert it is.
            ("5001", Refusal),
            ("5002", Refusal),
            ("5003", Refusal),
            ("5004", Refusal),
            ("5005", Refusal),
            ("5008", Refusal),
            ("5009", Refusal),
            ("5010", Refusal),
            ("5011", Refusal),
            ("5012", Refusal),
            ("5013", Refusal),
            // Row 5006: the order id is taken, so the order may exist: UNKNOWN (query it); to the resubmit
            // probe it means the provider has the attempt (docs/providers/README.md §4 rule 4).
            ("5006", Duplicate),
            // Row 9999: 未知错误 → UNKNOWN.
            ("9999", Unknown),
        ],
    ),
    (
        Phase::Query,
        &[
            // Rows 0 and 2: PROCESSING at query.
            ("0", Accepted),
            ("2", Accepted),
            ("1", Success),
            ("9", Failure),
            ("9001", Failure),
            ("9002", Failure),
            // Row 5007: NOT_FOUND; the state machine applies the grace window and never fails an
            // acknowledged attempt on it (docs/providers/README.md §4 rule 4).
            ("5007", NotFound),
            // Row 9999 at query: UNKNOWN → manual review.
            ("9999", Unknown),
        ],
    ),
    (
        Phase::Callback,
        &[
            // Callback section: only 1 and 9 are acted on; anything else is UNKNOWN.
            ("1", Success),
            ("9", Failure),
        ],
    ),
];

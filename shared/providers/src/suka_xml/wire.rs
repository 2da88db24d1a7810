//! 001 wire vocabulary: the `resultno` code table (PROVIDERS 001 "Result code table") mapped exhaustively,
//! per phase. Any code not listed is `Unknown`.

use recharge_core::{Outcome, Reason};

/// Meaning of a documented `resultno`, for reasons shown to operators and merchants.
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

fn reason(code: &str) -> Reason {
    Reason::new(code, meaning(code))
}

fn rejected(code: &str) -> Outcome {
    // PROVIDERS §0.3 rule 1: every refusal before acceptance (auth/sign, balance, product, mismatch, params,
    // IP) is definitive and safe to fail over; the code tells operators which alert it is.
    Outcome::Rejected {
        failover_allowed: true,
        reason: reason(code),
    }
}

/// `resultno` in a `gameonlinepay.do` answer.
pub fn classify_submit(code: &str, provider_ref: Option<String>) -> Outcome {
    match code {
        "0" => Outcome::Accepted { provider_ref },
        // Table row 1: "SUCCESS (some clients accept 1 at submit)".
        "1" => Outcome::Succeeded { provider_ref },
        // Row 2: 充值中 at submit is acceptance (梵尘 accepts 0/2).
        "2" => Outcome::Accepted { provider_ref },
        // Row 9: failed and refunded, failover allowed.
        "9" => Outcome::Failed {
            failover_allowed: true,
            reason: reason(code),
        },
        "5001" | "5002" | "5003" | "5004" | "5005" | "5008" | "5009" | "5010" | "5011" | "5012"
        | "5013" => rejected(code),
        // Row 5006: duplicate order id means the order may exist: UNKNOWN, query it (§0.3 rule 2).
        "5006" => Outcome::Unknown {
            reason: reason(code),
        },
        // Row 9999: 未知错误 → UNKNOWN.
        "9999" => Outcome::Unknown {
            reason: reason(code),
        },
        // 5007 (not found) and 9001/9002 are query/callback codes; at submit they say nothing definite.
        _ => Outcome::Unknown {
            reason: reason(code),
        },
    }
}

/// `resultno` in a `searchpay.do` answer.
pub fn classify_query(code: &str, provider_ref: Option<String>) -> Outcome {
    match code {
        // Rows 0 and 2: PROCESSING at query.
        "0" | "2" => Outcome::Accepted { provider_ref },
        "1" => Outcome::Succeeded { provider_ref },
        "9" | "9001" | "9002" => Outcome::Failed {
            failover_allowed: true,
            reason: reason(code),
        },
        // Row 5007: NOT_FOUND; the state machine applies the grace window (§0.3 rule 3).
        "5007" => Outcome::NotFound,
        // Row 9999 at query: UNKNOWN → manual review. 5xxx codes at query refuse the query itself
        // (sign, IP, params) and say nothing about the order.
        _ => Outcome::Unknown {
            reason: reason(code),
        },
    }
}

/// `resultno` in a callback: only 1 and 9 are acted on (callback section: "Anything else is UNKNOWN").
pub fn classify_callback(code: &str, provider_ref: Option<String>) -> Outcome {
    match code {
        "1" => Outcome::Succeeded { provider_ref },
        "9" => Outcome::Failed {
            failover_allowed: true,
            reason: reason(code),
        },
        _ => Outcome::Unknown {
            reason: reason(code),
        },
    }
}

//! What a product delivers: decides how its account is validated, which protocols can serve it, and how a
//! protocol encodes its account (electricity on the 001 family).

use serde::{Deserialize, Serialize};

/// What a product delivers, and so how its account is validated and which protocols can serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// 话费快充
    MobileFast,
    /// 话费慢充
    MobileSlow,
    /// 游戏直充
    Game,
    /// 电费 (国网 / 南网)
    Electricity,
    /// 会员直充
    Vip,
    /// Carrier billing, MP flow: the user sends SMS.
    BillingSms,
    /// Carrier billing, PC flow: the user enters a verification code.
    BillingCode,
}

impl ProductKind {
    pub fn is_mobile_number(self) -> bool {
        match self {
            ProductKind::MobileFast
            | ProductKind::MobileSlow
            | ProductKind::BillingSms
            | ProductKind::BillingCode => true,
            ProductKind::Game | ProductKind::Electricity | ProductKind::Vip => false,
        }
    }

    /// How long an attempt of this kind may stay open without a definite answer before an operator must look
    /// at it (docs/operations.md §2): fast products 30 minutes, slow ones (slow top-ups, electricity) 72 hours.
    pub fn escalate_after(self) -> std::time::Duration {
        let minutes = match self {
            ProductKind::MobileFast
            | ProductKind::Game
            | ProductKind::Vip
            | ProductKind::BillingSms
            | ProductKind::BillingCode => 30,
            ProductKind::MobileSlow | ProductKind::Electricity => 72 * 60,
        };
        std::time::Duration::from_secs(minutes * 60)
    }

    /// Carrier billing needs a two-step protocol; everything else needs a one-step one.
    pub fn needs_two_step(self) -> bool {
        match self {
            ProductKind::BillingSms | ProductKind::BillingCode => true,
            ProductKind::MobileFast
            | ProductKind::MobileSlow
            | ProductKind::Game
            | ProductKind::Electricity
            | ProductKind::Vip => false,
        }
    }
}

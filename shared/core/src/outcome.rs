//! What a provider said about one attempt, once an adapter has classified it (docs/providers/README.md §2). The set is
//! closed: every documented code maps to exactly one of these, and anything unrecognised is `Unknown`, never `Failed`.

use crate::money::Fen;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A provider's code and message, kept for audit and shown (as a failure) to the merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Reason {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Reason {
        Reason {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// One SMS the end user must send for carrier billing (MP flow): `body` to the short code `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsInstruction {
    pub to: String,
    pub body: String,
}

/// What the merchant's user must do before a carrier-billing order can go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextAction {
    /// MP flow: send each message to its short code.
    SendSms { messages: Vec<SmsInstruction> },
    /// PC flow: the user received a code by SMS and must enter it (`POST …/verification`).
    EnterVerificationCode,
}

/// A classified provider answer about one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The provider took the order and is working on it. `provider_ref` is its own order number, if it gave one.
    Accepted {
        provider_ref: Option<String>,
    },
    /// Carrier billing: the user must act (send SMS, enter a code).
    ActionRequired {
        next: NextAction,
        provider_ref: Option<String>,
    },
    Succeeded {
        provider_ref: Option<String>,
    },
    /// Only part of the value arrived (wikeyun 11 部分到账).
    PartiallySucceeded {
        delivered: Fen,
    },
    /// A definite failure after acceptance: the provider refunded it.
    Failed {
        failover_allowed: bool,
        reason: Reason,
    },
    /// A definite refusal before acceptance: nothing was charged.
    Rejected {
        failover_allowed: bool,
        reason: Reason,
    },
    /// Timeout, transport error, 5xx, unparsable body, an "unknown" or "duplicate" code: nothing is known.
    Unknown {
        reason: Reason,
    },
    /// A query found no such order. Not a failure until the grace window has passed (invariant 3).
    NotFound,
    /// The provider took back value it had delivered (wikeyun 10 返销).
    Reversed {
        reason: Reason,
    },
}

/// Where an outcome came from. Queries advance the polling schedule even when they change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Submit,
    Query,
    Callback,
    /// A person, with evidence, through an operator tool.
    Operator,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Submit => "submit",
            Source::Query => "query",
            Source::Callback => "callback",
            Source::Operator => "operator",
        }
    }
}

/// Amounts a provider reported about one attempt (docs/providers/README.md §4 rule 5): kept on the attempt for the
/// daily reconciliation. Nothing is decided on them alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    /// What the provider says it charges us (001 `ordercash`, 002 `cost_price`, 004 `settlementPrice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Fen>,
    /// The face value it says it delivers (002 `amount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face: Option<Fen>,
    /// What it says arrived (002 `arrived_amount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<Fen>,
    /// How many units it says it sold (001 `num`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
}

impl Reported {
    pub fn is_empty(&self) -> bool {
        self == &Reported::default()
    }

    /// `self` with every amount `newer` states replacing the one held. True when anything changed.
    pub fn merge(&mut self, newer: &Reported) -> bool {
        let before = self.clone();
        if newer.cost.is_some() {
            self.cost = newer.cost;
        }
        if newer.face.is_some() {
            self.face = newer.face;
        }
        if newer.delivered.is_some() {
            self.delivered = newer.delivered;
        }
        if newer.quantity.is_some() {
            self.quantity = newer.quantity;
        }
        *self != before
    }
}

/// Something in a provider's answer that does not fit the attempt it is about (docs/providers/README.md §4 rule 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The answer names another order than the attempt it answers: it is treated as Unknown.
    ForeignOrder { echoed: String },
    /// The reported cost is not the route's cost.
    CostMismatch { reported: Fen, route: Fen },
    /// The reported face value is not the order's.
    FaceMismatch { reported: Fen, expected: Fen },
    /// The reported quantity is not the route's.
    QuantityMismatch { reported: u32, expected: u32 },
    /// More arrived (or is said to have arrived) than the order's face value: treated as Unknown.
    DeliveredAboveFace { delivered: Fen, face: Fen },
}

impl Finding {
    pub fn as_str(&self) -> &'static str {
        match self {
            Finding::ForeignOrder { .. } => "foreign_order",
            Finding::CostMismatch { .. } => "cost_mismatch",
            Finding::FaceMismatch { .. } => "face_mismatch",
            Finding::QuantityMismatch { .. } => "quantity_mismatch",
            Finding::DeliveredAboveFace { .. } => "delivered_above_face",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ForeignOrder { echoed } => write!(f, "answer names order {echoed}"),
            Finding::CostMismatch { reported, route } => {
                write!(f, "reported cost {reported} yuan, route cost {route} yuan")
            }
            Finding::FaceMismatch { reported, expected } => {
                write!(
                    f,
                    "reported face value {reported} yuan, order {expected} yuan"
                )
            }
            Finding::QuantityMismatch { reported, expected } => {
                write!(f, "reported quantity {reported}, route {expected}")
            }
            Finding::DeliveredAboveFace { delivered, face } => {
                write!(
                    f,
                    "reported delivery {delivered} yuan above face value {face} yuan"
                )
            }
        }
    }
}

/// What came with an outcome besides the outcome itself: the reported amounts and what did not fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub reported: Reported,
    pub findings: Vec<Finding>,
}

//! What a provider said about one attempt, once an adapter has classified it (DESIGN §4). The set is closed:
//! every documented code maps to exactly one of these, and anything unrecognised is `Unknown`, never `Failed`.

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

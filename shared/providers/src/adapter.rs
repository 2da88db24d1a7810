//! The adapter contract every protocol implements (docs/providers/README.md §2), and the helpers the adapters share for
//! turning HTTP trouble into `Outcome::Unknown`.

use crate::codec::CodecError;
use crate::codes::{Classified, Meaning, Unlisted};
use crate::http::{HttpRequest, HttpResponse, RawCallback};
use recharge_core::mask::mask;
use recharge_core::{AttemptId, Fen, Outcome, ProductKind, Reason, Reported, Route, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a protocol can do; drives routing and recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// A query can find the order by our provider-facing id alone.
    pub query_by_our_id: bool,
    /// The provider refuses a second order with the same id (so a resubmit is a safe probe).
    pub dedupes_our_id: bool,
    pub sends_callbacks: bool,
    /// Callbacks carry a signature we verify (false: a callback is only a hint to query).
    pub callback_signed: bool,
    pub has_balance: bool,
    /// Carrier billing: the user must act between submit and result.
    pub two_step: bool,
    /// The provider can switch channels itself on failure (wikeyun `change`); we send "off".
    pub provider_side_failover: bool,
}

/// Everything a builder needs to submit one attempt.
#[derive(Clone, PartialEq, Eq)]
pub struct SubmitRequest {
    /// Our provider-facing order id (unique per attempt).
    pub attempt: AttemptId,
    pub route: Route,
    /// What the product delivers: a protocol may encode the account by kind (001 electricity).
    pub kind: ProductKind,
    /// The account to top up (phone number, game account, electricity 户号, …), as the merchant sent it.
    pub account: String,
    pub face_value: Fen,
    /// The extras the catalog lets the merchant send for this product (`areaid`, `imsi`, the electricity
    /// region, …). Nothing that decides what is delivered (quantity, fast/slow, supplier, product) is read
    /// from here: that comes from the route (docs/providers/README.md §4 rule 6).
    pub extra: BTreeMap<String, String>,
    /// Where the provider should send its callback, if the protocol takes one per order.
    pub callback_url: Option<String>,
}

/// Phone and ID numbers are personal data: Debug masks the account and every extra value.
impl fmt::Debug for SubmitRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: BTreeMap<&str, String> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), mask(v)))
            .collect();
        f.debug_struct("SubmitRequest")
            .field("attempt", &self.attempt)
            .field("route", &self.route)
            .field("kind", &self.kind)
            .field("account", &mask(&self.account))
            .field("face_value", &self.face_value)
            .field("extra", &extra)
            .field("callback_url", &self.callback_url)
            .finish()
    }
}

/// A query for one attempt. `provider_ref` is the provider's own number, when it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    pub attempt: AttemptId,
    pub provider_ref: Option<String>,
}

/// The second step of carrier billing: the code the user received.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationRequest {
    pub attempt: AttemptId,
    /// The provider's order id from the first step.
    pub provider_ref: String,
    pub code: String,
}

impl fmt::Debug for VerificationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationRequest")
            .field("attempt", &self.attempt)
            .field("provider_ref", &self.provider_ref)
            .field("code", &"****")
            .finish()
    }
}

/// The inputs that vary per request and would make builders impure: the time and a fresh nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub now: Timestamp,
    pub nonce: String,
}

impl RequestContext {
    /// A context with a random UUID-shaped nonce (004 requires a different nonce on every request).
    pub fn fresh(now: Timestamp) -> Result<RequestContext, AdapterError> {
        use aws_lc_rs::rand::SecureRandom;
        let mut b = [0u8; 16];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| AdapterError::Random)?;
        let hexs: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let nonce = format!(
            "{}-{}-{}-{}-{}",
            &hexs[0..8],
            &hexs[8..12],
            &hexs[12..16],
            &hexs[16..20],
            &hexs[20..32]
        );
        Ok(RequestContext { now, nonce })
    }
}

/// Why a request could not be built. Nothing was sent, so the attempt is not Unknown: the caller records a
/// configuration or input error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("{0} is not supported by this protocol")]
    Unsupported(&'static str),
    #[error("missing input: {0}")]
    Missing(&'static str),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("encoding: {0}")]
    Encoding(#[from] CodecError),
    #[error("signing: {0}")]
    Sign(#[from] crate::sign::SignError),
    #[error("no randomness available")]
    Random,
}

/// A balance answer that is not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    #[error("balance is not supported by this protocol")]
    Unsupported,
    #[error("balance unknown: {0}")]
    Unknown(Reason),
}

/// How far a callback can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackTrust {
    /// The signature verified against our credentials.
    Signed,
    /// The protocol (or this account's options) has no callback signature: treat the event as a hint and
    /// confirm it with a query before acting (docs/providers/wikeyun.md §7).
    Unverified,
}

/// A verified, parsed callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackEvent {
    pub attempt: AttemptId,
    pub outcome: Outcome,
    pub provider_ref: Option<String>,
    pub trust: CallbackTrust,
    /// Amounts the callback reported.
    pub reported: Reported,
    /// The callback's code, when no table lists it.
    pub unlisted: Option<Unlisted>,
}

/// A classified provider answer, with what the registry checks about it before anyone acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub outcome: Outcome,
    /// What the code meant in the account's table, when it was listed there.
    pub meaning: Option<Meaning>,
    /// The order id the answer names as ours (001 `sporderid`, 002 `order_no`, 003 `cstmOrderNo`, 004
    /// `bizCode`), when it names one: an answer about another order is Unknown (docs/providers/README.md §4 rule 5).
    pub echoed: Option<String>,
    /// Amounts the answer reported.
    pub reported: Reported,
    /// The answer's code, when no table lists it.
    pub unlisted: Option<Unlisted>,
}

impl From<Outcome> for Parsed {
    fn from(outcome: Outcome) -> Parsed {
        Parsed {
            outcome,
            meaning: None,
            echoed: None,
            reported: Reported::default(),
            unlisted: None,
        }
    }
}

impl Parsed {
    /// From a code-table lookup; `meaning` is what the table said.
    pub fn classified(c: Classified, meaning: Option<Meaning>) -> Parsed {
        Parsed {
            outcome: c.outcome,
            meaning,
            echoed: None,
            reported: Reported::default(),
            unlisted: c.unlisted,
        }
    }

    pub fn echoing(mut self, echoed: Option<String>) -> Parsed {
        self.echoed = echoed.filter(|s| !s.is_empty());
        self
    }

    pub fn reporting(mut self, reported: Reported) -> Parsed {
        self.reported = reported;
        self
    }
}

/// Why a callback was refused. Refused callbacks get a non-acknowledging reply, so the provider retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("this protocol sends no callbacks")]
    Unsupported,
    #[error("body refused: {0}")]
    Body(#[from] CodecError),
    #[error("signature missing")]
    MissingSignature,
    #[error("signature does not verify")]
    BadSignature,
    #[error("callback is for another merchant account")]
    WrongAccount,
    #[error("malformed callback: {0}")]
    Malformed(String),
}

/// Whether we took a callback (verified and persisted) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAck {
    Accepted,
    Rejected,
}

/// The contract of one protocol family. Builders and parsers are pure; the executor does the I/O.
pub trait ProviderAdapter: Send + Sync + fmt::Debug {
    fn capabilities(&self) -> Capabilities;

    /// The exact submit request for one attempt.
    fn build_submit(
        &self,
        req: &SubmitRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError>;

    /// Classifies a submit answer. Total: every input yields an outcome; unrecognised means `Unknown`.
    fn parse_submit(&self, resp: &HttpResponse) -> Parsed;

    /// The query for one attempt. `Unsupported` where the protocol has no query.
    fn build_query(
        &self,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError>;

    /// Whether the protocol has a query at all (carrier billing has none: only its sync reports a result).
    fn has_query(&self) -> bool {
        true
    }

    /// Classifies a query answer. "Not found" is `NotFound`; the grace window is applied by the state machine.
    fn parse_query(&self, resp: &HttpResponse) -> Parsed;

    /// The balance request, or `Unsupported`.
    fn build_balance(&self, ctx: &RequestContext) -> Result<HttpRequest, AdapterError>;

    fn parse_balance(&self, resp: &HttpResponse) -> Result<Fen, BalanceError>;

    /// Second step of a two-step protocol (carrier billing verification code).
    fn build_verification(
        &self,
        _req: &VerificationRequest,
        _ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        Err(AdapterError::Unsupported("verification"))
    }

    fn parse_verification(&self, _resp: &HttpResponse) -> Parsed {
        unknown("unsupported", "this protocol has no verification step").into()
    }

    /// Whether `text` can be sent on this account's wire (a GBK form cannot carry every character): checked
    /// when the order is created, so the merchant gets a 400 rather than a failed order.
    fn text_fits(&self, _text: &str) -> bool {
        true
    }

    /// Verifies the callback's signature over the raw bytes first, then parses it. Nothing from the request
    /// is trusted before the signature checks out.
    fn verify_and_parse_callback(&self, raw: &RawCallback) -> Result<CallbackEvent, CallbackError>;

    /// The exact reply the provider expects. `Rejected` gets a reply the provider treats as "retry".
    fn callback_ack(&self, ack: CallbackAck) -> HttpResponse;
}

/// The balance endpoint of an account that may have none: without one there is no balance API to ask.
pub fn balance_endpoint(url: Option<&str>) -> Result<&str, AdapterError> {
    url.ok_or(AdapterError::Unsupported(
        "balance (no endpoint configured)",
    ))
}

/// `Outcome::Unknown` with a reason.
pub fn unknown(code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Unknown {
        reason: Reason::new(code, message),
    }
}

/// Shared first look at a response: 5xx, other non-2xx and bodies over the cap are `Unknown` before anything
/// decodes them.
pub fn precheck(resp: &HttpResponse, cap: usize) -> Result<&[u8], Outcome> {
    if resp.status >= 500 {
        return Err(unknown(
            "http_5xx",
            format!("HTTP {} from provider", resp.status),
        ));
    }
    if !(200..300).contains(&resp.status) {
        return Err(unknown(
            "http_status",
            format!("HTTP {} from provider", resp.status),
        ));
    }
    if resp.body.len() > cap {
        return Err(unknown(
            "body_too_large",
            format!("{} bytes over the cap of {cap}", resp.body.len()),
        ));
    }
    Ok(&resp.body)
}

/// Parses a provider-facing id from a callback into our attempt id.
pub fn attempt_from(value: Option<&str>) -> Result<AttemptId, CallbackError> {
    let v = value.ok_or_else(|| CallbackError::Malformed("order id missing".to_owned()))?;
    AttemptId::parse(v).map_err(|e| CallbackError::Malformed(e.to_string()))
}

/// Default response body cap (1 MiB): provider answers are a few hundred bytes.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

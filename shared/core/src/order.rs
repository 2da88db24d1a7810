//! The order and its provider attempts (docs/state-machine.md §1). Fields are private: an order changes only through
//! `machine::apply`, which keeps the invariants. The order's resolution, public status and due time are
//! derived from the attempts, never stored on their own, so they cannot disagree with them.

use crate::ids::{
    AppId, AttemptId, AttemptNo, MerchantOrderNo, OrderId, ProductCode, ProviderAccountId,
};
use crate::mask::mask;
use crate::money::Fen;
use crate::outcome::{NextAction, Reason, Reported};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One route of the catalog chosen for an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub provider_account: ProviderAccountId,
    /// The provider's own product code for this product (`productid`, `money`, …).
    pub provider_product: String,
    /// What the provider charges us.
    pub cost: Fen,
}

/// The state of one provider attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AttemptState {
    /// Written before the provider is called (invariant 1).
    Submitting,
    Accepted,
    ActionRequired {
        next: NextAction,
    },
    /// Nothing is known: only a query, a verified callback or an operator moves it on (invariant 3).
    Unknown {
        reason: Reason,
    },
    Rejected {
        failover_allowed: bool,
        reason: Reason,
    },
    Failed {
        failover_allowed: bool,
        reason: Reason,
    },
    Succeeded,
    PartiallySucceeded {
        delivered: Fen,
    },
    Reversed {
        reason: Reason,
    },
}

impl AttemptState {
    /// Open attempts may still deliver; at most one is open at a time (invariant 2).
    pub fn is_open(&self) -> bool {
        match self {
            AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::ActionRequired { .. }
            | AttemptState::Unknown { .. } => true,
            AttemptState::Rejected { .. }
            | AttemptState::Failed { .. }
            | AttemptState::Succeeded
            | AttemptState::PartiallySucceeded { .. }
            | AttemptState::Reversed { .. } => false,
        }
    }

    /// A definite failure: nothing was delivered and nothing will be. `Some(failover_allowed)`.
    pub fn definite_failure(&self) -> Option<(bool, &Reason)> {
        match self {
            AttemptState::Rejected {
                failover_allowed,
                reason,
            }
            | AttemptState::Failed {
                failover_allowed,
                reason,
            } => Some((*failover_allowed, reason)),
            AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::ActionRequired { .. }
            | AttemptState::Unknown { .. }
            | AttemptState::Succeeded
            | AttemptState::PartiallySucceeded { .. }
            | AttemptState::Reversed { .. } => None,
        }
    }

    /// Value reached the end user (perhaps later taken back).
    pub fn delivered(&self) -> bool {
        match self {
            AttemptState::Succeeded
            | AttemptState::PartiallySucceeded { .. }
            | AttemptState::Reversed { .. } => true,
            AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::ActionRequired { .. }
            | AttemptState::Unknown { .. }
            | AttemptState::Rejected { .. }
            | AttemptState::Failed { .. } => false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            AttemptState::Submitting => "submitting",
            AttemptState::Accepted => "accepted",
            AttemptState::ActionRequired { .. } => "action_required",
            AttemptState::Unknown { .. } => "unknown",
            AttemptState::Rejected { .. } => "rejected",
            AttemptState::Failed { .. } => "failed",
            AttemptState::Succeeded => "succeeded",
            AttemptState::PartiallySucceeded { .. } => "partially_succeeded",
            AttemptState::Reversed { .. } => "reversed",
        }
    }
}

/// How often a query has answered "not found", and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotFoundTrack {
    pub first_at: Timestamp,
    pub answers: u32,
}

/// One try at one provider account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub(crate) no: AttemptNo,
    pub(crate) route: Route,
    pub(crate) state: AttemptState,
    /// The provider's own order number, once it told us.
    pub(crate) provider_ref: Option<String>,
    pub(crate) opened_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    /// Queries answered so far; drives the backoff.
    pub(crate) polls: u32,
    /// When the sweep must look at this attempt next while it is open: for `Submitting`, the call deadline
    /// after which a crash or a lost answer is assumed (it then becomes `Unknown`); after that, the next poll.
    pub(crate) next_poll_at: Option<Timestamp>,
    pub(crate) not_found: Option<NotFoundTrack>,
    /// The provider showed it knows this attempt (accepted it, named its own number, or reported a result).
    /// "Not found" never fails an attempt once this is set (docs/providers/README.md §4 rule 4).
    #[serde(default)]
    pub(crate) acknowledged: bool,
    /// The amounts the provider reported, newest per field (docs/providers/README.md §4 rule 5), for reconciliation.
    #[serde(default, skip_serializing_if = "Reported::is_empty")]
    pub(crate) reported: Reported,
    /// Results we received but could not verify, on a protocol that cannot be queried: kept (masked, newest
    /// last, at most [`MAX_UNVERIFIED`]) for the operator who settles the attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) unverified: Vec<UnverifiedResult>,
}

/// How many unverified results an attempt keeps.
pub const MAX_UNVERIFIED: usize = 5;

/// A result that reached us without a signature we could check, on a protocol with no query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnverifiedResult {
    pub at: Timestamp,
    /// The raw content as received, with phone and ID numbers masked.
    pub content: String,
}

impl Attempt {
    pub fn no(&self) -> AttemptNo {
        self.no
    }
    pub fn route(&self) -> &Route {
        &self.route
    }
    pub fn state(&self) -> &AttemptState {
        &self.state
    }
    pub fn provider_ref(&self) -> Option<&str> {
        self.provider_ref.as_deref()
    }
    pub fn opened_at(&self) -> Timestamp {
        self.opened_at
    }
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    pub fn polls(&self) -> u32 {
        self.polls
    }
    pub fn not_found(&self) -> Option<NotFoundTrack> {
        self.not_found
    }
    pub fn acknowledged(&self) -> bool {
        self.acknowledged
    }
    pub fn reported(&self) -> &Reported {
        &self.reported
    }
    pub fn unverified(&self) -> &[UnverifiedResult] {
        &self.unverified
    }
}

/// Where the order as a whole stands. Derived from the attempts (see `Order::resolution`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
pub enum Resolution {
    Open,
    Succeeded,
    PartiallySucceeded { delivered: Fen },
    Failed { reason: Reason },
    Reversed { reason: Reason },
}

impl Resolution {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Resolution::Open)
    }
}

/// The status a merchant sees (docs/state-machine.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicStatus {
    Processing,
    ActionRequired,
    Succeeded,
    PartiallySucceeded,
    Failed,
    Reversed,
}

impl PublicStatus {
    pub const ALL: [PublicStatus; 6] = [
        PublicStatus::Processing,
        PublicStatus::ActionRequired,
        PublicStatus::Succeeded,
        PublicStatus::PartiallySucceeded,
        PublicStatus::Failed,
        PublicStatus::Reversed,
    ];

    pub fn parse(s: &str) -> Option<PublicStatus> {
        PublicStatus::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PublicStatus::Processing => "processing",
            PublicStatus::ActionRequired => "action_required",
            PublicStatus::Succeeded => "succeeded",
            PublicStatus::PartiallySucceeded => "partially_succeeded",
            PublicStatus::Failed => "failed",
            PublicStatus::Reversed => "reversed",
        }
    }
}

/// Everything a merchant can see change. `sequence` grows exactly when this does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicView {
    pub status: PublicStatus,
    pub next_action: Option<NextAction>,
    pub delivered_fen: Option<Fen>,
    pub failure: Option<Reason>,
}

/// Something an operator must look at: raised as an alert (log + metric) when it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub at: Timestamp,
    pub attempt: AttemptNo,
    pub kind: AnomalyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A definitely failed attempt later succeeded: double-delivery risk if we failed over.
    LateSuccessAfterFailure,
    /// A second attempt of the same order delivered value.
    SecondDelivery,
    /// Delivered value was taken back (返销).
    Reversal,
    /// Only part of the value arrived.
    PartialDelivery,
    /// A provider answer named another order than the attempt it answered (docs/providers/README.md §4 rule 5).
    ForeignAnswer,
    /// A reported amount (cost, face value, quantity, delivery) does not fit the route or the order.
    AmountMismatch,
    /// A result arrived that could not be verified and cannot be confirmed by a query: an operator decides.
    UnverifiedResult,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::LateSuccessAfterFailure => "late_success_after_failure",
            AnomalyKind::SecondDelivery => "second_delivery",
            AnomalyKind::Reversal => "reversal",
            AnomalyKind::PartialDelivery => "partial_delivery",
            AnomalyKind::ForeignAnswer => "foreign_answer",
            AnomalyKind::AmountMismatch => "amount_mismatch",
            AnomalyKind::UnverifiedResult => "unverified_result",
        }
    }
}

/// What a merchant asked for, validated at the edge.
#[derive(Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub app_id: AppId,
    pub merchant_order_no: MerchantOrderNo,
    pub product_code: ProductCode,
    /// The account to credit: a phone number, a game account, an electricity account number.
    pub account: String,
    /// Product-specific fields (electricity region and account type, game server, …).
    pub extra: BTreeMap<String, String>,
    pub face_value: Fen,
    pub notify_url: Option<String>,
    /// Lowercase hex SHA-256 of the canonical request: a replay must match it, or it is a 409 conflict.
    pub request_digest: String,
}

impl fmt::Debug for NewOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewOrder")
            .field("app_id", &self.app_id)
            .field("merchant_order_no", &self.merchant_order_no)
            .field("product_code", &self.product_code)
            .field("account", &mask(&self.account))
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .field("face_value", &self.face_value)
            .finish_non_exhaustive()
    }
}

/// An order: what the merchant asked for, every provider attempt, and the optimistic-concurrency version.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub(crate) id: OrderId,
    pub(crate) app_id: AppId,
    pub(crate) merchant_order_no: MerchantOrderNo,
    pub(crate) product_code: ProductCode,
    pub(crate) account: String,
    pub(crate) extra: BTreeMap<String, String>,
    pub(crate) face_value: Fen,
    pub(crate) notify_url: Option<String>,
    pub(crate) request_digest: String,
    pub(crate) attempts: Vec<Attempt>,
    /// Set when routing found no further candidate after a definite failure.
    pub(crate) routes_exhausted: Option<Reason>,
    pub(crate) anomalies: Vec<Anomaly>,
    /// Grows by one with every stored change; the condition of every write (invariant 5).
    pub(crate) version: u64,
    /// Grows by one with every change of the public view.
    pub(crate) sequence: u64,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    /// Highest sequence the merchant has acknowledged (a 2xx to its notification).
    #[serde(default)]
    pub(crate) notified_sequence: u64,
    /// Failed deliveries of the current notification; drives the retry schedule.
    #[serde(default)]
    pub(crate) notify_attempts: u32,
    /// When to (re)send the notification of the current sequence; `None` when nothing is to be sent.
    #[serde(default)]
    pub(crate) notify_next_at: Option<Timestamp>,
    /// How long an attempt may stay open without a definite answer before an operator must look at it
    /// (docs/operations.md §2); chosen at creation from the product kind or the account's configuration. `None` (orders
    /// written before it existed): [`DEFAULT_ESCALATE_AFTER`].
    #[serde(default)]
    pub(crate) escalate_after_secs: Option<u64>,
}

/// The escalation limit of an order that was given none (the fast top-up default of docs/operations.md §2).
pub const DEFAULT_ESCALATE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Why an order is (or will be) in the operator queue (docs/operations.md §2: every order has an owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// An attempt has stayed `submitting`, `accepted` or `unknown` (or a carrier-billing order has waited for
    /// its SMS) longer than the order's escalation limit.
    StuckAttempt,
    /// The merchant's notification of the current status was abandoned after the whole retry schedule.
    NotificationAbandoned,
}

impl Attention {
    pub fn as_str(self) -> &'static str {
        match self {
            Attention::StuckAttempt => "stuck_attempt",
            Attention::NotificationAbandoned => "notification_abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Attention> {
        match s {
            "stuck_attempt" => Some(Attention::StuckAttempt),
            "notification_abandoned" => Some(Attention::NotificationAbandoned),
            _ => None,
        }
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Order")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("merchant_order_no", &self.merchant_order_no)
            .field("product_code", &self.product_code)
            .field("account", &mask(&self.account))
            .field("attempts", &self.attempts)
            .field("resolution", &self.resolution())
            .field("version", &self.version)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl Order {
    /// The order as first written: version 1, attempt 1 `Submitting` on `route` (invariant 1: the create is
    /// the write that precedes the first provider call).
    pub fn new(new: NewOrder, route: Route, now: Timestamp, call_timeout: Duration) -> Order {
        let id = OrderId::derive(&new.app_id, &new.merchant_order_no);
        Order {
            id,
            app_id: new.app_id,
            merchant_order_no: new.merchant_order_no,
            product_code: new.product_code,
            account: new.account,
            extra: new.extra,
            face_value: new.face_value,
            notify_url: new.notify_url,
            request_digest: new.request_digest,
            attempts: vec![Attempt::open(AttemptNo::FIRST, route, now, call_timeout)],
            routes_exhausted: None,
            anomalies: Vec::new(),
            version: 1,
            sequence: 1,
            created_at: now,
            updated_at: now,
            notified_sequence: 0,
            notify_attempts: 0,
            notify_next_at: None,
            escalate_after_secs: None,
        }
    }

    /// The same fresh order with its escalation limit set. Only for an order not yet stored (version 1): the
    /// limit is part of what the create writes, never changed afterwards.
    pub fn with_escalation(mut self, after: Duration) -> Order {
        if self.version == 1 {
            self.escalate_after_secs = Some(after.as_secs());
        }
        self
    }

    /// How long an attempt of this order may stay open without a definite answer.
    pub fn escalate_after(&self) -> Duration {
        self.escalate_after_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_ESCALATE_AFTER)
    }

    /// The merchant's notification of the current view was given up after the whole retry schedule (and
    /// nothing newer is pending): only an operator's redelivery will tell the merchant.
    pub fn notification_abandoned(&self) -> bool {
        self.notify_url.is_some()
            && self.notified_sequence < self.sequence
            && self.notify_next_at.is_none()
            && self.notify_attempts > 0
    }

    /// When this order enters the operator queue, and why: the open attempt's opening time plus the
    /// escalation limit (an attempt `submitting`, `accepted` or `unknown`, or a carrier-billing order waiting
    /// for its SMS; a PC order waiting for its code expires instead), or the time its notification was
    /// abandoned; the earlier of the two. Derived from the order alone, so a store can index it at every
    /// write and list the queue with a query: an order is in the queue while this time is at or before now.
    pub fn attention(&self) -> Option<(Timestamp, Attention)> {
        let stuck = self.open_attempt().and_then(|a| match &a.state {
            AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::Unknown { .. }
            | AttemptState::ActionRequired {
                next: NextAction::SendSms { .. },
            } => Some((
                a.opened_at.plus(self.escalate_after()),
                Attention::StuckAttempt,
            )),
            AttemptState::ActionRequired {
                next: NextAction::EnterVerificationCode,
            }
            | AttemptState::Rejected { .. }
            | AttemptState::Failed { .. }
            | AttemptState::Succeeded
            | AttemptState::PartiallySucceeded { .. }
            | AttemptState::Reversed { .. } => None,
        });
        let abandoned = self
            .notification_abandoned()
            .then_some((self.updated_at, Attention::NotificationAbandoned));
        match (stuck, abandoned) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// In the operator queue at `now`.
    pub fn needs_operator(&self, now: Timestamp) -> bool {
        self.attention().is_some_and(|(at, _)| at <= now)
    }

    pub fn id(&self) -> &OrderId {
        &self.id
    }
    pub fn app_id(&self) -> &AppId {
        &self.app_id
    }
    pub fn merchant_order_no(&self) -> &MerchantOrderNo {
        &self.merchant_order_no
    }
    pub fn product_code(&self) -> &ProductCode {
        &self.product_code
    }
    pub fn account(&self) -> &str {
        &self.account
    }
    pub fn extra(&self) -> &BTreeMap<String, String> {
        &self.extra
    }
    pub fn face_value(&self) -> Fen {
        self.face_value
    }
    pub fn notify_url(&self) -> Option<&str> {
        self.notify_url.as_deref()
    }
    pub fn request_digest(&self) -> &str {
        &self.request_digest
    }
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }
    /// Why routing gave up after a definite failure, if it did.
    pub fn routes_exhausted(&self) -> Option<&Reason> {
        self.routes_exhausted.as_ref()
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    pub fn notified_sequence(&self) -> u64 {
        self.notified_sequence
    }
    pub fn notify_attempts(&self) -> u32 {
        self.notify_attempts
    }

    /// When the merchant's notification of the current sequence is due, if one is pending.
    pub fn notify_due_at(&self) -> Option<Timestamp> {
        self.notify_url.as_ref()?;
        if self.notified_sequence >= self.sequence {
            return None;
        }
        self.notify_next_at
    }

    pub fn attempt(&self, no: AttemptNo) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.no == no)
    }

    /// The newest attempt. An order always has at least one.
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// The provider-facing id of an attempt of this order.
    pub fn attempt_id(&self, no: AttemptNo) -> AttemptId {
        AttemptId::new(&self.id, no)
    }

    /// The one open attempt, if any.
    pub fn open_attempt(&self) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.state.is_open())
    }

    /// The order's resolution, derived from its attempts: any delivery wins over failures; a failure is final
    /// only when the last attempt definitely failed and no failover is allowed or routing is exhausted.
    pub fn resolution(&self) -> Resolution {
        if self
            .attempts
            .iter()
            .any(|a| a.state == AttemptState::Succeeded)
        {
            return Resolution::Succeeded;
        }
        if let Some(delivered) = self.attempts.iter().find_map(|a| match a.state {
            AttemptState::PartiallySucceeded { delivered } => Some(delivered),
            _ => None,
        }) {
            return Resolution::PartiallySucceeded { delivered };
        }
        if let Some(reason) = self.attempts.iter().find_map(|a| match &a.state {
            AttemptState::Reversed { reason } => Some(reason.clone()),
            _ => None,
        }) {
            return Resolution::Reversed { reason };
        }
        match self.last_attempt().and_then(|a| a.state.definite_failure()) {
            Some((failover_allowed, reason))
                if !failover_allowed || self.routes_exhausted.is_some() =>
            {
                Resolution::Failed {
                    reason: reason.clone(),
                }
            }
            _ => Resolution::Open,
        }
    }

    /// True when the last attempt definitely failed, failover is allowed, and routing has not given up yet:
    /// the next step is to open the next route or to declare the routes exhausted.
    pub fn awaiting_failover(&self) -> bool {
        self.resolution() == Resolution::Open
            && self
                .last_attempt()
                .and_then(|a| a.state.definite_failure())
                .is_some_and(|(allowed, _)| allowed)
    }

    pub fn public_view(&self) -> PublicView {
        let resolution = self.resolution();
        let (status, delivered_fen, failure) = match &resolution {
            Resolution::Open => (PublicStatus::Processing, None, None),
            Resolution::Succeeded => (PublicStatus::Succeeded, Some(self.face_value), None),
            Resolution::PartiallySucceeded { delivered } => {
                (PublicStatus::PartiallySucceeded, Some(*delivered), None)
            }
            Resolution::Failed { reason } => (PublicStatus::Failed, None, Some(reason.clone())),
            Resolution::Reversed { reason } => (PublicStatus::Reversed, None, Some(reason.clone())),
        };
        let next_action = match (&resolution, self.last_attempt().map(|a| &a.state)) {
            (Resolution::Open, Some(AttemptState::ActionRequired { next })) => Some(next.clone()),
            _ => None,
        };
        PublicView {
            status: if next_action.is_some() {
                PublicStatus::ActionRequired
            } else {
                status
            },
            next_action,
            delivered_fen,
            failure,
        }
    }

    /// When the sweep must look at this order next, or `None` when nothing is pending:
    /// a `Submitting` attempt at its call deadline, an open attempt at its next poll, a pending failover now.
    pub fn due_at(&self) -> Option<Timestamp> {
        let work = if let Some(open) = self.open_attempt() {
            open.next_poll_at
        } else if self.awaiting_failover() {
            Some(self.updated_at)
        } else {
            None
        };
        match (work, self.notify_due_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when the order's provider work (not its notification) is due at `now`.
    pub fn work_due(&self, now: Timestamp) -> bool {
        match self.open_attempt() {
            Some(open) => open.next_poll_at.is_some_and(|t| t <= now),
            None => self.awaiting_failover(),
        }
    }
}

impl Attempt {
    pub(crate) fn open(
        no: AttemptNo,
        route: Route,
        now: Timestamp,
        call_timeout: Duration,
    ) -> Attempt {
        Attempt {
            no,
            route,
            state: AttemptState::Submitting,
            provider_ref: None,
            opened_at: now,
            updated_at: now,
            polls: 0,
            next_poll_at: Some(now.plus(call_timeout)),
            not_found: None,
            acknowledged: false,
            reported: Reported::default(),
            unverified: Vec::new(),
        }
    }
}

//! The simulator's books: the merchant balance, every order it recorded (with how many times value was
//! delivered), and every callback attempt with the reply it got. Served at `GET /_sim/orders` and
//! `GET /_sim/callbacks`, and readable in-process through [`crate::RunningSim`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where an order stands on the simulated platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Recorded and accepted; nothing happened yet.
    Accepted,
    /// Being delivered.
    Processing,
    /// Waiting for the user's MO SMS (sms-billing MP) or verification code (sms-billing PC).
    AwaitingUser,
    /// Value delivered.
    Succeeded,
    /// Failed; the price was refunded to the merchant balance.
    Failed,
    /// Delivered, then taken back (wikeyun 10 返销); the price was refunded.
    Reversed,
    /// Part of the value arrived (wikeyun 11 部分到账); the rest of the price was refunded.
    Partial,
}

impl OrderState {
    /// Whether the platform considers the order finished.
    pub fn is_terminal(self) -> bool {
        match self {
            OrderState::Succeeded
            | OrderState::Failed
            | OrderState::Reversed
            | OrderState::Partial => true,
            OrderState::Accepted | OrderState::Processing | OrderState::AwaitingUser => false,
        }
    }
}

/// One order as the simulated platform recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRecord {
    /// The platform's own order id (suka `orderid`, wikeyun `order_number`, 004 `orderCode`, ...).
    pub provider_order_id: String,
    /// The caller's order id (suka `sporderid`, wikeyun `order_no`, 004 `bizCode`, ICE `cstmOrderNo`, ...).
    pub caller_order_id: String,
    /// The account or number topped up.
    pub account: String,
    /// The product id or code as the caller sent it (wikeyun: the `money` value).
    pub product: String,
    /// Face value in fen.
    pub amount_fen: i64,
    /// What the merchant was charged, in fen (debited at acceptance, refunded on failure).
    pub price_fen: i64,
    /// Current state.
    pub state: OrderState,
    /// How many times value was delivered: 0 or 1 unless the simulator is broken.
    pub deliveries: u32,
    /// For a partial delivery, the face value that arrived, in fen.
    pub arrived_fen: Option<i64>,
    /// The script or chaos plan that drives the order (`normal`, `0002`, `chaos:...`).
    pub script: String,
    /// Where callbacks for this order go, if anywhere.
    pub callback_url: Option<String>,
    /// The caller's submit time as sent (suka `spordertime`), echoed in callbacks.
    pub submitted_at: String,
    /// Protocol-specific extra data (sms-billing `cpparam`, ICE `orderId`, ...).
    pub extra: BTreeMap<String, String>,
}

impl OrderRecord {
    /// The value of an extra field.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra.get(name).map(String::as_str)
    }
}

/// One callback attempt and what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackAttempt {
    /// The platform order id the callback was about.
    pub provider_order_id: String,
    /// The caller's order id.
    pub caller_order_id: String,
    /// 1 for the first try of a delivery, then 2, 3, ...
    pub attempt: u32,
    /// The URL called.
    pub target: String,
    /// The state the callback reported.
    pub reported_state: OrderState,
    /// The HTTP status of the reply, if one came.
    pub http_status: Option<u16>,
    /// The reply body (truncated to 200 characters) or the transport error.
    pub reply: String,
    /// Whether the reply was the documented acknowledgement.
    pub acknowledged: bool,
}

/// Why an order could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The caller's order id was already used.
    DuplicateOrderId,
    /// The balance does not cover the price.
    InsufficientBalance,
}

#[derive(Debug, Default)]
struct Books {
    balance_fen: i64,
    orders: Vec<OrderRecord>,
    by_caller: HashMap<String, usize>,
    by_provider: HashMap<String, usize>,
    /// When each order was recorded (same index as `orders`), for late searchability.
    recorded_at: Vec<Instant>,
    /// A broken provider: every success counts two deliveries (proves that campaigns catch it).
    double_deliveries: bool,
    callbacks: Vec<CallbackAttempt>,
}

impl Books {
    fn searchable(&self, i: usize, hidden: Duration) -> Option<OrderRecord> {
        let visible = self
            .recorded_at
            .get(i)
            .is_some_and(|at| at.elapsed() >= hidden);
        if visible {
            self.orders.get(i).cloned()
        } else {
            None
        }
    }
}

/// The ledger, shared by the HTTP handlers and the background tasks.
#[derive(Debug, Default)]
pub struct Ledger {
    books: Mutex<Books>,
}

impl Ledger {
    /// A ledger holding `balance_fen`.
    pub fn new(balance_fen: i64) -> Ledger {
        Ledger {
            books: Mutex::new(Books {
                balance_fen,
                ..Books::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Books> {
        // A panic while holding the lock cannot leave the books half-updated: every update is one assignment
        // sequence without awaits. Keep serving rather than poisoning the whole simulator.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Breaks this ledger on purpose: from now on every success counts two deliveries, as a provider that
    /// delivers twice would show. Only for proving that a campaign's checker catches a double delivery.
    pub fn plant_double_delivery(&self) {
        self.lock().double_deliveries = true;
    }

    /// Current balance in fen.
    pub fn balance_fen(&self) -> i64 {
        self.lock().balance_fen
    }

    /// Records `order`, debiting its price, unless its caller id is taken or the balance is short.
    pub fn record(&self, order: OrderRecord) -> Result<OrderRecord, RecordError> {
        let mut b = self.lock();
        if b.by_caller.contains_key(&order.caller_order_id) {
            return Err(RecordError::DuplicateOrderId);
        }
        if b.balance_fen < order.price_fen {
            return Err(RecordError::InsufficientBalance);
        }
        b.balance_fen -= order.price_fen;
        let idx = b.orders.len();
        b.by_caller.insert(order.caller_order_id.clone(), idx);
        b.by_provider.insert(order.provider_order_id.clone(), idx);
        b.orders.push(order.clone());
        b.recorded_at.push(Instant::now());
        Ok(order)
    }

    /// The order with this platform id.
    pub fn by_provider_id(&self, id: &str) -> Option<OrderRecord> {
        let b = self.lock();
        b.by_provider
            .get(id)
            .and_then(|i| b.orders.get(*i))
            .cloned()
    }

    /// The order with this caller id.
    pub fn by_caller_id(&self, id: &str) -> Option<OrderRecord> {
        let b = self.lock();
        b.by_caller.get(id).and_then(|i| b.orders.get(*i)).cloned()
    }

    /// The order with this caller id as a search sees it: absent until `hidden` has passed since it was
    /// recorded (a dialect's late searchability), though the order exists and may be delivered meanwhile.
    pub fn searchable_by_caller_id(&self, id: &str, hidden: Duration) -> Option<OrderRecord> {
        let b = self.lock();
        b.by_caller.get(id).and_then(|i| b.searchable(*i, hidden))
    }

    /// The order with this platform id as a search sees it (see [`Ledger::searchable_by_caller_id`]).
    pub fn searchable_by_provider_id(&self, id: &str, hidden: Duration) -> Option<OrderRecord> {
        let b = self.lock();
        b.by_provider.get(id).and_then(|i| b.searchable(*i, hidden))
    }

    /// Moves an order to `state`, applying the money side: success counts one delivery, failure and reversal
    /// refund the price, partial refunds the undelivered share. Returns the updated order, or `None` if the id
    /// is unknown.
    pub fn transition(
        &self,
        provider_id: &str,
        state: OrderState,
        arrived_fen: Option<i64>,
    ) -> Option<OrderRecord> {
        let mut b = self.lock();
        let idx = *b.by_provider.get(provider_id)?;
        let order = b.orders.get(idx)?.clone();
        let mut updated = order.clone();
        updated.state = state;
        let double = b.double_deliveries;
        let mut refund = 0;
        match state {
            OrderState::Succeeded => {
                updated.deliveries += if double { 2 } else { 1 };
            }
            OrderState::Failed => refund = order.price_fen,
            // The value was delivered, then taken back: the delivery count stays, the merchant gets its money.
            OrderState::Reversed => refund = order.price_fen,
            OrderState::Partial => {
                let arrived = arrived_fen.unwrap_or(0).clamp(0, order.amount_fen);
                updated.arrived_fen = Some(arrived);
                updated.deliveries += 1;
                if order.amount_fen > 0 {
                    refund = order.price_fen - order.price_fen * arrived / order.amount_fen;
                }
            }
            OrderState::Accepted | OrderState::Processing | OrderState::AwaitingUser => {}
        }
        b.balance_fen += refund;
        if let Some(slot) = b.orders.get_mut(idx) {
            *slot = updated.clone();
        }
        Some(updated)
    }

    /// Replaces an order's extra fields.
    pub fn set_extra(&self, provider_id: &str, name: &str, value: &str) {
        let mut b = self.lock();
        let Some(idx) = b.by_provider.get(provider_id).copied() else {
            return;
        };
        if let Some(o) = b.orders.get_mut(idx) {
            o.extra.insert(name.to_owned(), value.to_owned());
        }
    }

    /// Appends a callback attempt.
    pub fn push_callback(&self, attempt: CallbackAttempt) {
        self.lock().callbacks.push(attempt);
    }

    /// All orders, in the order they were recorded.
    pub fn orders(&self) -> Vec<OrderRecord> {
        self.lock().orders.clone()
    }

    /// All callback attempts, in the order they were made.
    pub fn callbacks(&self) -> Vec<CallbackAttempt> {
        self.lock().callbacks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(caller: &str, price: i64) -> OrderRecord {
        OrderRecord {
            provider_order_id: format!("P{caller}"),
            caller_order_id: caller.into(),
            account: "13800138000".into(),
            product: "p".into(),
            amount_fen: 10_000,
            price_fen: price,
            state: OrderState::Accepted,
            deliveries: 0,
            arrived_fen: None,
            script: "normal".into(),
            callback_url: None,
            submitted_at: String::new(),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn recording_debits_and_refuses_duplicates_and_short_balances() {
        let l = Ledger::new(15_000);
        assert!(l.record(order("a", 9_850)).is_ok());
        assert_eq!(l.balance_fen(), 5_150);
        assert_eq!(l.record(order("a", 1)), Err(RecordError::DuplicateOrderId));
        assert_eq!(
            l.record(order("b", 9_850)),
            Err(RecordError::InsufficientBalance)
        );
        assert_eq!(l.balance_fen(), 5_150);
    }

    #[test]
    fn failure_refunds_and_partial_refunds_the_undelivered_share() {
        let l = Ledger::new(20_000);
        l.record(order("a", 10_000)).unwrap();
        l.record(order("b", 10_000)).unwrap();
        let failed = l.transition("Pa", OrderState::Failed, None).unwrap();
        assert_eq!(failed.deliveries, 0);
        assert_eq!(l.balance_fen(), 10_000);
        let partial = l
            .transition("Pb", OrderState::Partial, Some(3_000))
            .unwrap();
        assert_eq!(partial.arrived_fen, Some(3_000));
        assert_eq!(l.balance_fen(), 17_000);
    }
}

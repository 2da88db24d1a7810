//! The simulator's books: the merchant balance, every order it recorded (with how many times value was
//! delivered), and every callback attempt with the reply it got. Served at `GET /_sim/orders` and
//! `GET /_sim/callbacks`, and readable in-process through [`crate::RunningSim`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where an order stands on the simulated platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    /// Every change of the balance, in order (`GET /_sim/balance/history`).
    movements: Vec<Movement>,
    /// Foreign orders planted so far (their caller ids are `foreign-<n>`).
    foreign: u64,
}

impl Books {
    fn move_balance(&mut self, delta_fen: i64, reason: &str, caller_order_id: Option<&str>) {
        self.balance_fen += delta_fen;
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.movements.push(Movement {
            at_ms,
            delta_fen,
            balance_fen: self.balance_fen,
            reason: reason.to_owned(),
            caller_order_id: caller_order_id.map(str::to_owned),
        });
    }
}

/// One change of the merchant balance: the ledger's own history, which every balance answer agrees with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Movement {
    /// Wall-clock milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Positive: money in (refund, top-up); negative: a debit.
    pub delta_fen: i64,
    /// The balance after the change.
    pub balance_fen: i64,
    /// `debit`, `refund`, `top_up`, `foreign_order`.
    pub reason: String,
    pub caller_order_id: Option<String>,
}

/// What `overcharge` the script `0011` adds to the agreed price: the provider charges (and reports) more than
/// the route's cost, which only the daily reconciliation's price check notices.
pub const OVERCHARGE_FEN: i64 = 100;

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

    /// Every change of the balance so far, oldest first.
    pub fn movements(&self) -> Vec<Movement> {
        self.lock().movements.clone()
    }

    /// The merchant paid money in (`POST /_sim/balance/top-up`): the balance rises with no order. Returns the
    /// new balance.
    pub fn top_up(&self, fen: i64) -> i64 {
        let mut b = self.lock();
        b.move_balance(fen, "top_up", None);
        b.balance_fen
    }

    /// An order the platform has and the caller never sent (`POST /_sim/foreign-order`): recorded as
    /// delivered and debited, as a leaked key or a second system on the same account would show. Only the
    /// balance tells the caller. Returns the record, or why it could not be recorded.
    pub fn plant_foreign_order(&self, price_fen: i64) -> Result<OrderRecord, RecordError> {
        let mut b = self.lock();
        if b.balance_fen < price_fen {
            return Err(RecordError::InsufficientBalance);
        }
        b.foreign += 1;
        let caller = format!("foreign-{}", b.foreign);
        b.move_balance(-price_fen, "foreign_order", Some(&caller));
        let order = OrderRecord {
            provider_order_id: format!("F{}", b.foreign),
            caller_order_id: caller.clone(),
            account: "foreign".into(),
            product: "foreign".into(),
            amount_fen: price_fen,
            price_fen,
            state: OrderState::Succeeded,
            deliveries: 1,
            arrived_fen: None,
            script: "foreign".into(),
            callback_url: None,
            submitted_at: String::new(),
            extra: BTreeMap::new(),
        };
        let idx = b.orders.len();
        b.by_caller.insert(caller, idx);
        b.by_provider.insert(order.provider_order_id.clone(), idx);
        b.orders.push(order.clone());
        b.recorded_at.push(Instant::now());
        Ok(order)
    }

    /// Changes a final order on the platform's side, with no callback (`POST
    /// /_sim/orders/{caller_order_id}/change`): a success reversed (返销) or failed after the fact, with the
    /// refund. Only a query shows it. `None` if the order is unknown or not final.
    pub fn change_after_final(
        &self,
        caller_order_id: &str,
        state: OrderState,
    ) -> Option<OrderRecord> {
        let provider_id = {
            let b = self.lock();
            let order = b
                .by_caller
                .get(caller_order_id)
                .and_then(|i| b.orders.get(*i))?;
            if !order.state.is_terminal() || order.state == state {
                return None;
            }
            order.provider_order_id.clone()
        };
        match state {
            OrderState::Reversed | OrderState::Failed => self.transition(&provider_id, state, None),
            OrderState::Succeeded
            | OrderState::Partial
            | OrderState::Accepted
            | OrderState::Processing
            | OrderState::AwaitingUser => None,
        }
    }

    /// Records `order`, debiting its price, unless its caller id is taken or the balance is short.
    pub fn record(&self, order: OrderRecord) -> Result<OrderRecord, RecordError> {
        let mut b = self.lock();
        if b.by_caller.contains_key(&order.caller_order_id) {
            return Err(RecordError::DuplicateOrderId);
        }
        let mut order = order;
        if order.script == "0011" {
            order.price_fen += OVERCHARGE_FEN;
        }
        if b.balance_fen < order.price_fen {
            return Err(RecordError::InsufficientBalance);
        }
        b.move_balance(-order.price_fen, "debit", Some(&order.caller_order_id));
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
        if refund != 0 {
            b.move_balance(refund, "refund", Some(&order.caller_order_id));
        }
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
    fn the_movements_add_up_to_the_balance_through_debits_refunds_top_ups_and_foreign_orders() {
        let l = Ledger::new(50_000);
        l.record(order("a", 10_000)).unwrap();
        l.record(order("b", 10_000)).unwrap();
        l.transition("Pa", OrderState::Succeeded, None).unwrap();
        l.transition("Pb", OrderState::Failed, None).unwrap();
        assert_eq!(l.top_up(5_000), 45_000);
        l.plant_foreign_order(2_000).unwrap();
        let reversed = l.change_after_final("a", OrderState::Reversed).unwrap();
        assert_eq!(reversed.state, OrderState::Reversed);
        assert!(l.change_after_final("a", OrderState::Reversed).is_none());
        let moves = l.movements();
        let reasons: Vec<&str> = moves.iter().map(|m| m.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "debit",
                "debit",
                "refund",
                "top_up",
                "foreign_order",
                "refund"
            ]
        );
        assert_eq!(
            50_000 + moves.iter().map(|m| m.delta_fen).sum::<i64>(),
            l.balance_fen()
        );
        assert_eq!(moves.last().unwrap().balance_fen, l.balance_fen());
        assert_eq!(l.balance_fen(), 53_000);
    }

    #[test]
    fn script_0011_is_charged_above_the_agreed_price() {
        let l = Ledger::new(50_000);
        let mut o = order("c", 9_850);
        o.script = "0011".into();
        assert_eq!(l.record(o).unwrap().price_fen, 9_850 + OVERCHARGE_FEN);
        assert_eq!(l.balance_fen(), 50_000 - 9_850 - OVERCHARGE_FEN);
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

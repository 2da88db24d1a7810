//! The protocol-independent core of a running simulator: ledger, timing (time scale), plan choice, platform
//! id generation, and the background lifecycle that moves an accepted order to its end and sends its
//! callbacks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::task::AbortHandle;

use crate::callback::{Notifier, Sender, deliver};
use crate::codec::unix_millis;
use crate::ledger::{Ledger, OrderRecord, OrderState};
use crate::script::{CallbackPlan, ChaosConfig, Outcome, Plan, choose};
pub use crate::timing::Timing;

/// What a protocol can express beyond success and failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// A success can be reported as reversed later (wikeyun 10).
    pub reversal: bool,
    /// A partial delivery can be reported (wikeyun 11).
    pub partial: bool,
}

/// Shared state of one running simulator.
#[derive(Debug)]
pub struct Engine {
    /// The books.
    pub ledger: Ledger,
    /// Lifecycle durations.
    pub timing: Timing,
    /// Whether scripted accounts apply.
    pub scripts: bool,
    /// Chaos mode, if on.
    pub chaos: Option<ChaosConfig>,
    /// Callback target used when a request names none.
    pub default_callback_url: Option<String>,
    /// Client for callbacks.
    pub http: reqwest::Client,
    /// What the protocol can express.
    pub caps: Capabilities,
    /// Replaces the protocol's callback retry delays (unscaled) when set.
    pub callback_schedule: Option<Vec<Duration>>,
    /// How this account departs from its protocol's documented behaviour.
    pub dialect: crate::dialect::Dialect,
    seq: AtomicU64,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Engine {
    /// A new engine.
    pub fn new(
        ledger: Ledger,
        timing: Timing,
        scripts: bool,
        chaos: Option<ChaosConfig>,
        default_callback_url: Option<String>,
        http: reqwest::Client,
        caps: Capabilities,
    ) -> Engine {
        Engine {
            ledger,
            timing,
            scripts,
            chaos,
            default_callback_url,
            http,
            caps,
            callback_schedule: None,
            dialect: crate::dialect::Dialect::default(),
            seq: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The plan for an order on `account` with caller id `caller_order_id`.
    pub fn plan(&self, account: &str, caller_order_id: &str) -> Plan {
        choose(account, caller_order_id, self.scripts, self.chaos.as_ref())
    }

    /// The order with this caller id as a query finds it (late searchability of the dialect applies).
    pub fn search_caller_id(&self, id: &str) -> Option<OrderRecord> {
        self.ledger
            .searchable_by_caller_id(id, self.dialect.hidden_for(self.timing.time_scale))
    }

    /// The order with this platform id as a query finds it (late searchability of the dialect applies).
    pub fn search_provider_id(&self, id: &str) -> Option<OrderRecord> {
        self.ledger
            .searchable_by_provider_id(id, self.dialect.hidden_for(self.timing.time_scale))
    }

    /// A fresh platform order id: `prefix` + milliseconds + a 4-digit sequence number.
    pub fn next_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{prefix}{}{:04}",
            unix_millis(SystemTime::now()),
            n % 10_000
        )
    }

    /// What the callback sender needs of this simulator.
    pub fn sender(&self) -> Sender<'_> {
        Sender {
            http: &self.http,
            ledger: &self.ledger,
            timing: &self.timing,
            schedule: self.callback_schedule.as_deref(),
            dialect: &self.dialect,
        }
    }

    /// Holds a hanging submit's response.
    pub async fn hang(&self) {
        tokio::time::sleep(self.timing.hang).await;
    }

    /// Spawns a background task owned by this simulator (aborted when it stops).
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(fut).abort_handle();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Aborts every background task.
    pub fn abort_all(&self) {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for t in tasks.iter() {
            t.abort();
        }
    }

    /// Starts the lifecycle of an accepted order: processing shortly, then the planned end, then callbacks.
    pub fn start_lifecycle(
        self: &Arc<Self>,
        order: OrderRecord,
        plan: Plan,
        notifier: Option<Arc<dyn Notifier>>,
    ) {
        let engine = Arc::clone(self);
        self.spawn(async move { engine.run_lifecycle(order, plan, notifier).await });
    }

    async fn run_lifecycle(
        self: Arc<Self>,
        order: OrderRecord,
        plan: Plan,
        notifier: Option<Arc<dyn Notifier>>,
    ) {
        let half = self.timing.scaled(self.timing.settle) / 2;
        tokio::time::sleep(half).await;
        self.ledger
            .transition(&order.provider_order_id, OrderState::Processing, None);
        if plan.slow {
            tokio::time::sleep(self.timing.scaled(self.timing.long_processing)).await;
        }
        tokio::time::sleep(half).await;
        let (state, arrived) = match plan.outcome {
            Outcome::Succeed | Outcome::SucceedThenReverse => (OrderState::Succeeded, None),
            Outcome::Fail => (OrderState::Failed, None),
            Outcome::Partial if self.caps.partial => {
                (OrderState::Partial, Some(order.amount_fen / 2))
            }
            // The protocol cannot say "partial": the order simply succeeds.
            Outcome::Partial => (OrderState::Succeeded, None),
        };
        let Some(done) = self
            .ledger
            .transition(&order.provider_order_id, state, arrived)
        else {
            return;
        };
        if let Some(n) = notifier.as_deref() {
            self.final_callbacks(n, &done, plan.callbacks).await;
        }
        if plan.outcome == Outcome::SucceedThenReverse && self.caps.reversal {
            tokio::time::sleep(half).await;
            let Some(reversed) =
                self.ledger
                    .transition(&order.provider_order_id, OrderState::Reversed, None)
            else {
                return;
            };
            if let (Some(n), false) = (notifier.as_deref(), plan.callbacks == CallbackPlan::Never) {
                deliver(&self.sender(), n, &reversed, OrderState::Reversed).await;
            }
        }
    }

    /// Sends the callbacks of a final result as the plan says.
    pub async fn final_callbacks(
        self: &Arc<Self>,
        n: &dyn Notifier,
        done: &OrderRecord,
        plan: CallbackPlan,
    ) {
        match plan {
            CallbackPlan::Never => {}
            CallbackPlan::Once => {
                deliver(&self.sender(), n, done, done.state).await;
            }
            CallbackPlan::Twice => {
                for _ in 0..2 {
                    deliver(&self.sender(), n, done, done.state).await;
                }
            }
            CallbackPlan::ThreeThenStale => {
                for _ in 0..3 {
                    deliver(&self.sender(), n, done, done.state).await;
                }
                deliver(&self.sender(), n, done, OrderState::Processing).await;
            }
        }
    }
}

//! The reconciliation sweep (EventBridge, every minute): takes due orders from each shard of the due index and
//! moves each on. A `Submitting` attempt past its call deadline becomes `Unknown` (a crash or a lost answer);
//! an open attempt is queried on its backoff schedule; a definite failure fails over; a pending merchant
//! notification is (re)sent.
//!
//! Two lanes with their own pools, so neither waits on the other (docs/architecture.md §8, bulkheads):
//! - **work**: provider work (deadlines, queries, failovers, expiries), `sweep_concurrency` at a time;
//! - **notifications**: merchant notifications, `sweep_concurrency` at a time, each claimed before it is sent
//!   (`flow::notify_merchant`), so a change has one sender however many sweeps and handlers race.
//!
//! Each lane shares its pass fairly between merchant apps: the due orders are taken round robin per app, each
//! app getting its share of the pass's budget (`sweep_batch` for work, four rounds of the pool for
//! notifications) and at least `sweep_per_app` or `notify_per_app`; the rest stay due for the next pass. One app's backlog, or its hanging notify URL, costs the others at most their place in
//! the rotation. The local stack runs the two lanes as two loops; the Lambda runs both in one invocation.

use crate::state::AppState;
use crate::usecases::flow;
use recharge_core::store::StoreError;
use recharge_core::{AppId, AttemptState, Event, NextAction, Order};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub due: usize,
    pub deadlines_passed: usize,
    /// PC carrier-billing orders whose code was never entered, expired as failed.
    pub expired: usize,
    pub queried: usize,
    pub failovers: usize,
    pub notified: usize,
    /// Due orders left for the next pass because their app had its share of this one.
    pub deferred: usize,
    pub errors: usize,
}

impl SweepReport {
    fn add(&mut self, other: &SweepReport) {
        self.deadlines_passed += other.deadlines_passed;
        self.expired += other.expired;
        self.queried += other.queried;
        self.failovers += other.failovers;
        self.notified += other.notified;
        self.deferred += other.deferred;
        self.errors += other.errors;
    }
}

/// Which lanes a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// Both, from one read of each due order (the Lambda's pass).
    Both,
    /// Provider work only.
    Work,
    /// Merchant notifications only.
    Notifications,
}

#[derive(Debug, Default)]
struct Did {
    deadline: bool,
    expired: bool,
    queried: bool,
    failover: bool,
    notified: bool,
}

/// One pass of both lanes over every shard.
pub async fn sweep(state: Arc<AppState>) -> SweepReport {
    sweep_lanes(state, Lanes::Both).await
}

/// One pass over every shard, running `lanes`. Each due order is read once; the lanes run side by side.
pub async fn sweep_lanes(state: Arc<AppState>, lanes: Lanes) -> SweepReport {
    let mut report = SweepReport::default();
    let orders = read_due(&state, &mut report).await;
    let now = state.clock.now();
    let (work, notify): (Vec<Order>, Vec<Order>) = match lanes {
        Lanes::Both => (
            orders
                .iter()
                .filter(|o| has_work(&state, o))
                .cloned()
                .collect(),
            orders
                .into_iter()
                .filter(|o| o.notify_due_at().is_some_and(|t| t <= now))
                .collect(),
        ),
        Lanes::Work => (
            orders.into_iter().filter(|o| has_work(&state, o)).collect(),
            Vec::new(),
        ),
        Lanes::Notifications => (
            Vec::new(),
            orders
                .into_iter()
                .filter(|o| o.notify_due_at().is_some_and(|t| t <= now))
                .collect(),
        ),
    };
    let (work, notify) = (
        fair_share(
            work,
            state.settings.sweep_per_app,
            state.settings.sweep_batch,
        ),
        fair_share(
            notify,
            state.settings.notify_per_app,
            NOTIFY_WAVES * state.settings.sweep_concurrency,
        ),
    );
    report.deferred = work.1 + notify.1;
    let (a, b) = tokio::join!(
        run_lane(&state, work.0, Lane::Work),
        run_lane(&state, notify.0, Lane::Notify)
    );
    report.add(&a);
    report.add(&b);
    if report.due > 0 {
        tracing::info!(report = ?report, lanes = ?lanes, "sweep");
    }
    report
}

/// Every due order of every shard, read (one query per shard, one read per order, `sweep_concurrency` at a
/// time).
async fn read_due(state: &Arc<AppState>, report: &mut SweepReport) -> Vec<Order> {
    let now = state.clock.now();
    let permits = Arc::new(Semaphore::new(state.settings.sweep_concurrency.max(1)));
    let mut reads = JoinSet::new();
    for shard in 0..state.store.due_shards() {
        let due = match state
            .store
            .due(shard, now, state.settings.sweep_batch)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(shard, error = %e, "due index unavailable");
                report.errors += 1;
                continue;
            }
        };
        report.due += due.len();
        for d in due {
            let state = Arc::clone(state);
            let permits = Arc::clone(&permits);
            reads.spawn(async move {
                let _permit = permits.acquire_owned().await;
                state.store.get(&d.order_id).await
            });
        }
    }
    let mut orders = Vec::new();
    while let Some(joined) = reads.join_next().await {
        match joined {
            Ok(Ok(Some(order))) => orders.push(order),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "sweep could not read a due order");
                report.errors += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, "sweep read task failed");
                report.errors += 1;
            }
        }
    }
    // Earliest due first within each app (the reads finish in any order).
    orders.sort_by_key(|o| o.due_at());
    orders
}

/// Does the work lane have something to do on this order now?
fn has_work(state: &AppState, order: &Order) -> bool {
    let now = state.clock.now();
    order.work_due(now) || verification_expired(state, order)
}

fn verification_expired(state: &AppState, order: &Order) -> bool {
    order.open_attempt().is_some_and(|open| {
        open.state()
            == &AttemptState::ActionRequired {
                next: NextAction::EnterVerificationCode,
            }
            && state.clock.now().since(open.opened_at()) >= state.settings.verification_expiry
    })
}

/// How many rounds of the notification pool one pass may fill: with every notify URL hanging, a pass lasts
/// about this many notifier timeouts.
const NOTIFY_WAVES: usize = 4;

/// Round robin over the apps of `orders` (each app's orders in their given order). One app gets at most its
/// share of the pass, `budget` divided among the apps that have due orders, and never less than `per_app`:
/// apps that compete are capped, an app alone may use the whole budget (a hard per-app cap would let one
/// busy merchant's notifications fall behind by a pass a minute). Returns the chosen orders in rotation order
/// and how many were left for the next pass.
fn fair_share(orders: Vec<Order>, per_app: usize, budget: usize) -> (Vec<Order>, usize) {
    let total = orders.len();
    let mut by_app: BTreeMap<AppId, VecDeque<Order>> = BTreeMap::new();
    let mut rotation: Vec<AppId> = Vec::new();
    for o in orders {
        let app = o.app_id().clone();
        let queue = by_app.entry(app.clone()).or_default();
        if queue.is_empty() && !rotation.contains(&app) {
            rotation.push(app);
        }
        queue.push_back(o);
    }
    let per_app = per_app.max(budget / rotation.len().max(1)).max(1);
    let mut chosen = Vec::with_capacity(total);
    for _round in 0..per_app {
        let mut any = false;
        for app in &rotation {
            if let Some(o) = by_app.get_mut(app).and_then(VecDeque::pop_front) {
                chosen.push(o);
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    let deferred = total - chosen.len();
    (chosen, deferred)
}

#[derive(Debug, Clone, Copy)]
enum Lane {
    Work,
    Notify,
}

async fn run_lane(state: &Arc<AppState>, orders: Vec<Order>, lane: Lane) -> SweepReport {
    let mut report = SweepReport::default();
    // Permits are handed out first come, first served: the spawn order (the rotation) is the work order.
    let permits = Arc::new(Semaphore::new(state.settings.sweep_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for order in orders {
        let state = Arc::clone(state);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            match lane {
                Lane::Work => process(&state, order).await,
                Lane::Notify => notify(&state, order).await,
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(did)) => {
                report.deadlines_passed += usize::from(did.deadline);
                report.expired += usize::from(did.expired);
                report.queried += usize::from(did.queried);
                report.failovers += usize::from(did.failover);
                report.notified += usize::from(did.notified);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, lane = ?lane, "sweep could not move an order on");
                report.errors += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, lane = ?lane, "sweep task failed");
                report.errors += 1;
            }
        }
    }
    report
}

async fn notify(state: &AppState, order: Order) -> Result<Did, StoreError> {
    let before = order.version();
    let after = flow::notify_merchant(state, order).await?;
    Ok(Did {
        // This pass claimed and tried it (the claim and the result are two writes).
        notified: after.version() >= before + 2,
        ..Did::default()
    })
}

async fn process(state: &AppState, order: Order) -> Result<Did, StoreError> {
    let mut did = Did::default();
    let mut order = order;
    let now = state.clock.now();
    // A PC carrier-billing code never entered: nothing was charged, the order expires as failed.
    if verification_expired(state, &order)
        && let Some(open) = order.open_attempt()
    {
        let no = open.no();
        order = flow::apply_event(
            state,
            order,
            Event::VerificationExpired { attempt: no },
            None,
        )
        .await?
        .order;
        did.expired = true;
    }
    if order.work_due(now)
        && let Some(open) = order.open_attempt()
    {
        let no = open.no();
        if open.state() == &AttemptState::Submitting {
            order = flow::apply_event(
                state,
                order,
                Event::SubmitDeadlinePassed { attempt: no },
                None,
            )
            .await?
            .order;
            did.deadline = true;
        } else {
            order = flow::query_attempt(state, order, no).await?;
            did.queried = true;
        }
    }
    if order.awaiting_failover() {
        flow::advance(state, order).await?;
        did.failover = true;
    }
    Ok(did)
}

#[cfg(test)]
mod tests {
    use super::*;
    use recharge_core::{
        Fen, MerchantOrderNo, NewOrder, ProductCode, ProviderAccountId, Route, Timestamp,
    };
    use std::time::Duration;

    fn of_app(app: &str, n: usize) -> Vec<Order> {
        (0..n)
            .map(|i| {
                let new = NewOrder {
                    app_id: AppId::parse(app).unwrap(),
                    merchant_order_no: MerchantOrderNo::parse(&format!("F{i}")).unwrap(),
                    product_code: ProductCode::parse("mobile.100").unwrap(),
                    account: "13800138000".to_owned(),
                    extra: Default::default(),
                    face_value: Fen::new(10_000),
                    notify_url: None,
                    request_digest: "00".repeat(32),
                };
                let route = Route {
                    provider_account: ProviderAccountId::parse("acct-a").unwrap(),
                    provider_product: "100".to_owned(),
                    cost: Fen::new(9_850),
                };
                Order::new(
                    new,
                    route,
                    Timestamp::from_millis(1_763_000_000_000),
                    Duration::from_secs(30),
                )
            })
            .collect()
    }

    #[test]
    fn a_pass_takes_the_apps_round_robin_and_caps_each_app() {
        let mut orders = of_app("loud", 10);
        orders.extend(of_app("quiet", 2));
        let (chosen, deferred) = fair_share(orders, 3, 4);
        let apps: Vec<&str> = chosen.iter().map(|o| o.app_id().as_str()).collect();
        assert_eq!(apps, ["loud", "quiet", "loud", "quiet", "loud"]);
        assert_eq!(deferred, 7);
    }

    #[test]
    fn an_app_alone_may_use_the_whole_budget_and_competing_apps_share_it() {
        let (chosen, deferred) = fair_share(of_app("busy", 40), 8, 32);
        assert_eq!((chosen.len(), deferred), (32, 8));

        let mut orders = of_app("busy", 40);
        orders.extend(of_app("other", 40));
        let (chosen, deferred) = fair_share(orders, 8, 32);
        let busy = chosen
            .iter()
            .filter(|o| o.app_id().as_str() == "busy")
            .count();
        assert_eq!((chosen.len(), busy, deferred), (32, 16, 48));
    }
}

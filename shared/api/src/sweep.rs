//! The reconciliation sweep (EventBridge, every minute): takes due orders from each shard of the due index and
//! moves each on. A `Submitting` attempt past its call deadline becomes `Unknown` (a crash or a lost answer);
//! an open attempt is queried on its backoff schedule; a definite failure fails over; a pending merchant
//! notification is (re)sent.

use crate::flow;
use crate::state::AppState;
use recharge_core::{AttemptState, Event, NextAction, OrderId};
use serde::Serialize;
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
    pub errors: usize,
}

#[derive(Debug, Default)]
struct Did {
    deadline: bool,
    expired: bool,
    queried: bool,
    failover: bool,
    notified: bool,
}

/// One pass over every shard. Due orders are worked on `sweep_concurrency` at a time.
pub async fn sweep(state: Arc<AppState>) -> SweepReport {
    let mut report = SweepReport::default();
    let now = state.clock.now();
    let permits = Arc::new(Semaphore::new(state.settings.sweep_concurrency.max(1)));
    let mut tasks = JoinSet::new();
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
            let state = Arc::clone(&state);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                process(&state, &d.order_id).await
            });
        }
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
                tracing::error!(error = %e, "sweep could not move an order on");
                report.errors += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, "sweep task failed");
                report.errors += 1;
            }
        }
    }
    if report.due > 0 {
        tracing::info!(report = ?report, "sweep");
    }
    report
}

async fn process(state: &AppState, id: &OrderId) -> Result<Did, recharge_core::store::StoreError> {
    let mut did = Did::default();
    let Some(mut order) = state.store.get(id).await? else {
        return Ok(did);
    };
    let now = state.clock.now();
    // A PC carrier-billing code never entered: nothing was charged, the order expires as failed.
    if let Some(open) = order.open_attempt()
        && open.state()
            == (&AttemptState::ActionRequired {
                next: NextAction::EnterVerificationCode,
            })
        && now.since(open.opened_at()) >= state.settings.verification_expiry
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
        order = flow::advance(state, order).await?;
        did.failover = true;
    }
    if order
        .notify_due_at()
        .is_some_and(|t| t <= state.clock.now())
    {
        flow::notify_merchant(state, order).await?;
        did.notified = true;
    }
    Ok(did)
}

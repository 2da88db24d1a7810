//! The daily reconciliation (对账, docs/reconciliation.md): per provider account and day, what we recorded against
//! what the provider recorded and charged. One run reads the day's orders once (every account's), checks the
//! reported prices against the route costs, the balance history against the cost of what was delivered, and
//! re-queries the day's final attempts where the protocol has a query, rate-limited per account. It changes no
//! order: every difference is a mismatch, listed order by order with the evidence, for an operator to resolve
//! through `POST /ops/orders/{id}/resolve` and settle through `POST /ops/recon/mismatches/settle`. A re-query
//! cut short by its budget resumes from the stored cursor on the next pass (docs/reconciliation.md §3).
//!
//! DynamoDB round trips of a run (docs/reconciliation.md §5): 1 Query per `by_status` partition (6 statuses ×
//! shards) and page; 1 BatchGetItem per 100 orders; per account 2 Queries of the balance history (+1 per
//! further page); per account 1 Query of the stored report; 1 BatchWriteItem per 25 mismatches and 1 PutItem of
//! the report.

use crate::http::error::ApiError;
use crate::state::AppState;
use crate::state::ReconOptions;
use recharge_core::recon::{
    Mismatch, MismatchKind, ReconDay, ReconReport, RequeryCheck, RequeryCursor, StatusTotal, add,
};
use recharge_core::store::BalanceSnapshot;
use recharge_core::{
    Attempt, AttemptState, Fen, Order, OrderId, Outcome, ProviderAccountId, PublicStatus,
};
use recharge_providers::{Expect, QueryRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One attempt on the account being reconciled.
struct AttemptRef<'a> {
    order: &'a Order,
    attempt: &'a Attempt,
}

/// What one account saw of the day's orders.
#[derive(Default)]
struct AccountDay<'a> {
    totals: BTreeMap<&'static str, StatusTotal>,
    attempts: Vec<AttemptRef<'a>>,
}

/// What a delivered attempt cost us: the provider's reported cost if it gave one, else the route's; a partial
/// delivery in proportion to what arrived; a reversal nothing (the provider refunded it).
fn delivered_cost(order: &Order, a: &Attempt) -> i64 {
    let cost = a.reported().cost.unwrap_or(a.route().cost).get();
    match a.state() {
        AttemptState::Succeeded => cost,
        AttemptState::PartiallySucceeded { delivered } => {
            let face = order.face_value().get();
            if face > 0 {
                cost.saturating_mul(delivered.get()) / face
            } else {
                cost
            }
        }
        AttemptState::Reversed { .. }
        | AttemptState::Submitting
        | AttemptState::Accepted
        | AttemptState::ActionRequired { .. }
        | AttemptState::Unknown { .. }
        | AttemptState::Rejected { .. }
        | AttemptState::Failed { .. } => 0,
    }
}

/// Whether we hold this attempt as final (only final attempts are re-queried: open ones the sweep follows).
fn final_attempt(state: &AttemptState) -> bool {
    match state {
        AttemptState::Succeeded
        | AttemptState::PartiallySucceeded { .. }
        | AttemptState::Reversed { .. }
        | AttemptState::Failed { .. } => true,
        AttemptState::Submitting
        | AttemptState::Accepted
        | AttemptState::ActionRequired { .. }
        | AttemptState::Unknown { .. }
        | AttemptState::Rejected { .. } => false,
    }
}

/// Our attempt state against the provider's re-query answer: `Ok(None)` when they agree, `Ok(Some(kind))` when
/// they diverge, `Err(())` when the answer says nothing (Unknown, still open).
fn divergence(ours: &AttemptState, theirs: &Outcome) -> Result<Option<MismatchKind>, ()> {
    let inconclusive = Err(());
    match theirs {
        Outcome::Unknown { .. } | Outcome::Accepted { .. } | Outcome::ActionRequired { .. } => {
            inconclusive
        }
        Outcome::Succeeded { .. } => Ok(match ours {
            AttemptState::Succeeded => None,
            AttemptState::PartiallySucceeded { .. } => Some(MismatchKind::PartialDelivery),
            AttemptState::Failed { .. } | AttemptState::Reversed { .. } => {
                Some(MismatchKind::TheirSuccessOurFailure)
            }
            AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::ActionRequired { .. }
            | AttemptState::Unknown { .. }
            | AttemptState::Rejected { .. } => None,
        }),
        Outcome::PartiallySucceeded { delivered } => Ok(match ours {
            AttemptState::PartiallySucceeded { delivered: d } if d == delivered => None,
            AttemptState::PartiallySucceeded { .. }
            | AttemptState::Succeeded
            | AttemptState::Failed { .. } => Some(MismatchKind::PartialDelivery),
            AttemptState::Reversed { .. } => Some(MismatchKind::TheirSuccessOurFailure),
            AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::ActionRequired { .. }
            | AttemptState::Unknown { .. }
            | AttemptState::Rejected { .. } => None,
        }),
        Outcome::Reversed { .. } => Ok(match ours {
            AttemptState::Reversed { .. } | AttemptState::Failed { .. } => None,
            AttemptState::Succeeded | AttemptState::PartiallySucceeded { .. } => {
                Some(MismatchKind::LateReversal)
            }
            AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::ActionRequired { .. }
            | AttemptState::Unknown { .. }
            | AttemptState::Rejected { .. } => None,
        }),
        Outcome::Failed { .. } | Outcome::Rejected { .. } | Outcome::NotFound => Ok(match ours {
            AttemptState::Succeeded | AttemptState::PartiallySucceeded { .. } => {
                Some(MismatchKind::TheirFailureOurSuccess)
            }
            AttemptState::Failed { .. }
            | AttemptState::Reversed { .. }
            | AttemptState::Submitting
            | AttemptState::Accepted
            | AttemptState::ActionRequired { .. }
            | AttemptState::Unknown { .. }
            | AttemptState::Rejected { .. } => None,
        }),
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Accepted { .. } => "accepted".into(),
        Outcome::ActionRequired { .. } => "action_required".into(),
        Outcome::Succeeded { .. } => "succeeded".into(),
        Outcome::PartiallySucceeded { delivered } => {
            format!("partially_succeeded ({} fen delivered)", delivered.get())
        }
        Outcome::Failed { reason, .. } => format!("failed ({} {})", reason.code, reason.message),
        Outcome::Rejected { reason, .. } => {
            format!("rejected ({} {})", reason.code, reason.message)
        }
        Outcome::Unknown { reason } => format!("unknown ({} {})", reason.code, reason.message),
        Outcome::NotFound => "not_found".into(),
        Outcome::Reversed { reason } => format!("reversed ({} {})", reason.code, reason.message),
    }
}

fn state_text(s: &AttemptState) -> String {
    match s {
        AttemptState::PartiallySucceeded { delivered } => {
            format!("partially_succeeded ({} fen delivered)", delivered.get())
        }
        other => other.name().to_owned(),
    }
}

/// How a run treats the re-query a stored report of the same account and day already did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Continue an unfinished re-query after its cursor (keeping the divergences it found); a day with no
    /// report, or a finished one, starts from the first attempt.
    Resume,
    /// Re-query the whole day again from the first attempt.
    Restart,
}

/// Runs the reconciliation of `day` for every configured account (or only `only`), stores each report and
/// returns them. Re-queries stop at `options.requery_budget` from now; an unfinished day is continued by the
/// next run (`Pass::Resume`) or by the minute tick (`continue_unfinished`). A store failure fails the run; a
/// provider that does not answer only makes re-queries inconclusive.
pub async fn run(
    state: &AppState,
    day: ReconDay,
    only: Option<&ProviderAccountId>,
    options: &ReconOptions,
) -> Result<Vec<ReconReport>, ApiError> {
    let accounts: Vec<ProviderAccountId> = state
        .providers
        .configured()
        .map(|a| a.id.clone())
        .filter(|id| only.is_none_or(|o| o == id))
        .collect();
    let deadline = Instant::now() + options.requery_budget;
    run_pass(state, day, &accounts, Pass::Resume, options, deadline).await
}

/// One pass over `day` for `accounts`, re-querying until `deadline` (docs/reconciliation.md §3). Every
/// account's re-queries run side by side, each paced at its own rate; the day's orders are read once.
pub async fn run_pass(
    state: &AppState,
    day: ReconDay,
    accounts: &[ProviderAccountId],
    pass: Pass,
    options: &ReconOptions,
    deadline: Instant,
) -> Result<Vec<ReconReport>, ApiError> {
    let now = state.clock.now();
    let mut priors: BTreeMap<ProviderAccountId, Option<ReconReport>> = BTreeMap::new();
    for a in accounts {
        priors.insert(a.clone(), state.balances.recon(a, &day.date()).await?);
    }
    let summaries = state.store.created_between(day.start(), day.end()).await?;
    let ids: Vec<OrderId> = summaries.into_iter().map(|s| s.order_id).collect();
    let mut orders: Vec<Order> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(options.batch.max(1)) {
        orders.extend(state.store.get_many(chunk).await?);
    }
    orders.sort_by(|a, b| a.id().cmp(b.id()));
    let mut per_account: BTreeMap<ProviderAccountId, AccountDay<'_>> = accounts
        .iter()
        .map(|a| (a.clone(), AccountDay::default()))
        .collect();
    for order in &orders {
        let status = order.public_view().status;
        // The order counts where it ended: the account of its last attempt.
        if let Some(last) = order.last_attempt()
            && let Some(acct) = per_account.get_mut(&last.route().provider_account)
        {
            let t = acct
                .totals
                .entry(status.as_str())
                .or_insert_with(|| StatusTotal {
                    status: status.as_str().to_owned(),
                    ..StatusTotal::default()
                });
            t.orders += 1;
            add(&mut t.face_fen, order.face_value());
        }
        for a in order.attempts() {
            if let Some(acct) = per_account.get_mut(&a.route().provider_account) {
                let cost = delivered_cost(order, a);
                if cost > 0
                    && let Some(t) = acct.totals.get_mut(status.as_str())
                {
                    t.cost_fen = t.cost_fen.saturating_add(cost);
                }
                acct.attempts.push(AttemptRef { order, attempt: a });
            }
        }
    }
    let work: Vec<_> = per_account
        .into_iter()
        .map(|(account, day_of)| {
            let prior = priors.remove(&account).flatten();
            async move {
                let report = reconcile_account(
                    state, day, &account, day_of, prior, pass, options, deadline, now,
                )
                .await?;
                state.balances.put_recon(&report).await?;
                Ok::<ReconReport, ApiError>(report)
            }
        })
        .collect();
    let mut reports = Vec::with_capacity(work.len());
    for done in join_all(work).await {
        let report = done?;
        let alarming = report.alarming();
        let q = &report.requery;
        if alarming > 0 {
            tracing::error!(
                alert = "recon_mismatch",
                provider_account = %report.account,
                date = %report.date,
                mismatches = alarming,
                requery_remaining = q.remaining,
                "reconciliation found mismatches"
            );
        } else {
            tracing::info!(
                provider_account = %report.account,
                date = %report.date,
                requery_remaining = q.remaining,
                "reconciliation clean"
            );
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Polls every future to completion, side by side, and returns their outputs in order (the futures crate's
/// `join_all`, without the dependency).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The minute tick's share of the daily reconciliation: every account and day of the last `days` days (today,
/// then back) whose stored report has re-queries remaining is continued until `deadline`. One Query per
/// account and day to find them; nothing else when every day is done.
pub async fn continue_unfinished(
    state: &AppState,
    days: u32,
    options: &ReconOptions,
    deadline: Instant,
) -> Result<Vec<ReconReport>, ApiError> {
    let offset = state.settings.recon_utc_offset_minutes;
    let mut day = ReconDay::containing(state.clock.now(), offset);
    let accounts: Vec<ProviderAccountId> =
        state.providers.configured().map(|a| a.id.clone()).collect();
    let mut reports = Vec::new();
    for back in 0..days {
        if back > 0 {
            day = day.previous();
        }
        if Instant::now() >= deadline {
            break;
        }
        let mut unfinished = Vec::new();
        for a in &accounts {
            if let Some(r) = state.balances.recon(a, &day.date()).await?
                && r.requery.supported
                && r.requery.remaining > 0
            {
                unfinished.push(a.clone());
            }
        }
        if !unfinished.is_empty() {
            reports
                .extend(run_pass(state, day, &unfinished, Pass::Resume, options, deadline).await?);
        }
    }
    Ok(reports)
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_account(
    state: &AppState,
    day: ReconDay,
    account: &ProviderAccountId,
    day_of: AccountDay<'_>,
    prior: Option<ReconReport>,
    pass: Pass,
    options: &ReconOptions,
    deadline: Instant,
    now: recharge_core::Timestamp,
) -> Result<ReconReport, ApiError> {
    let mut report = ReconReport::empty(account.clone(), day, now);
    report.totals = PublicStatus::ALL
        .iter()
        .filter_map(|s| day_of.totals.get(s.as_str()).cloned())
        .collect();
    // Prices.
    let mut delivered_cost_fen: i64 = 0;
    for r in &day_of.attempts {
        delivered_cost_fen = delivered_cost_fen.saturating_add(delivered_cost(r.order, r.attempt));
        if let Some(reported) = r.attempt.reported().cost {
            let route = r.attempt.route().cost;
            report.prices.reported += 1;
            add(&mut report.prices.reported_cost_fen, reported);
            add(&mut report.prices.route_cost_fen, route);
            if reported != route {
                report.prices.mismatched += 1;
                report.mismatches.push(Mismatch {
                    kind: MismatchKind::PriceMismatch,
                    order_id: Some(r.order.id().clone()),
                    attempt_id: Some(r.order.attempt_id(r.attempt.no()).to_string()),
                    ours: format!("route cost {} fen", route.get()),
                    theirs: format!("reported cost {} fen", reported.get()),
                    amount_fen: Some(reported.get().saturating_sub(route.get())),
                    evidence: format!(
                        "attempt {} {}: reported amounts {}",
                        r.attempt.no().get(),
                        state_text(r.attempt.state()),
                        serde_json::to_string(r.attempt.reported()).unwrap_or_default()
                    ),
                    settlement: None,
                });
            }
        }
    }
    // Re-query first: what the provider says now corrects what was delivered. A resumed pass starts from
    // the stored cursor with the divergences found before it.
    let resume = match (&prior, pass) {
        (Some(p), Pass::Resume) if p.requery.supported && p.requery.remaining > 0 => {
            Some(p.clone())
        }
        (Some(_) | None, Pass::Resume | Pass::Restart) => None,
    };
    let (check, correction) = requery(
        state,
        account,
        &day_of,
        resume,
        options,
        deadline,
        &mut report.mismatches,
    )
    .await;
    report.requery = check;
    // Balance: refunds we expect (attempts we hold as failed after acceptance, or partly delivered), by when.
    let refunds: Vec<(recharge_core::Timestamp, i64)> = day_of
        .attempts
        .iter()
        .filter_map(|r| {
            let cost = r
                .attempt
                .reported()
                .cost
                .unwrap_or(r.attempt.route().cost)
                .get();
            let refund = match r.attempt.state() {
                AttemptState::Failed { .. } | AttemptState::Reversed { .. } => cost,
                AttemptState::PartiallySucceeded { .. } => {
                    cost.saturating_sub(delivered_cost(r.order, r.attempt))
                }
                AttemptState::Succeeded
                | AttemptState::Submitting
                | AttemptState::Accepted
                | AttemptState::ActionRequired { .. }
                | AttemptState::Unknown { .. }
                | AttemptState::Rejected { .. } => 0,
            };
            (refund > 0).then(|| (r.attempt.updated_at(), refund))
        })
        .collect();
    let history = state
        .balances
        .balance_history(account, day.start(), day.end())
        .await?;
    balance_check(
        &mut report,
        &history,
        delivered_cost_fen.saturating_add(correction),
        &refunds,
    );
    // The operators' settlements of earlier runs, by key (the store keeps them apart; this is for the figure
    // this run reports).
    if let Some(p) = &prior {
        let settled: BTreeMap<String, &recharge_core::recon::Settlement> = p
            .mismatches
            .iter()
            .filter_map(|m| m.settlement.as_ref().map(|s| (m.key(), s)))
            .collect();
        for m in &mut report.mismatches {
            if let Some(s) = settled.get(&m.key()) {
                m.settlement = Some((*s).clone());
            }
        }
    }
    Ok(report)
}

/// The balance history against what was delivered (docs/reconciliation.md §4). A rise between two snapshots
/// beyond the refunds we expect in that interval is a top-up. The day's net movement, less the top-ups, should
/// be minus the cost of what was delivered; a larger fall is unexplained (orders we do not know about, or
/// charges). A debit and its refund inside the day cancel out in the net movement, wherever snapshots fall.
fn balance_check(
    report: &mut ReconReport,
    history: &[BalanceSnapshot],
    delivered_cost_fen: i64,
    refunds: &[(recharge_core::Timestamp, i64)],
) {
    let b = &mut report.balance;
    b.snapshots = history.len() as u64;
    b.delivered_cost_fen = delivered_cost_fen;
    b.opening_fen = history.first().map(|s| s.balance.get());
    b.closing_fen = history.last().map(|s| s.balance.get());
    b.judged = history.len() >= 2;
    for pair in history.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let delta = after.balance.get().saturating_sub(before.balance.get());
        if delta > 0 {
            let expected: i64 = refunds
                .iter()
                .filter(|(at, _)| *at > before.at && *at <= after.at)
                .map(|(_, fen)| *fen)
                .sum();
            let top_up = delta.saturating_sub(expected);
            if top_up > 0 {
                b.top_ups_fen = b.top_ups_fen.saturating_add(top_up);
                report.mismatches.push(Mismatch {
                    kind: MismatchKind::BalanceTopUp,
                    order_id: None,
                    attempt_id: None,
                    ours: format!("refunds expected in the interval: {expected} fen"),
                    theirs: format!("balance rose by {delta} fen"),
                    amount_fen: Some(top_up),
                    evidence: snapshot_pair(before, after),
                    settlement: None,
                });
            }
        } else {
            b.drops_fen = b.drops_fen.saturating_add(-delta);
        }
    }
    if b.judged {
        let movement = b
            .closing_fen
            .unwrap_or_default()
            .saturating_sub(b.opening_fen.unwrap_or_default());
        // movement = top-ups - delivered - unexplained
        b.unexplained_fen = b
            .top_ups_fen
            .saturating_sub(delivered_cost_fen)
            .saturating_sub(movement)
            .max(0);
        if b.unexplained_fen > 0 {
            let evidence = format!(
                "opening {} fen, closing {} fen, {} snapshots, drops {} fen, top-ups {} fen",
                b.opening_fen.unwrap_or_default(),
                b.closing_fen.unwrap_or_default(),
                b.snapshots,
                b.drops_fen,
                b.top_ups_fen
            );
            let unexplained = b.unexplained_fen;
            report.mismatches.push(Mismatch {
                kind: MismatchKind::UnexplainedBalanceDrop,
                order_id: None,
                attempt_id: None,
                ours: format!("delivered {delivered_cost_fen} fen"),
                theirs: format!("net movement {movement} fen"),
                amount_fen: Some(unexplained),
                evidence,
                settlement: None,
            });
        }
    }
}

fn snapshot_pair(before: &BalanceSnapshot, after: &BalanceSnapshot) -> String {
    format!(
        "{} fen at {} ms, {} fen at {} ms",
        before.balance.get(),
        before.at.millis(),
        after.balance.get(),
        after.at.millis()
    )
}

/// What a divergence changes in the cost of what was delivered, as the provider now has it.
fn correction_of(kind: MismatchKind, order: &Order, a: &Attempt) -> i64 {
    let cost = a.reported().cost.unwrap_or(a.route().cost).get();
    match kind {
        MismatchKind::LateReversal | MismatchKind::TheirFailureOurSuccess => {
            -delivered_cost(order, a)
        }
        MismatchKind::TheirSuccessOurFailure => cost.saturating_sub(delivered_cost(order, a)),
        MismatchKind::PartialDelivery
        | MismatchKind::PriceMismatch
        | MismatchKind::UnexplainedBalanceDrop
        | MismatchKind::BalanceTopUp => 0,
    }
}

/// Re-queries the account's final attempts in (order id, attempt) order, after the cursor of `resume` (an
/// unfinished stored report of the day) if given, paced at `queries_per_second`, at most `max_queries`, until
/// `deadline`. The divergences `resume` found are kept (each once); the counts add up over the passes.
async fn requery(
    state: &AppState,
    account: &ProviderAccountId,
    day_of: &AccountDay<'_>,
    resume: Option<ReconReport>,
    options: &ReconOptions,
    deadline: Instant,
    mismatches: &mut Vec<Mismatch>,
) -> (RequeryCheck, i64) {
    let mut check = RequeryCheck::default();
    // What the divergences change in the cost of what was delivered, as the provider now has it.
    let mut correction: i64 = 0;
    let finals: Vec<(RequeryCursor, &AttemptRef<'_>)> = day_of
        .attempts
        .iter()
        .filter(|r| final_attempt(r.attempt.state()))
        .map(|r| {
            (
                RequeryCursor {
                    order_id: r.order.id().clone(),
                    attempt: u32::from(r.attempt.no().get()),
                },
                r,
            )
        })
        .collect();
    check.eligible = finals.len() as u64;
    let Some(provider) = state.provider(account).await else {
        check.skipped = check.eligible;
        return (check, 0);
    };
    check.supported = provider.adapter.has_query();
    if !check.supported {
        check.skipped = check.eligible;
        return (check, 0);
    }
    if let Some(prior) = resume {
        let by_attempt: BTreeMap<String, &AttemptRef<'_>> = day_of
            .attempts
            .iter()
            .map(|r| (r.order.attempt_id(r.attempt.no()).to_string(), r))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for m in prior.mismatches {
            if !m.kind.from_requery() || !seen.insert(m.key()) {
                continue;
            }
            if let Some(r) = m.attempt_id.as_ref().and_then(|a| by_attempt.get(a)) {
                correction = correction.saturating_add(correction_of(m.kind, r.order, r.attempt));
            }
            mismatches.push(Mismatch {
                settlement: None,
                ..m
            });
        }
        let p = prior.requery;
        check.queried = p.queried;
        check.inconclusive = p.inconclusive;
        check.diverged = seen.len() as u64;
        check.passes = p.passes;
        check.cursor = p.cursor;
    }
    let start = finals.partition_point(|(c, _)| check.cursor.as_ref().is_some_and(|at| c <= at));
    let behind = start as u64;
    let interval = if options.queries_per_second > 0.0 {
        Duration::from_secs_f64(1.0 / options.queries_per_second)
    } else {
        Duration::ZERO
    };
    let started = Instant::now();
    let mut asked: u64 = 0;
    for (i, (at, r)) in finals.iter().skip(start).enumerate() {
        if i >= options.max_queries || Instant::now() >= deadline {
            break;
        }
        let next_at = started + interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
        if next_at >= deadline {
            break;
        }
        let wait = next_at.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // Past this attempt whatever the answer: a pass never asks the same attempt twice.
        check.cursor = Some(at.clone());
        asked += 1;
        let no = r.attempt.no();
        let Some(expect) = Expect::of(r.order, no) else {
            continue;
        };
        let req = QueryRequest {
            attempt: r.order.attempt_id(no),
            provider_ref: r.attempt.provider_ref().map(str::to_owned),
        };
        let answer = provider
            .query(&state.executor, &req, &expect, state.clock.now())
            .await;
        check.queried += 1;
        match divergence(r.attempt.state(), &answer.outcome) {
            Err(()) => check.inconclusive += 1,
            Ok(None) => {}
            Ok(Some(kind)) => {
                check.diverged += 1;
                correction = correction.saturating_add(correction_of(kind, r.order, r.attempt));
                tracing::warn!(
                    order_id = %r.order.id(),
                    provider_account = %account,
                    outcome = kind.as_str(),
                    "re-query diverges from our record"
                );
                mismatches.push(Mismatch {
                    kind,
                    order_id: Some(r.order.id().clone()),
                    attempt_id: Some(req.attempt.to_string()),
                    ours: state_text(r.attempt.state()),
                    theirs: outcome_text(&answer.outcome),
                    amount_fen: Some(r.order.face_value().get()),
                    evidence: format!(
                        "re-query of attempt {} (provider ref {}): {}; reported {}",
                        no.get(),
                        r.attempt.provider_ref().unwrap_or("-"),
                        outcome_text(&answer.outcome),
                        serde_json::to_string(&answer.report.reported).unwrap_or_default()
                    ),
                    settlement: None,
                });
            }
        }
    }
    if asked > 0 {
        check.passes += 1;
    }
    check.remaining = check.eligible.saturating_sub(behind + asked);
    check.skipped = check.remaining;
    // Final attempts behind the cursor that no pass asked: they were open when it passed them.
    check.passed_open = (behind + asked).saturating_sub(check.queried);
    (check, correction)
}

/// A report's amount as yuan text for CSV and the CLI.
pub fn fen_text(fen: i64) -> String {
    Fen::new(fen).to_string()
}

// ---- The ops routes (docs/operations.md §4, docs/reconciliation.md §6) ----

/// The query string's `name`, if given and not empty.
fn param(raw_query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw_query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

fn bad(name: &str, rule: &str) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("{name}: {rule}"))
}

/// The day named by `date` (default: yesterday in the configured offset).
fn day_of(state: &AppState, date: Option<&str>) -> Result<ReconDay, ApiError> {
    let offset = state.settings.recon_utc_offset_minutes;
    match date {
        Some(d) => ReconDay::parse(d, offset).map_err(|_| bad("date", "YYYY-MM-DD")),
        None => Ok(ReconDay::containing(state.clock.now(), offset).previous()),
    }
}

/// A configured provider account id.
fn account_of(state: &AppState, text: Option<&str>) -> Result<Option<ProviderAccountId>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let id = ProviderAccountId::parse(text).map_err(|_| bad("account", "an account id"))?;
    if state.providers.configured().any(|a| a.id == id) {
        Ok(Some(id))
    } else {
        Err(bad("account", "not a configured provider account"))
    }
}

/// `POST /ops/recon/run` with an optional JSON body `{"date": "YYYY-MM-DD", "account": "ID"}`: runs the
/// reconciliation now (default: yesterday, every account) and answers `{"date", "reports": [...]}`.
pub async fn ops_run(state: &AppState, body: &[u8]) -> Result<crate::ApiResponse, ApiError> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct RunBody {
        date: Option<String>,
        account: Option<String>,
        /// Re-query the whole day again instead of continuing an unfinished re-query.
        restart: Option<bool>,
    }
    let req: RunBody = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("{{date?, account?, restart?}}: {e}"),
            )
        })?
    };
    let day = day_of(state, req.date.as_deref())?;
    let account = account_of(state, req.account.as_deref())?;
    let accounts: Vec<ProviderAccountId> = state
        .providers
        .configured()
        .map(|a| a.id.clone())
        .filter(|id| account.as_ref().is_none_or(|o| o == id))
        .collect();
    let pass = if req.restart == Some(true) {
        Pass::Restart
    } else {
        Pass::Resume
    };
    let options = &state.settings.recon;
    let deadline = Instant::now() + options.requery_budget;
    let reports = run_pass(state, day, &accounts, pass, options, deadline).await?;
    Ok(crate::ApiResponse::json(
        200,
        &serde_json::json!({"date": day.date(), "reports": reports_json(&reports)}),
    ))
}

/// The stored reports of `date` (default yesterday), of one account or every configured one: one Query per
/// account (and page).
pub async fn stored(
    state: &AppState,
    raw_query: &str,
) -> Result<(ReconDay, Vec<ReconReport>), ApiError> {
    let day = day_of(state, param(raw_query, "date").as_deref())?;
    let account = account_of(state, param(raw_query, "account").as_deref())?;
    let accounts: Vec<ProviderAccountId> = match account {
        Some(a) => vec![a],
        None => state.providers.configured().map(|a| a.id.clone()).collect(),
    };
    let mut reports = Vec::new();
    for a in accounts {
        if let Some(r) = state.balances.recon(&a, &day.date()).await? {
            reports.push(r);
        }
    }
    Ok((day, reports))
}

/// `GET /ops/recon?date=D&account=ID`: `{"date", "reports": [...]}`, the stored reports (none if not run).
pub async fn ops_show(state: &AppState, raw_query: &str) -> Result<crate::ApiResponse, ApiError> {
    let (day, reports) = stored(state, raw_query).await?;
    Ok(crate::ApiResponse::json(
        200,
        &serde_json::json!({"date": day.date(), "reports": reports_json(&reports)}),
    ))
}

/// The reports as the ops API answers them: each mismatch with its `key` (what a settlement names) and
/// whether it is `open`.
pub fn reports_json(reports: &[ReconReport]) -> serde_json::Value {
    serde_json::Value::Array(
        reports
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
                if let Some(list) = v["mismatches"].as_array_mut() {
                    for (m, value) in r.mismatches.iter().zip(list.iter_mut()) {
                        value["key"] = serde_json::json!(m.key());
                        value["open"] = serde_json::json!(m.is_open());
                    }
                }
                v
            })
            .collect(),
    )
}

/// `GET /ops/recon/mismatches?date=D&account=ID&kind=K&state=open|settled`: every stored mismatch of the day,
/// each with its account, date, key, whether it is open (its settlement if not), and the order's status now
/// (so a resolved order shows it): `{"date", "mismatches": [...]}`.
pub async fn ops_mismatches(
    state: &AppState,
    raw_query: &str,
) -> Result<crate::ApiResponse, ApiError> {
    let kind = param(raw_query, "kind")
        .map(|k| MismatchKind::parse(&k).ok_or_else(|| bad("kind", "a mismatch kind")))
        .transpose()?;
    let open = match param(raw_query, "state").as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("settled") => Some(false),
        Some(_) => return Err(bad("state", "open or settled")),
    };
    let (day, reports) = stored(state, raw_query).await?;
    let listed: Vec<(&ProviderAccountId, &Mismatch)> = reports
        .iter()
        .flat_map(|r| r.mismatches.iter().map(move |m| (&r.account, m)))
        .filter(|(_, m)| kind.is_none_or(|k| k == m.kind))
        .filter(|(_, m)| open.is_none_or(|o| o == m.is_open()))
        .collect();
    let ids: Vec<OrderId> = listed
        .iter()
        .filter_map(|(_, m)| m.order_id.clone())
        .collect();
    let now: BTreeMap<OrderId, PublicStatus> = state
        .store
        .get_many(&ids)
        .await?
        .into_iter()
        .map(|o| (o.id().clone(), o.public_view().status))
        .collect();
    let out: Vec<serde_json::Value> = listed
        .into_iter()
        .map(|(account, m)| {
            let mut v = serde_json::to_value(m).unwrap_or(serde_json::Value::Null);
            v["account"] = serde_json::json!(account.as_str());
            v["date"] = serde_json::json!(day.date());
            v["alarm"] = serde_json::json!(m.kind.alarms());
            v["key"] = serde_json::json!(m.key());
            v["open"] = serde_json::json!(m.is_open());
            v["order_status_now"] = serde_json::json!(
                m.order_id
                    .as_ref()
                    .and_then(|id| now.get(id))
                    .map(|s| s.as_str())
            );
            v
        })
        .collect();
    Ok(crate::ApiResponse::json(
        200,
        &serde_json::json!({"date": day.date(), "mismatches": out}),
    ))
}

/// `POST /ops/recon/mismatches/settle` with `{"account", "date", "key", "operator", "note", "evidence"}`: an
/// operator settles one stored mismatch (after settling the money with the provider or the merchant). Written
/// once, apart from the reports, so a rerun keeps it; the next run's `ReconMismatches` no longer counts it.
/// 404 `unknown_mismatch` if the day's report has no mismatch of that key, 409 `already_settled` if it was
/// settled before. Answers `{"mismatch": {...}}` with its settlement.
pub async fn ops_settle(
    state: &AppState,
    body: &[u8],
    principal: &crate::usecases::operator::Principal,
) -> Result<crate::ApiResponse, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SettleBody {
        account: String,
        date: String,
        key: String,
        operator: String,
        note: String,
        evidence: String,
    }
    let req: SettleBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("{{account, date, key, operator, note, evidence}}: {e}"),
        )
    })?;
    let day = day_of(state, Some(&req.date))?;
    let account =
        account_of(state, Some(&req.account))?.ok_or_else(|| bad("account", "an account id"))?;
    let operator = crate::usecases::operator::text_field("operator", &req.operator, 64)?;
    let note = crate::usecases::operator::mask_numbers(&crate::usecases::operator::text_field(
        "note", &req.note, 500,
    )?);
    let evidence = crate::usecases::operator::mask_numbers(&crate::usecases::operator::text_field(
        "evidence",
        &req.evidence,
        2000,
    )?);
    let not_found = || ApiError::NotFound {
        code: "unknown_mismatch",
        message: format!(
            "the {} report of {account} has no mismatch {:?}",
            day.date(),
            req.key
        ),
    };
    let report = state
        .balances
        .recon(&account, &day.date())
        .await?
        .ok_or_else(not_found)?;
    let mut mismatch = report
        .mismatches
        .into_iter()
        .find(|m| m.key() == req.key)
        .ok_or_else(not_found)?;
    if mismatch.settlement.is_some() {
        return Err(already_settled());
    }
    let settlement = recharge_core::recon::Settlement {
        key: mismatch.key(),
        operator,
        principal: principal.name(),
        note,
        evidence,
        at: state.clock.now(),
    };
    if !state
        .balances
        .settle_mismatch(&account, &day.date(), &settlement)
        .await?
    {
        return Err(already_settled());
    }
    tracing::info!(
        order_id = mismatch.order_id.as_ref().map(OrderId::as_str).unwrap_or("-"),
        provider_account = %account,
        date = %day.date(),
        kind = mismatch.kind.as_str(),
        operator = %settlement.operator,
        principal = %settlement.principal,
        outcome = "settled",
        "operator settled a reconciliation mismatch"
    );
    mismatch.settlement = Some(settlement);
    let mut v = serde_json::to_value(&mismatch).unwrap_or(serde_json::Value::Null);
    v["account"] = serde_json::json!(account.as_str());
    v["date"] = serde_json::json!(day.date());
    v["key"] = serde_json::json!(mismatch.key());
    v["open"] = serde_json::json!(false);
    Ok(crate::ApiResponse::json(
        200,
        &serde_json::json!({"mismatch": v}),
    ))
}

fn already_settled() -> ApiError {
    ApiError::Conflict {
        code: "already_settled",
        message: "this mismatch was settled already; its settlement stands".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recharge_core::Reason;
    use recharge_core::Timestamp;

    fn snaps(points: &[(i64, i64)]) -> Vec<BalanceSnapshot> {
        points
            .iter()
            .map(|(t, fen)| BalanceSnapshot {
                account: ProviderAccountId::parse("acct-a").unwrap(),
                balance: Fen::new(*fen),
                at: Timestamp::from_millis(*t),
            })
            .collect()
    }

    fn judged(history: &[(i64, i64)], delivered: i64, refunds: &[(i64, i64)]) -> ReconReport {
        let day = ReconDay::parse("2025-11-13", 480).unwrap();
        let mut r = ReconReport::empty(
            ProviderAccountId::parse("acct-a").unwrap(),
            day,
            Timestamp::from_millis(0),
        );
        let refunds: Vec<(Timestamp, i64)> = refunds
            .iter()
            .map(|(t, f)| (Timestamp::from_millis(*t), *f))
            .collect();
        balance_check(&mut r, &snaps(history), delivered, &refunds);
        r
    }

    #[test]
    fn a_refund_in_a_later_interval_is_neither_a_top_up_nor_a_drop() {
        // 100 and 50 delivered; a 30 order debited, then refunded in the next interval.
        let r = judged(&[(0, 1_000), (10, 820), (20, 850)], 150, &[(15, 30)]);
        assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
        assert!(r.balance.judged);
        assert_eq!(r.balance.unexplained_fen, 0);
    }

    #[test]
    fn a_top_up_is_shown_and_a_foreign_order_is_an_unexplained_drop_even_on_the_same_day() {
        let r = judged(&[(0, 1_000), (10, 900), (20, 1_400), (30, 1_370)], 100, &[]);
        let kinds: Vec<MismatchKind> = r.mismatches.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MismatchKind::BalanceTopUp,
                MismatchKind::UnexplainedBalanceDrop
            ]
        );
        assert_eq!(r.mismatches[0].amount_fen, Some(500));
        assert_eq!(r.mismatches[1].amount_fen, Some(30));
        assert_eq!(r.alarming(), 1);
    }

    #[test]
    fn one_snapshot_is_not_judged() {
        let r = judged(&[(0, 1_000)], 500, &[]);
        assert!(!r.balance.judged);
        assert!(r.mismatches.is_empty());
    }

    #[test]
    fn a_reversal_of_our_success_is_a_late_reversal_and_a_late_success_of_our_failure_is_theirs() {
        let failed = AttemptState::Failed {
            failover_allowed: true,
            reason: Reason::new("x", "y"),
        };
        let reversed = Outcome::Reversed {
            reason: Reason::new("10", "返销"),
        };
        assert_eq!(
            divergence(&AttemptState::Succeeded, &reversed),
            Ok(Some(MismatchKind::LateReversal))
        );
        assert_eq!(
            divergence(&failed, &Outcome::Succeeded { provider_ref: None }),
            Ok(Some(MismatchKind::TheirSuccessOurFailure))
        );
        assert_eq!(
            divergence(&AttemptState::Succeeded, &Outcome::NotFound),
            Ok(Some(MismatchKind::TheirFailureOurSuccess))
        );
        assert_eq!(
            divergence(
                &AttemptState::Succeeded,
                &Outcome::Succeeded { provider_ref: None }
            ),
            Ok(None)
        );
        assert_eq!(
            divergence(
                &AttemptState::Succeeded,
                &Outcome::Unknown {
                    reason: Reason::new("t", "timeout")
                }
            ),
            Err(())
        );
    }
}

//! The fault campaign (`make faults`): N orders through the local stack with every simulator in chaos mode and
//! random crashes of in-flight work, then checks against the simulators' ledgers.
//!
//! Faults injected:
//! - simulator chaos (seeded): refusals, submits that hang past our timeout, HTTP 500 after recording, the
//!   protocol's "unknown" answer after recording, lost and duplicated callbacks, late failures;
//! - scripted accounts (docs/simulators.md §5) mixed in: stale out-of-order callbacks (0005), reversals (0007), partial
//!   deliveries (0008), long processing (0009) and the rest;
//! - crashes: an order written as `Submitting` through the store with no provider call (a crash right after
//!   that write); a create handler aborted after a random delay; duplicate creates racing each other; sweeps
//!   aborted mid-pass; merchant notifications refused on their first try.
//!
//! Checks, once the sweep has settled: no order delivered twice (deliveries summed per order across every
//! ledger), no order lost, no order `failed` while a ledger shows it delivered, no order succeeded without a
//! delivery, every order final or explainably open, and the merchant's last acknowledged notification equal
//! to the order's final state.

use crate::receiver::Receiver;
use crate::util::{Rng, signed_request};
use recharge_core::store::{AccountControl, AccountMode, AuditEntry};
use recharge_core::{
    AppId, AttemptId, AttemptState, Fen, MerchantOrderNo, NewOrder, Order, OrderId, ProductCode,
};
use recharge_local::{LocalOptions, LocalStack, SigningClient, StoreChoice};
use recharge_sim::{ChaosConfig, Dialect, OrderState};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const APP: &str = "demo";
const APP_SECRET: &str = "demo-secret";

/// Campaign settings.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    pub orders: usize,
    pub seed: u64,
    /// Creates in flight at once.
    pub concurrency: usize,
    /// Divides every provider and gateway timing (not the 2 s HTTP call timeout).
    pub time_scale: f64,
    /// Share of orders written as `Submitting` with no provider call (a crash right after the write).
    pub crash_after_write: f64,
    /// Share of creates whose handler is aborted after a random delay.
    pub abort_in_flight: f64,
    /// Share of creates sent twice at once.
    pub duplicate_create: f64,
    /// Share of orders on a scripted account (docs/simulators.md §5, tails 0001–0009).
    pub scripted: f64,
    /// Share of first notification tries the merchant refuses.
    pub notify_refuse: f64,
    /// How long to wait for every order to settle after the last create.
    pub settle_timeout: Duration,
    /// Settling also stops once the number of unsettled orders has not changed for this long.
    pub settle_stable: Duration,
    /// Print progress to stderr.
    pub progress: bool,
    /// Where the gateway keeps its orders: memory, or DynamoDB (Local) in a fresh table per run.
    pub store: StoreChoice,
    /// `make faults DIALECTS=random`: every simulator speaks a random dialect drawn from this seed and its
    /// account id (recharge_sim::dialect: documented success values kept, everything else may move).
    pub dialect_seed: Option<u64>,
    /// Dialects by provider account id (win over `dialect_seed`), e.g. a planted broken provider.
    pub dialects: BTreeMap<String, Dialect>,
    /// Every account's escalation limit for the campaign, in provider time (an operator's
    /// `escalate_after_secs`, docs/operations.md §2): short enough that what the campaign leaves open reaches the
    /// operator queue before it reports (72 h for slow top-ups would be 432 s of waiting at time scale 600).
    pub escalate_after: Duration,
    /// After settling, how long to wait at most for the last open order's escalation time to pass.
    pub queue_wait: Duration,
    /// After the checks, reconcile the campaign's day(s) (docs/reconciliation.md) and report the mismatches.
    pub recon: bool,
}

impl FaultOptions {
    pub fn new(orders: usize, seed: u64) -> FaultOptions {
        FaultOptions {
            orders,
            seed,
            concurrency: 64,
            time_scale: 600.0,
            crash_after_write: 0.02,
            abort_in_flight: 0.02,
            duplicate_create: 0.02,
            scripted: 0.08,
            notify_refuse: 0.1,
            settle_timeout: Duration::from_secs(120),
            settle_stable: Duration::from_secs(10),
            progress: false,
            store: StoreChoice::Memory,
            dialect_seed: None,
            dialects: BTreeMap::new(),
            escalate_after: Duration::from_secs(30 * 60),
            queue_wait: Duration::from_secs(30),
            recon: false,
        }
    }

    /// The same campaign against DynamoDB at `endpoint` (DynamoDB Local), in a table of its own.
    pub fn on_dynamodb(mut self, endpoint: String) -> FaultOptions {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        self.store = StoreChoice::DynamoDb {
            endpoint: Some(endpoint),
            table: format!(
                "faults-{}-{}-{}-{nanos}",
                self.seed,
                self.orders,
                std::process::id()
            ),
        };
        self
    }

    /// The chaos rates every simulator runs with.
    pub fn chaos(&self) -> ChaosConfig {
        ChaosConfig {
            seed: self.seed,
            refuse: 0.05,
            hang: 0.02,
            http_500: 0.03,
            lost_callback: 0.10,
            duplicate_callback: 0.10,
            late_failure: 0.03,
            unknown_answer: 0.03,
            // The order is recorded, then the submit is answered an unlisted in-band error: only a query
            // or a callback may settle it, never a failover (docs/providers/README.md §4 rule 1).
            inband_error: 0.03,
        }
    }
}

/// How the harness sent an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Injected {
    /// A signed `POST /v1/orders` over HTTP.
    Http,
    /// Written through the store as `Submitting`; the provider is never called.
    CrashAfterWrite,
    /// The create handler was aborted after a random delay.
    Aborted,
    /// Two identical creates at once.
    Duplicate,
}

impl Injected {
    fn name(self) -> &'static str {
        match self {
            Injected::Http => "none (HTTP create)",
            Injected::CrashAfterWrite => "crash after Submitting write",
            Injected::Aborted => "create handler aborted",
            Injected::Duplicate => "duplicate create (racing)",
        }
    }
}

#[derive(Debug, Clone)]
struct Planned {
    merchant_order_no: String,
    body: serde_json::Value,
    injected: Injected,
    notify: bool,
    abort_after: Duration,
}

fn plan_order(opts: &FaultOptions, i: usize, notify_url: &str) -> Planned {
    let mut rng = Rng::new(opts.seed ^ (i as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
    let tail = |rng: &mut Rng| -> String {
        if rng.unit() < opts.scripted {
            format!("000{}", 1 + rng.below(9))
        } else {
            // Never a script tail: 1000..9999.
            format!("{}", 1000 + rng.below(9000))
        }
    };
    let phone = |rng: &mut Rng| format!("1380013{}", tail(rng));
    let p = rng.unit();
    let (product, account, extra) = if p < 0.40 {
        ("mobile.100", phone(&mut rng), json!({}))
    } else if p < 0.60 {
        ("mobile.slow.100", phone(&mut rng), json!({}))
    } else if p < 0.75 {
        (
            "game.demo.60",
            format!("player{}", tail(&mut rng)),
            json!({}),
        )
    } else if p < 0.90 {
        ("vip.demo.month", phone(&mut rng), json!({}))
    } else {
        (
            "electricity.sgcc.100",
            format!("51000{}", tail(&mut rng)),
            json!({"area": "广东", "city": "深圳", "phone": "13800138000"}),
        )
    };
    let notify = rng.unit() < 0.9;
    let merchant_order_no = format!("F{}-{i}", opts.seed);
    let mut body = json!({
        "merchant_order_no": merchant_order_no,
        "product_code": product,
        "account": account,
        "extra": extra,
    });
    if notify {
        body["notify_url"] = json!(notify_url);
    }
    let r = rng.unit();
    let injected = if r < opts.crash_after_write {
        Injected::CrashAfterWrite
    } else if r < opts.crash_after_write + opts.abort_in_flight {
        Injected::Aborted
    } else if r < opts.crash_after_write + opts.abort_in_flight + opts.duplicate_create {
        Injected::Duplicate
    } else {
        Injected::Http
    };
    Planned {
        merchant_order_no,
        body,
        injected,
        notify,
        abort_after: Duration::from_micros(rng.below(30_000)),
    }
}

/// What became of the create request, as the harness saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    /// 201 or 200 (an order exists).
    Created,
    /// Another HTTP status (422 no_route, ...).
    Refused(u16),
    /// The transport failed.
    TransportError,
    /// Aborted: it may or may not have been written.
    Aborted,
}

/// The orders that met one perturbation of one account's dialect.
#[derive(Debug, Default, Clone)]
pub struct PerturbationRow {
    /// Orders with an attempt on the account.
    pub orders: usize,
    /// Final public status → orders.
    pub outcomes: BTreeMap<String, usize>,
    /// Orders left open on the account (the gateway could not resolve them by itself).
    pub open: usize,
    /// Of those, in the operator queue at the end.
    pub queued: usize,
    /// Why they are open → orders.
    pub why: BTreeMap<String, usize>,
}

/// What the daily reconciliation made of the campaign's day(s), summed over its reports.
#[derive(Debug, Default)]
pub struct ReconSummary {
    /// The days reconciled (`YYYY-MM-DD`, Beijing time: a campaign may cross midnight).
    pub days: Vec<String>,
    pub seconds: f64,
    /// Final attempts the protocols can be asked about, asked, not asked within the budget, answers that said
    /// nothing, and differences.
    pub eligible: u64,
    pub queried: u64,
    pub skipped: u64,
    pub inconclusive: u64,
    pub diverged: u64,
    /// (account, mismatch kind) → mismatches.
    pub mismatches: BTreeMap<(String, String), usize>,
    /// One line per mismatch of an order (the first 20), for the reader to follow.
    pub examples: Vec<String>,
}

/// Everything the campaign found.
#[derive(Debug, Default)]
pub struct FaultReport {
    pub orders: usize,
    pub seed: u64,
    /// `memory` or `dynamodb`.
    pub store: String,
    pub create_seconds: f64,
    pub settle_seconds: f64,
    pub settled: bool,
    /// Seconds spent after settling waiting for the last open order's escalation time.
    pub queue_waited: f64,
    /// Public status → orders.
    pub by_status: BTreeMap<String, usize>,
    /// Fault → (orders, status → orders).
    pub by_fault: BTreeMap<String, (usize, BTreeMap<String, usize>)>,
    /// Create replies other than 200/201, and aborted creates that never wrote.
    pub create_results: BTreeMap<String, usize>,
    /// Why open orders are still open.
    pub open_explained: BTreeMap<String, usize>,
    /// Provider account → the dialect its simulator spoke (one line; "as documented" when unchanged).
    pub dialects: BTreeMap<String, String>,
    /// Provider account → (orders with an attempt there, status → orders, orders left open for an operator).
    pub by_account: BTreeMap<String, (usize, BTreeMap<String, usize>, usize)>,
    /// Provider account → orders open there that are in the operator queue at the end.
    pub queued_by_account: BTreeMap<String, usize>,
    /// Open reason → orders in the operator queue at the end.
    pub queued_by_reason: BTreeMap<String, usize>,
    /// `perturbation @ account` (one entry of the account's dialect) → the orders with an attempt there.
    pub by_perturbation: BTreeMap<String, PerturbationRow>,
    /// Orders left processing or waiting for the user.
    pub open: usize,
    /// Of those, in the operator queue (docs/operations.md §2) at the end of the campaign, and with an attention time
    /// at all (in the queue once their escalation limit passes; a PC billing order waiting for its code has none: it
    /// expires instead).
    pub queued_now: usize,
    pub queued_eventually: usize,
    /// Open orders waiting for the user's verification code: they expire as failed (nothing was charged).
    pub awaiting_code: usize,
    /// Ledger totals.
    pub ledger_orders: usize,
    pub ledger_deliveries: u64,
    pub callbacks_sent: usize,
    /// Merchant notifications: acknowledged, refused on purpose, bad signature, unparsable.
    pub notifications: (u64, u64, u64, u64),
    pub sweeps_aborted: u64,
    /// The daily reconciliation of the campaign's day(s), when asked for.
    pub recon: Option<ReconSummary>,
    /// Every broken invariant, one line each (empty when the campaign passed).
    pub violations: Vec<String>,
}

impl FaultReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn print(&self) {
        println!(
            "fault campaign: {} orders, seed {}, store {}, created in {:.1} s ({:.0} orders/s), settled in {:.1} s{}",
            self.orders,
            self.seed,
            self.store,
            self.create_seconds,
            self.orders as f64 / self.create_seconds.max(1e-9),
            self.settle_seconds,
            if self.settled {
                ""
            } else {
                " (settle timeout reached)"
            }
        );
        println!();
        println!("{:<44} {:>8}", "final public status", "orders");
        for (s, n) in &self.by_status {
            println!("{s:<44} {n:>8}");
        }
        if !self.create_results.is_empty() {
            println!();
            println!("{:<44} {:>8}", "create result (besides 200/201)", "orders");
            for (s, n) in &self.create_results {
                println!("{s:<44} {n:>8}");
            }
        }
        println!();
        println!(
            "{:<44} {:>8}  outcomes",
            "fault (ledger plan or harness injection)", "orders"
        );
        for (f, (n, outcomes)) in &self.by_fault {
            let o: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("{f:<44} {n:>8}  {}", o.join(", "));
        }
        if !self.by_account.is_empty() {
            println!();
            println!(
                "{:<18} {:>7} {:>6} {:>7}  outcomes; dialect",
                "provider account", "orders", "open", "queued"
            );
            for (account, (n, outcomes, operator)) in &self.by_account {
                let dialect = self
                    .dialects
                    .get(account)
                    .map(String::as_str)
                    .unwrap_or("as documented");
                let queued = self.queued_by_account.get(account).copied().unwrap_or(0);
                let o: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
                println!(
                    "{account:<18} {n:>7} {operator:>6} {queued:>7}  {}; {dialect}",
                    o.join(", ")
                );
            }
        }
        if !self.by_perturbation.is_empty() {
            println!();
            println!(
                "{:<52} {:>7} {:>6} {:>7}  outcomes; open because",
                "perturbation @ account", "orders", "open", "queued"
            );
            for (p, row) in &self.by_perturbation {
                let o: Vec<String> = row
                    .outcomes
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                let why: Vec<String> = row.why.iter().map(|(k, v)| format!("{v} {k}")).collect();
                println!(
                    "{p:<52} {:>7} {:>6} {:>7}  {}{}{}",
                    row.orders,
                    row.open,
                    row.queued,
                    o.join(", "),
                    if why.is_empty() { "" } else { "; " },
                    why.join("; ")
                );
            }
        }
        println!();
        println!(
            "open orders: {}; in the operator queue now: {} (after waiting {:.1} s for escalation times); with an \
             escalation time: {}; waiting for a verification code (they expire): {}",
            self.open,
            self.queued_now,
            self.queue_waited,
            self.queued_eventually,
            self.awaiting_code
        );
        if !self.open_explained.is_empty() {
            println!();
            println!(
                "{:<76} {:>8} {:>7}",
                "still open, because", "orders", "queued"
            );
            for (s, n) in &self.open_explained {
                let q = self.queued_by_reason.get(s).copied().unwrap_or(0);
                println!("{s:<76} {n:>8} {q:>7}");
            }
        }
        println!();
        println!(
            "ledgers: {} provider orders, {} deliveries, {} callback attempts; sweeps aborted mid-pass: {}",
            self.ledger_orders, self.ledger_deliveries, self.callbacks_sent, self.sweeps_aborted
        );
        let (acked, refused, bad, unparsable) = self.notifications;
        println!(
            "merchant notifications: {acked} acknowledged, {refused} refused on purpose (retried), {bad} bad signatures, {unparsable} unparsable"
        );
        if let Some(r) = &self.recon {
            println!();
            println!(
                "daily reconciliation of {} in {:.1} s: re-query eligible {}, queried {}, skipped {}, inconclusive {}, diverged {}",
                r.days.join(" and "),
                r.seconds,
                r.eligible,
                r.queried,
                r.skipped,
                r.inconclusive,
                r.diverged
            );
            if r.mismatches.is_empty() {
                println!("  no mismatches");
            } else {
                println!(
                    "  {:<18} {:<28} {:>10}",
                    "provider account", "mismatch", "count"
                );
                for ((account, kind), n) in &r.mismatches {
                    println!("  {account:<18} {kind:<28} {n:>10}");
                }
                for e in &r.examples {
                    println!("  e.g. {e}");
                }
            }
        }
        println!();
        if self.violations.is_empty() {
            println!(
                "checks: PASSED (no double delivery, no lost order, no failed-but-delivered, no success without delivery, every order final or explainably open, notifications match)"
            );
        } else {
            println!("checks: FAILED, {} violations:", self.violations.len());
            for v in self.violations.iter().take(50) {
                println!("  {v}");
            }
        }
    }
}

/// Runs the campaign. Must be called inside a multi-threaded Tokio runtime.
pub async fn run(opts: FaultOptions) -> anyhow::Result<FaultReport> {
    let chaos = opts.chaos();
    // The demo simulators hold 1,000,000 yuan each, about 10,000 orders: give them enough for any campaign, so
    // balance routing (a low balance refuses orders with 422 no_route) does not shape the results.
    let mut config = recharge_local::LocalConfig::demo_with(None)?;
    for a in config.accounts.iter_mut().flatten() {
        if let Some(sim) = a.simulator.as_mut()
            && sim.credentials.get("balance_fen").is_some()
        {
            sim.credentials["balance_fen"] = json!(1_000_000_000_000_i64);
        }
    }
    let stack = LocalStack::start(LocalOptions {
        config: Some(config),
        listen: "127.0.0.1:0".parse()?,
        time_scale: opts.time_scale,
        sweep_every: Duration::from_millis(100),
        sim_hang: Duration::from_millis(2_500),
        chaos: Some(chaos),
        store: opts.store.clone(),
        dialects: opts.dialects.clone(),
        dialect_seed: opts.dialect_seed,
        ..LocalOptions::default()
    })
    .await?;
    let receiver = Receiver::start(APP_SECRET, opts.notify_refuse, opts.seed).await?;
    let state = Arc::clone(stack.state());
    let client = stack
        .client(APP)
        .ok_or_else(|| anyhow::anyhow!("the demo app is missing"))?;
    set_escalation(&state, opts.escalate_after).await?;

    // Sweeps aborted at a random point, beside the stack's own sweep.
    let sweeps_aborted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let chaos_sweeps = {
        let state = Arc::clone(&state);
        let aborted = Arc::clone(&sweeps_aborted);
        let seed = opts.seed;
        tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ 0x5eed);
            loop {
                tokio::time::sleep(Duration::from_millis(150 + rng.below(100))).await;
                let t = tokio::spawn(recharge_api::usecases::sweep::sweep(Arc::clone(&state)));
                tokio::time::sleep(Duration::from_micros(rng.below(20_000))).await;
                if !t.is_finished() {
                    t.abort();
                    aborted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };

    let campaign_start = state.clock.now();
    let planned: Vec<Planned> = (0..opts.orders)
        .map(|i| plan_order(&opts, i, receiver.url()))
        .collect();
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks: JoinSet<(usize, Sent)> = JoinSet::new();
    let mut sent: Vec<Option<Sent>> = vec![None; planned.len()];
    for (i, p) in planned.iter().enumerate() {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let p = p.clone();
        let client = client.clone();
        let state = Arc::clone(&state);
        tasks.spawn(async move {
            let r = send(&state, &client, &p).await;
            drop(permit);
            (i, r)
        });
        while let Some(done) = tasks.try_join_next() {
            if let Ok((i, r)) = done {
                sent[i] = Some(r);
            }
        }
        if opts.progress && i > 0 && i % 10_000 == 0 {
            eprintln!(
                "  {i} orders sent, {:.0}/s",
                i as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, r)) = done {
            sent[i] = Some(r);
        }
    }
    let create_seconds = started.elapsed().as_secs_f64();

    // Let the sweep settle: every order final with no notification pending, or the timeout.
    let ids: Vec<OrderId> = planned
        .iter()
        .map(|p| order_id(&p.merchant_order_no))
        .collect::<anyhow::Result<_>>()?;
    let settle_start = Instant::now();
    let mut settled = false;
    // Stop when every order is final with its notification acknowledged, or when nothing has moved for
    // `settle_stable` (what is left open then must be explained by the ledgers, or it is a violation).
    let mut last_pending = usize::MAX;
    let mut last_change = Instant::now();
    while settle_start.elapsed() < opts.settle_timeout {
        let pending = count_pending(&state, &ids).await?;
        if opts.progress {
            eprintln!(
                "  settling: {pending} orders open or with a notification pending after {:.0} s",
                settle_start.elapsed().as_secs_f64()
            );
        }
        if pending == 0 {
            settled = true;
            break;
        }
        if pending != last_pending {
            last_pending = pending;
            last_change = Instant::now();
        } else if last_change.elapsed() >= opts.settle_stable {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle_seconds = settle_start.elapsed().as_secs_f64();
    chaos_sweeps.abort();
    // What is left open must reach the operator queue: wait (bounded) for the last escalation time to pass.
    let queue_waited = wait_for_queue(&state, &ids, opts.queue_wait, opts.progress).await?;

    let mut report = FaultReport {
        orders: opts.orders,
        seed: opts.seed,
        store: match &opts.store {
            StoreChoice::Memory => "memory".into(),
            StoreChoice::DynamoDb { .. } => "dynamodb".into(),
        },
        create_seconds,
        settle_seconds,
        settled,
        queue_waited,
        sweeps_aborted: sweeps_aborted.load(std::sync::atomic::Ordering::Relaxed),
        notifications: receiver.totals(),
        ..FaultReport::default()
    };
    check(
        &stack,
        &receiver,
        &opts.chaos(),
        &planned,
        &sent,
        &ids,
        &mut report,
    )
    .await?;
    if opts.recon {
        report.recon = Some(reconcile(&state, campaign_start).await?);
    }
    stack.stop().await;
    Ok(report)
}

/// Reconciles every day the campaign's orders were created on (docs/reconciliation.md §3), re-querying every
/// final attempt: the simulators answer on loopback, so the pace is the machine's, not a provider's rate limit.
async fn reconcile(
    state: &Arc<recharge_api::AppState>,
    from: recharge_core::Timestamp,
) -> anyhow::Result<ReconSummary> {
    use recharge_core::recon::ReconDay;
    let started = Instant::now();
    let offset = state.settings.recon_utc_offset_minutes;
    let first = ReconDay::containing(from, offset);
    let last = ReconDay::containing(state.clock.now(), offset);
    let mut days = vec![first];
    if last != first {
        days.push(last);
    }
    let options = recharge_api::state::ReconOptions {
        queries_per_second: 5_000.0,
        max_queries: usize::MAX,
        requery_budget: Duration::from_secs(3_600),
        ..recharge_api::state::ReconOptions::default()
    };
    let mut summary = ReconSummary::default();
    for day in days {
        let reports = recharge_api::usecases::recon::run(state, day, None, &options)
            .await
            .map_err(|e| anyhow::anyhow!("reconciliation of the campaign's day: {e:?}"))?;
        for r in reports {
            if !summary.days.contains(&r.date) {
                summary.days.push(r.date.clone());
            }
            summary.eligible += r.requery.eligible;
            summary.queried += r.requery.queried;
            summary.skipped += r.requery.skipped;
            summary.inconclusive += r.requery.inconclusive;
            summary.diverged += r.requery.diverged;
            for m in &r.mismatches {
                *summary
                    .mismatches
                    .entry((r.account.to_string(), m.kind.as_str().to_owned()))
                    .or_default() += 1;
                if summary.examples.len() < 20
                    && let Some(order) = &m.order_id
                {
                    summary.examples.push(format!(
                        "{} {} {order}: ours {}, theirs {}",
                        r.account,
                        m.kind.as_str(),
                        m.ours,
                        m.theirs
                    ));
                }
            }
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Gives every configured account the campaign's escalation limit (an operator's `escalate_after_secs`, read by
/// the create at once: the stack's control cache is dropped).
async fn set_escalation(
    state: &Arc<recharge_api::AppState>,
    after: Duration,
) -> anyhow::Result<()> {
    for account in state.providers.configured() {
        let enabled = state.catalog.settings(&account.id).enabled;
        state
            .balances
            .put_account_control(&AccountControl {
                account: account.id.clone(),
                mode: if enabled {
                    AccountMode::Enabled
                } else {
                    AccountMode::Disabled
                },
                low_balance_fen: None,
                escalate_after_secs: Some(after.as_secs()),
                code_overrides: None,
                updated_at: state.clock.now(),
                updated_by: "fault campaign".into(),
            })
            .await?;
    }
    state.forget_controls();
    Ok(())
}

/// Waits until the escalation time of every open order has passed, at most `limit`; returns the seconds
/// waited. The open orders are read again after each wait (the sweep may have opened a new attempt meanwhile). An
/// open order with no escalation time is not waited for (the check calls it a violation).
async fn wait_for_queue(
    state: &Arc<recharge_api::AppState>,
    ids: &[OrderId],
    limit: Duration,
    progress: bool,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let Some(latest) = latest_escalation(state, ids).await? else {
            break;
        };
        let ahead = latest.millis() - state.clock.now().millis();
        if ahead <= 0 {
            break;
        }
        if progress {
            eprintln!(
                "  waiting for the open orders' escalation times ({ahead} ms of provider time ahead)"
            );
        }
        while state.clock.now() < latest && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Every stored order of `ids` read 32 at a time (DynamoDB Local answers one read in about a millisecond; 5,000
/// reads one by one would make every settle poll take seconds), each mapped by `f`.
async fn read_orders<T: Send + 'static>(
    state: &Arc<recharge_api::AppState>,
    ids: &[OrderId],
    f: fn(&Order) -> T,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(32) {
        let mut reads: JoinSet<anyhow::Result<Option<T>>> = JoinSet::new();
        for id in chunk {
            let state = Arc::clone(state);
            let id = id.clone();
            reads.spawn(async move { Ok(state.store.get(&id).await?.map(|o| f(&o))) });
        }
        while let Some(r) = reads.join_next().await {
            out.extend(r??);
        }
    }
    Ok(out)
}

/// The latest escalation time among the open orders.
async fn latest_escalation(
    state: &Arc<recharge_api::AppState>,
    ids: &[OrderId],
) -> anyhow::Result<Option<recharge_core::Timestamp>> {
    let times = read_orders(state, ids, |o| {
        (!is_final(o))
            .then(|| o.attention().map(|(at, _)| at))
            .flatten()
    })
    .await?;
    Ok(times.into_iter().flatten().max())
}

/// Orders still open or with a notification pending.
async fn count_pending(
    state: &Arc<recharge_api::AppState>,
    ids: &[OrderId],
) -> anyhow::Result<usize> {
    let pending = read_orders(state, ids, |o| !is_final(o) || o.notify_due_at().is_some()).await?;
    Ok(pending.into_iter().filter(|p| *p).count())
}

fn order_id(merchant_order_no: &str) -> anyhow::Result<OrderId> {
    Ok(OrderId::derive(
        &AppId::parse(APP)?,
        &MerchantOrderNo::parse(merchant_order_no)?,
    ))
}

async fn send(state: &Arc<recharge_api::AppState>, client: &SigningClient, p: &Planned) -> Sent {
    let reply = |r: Result<recharge_local::client::Reply, _>| match r {
        Ok(recharge_local::client::Reply {
            status: 200 | 201, ..
        }) => Sent::Created,
        Ok(recharge_local::client::Reply { status, .. }) => Sent::Refused(status),
        Err(_) => Sent::TransportError,
    };
    match p.injected {
        Injected::Http => reply(client.create_order(&p.body).await),
        Injected::Duplicate => {
            let (a, b) = tokio::join!(client.create_order(&p.body), client.create_order(&p.body));
            match (reply(a), reply(b)) {
                (Sent::Created, Sent::Created) => Sent::Created,
                (Sent::Created, other) | (other, Sent::Created) => other,
                (other, _) => other,
            }
        }
        Injected::CrashAfterWrite => match crash_after_write(state, p).await {
            Ok(()) => Sent::Created,
            // No route (or a bad field): nothing was written, as a create would have answered 422.
            Err(_) => Sent::Refused(422),
        },
        Injected::Aborted => {
            let req = signed_request(
                APP,
                APP_SECRET,
                "POST",
                "/v1/orders",
                p.body.to_string().into_bytes(),
            );
            let st = Arc::clone(state);
            let task =
                tokio::spawn(async move { recharge_api::http::routes::handle(&st, req).await });
            tokio::time::sleep(p.abort_after).await;
            task.abort();
            match task.await {
                Ok(r) if r.status == 200 || r.status == 201 => Sent::Created,
                Ok(r) => Sent::Refused(r.status),
                Err(_) => Sent::Aborted,
            }
        }
    }
}

/// What `POST /v1/orders` writes before calling the provider, and nothing else: the process "crashed" right
/// after the `Submitting` write.
async fn crash_after_write(state: &recharge_api::AppState, p: &Planned) -> anyhow::Result<()> {
    let s = |k: &str| p.body.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let code = ProductCode::parse(s("product_code"))?;
    let product = state
        .catalog
        .product(&code)
        .ok_or_else(|| anyhow::anyhow!("no product {code}"))?;
    let target = recharge_api::catalog::validate_account(product, s("account"))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let balances = state.known_balances().await;
    let decision = recharge_api::usecases::route_choice::choose(
        &state.catalog,
        product,
        target.carrier,
        &[],
        &state.providers,
        &balances,
    );
    let route = decision
        .route
        .ok_or_else(|| anyhow::anyhow!("no route for {code}"))?;
    let extra: BTreeMap<String, String> = p
        .body
        .get("extra")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    let new = NewOrder {
        app_id: AppId::parse(APP)?,
        merchant_order_no: MerchantOrderNo::parse(&p.merchant_order_no)?,
        product_code: code,
        account: target.account,
        extra,
        face_value: Fen::new(product.face_value_fen),
        notify_url: p
            .body
            .get("notify_url")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        request_digest: "crash-after-write".into(),
    };
    let now = state.clock.now();
    let policy = state.policy(&route.provider_account);
    // The escalation limit the create handler would have written (shared/api/src/usecases/orders.rs).
    let controls = state.account_controls().await;
    let escalate_after = state.escalate_after_on(&controls, &route.provider_account, product.kind);
    let order = Order::new(new, route, now, policy.call_timeout).with_escalation(escalate_after);
    state
        .store
        .create(&order, &AuditEntry::for_create(&order, None))
        .await?;
    Ok(())
}

fn is_final(o: &Order) -> bool {
    !matches!(
        o.public_view().status.as_str(),
        "processing" | "action_required"
    )
}

fn status_of(o: &Order) -> String {
    o.public_view().status.as_str().to_owned()
}

#[derive(Debug, Clone)]
struct LedgerRow {
    sim: String,
    attempt: String,
    state: OrderState,
    deliveries: u32,
    arrived_fen: Option<i64>,
    script: String,
}

async fn check(
    stack: &LocalStack,
    receiver: &Receiver,
    chaos: &ChaosConfig,
    planned: &[Planned],
    sent: &[Option<Sent>],
    ids: &[OrderId],
    report: &mut FaultReport,
) -> anyhow::Result<()> {
    let state = stack.state();
    let mut ledger: HashMap<String, Vec<LedgerRow>> = HashMap::new();
    // Accounts whose dialect refuses with a code of its own (no table of ours lists it).
    let unlisted_refusal: HashMap<String, String> = stack
        .sims()
        .filter_map(|(sim, running)| {
            running
                .dialect()
                .submit_refusal
                .as_ref()
                .map(|c| (sim.clone(), c.code.clone()))
        })
        .collect();
    for (sim, running) in stack.sims() {
        report
            .dialects
            .insert(sim.clone(), running.dialect().summary());
        report.callbacks_sent += running.callbacks().len();
        for r in running.orders() {
            report.ledger_orders += 1;
            report.ledger_deliveries += u64::from(r.deliveries);
            let Ok(attempt) = AttemptId::parse(&r.caller_order_id) else {
                report.violations.push(format!(
                    "ledger of {sim}: caller order id {:?} is no attempt id of ours",
                    r.caller_order_id
                ));
                continue;
            };
            ledger
                .entry(attempt.order_id().to_string())
                .or_default()
                .push(LedgerRow {
                    sim: sim.clone(),
                    attempt: r.caller_order_id.clone(),
                    state: r.state,
                    deliveries: r.deliveries,
                    arrived_fen: r.arrived_fen,
                    script: r.script.clone(),
                });
        }
    }
    let dialects: HashMap<String, Dialect> = stack
        .sims()
        .map(|(sim, running)| (sim.clone(), running.dialect().clone()))
        .collect();
    let empty = Vec::new();
    for ((p, sent), id) in planned.iter().zip(sent).zip(ids) {
        let rows = ledger.get(id.as_str()).unwrap_or(&empty);
        let deliveries: u32 = rows.iter().map(|r| r.deliveries).sum();
        let rows_text = || {
            rows.iter()
                .map(|r| {
                    format!(
                        "{}@{} {:?} deliveries={} plan={}",
                        r.attempt, r.sim, r.state, r.deliveries, r.script
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        if deliveries > 1 {
            report.violations.push(format!(
                "DOUBLE DELIVERY: order {id} ({}) delivered {deliveries} times: {}",
                p.merchant_order_no,
                rows_text()
            ));
        }
        let order = state.store.get(id).await?;
        let status = order.as_ref().map(status_of);
        // Faults this order met: the ledger plans of its attempts and the harness injection.
        let mut faults: Vec<String> = Vec::new();
        if p.injected != Injected::Http {
            faults.push(p.injected.name().to_owned());
        }
        for r in rows {
            let plan = r.script.strip_prefix("chaos:").unwrap_or(&r.script);
            for f in plan.split('+') {
                let f = match f {
                    "none" | "normal" => continue,
                    t if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) => {
                        format!("script {t}")
                    }
                    other => other.to_owned(),
                };
                if !faults.contains(&f) {
                    faults.push(f);
                }
            }
        }
        // Attempts no ledger recorded (refused at submit, or never sent): the plan the simulator chose or
        // would have chosen, recomputed from the same seed.
        if let Some(o) = &order {
            for a in o.attempts() {
                let attempt_id = o.attempt_id(a.no());
                if rows.iter().any(|r| r.attempt == attempt_id.as_str()) {
                    continue;
                }
                let account = a.route().provider_account.as_str();
                let plan = recharge_sim::script::choose(
                    o.account(),
                    attempt_id.as_str(),
                    account != "suka-backup",
                    Some(chaos),
                );
                if plan.refuse {
                    let f = if plan.label.starts_with("chaos:") {
                        "refuse".to_owned()
                    } else {
                        format!("script {}", plan.label)
                    };
                    if !faults.contains(&f) {
                        faults.push(f);
                    }
                }
            }
        }
        if faults.is_empty() {
            faults.push("none".into());
        }
        let label = status.clone().unwrap_or_else(|| "(no order)".into());
        for f in faults {
            let e = report.by_fault.entry(f).or_default();
            e.0 += 1;
            *e.1.entry(label.clone()).or_default() += 1;
        }
        let Some(order) = order else {
            match sent {
                Some(Sent::Created) => report.violations.push(format!(
                    "LOST: order {id} ({}) was created (2xx) but is not in the store; ledger: {}",
                    p.merchant_order_no,
                    rows_text()
                )),
                Some(Sent::Aborted) if rows.is_empty() => {
                    *report
                        .create_results
                        .entry("aborted before its write (no order, no provider call)".into())
                        .or_default() += 1;
                }
                Some(Sent::Refused(code)) if rows.is_empty() => {
                    *report
                        .create_results
                        .entry(format!("HTTP {code}"))
                        .or_default() += 1;
                }
                Some(Sent::TransportError) if rows.is_empty() => {
                    *report
                        .create_results
                        .entry("transport error, nothing written".into())
                        .or_default() += 1;
                }
                other => report.violations.push(format!(
                    "LOST: order {id} ({}) is not in the store ({other:?}) yet a provider saw it: {}",
                    p.merchant_order_no,
                    rows_text()
                )),
            }
            continue;
        };
        let status = status_of(&order);
        *report.by_status.entry(status.clone()).or_default() += 1;
        let mut accounts: Vec<String> = order
            .attempts()
            .iter()
            .map(|a| a.route().provider_account.to_string())
            .collect();
        accounts.sort();
        accounts.dedup();
        let open_on = order
            .open_attempt()
            .map(|a| a.route().provider_account.to_string());
        let is_open = status == "processing" || status == "action_required";
        let queued = is_open && order.needs_operator(state.clock.now());
        let why =
            is_open.then(|| explain_open(state, &order, rows, chaos, &unlisted_refusal, &dialects));
        for account in accounts {
            let open_here = open_on.as_deref() == Some(account.as_str());
            let e = report.by_account.entry(account.clone()).or_default();
            e.0 += 1;
            *e.1.entry(status.clone()).or_default() += 1;
            if open_here {
                e.2 += 1;
                if queued {
                    *report.queued_by_account.entry(account.clone()).or_default() += 1;
                }
            }
            for pert in dialects
                .get(&account)
                .map(Dialect::perturbations)
                .unwrap_or_default()
            {
                let row = report
                    .by_perturbation
                    .entry(format!("{pert} @ {account}"))
                    .or_default();
                row.orders += 1;
                *row.outcomes.entry(status.clone()).or_default() += 1;
                if open_here {
                    row.open += 1;
                    row.queued += usize::from(queued);
                    let reason = match &why {
                        Some(Ok(w)) => w.clone(),
                        Some(Err(_)) | None => "STUCK (a violation)".to_owned(),
                    };
                    *row.why.entry(reason).or_default() += 1;
                }
            }
        }
        let delivered_in_ledger = rows.iter().any(|r| r.deliveries > 0);
        if status == "failed" && delivered_in_ledger {
            report.violations.push(format!(
                "FAILED BUT DELIVERED: order {id} ({}) is failed; ledger: {}",
                p.merchant_order_no,
                rows_text()
            ));
        }
        if matches!(
            status.as_str(),
            "succeeded" | "partially_succeeded" | "reversed"
        ) && !delivered_in_ledger
        {
            report.violations.push(format!(
                "SUCCESS WITHOUT DELIVERY: order {id} ({}) is {status}; ledger: {}",
                p.merchant_order_no,
                rows_text()
            ));
        }
        if status == "partially_succeeded" {
            // What the gateway says arrived must be what the provider's ledger says arrived.
            let said = order.public_view().delivered_fen.map(|f| f.get());
            let arrived: Option<i64> = rows.iter().find_map(|r| r.arrived_fen);
            if said != arrived {
                report.violations.push(format!(
                    "PARTIAL AMOUNT MISMATCH: order {id} ({}) says {said:?} fen arrived; ledger: {}",
                    p.merchant_order_no,
                    rows_text()
                ));
            }
        }
        if let Some(why) = why {
            report.open += 1;
            report.queued_eventually += usize::from(order.attention().is_some());
            report.queued_now += usize::from(queued);
            let awaiting_code = order.open_attempt().is_some_and(|a| {
                matches!(
                    a.state(),
                    AttemptState::ActionRequired {
                        next: recharge_core::NextAction::EnterVerificationCode
                    }
                )
            });
            report.awaiting_code += usize::from(awaiting_code);
            // The second law: every open order has an owner, the operator queue or its expiry.
            if order.attention().is_none() && !awaiting_code {
                report.violations.push(format!(
                    "UNOWNED: order {id} ({}) is {status} with no escalation time; attempts: {}",
                    p.merchant_order_no,
                    attempts_text(&order)
                ));
            }
            match why {
                Ok(why) => {
                    if queued {
                        *report.queued_by_reason.entry(why.clone()).or_default() += 1;
                    }
                    *report.open_explained.entry(why).or_default() += 1;
                }
                Err(why) => report.violations.push(format!(
                    "STUCK: order {id} ({}) is {status}: {why}; attempts: {}; ledger: {}",
                    p.merchant_order_no,
                    attempts_text(&order),
                    rows_text()
                )),
            }
            continue;
        }
        // Final: the merchant's last acknowledged notification must be this final state.
        if p.notify {
            if order.notify_due_at().is_some() {
                *report
                    .open_explained
                    .entry("final, notification retry pending".into())
                    .or_default() += 1;
                continue;
            }
            match receiver.last(id.as_str()) {
                Some(n) if n.sequence == order.sequence() && n.status == status => {}
                other => report.violations.push(format!(
                    "NOTIFICATION MISMATCH: order {id} ({}) is {status} at sequence {} (notified sequence {}); merchant's last acknowledged: {other:?} of {}",
                    p.merchant_order_no,
                    order.sequence(),
                    order.notified_sequence(),
                    receiver.count(id.as_str())
                )),
            }
        } else if receiver.count(id.as_str()) > 0 {
            report.violations.push(format!(
                "NOTIFIED WITHOUT notify_url: order {id} ({})",
                p.merchant_order_no
            ));
        }
    }
    let (_, _, bad, unparsable) = report.notifications;
    if bad > 0 || unparsable > 0 {
        report.violations.push(format!(
            "merchant notifications: {bad} with a bad signature, {unparsable} unparsable"
        ));
    }
    Ok(())
}

fn attempts_text(order: &Order) -> String {
    order
        .attempts()
        .iter()
        .map(|a| {
            format!(
                "#{} {} {}",
                a.no().get(),
                a.route().provider_account,
                a.state().name()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An open order is explained when its provider is still working on it, or it waits for the user.
fn explain_open(
    state: &recharge_api::AppState,
    order: &Order,
    rows: &[LedgerRow],
    chaos: &ChaosConfig,
    unlisted_refusal: &HashMap<String, String>,
    dialects: &HashMap<String, Dialect>,
) -> Result<String, String> {
    let Some(open) = order.open_attempt() else {
        return Err("open with no open attempt".into());
    };
    if matches!(open.state(), AttemptState::ActionRequired { .. }) {
        return Ok("waiting for the user (action required)".into());
    }
    let attempt_id = order.attempt_id(open.no());
    let account = open.route().provider_account.as_str();
    let dialect = dialects.get(account).cloned().unwrap_or_default();
    match rows.iter().find(|r| r.attempt == attempt_id.as_str()) {
        Some(r) if !r.state.is_terminal() => Ok(format!(
            "provider still processing ({})",
            if r.script.contains("late_failure") || r.script == "0009" {
                "long processing"
            } else {
                "other"
            }
        )),
        // The provider finished it, but every answer about it (query and callback) carries a status value
        // its dialect made up: Unknown (docs/providers/README.md §4 rule 1), for an operator who learns it.
        Some(r) if dialect.statuses.get(r.state).is_some() => Ok(format!(
            "unknown, {account} finished it ({:?}) with unlisted status {}: operator",
            r.state,
            dialect.statuses.get(r.state).unwrap_or_default()
        )),
        // A partial delivery reported in fen reads as more than the face value in yuan: Unknown
        // (docs/providers/README.md §4 rule 5), never a partial success of the wrong amount.
        Some(r)
            if r.state == OrderState::Partial
                && dialect.amounts == recharge_sim::dialect::Unit::Fen =>
        {
            Ok(format!(
                "unknown, {account} reported its partial delivery in fen (above face value): operator"
            ))
        }
        Some(r) => Err(format!(
            "the provider finished it ({:?}) but the gateway did not learn it",
            r.state
        )),
        // Never reached a suka-xml provider whose "not found" code its dialect moved: that answer is Unknown
        // too, so the attempt waits for an operator as on a protocol without a not-found answer.
        None if matches!(open.state(), AttemptState::Unknown { .. })
            && dialect.query.not_found.is_some()
            && state
                .providers
                .get(&open.route().provider_account)
                .is_some_and(|p| p.account.protocol.as_str() == "suka-xml") =>
        {
            Ok(format!(
                "unknown, never reached {account} (its not-found code {} is unlisted): operator",
                dialect
                    .query
                    .not_found
                    .as_ref()
                    .map(|c| c.code.as_str())
                    .unwrap_or_default()
            ))
        }
        // Never reached the provider (a crash after the Submitting write, an aborted handler), and the
        // provider's protocol has no "not found" answer: the attempt stays Unknown until an operator with
        // evidence closes it (docs/state-machine.md §3 invariant 3). Only suka-xml can say "not found".
        None if matches!(open.state(), AttemptState::Unknown { .. })
            && state
                .providers
                .get(&open.route().provider_account)
                .is_some_and(|p| p.account.protocol.as_str() != "suka-xml") =>
        {
            Ok(format!(
                "unknown, never reached {} (no not-found answer): operator",
                open.route().provider_account
            ))
        }
        // The provider refused it (nothing recorded) with a code its dialect made up: Unknown by
        // docs/providers/README.md §4 rule 1, and every probe (the same attempt id resubmitted) gets the same code, so
        // even a provider with a "not found" answer cannot close it. An operator who learns the code closes it.
        None if matches!(open.state(), AttemptState::Unknown { .. })
            && unlisted_refusal.contains_key(open.route().provider_account.as_str())
            && recharge_sim::script::choose(
                order.account(),
                attempt_id.as_str(),
                open.route().provider_account.as_str() != "suka-backup",
                Some(chaos),
            )
            .refuse =>
        {
            Ok(format!(
                "unknown, refused by {} with unlisted code {}: operator",
                open.route().provider_account,
                unlisted_refusal
                    .get(open.route().provider_account.as_str())
                    .map(String::as_str)
                    .unwrap_or_default()
            ))
        }
        None => Err(format!(
            "attempt {} is {} and no provider recorded it",
            attempt_id,
            open.state().name()
        )),
    }
}

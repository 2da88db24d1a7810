//! The benchmark table (`make bench`): every figure is measured in this run, side by side.
//!
//! - local stack (in-memory store, simulators, chaos off): orders/s from creation to a final state, and the
//!   sweep's rate of reconciled due orders;
//! - with DynamoDB and Secrets Manager endpoints in the environment (`AWS_ENDPOINT_URL_DYNAMODB`,
//!   `AWS_ENDPOINT_URL_SECRETS_MANAGER`; `scripts/bench` starts DynamoDB Local and moto): SDK round trips per
//!   step of an order's life against docs/storage.md §4, and warm handler latency beside the bare store calls.

use crate::receiver::Receiver;
use crate::table::{Floor, Row, latency_rows, ms, print_table, row, stats};
use crate::util::{Rng, metered_dynamo, signed_request, wikeyun_success_callback};
use recharge_api::{ApiRequest, AppState};
use recharge_aws::{CallCounter, IndexUnits, Units};
use recharge_core::store::{AuditEntry, record};
use recharge_core::{
    AppId, AttemptNo, Event, Fen, MerchantOrderNo, NewOrder, Order, OrderId, Outcome, ProductCode,
    ProviderAccountId, Route, Source,
};
use recharge_local::{LocalOptions, LocalStack};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const APP: &str = "demo";
const APP_SECRET: &str = "demo-secret";

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub orders: usize,
    pub due: usize,
    /// Orders stored, and of them due, in the sweep-at-scale row (`stored = 0` skips it).
    pub stored: usize,
    pub stored_due: usize,
    pub samples: usize,
    /// The Lambda section (needs the AWS endpoints too); `None` skips it.
    pub lambda: Option<crate::lambda::LambdaOptions>,
    /// Where `cargo lambda build --arm64` put the functions (`target/lambda`); `None` skips the sizes.
    pub packages: Option<std::path::PathBuf>,
}

pub async fn run(opts: BenchOptions) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    eprintln!(
        "throughput: {} orders through the local stack ...",
        opts.orders
    );
    rows.extend(throughput(opts.orders).await?);
    eprintln!("sweep: {} due orders ...", opts.due);
    rows.extend(sweep_rate(opts.due).await?);
    rows.extend(crate::noisy::run(&crate::noisy::NoisyOptions::default()).await?);
    if std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some()
        && std::env::var_os("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_some()
    {
        eprintln!("round trips and latency on DynamoDB Local + Secrets Manager ...");
        rows.extend(dynamo(opts.samples, opts.lambda.as_ref()).await?);
        if opts.stored > 0 {
            eprintln!(
                "sweep at scale: {} stored, {} due, on DynamoDB Local ...",
                opts.stored, opts.stored_due
            );
            rows.extend(crate::scale::run(opts.stored, opts.stored_due).await?);
        }
    } else {
        eprintln!(
            "AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SECRETS_MANAGER not set: round trips and latency skipped (run scripts/bench)"
        );
    }
    match &opts.packages {
        Some(dir) => rows.extend(crate::lambda::package_sizes(dir)?),
        None => {
            eprintln!("no --packages directory: arm64 package sizes skipped (run scripts/bench)")
        }
    }
    print_table(&rows);
    Ok(rows)
}

fn mobile(i: usize, tail: Option<&str>) -> String {
    match tail {
        Some(t) => format!("1380013{t}"),
        None => format!("1380013{}", 1000 + i % 9000),
    }
}

async fn local_stack(time_scale: f64, sweep_every: Duration) -> anyhow::Result<LocalStack> {
    Ok(LocalStack::start(LocalOptions {
        listen: "127.0.0.1:0".parse()?,
        time_scale,
        sweep_every,
        balance_every: Duration::from_secs(3600),
        ..LocalOptions::default()
    })
    .await?)
}

fn is_final(o: &Order) -> bool {
    !matches!(
        o.public_view().status.as_str(),
        "processing" | "action_required"
    )
}

fn order_id(no: &str) -> anyhow::Result<OrderId> {
    Ok(OrderId::derive(
        &AppId::parse(APP)?,
        &MerchantOrderNo::parse(no)?,
    ))
}

/// The throughput run's product mix: one product per provider protocol family in the demo catalog.
const MIX: [&str; 4] = [
    "mobile.100",
    "game.demo.60",
    "vip.demo.month",
    "mobile.slow.100",
];

/// What one run of orders through a fresh local stack measured.
#[derive(Debug, Clone)]
struct Run {
    /// Orders that got a 201.
    created: usize,
    create_secs: f64,
    /// Orders seen in a final state before the deadline.
    finals: usize,
    /// First create to the last final state seen.
    total_secs: f64,
    /// CPU time (user + system) the whole process spent over `total_secs`: the API, the simulators and the
    /// load generator together. None without procfs.
    cpu_secs: Option<f64>,
    /// `account, protocol` of each product's first route, in the order of `products`.
    routes: Vec<String>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.finals as f64 / self.total_secs
    }

    /// `orders/s`, with the CPU per final order and the cores kept busy when procfs tells the CPU time. On a
    /// shared machine the rate follows whatever else runs; the CPU per order much less so.
    fn measured(&self) -> String {
        let rate = format!("{:.0} orders/s", self.rate());
        match self.cpu_secs {
            Some(cpu) if self.finals > 0 => format!(
                "{rate}; {:.2} ms CPU/order, {:.2} cores busy",
                cpu * 1000.0 / self.finals as f64,
                cpu / self.total_secs
            ),
            _ => rate,
        }
    }
}

/// User + system CPU time of this whole process so far (every thread, finished ones included), from
/// `/proc/self/stat`; None where there is no procfs.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces: count from the last ')'. The first
    // field after it is field 3 (state); utime and stime are fields 14 and 15 (proc(5)).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Both count USER_HZ ticks, 100 per second on the Linux ABIs the stack runs on (x86_64, arm64).
    Some((utime + stime) as f64 / 100.0)
}

/// Orders/s from the first create to the last final state, over HTTP with 64 creates in flight: the mixed run
/// against the goal, then each product of the mix alone (a quarter of the orders each), so that a protocol
/// that costs more per order (004's RSA-2048 signature on every request) shows as its own figure rather than
/// only as a drag on the mix.
async fn throughput(n: usize) -> anyhow::Result<Vec<Row>> {
    const SECTION: &str = "local stack, in-memory store, chaos off";
    let mixed = run_orders(&MIX, n).await?;
    let rate = mixed.rate();
    let mut rows = vec![
        row(
            SECTION,
            &format!(
                "orders created (HTTP, 64 in flight; {} of {n} got 201)",
                mixed.created
            ),
            format!("{:.0} orders/s", mixed.created as f64 / mixed.create_secs),
            "",
            "",
        ),
        row(
            SECTION,
            &format!(
                "creation to final state, the mix of the {} below ({} of {n} final)",
                MIX.len(),
                mixed.finals
            ),
            mixed.measured(),
            ">= 2000 orders/s",
            if rate >= 2000.0 && mixed.finals == n {
                "meets"
            } else {
                "MISSES"
            },
        ),
    ];
    let each = (n / MIX.len()).max(1);
    for product in MIX {
        eprintln!("throughput: {each} orders of {product} alone ...");
        let alone = run_orders(&[product], each).await?;
        let route = alone.routes.first().map(String::as_str).unwrap_or("?");
        rows.push(row(
            SECTION,
            &format!(
                "  {product} alone ({route}; {} of {each} final)",
                alone.finals
            ),
            alone.measured(),
            "",
            "",
        ));
    }
    Ok(rows)
}

/// `n` orders cycling through `products`, created over HTTP on a fresh local stack (time scale 1000), then
/// polled in the store until each is final or two minutes have passed.
async fn run_orders(products: &[&str], n: usize) -> anyhow::Result<Run> {
    let stack = local_stack(1000.0, Duration::from_millis(100)).await?;
    let client = stack
        .client(APP)
        .ok_or_else(|| anyhow::anyhow!("no demo app"))?;
    let state = Arc::clone(stack.state());
    let mut routes = Vec::new();
    for product in products {
        let code = ProductCode::parse(product)?;
        let route = state
            .catalog
            .product(&code)
            .and_then(|p| p.routes.first())
            .map(|r| {
                let protocol = state
                    .providers
                    .get(&r.provider_account)
                    .map_or("?", |p| p.account.protocol.as_str());
                format!("{}, {protocol}", r.provider_account)
            })
            .ok_or_else(|| anyhow::anyhow!("{product}: not in the demo catalog"))?;
        routes.push(route);
    }
    let permits = Arc::new(Semaphore::new(64));
    let mut tasks = JoinSet::new();
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut created = 0usize;
    for i in 0..n {
        let product = products[i % products.len()];
        let account = if product == "game.demo.60" {
            format!("player{i}")
        } else {
            mobile(i, None)
        };
        let no = format!("T{i}");
        ids.push(order_id(&no)?);
        let body = json!({"merchant_order_no": no, "product_code": product, "account": account});
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let client = client.clone();
        tasks.spawn(async move {
            let r = client.create_order(&body).await;
            drop(permit);
            match r {
                Ok(r) if r.status == 201 => true,
                Ok(r) => {
                    tracing::warn!(status = r.status, body = %r.body, "create refused");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "create failed");
                    false
                }
            }
        });
        while let Some(r) = tasks.try_join_next() {
            created += usize::from(matches!(r, Ok(true)));
        }
    }
    while let Some(r) = tasks.join_next().await {
        created += usize::from(matches!(r, Ok(true)));
    }
    let create_secs = started.elapsed().as_secs_f64();
    let mut open: Vec<OrderId> = ids;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in open {
            match state.store.get(&id).await? {
                Some(o) if is_final(&o) => {}
                _ => still.push(id),
            }
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let total_secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu_before
        .zip(process_cpu_secs())
        .map(|(before, after)| after - before);
    let finals = n - open.len();
    drop(state);
    stack.stop().await;
    Ok(Run {
        created,
        create_secs,
        finals,
        total_secs,
        cpu_secs,
        routes,
    })
}

/// The sweep's rate on `n` due orders: accepted orders whose provider never calls back (script 0006), so each
/// due order is queried and recorded as succeeded.
async fn sweep_rate(n: usize) -> anyhow::Result<Vec<Row>> {
    let stack = local_stack(1000.0, Duration::from_secs(3600)).await?;
    let state = Arc::clone(stack.state());
    let permits = Arc::new(Semaphore::new(64));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let body = json!({"merchant_order_no": format!("S{i}"), "product_code": "mobile.100", "account": mobile(i, Some("0006"))});
        let req = signed_request(
            APP,
            APP_SECRET,
            "POST",
            "/v1/orders",
            body.to_string().into_bytes(),
        );
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let st = Arc::clone(&state);
        tasks.spawn(async move {
            let r = recharge_api::http::routes::handle(&st, req).await;
            drop(permit);
            r.status
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    // Let the simulator finish every order and the first poll come due.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = state.clock.now();
    let mut due = 0usize;
    for shard in 0..state.store.due_shards() {
        due += state.store.due(shard, now, usize::MAX).await?.len();
    }
    let started = Instant::now();
    let mut passes = 0;
    let mut queried = 0usize;
    loop {
        let r = recharge_api::usecases::sweep::sweep(Arc::clone(&state)).await;
        passes += 1;
        queried += r.queried;
        if r.due == 0 || passes > 1000 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut succeeded = 0usize;
    for i in 0..n {
        if let Some(o) = state.store.get(&order_id(&format!("S{i}"))?).await?
            && o.public_view().status.as_str() == "succeeded"
        {
            succeeded += 1;
        }
    }
    stack.stop().await;
    Ok(vec![row(
        "local stack, in-memory store, chaos off",
        &format!(
            "sweep: {due} due orders, {queried} queried, {succeeded} reconciled to succeeded in {passes} passes"
        ),
        format!("{:.0} orders/s", succeeded as f64 / secs),
        "",
        "",
    )])
}

type Counts = BTreeMap<String, u64>;

fn diff(after: &Counts, before: &Counts) -> Counts {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn is_write(op: &str) -> bool {
    matches!(
        op,
        "TransactWriteItems" | "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem"
    )
}

fn is_read(op: &str) -> bool {
    matches!(
        op,
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems"
    )
}

fn describe(c: &Counts) -> String {
    if c.is_empty() {
        return "0 calls".into();
    }
    c.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

struct Lifecycle {
    create: Counts,
    callback: Counts,
    get: Counts,
    duplicate: Counts,
    /// The DynamoDB calls of each step in order, with the capacity each consumed and its indexes' share
    /// (POST, callback, the notification's claim and record, GET).
    units: [Vec<(String, Units, IndexUnits)>; 4],
}

/// One order's life through the handlers, counting SDK calls per step. The provider's own callback (after
/// the simulator's settle time) is the final transition.
async fn lifecycle(
    stack: &LocalStack,
    calls: &CallCounter,
    no: &str,
    notify_url: Option<&str>,
) -> anyhow::Result<Lifecycle> {
    let state = stack.state();
    let mut body =
        json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800138000"});
    if let Some(url) = notify_url {
        body["notify_url"] = json!(url);
    }
    let body = body.to_string().into_bytes();
    let before = calls.snapshot();
    let m0 = calls.metered().len();
    let r = recharge_api::http::routes::handle(
        state,
        signed_request(APP, APP_SECRET, "POST", "/v1/orders", body.clone()),
    )
    .await;
    anyhow::ensure!(r.status == 201, "create: HTTP {}", r.status);
    let after_create = calls.snapshot();
    let m1 = calls.metered().len();
    let id = order_id(no)?;
    let attempt = format!("{id}01");
    let sim = stack
        .sim("wikeyun-main")
        .ok_or_else(|| anyhow::anyhow!("no wikeyun simulator"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let acked = sim
            .callbacks()
            .iter()
            .any(|c| c.caller_order_id.starts_with(id.as_str()) && c.acknowledged);
        if acked {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no callback for {attempt}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The acknowledgement is sent after the write: give the handler a moment to return.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_callback = calls.snapshot();
    let m2 = calls.metered().len();
    // The merchant's notification, as the sweep's notification lane sends it: the order read, the claim,
    // the POST to the notify URL, the outcome recorded (no calls without a notify_url).
    if notify_url.is_some() {
        let order = state
            .store
            .get(&id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{id} vanished"))?;
        let order = recharge_api::usecases::flow::notify_merchant(state, order).await?;
        anyhow::ensure!(
            order.notify_due_at().is_none(),
            "the notification of {id} was not delivered"
        );
    }
    let m3 = calls.metered().len();
    let r = recharge_api::http::routes::handle(
        state,
        signed_request(
            APP,
            APP_SECRET,
            "GET",
            &format!("/v1/orders/{no}"),
            Vec::new(),
        ),
    )
    .await;
    anyhow::ensure!(r.status == 200, "get: HTTP {}", r.status);
    let after_get = calls.snapshot();
    let metered = calls.metered_by_index();
    let slice = |a: usize, b: usize| metered.get(a..b).unwrap_or_default().to_vec();
    let units = [
        slice(m0, m1),
        slice(m1, m2),
        slice(m2, m3),
        slice(m3, metered.len()),
    ];
    let r = recharge_api::http::routes::handle(
        state,
        signed_request(APP, APP_SECRET, "POST", "/v1/orders", body),
    )
    .await;
    anyhow::ensure!(r.status == 200, "duplicate create: HTTP {}", r.status);
    let after_dup = calls.snapshot();
    Ok(Lifecycle {
        create: diff(&after_create, &before),
        callback: diff(&after_callback, &after_create),
        get: diff(&after_get, &after_callback),
        duplicate: diff(&after_dup, &after_get),
        units,
    })
}

/// Round trips and latency on DynamoDB Local with secrets in Secrets Manager (moto).
async fn dynamo(
    samples: usize,
    lambda: Option<&crate::lambda::LambdaOptions>,
) -> anyhow::Result<Vec<Row>> {
    let calls = CallCounter::metering();
    let (table, options) = metered_dynamo("bench", &calls, 20.0)?;
    let stack = LocalStack::start(LocalOptions {
        secrets_manager: true,
        ..options
    })
    .await?;
    // Let the start-up balance check finish before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let receiver = Receiver::start(APP_SECRET, 0.0, 0).await?;
    let cold = lifecycle(&stack, &calls, "B-cold", None).await?;
    let warm = lifecycle(&stack, &calls, "B-warm", None).await?;
    let notified = lifecycle(&stack, &calls, "B-notify", Some(receiver.url())).await?;

    let mut rows = Vec::new();
    let sec = "DynamoDB Local + Secrets Manager (moto): SDK round trips, warm";
    let budget = |c: &Counts, writes: u64, reads: u64| {
        let w: u64 = c.iter().filter(|(k, _)| is_write(k)).map(|(_, v)| v).sum();
        let r: u64 = c.iter().filter(|(k, _)| is_read(k)).map(|(_, v)| v).sum();
        let s = c.get("GetSecretValue").copied().unwrap_or(0);
        if w <= writes && r <= reads && s == 0 {
            "at budget".to_owned()
        } else {
            let mut over = Vec::new();
            if w > writes {
                over.push(format!("+{} write", w - writes));
            }
            if r > reads {
                over.push(format!("+{} read", r - reads));
            }
            if s > 0 {
                over.push(format!("+{s} secret read"));
            }
            format!("OVER: {}", over.join(", "))
        }
    };
    // (what, its calls, the budget as said, the budget's writes and reads; `None`: not held to one)
    let budgeted = [
        (
            "POST /v1/orders: create + accepted",
            &warm.create,
            "2 conditional writes, 0 reads, 0 secret reads",
            Some((2, 0)),
        ),
        (
            "provider callback: final (succeeded)",
            &warm.callback,
            "1 conditional write (read only when it fails)",
            Some((1, 0)),
        ),
        (
            "  same, order with notify_url (the notification is the sweep's: below)",
            &notified.callback,
            "1 write per transition",
            None,
        ),
        ("GET /v1/orders/{no}", &warm.get, "1 read", Some((0, 1))),
    ];
    for (what, counts, expected, limit) in budgeted {
        let verdict = limit.map_or_else(String::new, |(w, r)| budget(counts, w, r));
        rows.push(row(sec, what, describe(counts), expected, &verdict));
    }
    // The refused conditional transaction is a round trip that writes nothing.
    let dup_writes_attempted: u64 = warm
        .duplicate
        .iter()
        .filter(|(k, _)| is_write(k))
        .map(|(_, v)| v)
        .sum();
    rows.push(row(
        sec,
        "duplicate POST /v1/orders (replay)",
        describe(&warm.duplicate),
        "0 writes (refused conditional write)",
        &if dup_writes_attempted <= 1 {
            format!(
                "at budget (the {dup_writes_attempted} conditional PutItem is refused, writes nothing)"
            )
        } else {
            budget(&warm.duplicate, 0, 1)
        },
    ));
    let secret_reads = |l: &Lifecycle| -> u64 {
        [&l.create, &l.callback, &l.get, &l.duplicate]
            .iter()
            .map(|c| c.get("GetSecretValue").copied().unwrap_or(0))
            .sum()
    };
    let (cold_secrets, warm_secrets) = (secret_reads(&cold), secret_reads(&warm));
    rows.push(row(
        sec,
        "Secrets Manager calls per lifecycle (first order / warm)",
        format!("{cold_secrets} / {warm_secrets}"),
        "warm: 0",
        if warm_secrets == 0 { "meets" } else { "MISSES" },
    ));

    let (capacity, life) = capacity_rows(&notified.units);
    rows.extend(capacity);

    let (latency_rows, floor) = latency(&stack, samples).await?;
    rows.extend(latency_rows);
    if let Some(lambda) = lambda {
        let (lambda_rows, measured) =
            crate::lambda::run(&stack, &table, &floor, (APP, APP_SECRET), samples, lambda).await?;
        rows.extend(lambda_rows);
        let accounts = stack.state().providers.loaded().len() as f64;
        rows.extend(crate::cost::rows(&cost_inputs(&measured, life, accounts)).0);
    }
    stack.stop().await;
    Ok(rows)
}

/// Warm handler latency (no HTTP server in front: `http::routes::handle` as the Lambda runtime loop calls it) beside
/// the store calls each one needs, on the same DynamoDB Local.
async fn latency(stack: &LocalStack, samples: usize) -> anyhow::Result<(Vec<Row>, Floor)> {
    let state: &Arc<AppState> = stack.state();
    let sim = stack
        .sim("wikeyun-main")
        .ok_or_else(|| anyhow::anyhow!("no wikeyun simulator"))?;
    let mut post = Vec::new();
    let mut get = Vec::new();
    let mut cb = Vec::new();
    let handle = |req: ApiRequest| recharge_api::http::routes::handle(state, req);
    // Orders on script 0006: accepted, never called back; the harness sends the success callback itself.
    for i in 0..samples {
        let no = format!("L{i}");
        let body = json!({"merchant_order_no": no, "product_code": "mobile.100", "account": mobile(i, Some("0006"))});
        let req = signed_request(
            APP,
            APP_SECRET,
            "POST",
            "/v1/orders",
            body.to_string().into_bytes(),
        );
        let t = Instant::now();
        let r = handle(req).await;
        post.push(ms(t.elapsed()));
        anyhow::ensure!(r.status == 201, "create: HTTP {}", r.status);
    }
    let ledger: BTreeMap<String, recharge_sim::OrderRecord> = sim
        .orders()
        .into_iter()
        .map(|o| (o.caller_order_id.clone(), o))
        .collect();
    for i in 0..samples {
        let id = order_id(&format!("L{i}"))?;
        let attempt = format!("{id}01");
        let rec = ledger
            .get(&attempt)
            .ok_or_else(|| anyhow::anyhow!("the simulator has no {attempt}"))?;
        let req = wikeyun_success_callback(rec);
        let t = Instant::now();
        let r = handle(req).await;
        cb.push(ms(t.elapsed()));
        anyhow::ensure!(
            r.status == 200 && r.body == b"success",
            "callback: HTTP {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let o = state.store.get(&id).await?;
        anyhow::ensure!(
            o.as_ref().map(|o| o.public_view().status.as_str()) == Some("succeeded"),
            "callback did not finish {id}"
        );
    }
    for i in 0..samples {
        let req = signed_request(
            APP,
            APP_SECRET,
            "GET",
            &format!("/v1/orders/L{i}"),
            Vec::new(),
        );
        let t = Instant::now();
        let r = handle(req).await;
        get.push(ms(t.elapsed()));
        anyhow::ensure!(r.status == 200, "get: HTTP {}", r.status);
    }

    // The floor: the same store calls alone (create + record accepted; read + record succeeded; read).
    let mut f_post = Vec::new();
    let mut f_cb = Vec::new();
    let mut f_get = Vec::new();
    let route = Route {
        provider_account: ProviderAccountId::parse("wikeyun-main")?,
        provider_product: "100".into(),
        cost: Fen::new(10_000),
    };
    let policy = state.policy(&route.provider_account);
    let mut rng = Rng::new(1);
    for i in 0..samples {
        let new = NewOrder {
            app_id: AppId::parse(APP)?,
            merchant_order_no: MerchantOrderNo::parse(&format!("FL{i}-{}", rng.below(1 << 40)))?,
            product_code: ProductCode::parse("mobile.100")?,
            account: "13800138000".into(),
            extra: BTreeMap::new(),
            face_value: Fen::new(10_000),
            notify_url: None,
            request_digest: "floor".into(),
        };
        let order = Order::new(new, route.clone(), state.clock.now(), policy.call_timeout);
        let id = order.id().clone();
        let t = Instant::now();
        state
            .store
            .create(&order, &AuditEntry::for_create(&order, None))
            .await?;
        record(
            &*state.store,
            order,
            &Event::Outcome {
                attempt: AttemptNo::FIRST,
                source: Source::Submit,
                outcome: Outcome::Accepted {
                    provider_ref: Some("P1".into()),
                },
                report: Default::default(),
            },
            state.clock.now(),
            &policy,
            None,
        )
        .await?;
        f_post.push(ms(t.elapsed()));
        let t = Instant::now();
        let current = state
            .store
            .get(&id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("floor order vanished"))?;
        record(
            &*state.store,
            current,
            &Event::Outcome {
                attempt: AttemptNo::FIRST,
                source: Source::Callback,
                outcome: Outcome::Succeeded { provider_ref: None },
                report: Default::default(),
            },
            state.clock.now(),
            &policy,
            None,
        )
        .await?;
        f_cb.push(ms(t.elapsed()));
        let t = Instant::now();
        let _ = state.store.get(&id).await?;
        f_get.push(ms(t.elapsed()));
    }
    let floor = Floor {
        post: stats(f_post),
        callback: stats(f_cb),
        get: stats(f_get),
    };
    let rows = latency_rows(
        "DynamoDB Local + Secrets Manager (moto): warm latency through the handlers",
        samples,
        &floor,
        [post, cb, get],
    );
    Ok((rows, floor))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn process_cpu_time_counts_work_done() {
        let before = super::process_cpu_secs().expect("procfs on Linux");
        // Busy for 300 ms of wall time: at least a few ticks of CPU whatever else runs on the machine.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = super::process_cpu_secs().expect("procfs on Linux");
        assert!(after >= before, "{after} < {before}");
        assert!(
            after - before >= 0.02,
            "only {} s of CPU counted",
            after - before
        );
        assert!(
            after - before < 60.0,
            "{} s of CPU in 300 ms",
            after - before
        );
    }
}

/// The order item's write units in the layout before 2026-12-01, as the bench measured them then (its doc
/// as text made a usual order item 1 to 2 KB): the "before" of the lifecycle row.
const OLD_ORDER_ITEM_UNITS: f64 = 2.0;

/// The consumed capacity of each step of one order's life (an order with a `notify_url`), as DynamoDB Local
/// reports it with `ReturnConsumedCapacity = INDEXES`, per index, and the lifecycle's sum against the goal.
fn capacity_rows(
    [post, callback, notification, get]: &[Vec<(String, Units, IndexUnits)>; 4],
) -> (Vec<Row>, Units) {
    let sec = "DynamoDB Local: consumed capacity per step (ReturnConsumedCapacity = INDEXES), order with notify_url";
    // The POST's writes: the create, then the accepted answer. The notification's: the claim, then the
    // outcome recorded.
    let split = |calls: &[(String, Units, IndexUnits)]| {
        let first_write = calls.iter().position(|(op, _, _)| is_write(op));
        match first_write {
            Some(i) => (calls[..=i].to_vec(), calls[i + 1..].to_vec()),
            None => (calls.to_vec(), Vec::new()),
        }
    };
    let (create, accepted) = split(post);
    let (claim, notified) = split(notification);
    let sum = |calls: &[(String, Units, IndexUnits)]| {
        calls.iter().fold(Units::default(), |a, (_, u, _)| a + *u)
    };
    let describe_units = |calls: &[(String, Units, IndexUnits)]| {
        let u = sum(calls);
        let mut by_index = IndexUnits::new();
        for (_, _, i) in calls {
            for (name, units) in i {
                *by_index.entry(name.clone()).or_default() += units;
            }
        }
        let ops: Vec<&str> = calls.iter().map(|(op, _, _)| op.as_str()).collect();
        let indexes: Vec<String> = by_index
            .iter()
            .map(|(name, units)| format!("{name} {units:.0}"))
            .collect();
        format!(
            "{:.1} WCU (table {:.1}, indexes {:.1}{}), {:.1} RCU in {}",
            u.write,
            u.write - u.index,
            u.index,
            if indexes.is_empty() {
                String::new()
            } else {
                format!(": {}", indexes.join(", "))
            },
            u.read,
            if ops.is_empty() {
                "no call".to_owned()
            } else {
                ops.join(" + ")
            }
        )
    };
    let mut rows: Vec<Row> = [
        (
            "create (POST /v1/orders, the order written)",
            &create,
            "1 plain conditional write",
        ),
        (
            "accepted (the provider's answer recorded)",
            &accepted,
            "1 plain conditional write",
        ),
        (
            "callback to final (succeeded)",
            callback,
            "1 read + 1 plain conditional write",
        ),
        (
            "notification claimed (the sweep's read + claim)",
            &claim,
            "1 read + 1 plain conditional write",
        ),
        (
            "notification recorded (delivered)",
            &notified,
            "1 plain conditional write",
        ),
        ("merchant GET /v1/orders/{no}", get, "1 read"),
    ]
    .into_iter()
    .map(|(name, calls, goal)| row(sec, name, describe_units(calls), goal, ""))
    .collect();
    let all: Vec<(String, Units, IndexUnits)> = [post, callback, notification, get]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let life = sum(&all);
    // The same writes in the layout before 2026-12-01, by AWS's billing rule: a `TransactWriteItems` of the
    // order item (then OLD_ORDER_ITEM_UNITS) and its audit item (under 1 KB), 2 units per KB of each, and
    // the same index changes (billed once; docs/storage.md §6).
    let before: f64 = all
        .iter()
        .filter(|(op, _, _)| is_write(op))
        .map(|(_, u, _)| 2.0 * (OLD_ORDER_ITEM_UNITS + 1.0) + u.index)
        .sum();
    let goal = before / 2.0;
    rows.push(row(
        sec,
        "lifecycle (create + accepted + final + claimed + notified + GET)",
        format!(
            "{:.1} WCU, {:.1} RCU (the transactional layout: {before:.1} WCU)",
            life.write, life.read
        ),
        &format!("<= {goal:.1} WCU (half of the transactional layout's)"),
        if life.write <= goal {
            "meets"
        } else {
            "MISSES"
        },
    ));
    (rows, life)
}

/// The cost model's inputs from this run: one POST, one callback (which records the notification) and one
/// GET per order, and the scheduled functions' runs (one a minute each) spread over the model's monthly
/// orders. Secret calls per cold start are the code's: one `BatchGetSecretValue` per 20 accounts where a
/// function calls providers, and the two stages of a merchant app's secret on its first use.
fn cost_inputs(m: &crate::lambda::Measured, life: Units, accounts: f64) -> crate::cost::CostInputs {
    let batches = (accounts / 20.0).ceil();
    let scheduled_per_order = 30.0 * 24.0 * 60.0 / crate::cost::ORDERS_PER_MONTH;
    let plan: [(&'static str, f64, f64, f64); 5] = [
        ("submit-order", 1.0, batches + 2.0, 1.0),
        ("provider-callback", 1.0, batches, 1.0),
        ("order-status", 1.0, 2.0, 1.0),
        ("reconcile", scheduled_per_order, batches, 0.0),
        ("check-balance", scheduled_per_order, batches, 0.0),
    ];
    crate::cost::CostInputs {
        functions: plan
            .into_iter()
            .map(|(name, per_order, init_secret_calls, http)| {
                let w = m.warm.get(name).copied().unwrap_or_default();
                crate::cost::FunctionUse {
                    name,
                    per_order,
                    wall_ms: w.p50_ms,
                    cpu_ms: w.cpu_ms,
                    log_bytes: w.log_bytes,
                    init_ms: m.init_ms.get(name).copied().unwrap_or(0.0),
                    init_secret_calls,
                    http,
                    peak_mib: w.peak_mib,
                }
            })
            .collect(),
        write_units: life.write,
        read_units: life.read,
    }
}

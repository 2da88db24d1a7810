//! The sweep at scale on DynamoDB Local (issue 16, item 5): `due` orders that really are due (accepted,
//! never called back: script 0006) among `stored` orders in all, the rest filler copies of a real order item
//! without the due index's keys, loaded with `BatchWriteItem`. A sweep pass queries the sparse due index
//! only, so its queries and their read units follow the due orders and not the stored ones: the bench shows
//! the due queries of a pass before and after the filler is loaded, then the store calls of each real pass.

use crate::table::{Row, row};
use crate::util::{metered_dynamo, signed_request};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use recharge_aws::{CallCounter, Units};
use recharge_local::LocalStack;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const APP: &str = "demo";
const APP_SECRET: &str = "demo-secret";
/// BatchWriteItem's limit, and the batches in flight while loading.
const BATCH: usize = 25;
const IN_FLIGHT: usize = 16;

type Metered = Vec<(String, Units)>;

fn tally(calls: &[(String, Units)]) -> (BTreeMap<String, u64>, Units) {
    let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
    let mut units = Units::default();
    for (op, u) in calls {
        *by_op.entry(op.clone()).or_default() += 1;
        units = units + *u;
    }
    (by_op, units)
}

fn describe(calls: &[(String, Units)]) -> String {
    let (by_op, units) = tally(calls);
    let ops: Vec<String> = by_op.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!(
        "{} ({:.1} RCU, {:.1} WCU)",
        if ops.is_empty() {
            "no call".to_owned()
        } else {
            ops.join(" + ")
        },
        units.read,
        units.write
    )
}

/// The due-index queries one pass makes (each shard, the sweep's batch), metered.
async fn due_queries(stack: &LocalStack, calls: &CallCounter) -> anyhow::Result<(usize, Metered)> {
    let state = stack.state();
    let from = calls.metered().len();
    let now = state.clock.now();
    let mut due = 0;
    for shard in 0..state.store.due_shards() {
        due += state
            .store
            .due(shard, now, state.settings.sweep_batch)
            .await?
            .len();
    }
    Ok((
        due,
        calls.metered().get(from..).unwrap_or_default().to_vec(),
    ))
}

/// Runs `make(i)` for each `i` in `0..n`, at most `in_flight` at a time, and returns every result (in the
/// order they finish). Each finished task is collected, so none is lost to the count (the row once reported
/// 64 due orders of 201 made due: the ones finished while others were still being started went uncounted).
async fn bounded<T, F, Fut>(n: usize, in_flight: usize, make: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = JoinSet::new();
    let mut done = Vec::with_capacity(n);
    for i in 0..n {
        while tasks.len() >= in_flight.max(1) {
            if let Some(r) = tasks.join_next().await {
                done.push(r?);
            }
        }
        tasks.spawn(make(i));
    }
    while let Some(r) = tasks.join_next().await {
        done.push(r?);
    }
    Ok(done)
}

/// Loads `n` copies of `template` (an order item) under fresh keys, without the due index's attributes.
async fn load_filler(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    template: &HashMap<String, AttributeValue>,
    n: usize,
) -> anyhow::Result<()> {
    let mut base = template.clone();
    base.remove("due_shard");
    base.remove("due_at");
    base.remove("attn_part");
    base.remove("attn_sk");
    base.remove("attn_why");
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for start in (0..n).step_by(BATCH) {
        let mut requests = Vec::with_capacity(BATCH);
        for i in start..(start + BATCH).min(n) {
            let mut item = base.clone();
            item.insert("pk".into(), AttributeValue::S(format!("O#FILLER{i:09}")));
            requests.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                    .build(),
            );
        }
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let client = client.clone();
        let table = table.to_owned();
        tasks.spawn(async move {
            let mut pending = requests;
            for attempt in 0..20u64 {
                let out = client
                    .batch_write_item()
                    .request_items(&table, pending)
                    .send()
                    .await?;
                pending = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&table))
                    .cloned()
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
            }
            drop(permit);
            anyhow::ensure!(pending.is_empty(), "filler batch left unprocessed");
            Ok(())
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// The scale rows: `stored` orders of which `due` are due, on a fresh DynamoDB Local table.
pub async fn run(stored: usize, due: usize) -> anyhow::Result<Vec<Row>> {
    let sec =
        "sweep at scale on DynamoDB Local: store calls per pass (metered, ReturnConsumedCapacity)";
    let calls = CallCounter::metering();
    let (table, options) = metered_dynamo("scale", &calls, 1000.0)?;
    let stack = LocalStack::start(options).await?;
    let state = Arc::clone(stack.state());
    eprintln!("sweep at scale: {due} due orders through the handlers ...");
    let started = Instant::now();
    let statuses = bounded(due, 64, |i| {
        let body = json!({"merchant_order_no": format!("Z{i}"), "product_code": "mobile.100",
                          "account": "13800130006"});
        let req = signed_request(
            APP,
            APP_SECRET,
            "POST",
            "/v1/orders",
            body.to_string().into_bytes(),
        );
        let st = Arc::clone(&state);
        async move { recharge_api::http::routes::handle(&st, req).await.status }
    })
    .await?;
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = due - created;
    let create_secs = started.elapsed().as_secs_f64();
    // Let the first poll of every order come due (the stack's clock runs 1000x).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (due_before, before) = due_queries(&stack, &calls).await?;

    let sdk = recharge_aws::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let id = recharge_core::OrderId::derive(
        &recharge_core::AppId::parse(APP)?,
        &recharge_core::MerchantOrderNo::parse("Z0")?,
    );
    let template = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("O#{id}")))
        .key("sk", AttributeValue::S("ORDER".into()))
        .send()
        .await?
        .item()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no order item for {id}"))?;
    let filler = stored.saturating_sub(due);
    eprintln!("sweep at scale: loading {filler} filler orders (BatchWriteItem x{IN_FLIGHT}) ...");
    let started = Instant::now();
    load_filler(&client, &table, &template, filler).await?;
    let load_secs = started.elapsed().as_secs_f64();
    let (due_after, after) = due_queries(&stack, &calls).await?;

    let mut rows = vec![row(
        sec,
        &format!(
            "loading: {created} due orders through the handlers ({refused} creates refused), {filler} filler items by BatchWriteItem"
        ),
        format!(
            "{create_secs:.0} s ({:.0} orders/s) + {load_secs:.0} s ({:.0} items/s)",
            created as f64 / create_secs,
            filler as f64 / load_secs.max(0.001)
        ),
        "",
        "",
    )];
    let (b_ops, b_units) = tally(&before);
    let (a_ops, a_units) = tally(&after);
    let same = b_ops == a_ops && (a_units.read - b_units.read).abs() <= b_units.read * 0.05 + 0.5;
    rows.push(row(
        sec,
        &format!("due queries of a pass: {due_before} due of {created} stored"),
        describe(&before),
        "",
        "",
    ));
    rows.push(row(
        sec,
        &format!(
            "due queries of a pass: {due_after} due of {} stored",
            created + filler
        ),
        describe(&after),
        "the same calls and read units as with only the due stored",
        if same { "meets" } else { "MISSES" },
    ));
    let mut pass = 0;
    loop {
        let from = calls.metered().len();
        let t = Instant::now();
        let r = recharge_api::usecases::sweep::sweep(Arc::clone(&state)).await;
        let secs = t.elapsed().as_secs_f64();
        pass += 1;
        let metered = calls.metered();
        let this = metered.get(from..).unwrap_or_default();
        if r.due == 0 {
            rows.push(row(
                sec,
                &format!("pass {pass}: nothing due"),
                describe(this),
                "one query per shard",
                "",
            ));
            break;
        }
        if pass > 12 {
            // Until 2026-12-02 this row said "nothing due" whatever was still due.
            rows.push(row(
                sec,
                &format!(
                    "pass {pass}: {} still due; the rows stop after 12 passes",
                    r.due
                ),
                describe(this),
                "",
                "",
            ));
            break;
        }
        let per_due = this.len() as f64 / r.due as f64;
        rows.push(row(
            sec,
            &format!(
                "pass {pass}: {} due, {} queried, {} errors, {secs:.1} s",
                r.due, r.queried, r.errors
            ),
            format!("{} = {per_due:.2} calls per due order", describe(this)),
            "",
            "",
        ));
    }
    stack.stop().await;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::bounded;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_task_is_counted_whatever_finishes_first() {
        // Tasks that finish at different times, more of them than may run at once.
        let done = bounded(201, 64, |i| async move {
            tokio::time::sleep(Duration::from_millis((i % 7) as u64)).await;
            i
        })
        .await
        .unwrap();
        assert_eq!(done.len(), 201);
        let mut seen = done.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..201).collect::<Vec<_>>());
    }
}

//! The noisy-neighbour row (issue 15, docs/benchmarks.md §6): one app with many orders whose notify URL hangs
//! must not slow another app's orders. App `demo` places `loud` orders of `mobile.100` (callbacks, so each
//! one changes status and is notified) with a notify URL that holds every request `hang` before answering;
//! app `demo2` places `quiet` query-driven orders (script 0006: no callback, only the sweep's query settles
//! them). Their creation-to-final times are measured unloaded (a fresh stack, no loud app) and loaded (a fresh
//! stack, right after the loud orders), on the local stack's default timing (time scale 20, sweep every
//! 200 ms).

use crate::table::{Row, row};
use crate::util::percentile;
use recharge_core::{AppId, MerchantOrderNo, OrderId};
use recharge_local::{LocalOptions, LocalStack};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECTION: &str = "noisy neighbour: local stack, in-memory store";

#[derive(Debug, Clone)]
pub struct NoisyOptions {
    /// Orders of the app whose notify URL hangs.
    pub loud: usize,
    /// Query-driven orders of the other app, measured.
    pub quiet: usize,
    /// How long the hanging notify URL holds each request.
    pub hang: Duration,
}

impl Default for NoisyOptions {
    fn default() -> Self {
        NoisyOptions {
            loud: 100,
            quiet: 20,
            hang: Duration::from_secs(8),
        }
    }
}

/// A merchant server that answers every notification after `hang` (a hung merchant), counting them.
struct HangingReceiver {
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for HangingReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hanging_receiver(hang: Duration) -> anyhow::Result<HangingReceiver> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move || async move {
            tokio::time::sleep(hang).await;
            axum::http::StatusCode::OK
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(HangingReceiver {
        url: format!("http://{addr}/notify"),
        server,
    })
}

async fn stack() -> anyhow::Result<LocalStack> {
    Ok(LocalStack::start(LocalOptions {
        listen: "127.0.0.1:0".parse()?,
        balance_every: Duration::from_secs(3600),
        ..LocalOptions::default()
    })
    .await?)
}

/// Creates the quiet app's orders and returns each one's creation-to-final time in seconds (orders not final
/// after two minutes count as two minutes).
async fn quiet_orders(stack: &LocalStack, n: usize, tag: &str) -> anyhow::Result<Vec<f64>> {
    let client = stack
        .client("demo2")
        .ok_or_else(|| anyhow::anyhow!("no demo2 app"))?;
    let state = Arc::clone(stack.state());
    let app = AppId::parse("demo2")?;
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let no = format!("Q{tag}{i}");
        let body = json!({"merchant_order_no": no, "product_code": "mobile.100",
            "account": format!("13900{:02}0006", i % 100)});
        let started = Instant::now();
        let r = client.create_order(&body).await?;
        anyhow::ensure!(r.status == 201, "quiet create: {} {}", r.status, r.body);
        open.push((
            OrderId::derive(&app, &MerchantOrderNo::parse(&no)?),
            started,
        ));
    }
    let mut times = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (id, started) in open {
            match state.store.get(&id).await? {
                Some(o) if o.public_view().status.as_str() != "processing" => {
                    times.push(started.elapsed().as_secs_f64())
                }
                _ => still.push((id, started)),
            }
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times.extend(open.iter().map(|_| 120.0));
    Ok(times)
}

fn describe(times: &[f64]) -> String {
    let mut v = times.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} s, p90 {:.2} s, max {:.2} s (n={})",
        percentile(&v, 50.0),
        percentile(&v, 90.0),
        v.last().copied().unwrap_or(0.0),
        v.len()
    )
}

fn median(times: &[f64]) -> f64 {
    let mut v = times.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

pub async fn run(opts: &NoisyOptions) -> anyhow::Result<Vec<Row>> {
    eprintln!("noisy neighbour: {} quiet orders unloaded ...", opts.quiet);
    let unloaded = {
        let stack = stack().await?;
        let t = quiet_orders(&stack, opts.quiet, "u").await?;
        stack.stop().await;
        t
    };
    eprintln!(
        "noisy neighbour: {} loud orders (notify URL hangs {:?}), then {} quiet ones ...",
        opts.loud, opts.hang, opts.quiet
    );
    let receiver = hanging_receiver(opts.hang).await?;
    let stack = stack().await?;
    let loud = stack
        .client("demo")
        .ok_or_else(|| anyhow::anyhow!("no demo app"))?;
    for i in 0..opts.loud {
        let body = json!({"merchant_order_no": format!("L{i}"), "product_code": "mobile.100",
            "account": format!("1380012{:04}", 1000 + i % 9000), "notify_url": receiver.url});
        let r = loud.create_order(&body).await?;
        anyhow::ensure!(r.status == 201, "loud create: {} {}", r.status, r.body);
    }
    let loaded = quiet_orders(&stack, opts.quiet, "l").await?;
    stack.stop().await;
    drop(receiver);
    let (u, l) = (median(&unloaded), median(&loaded));
    let ratio = if u > 0.0 { l / u } else { f64::INFINITY };
    Ok(vec![
        row(
            SECTION,
            &format!(
                "app demo2: {} query-driven orders (mobile.100, script 0006), creation to final, alone",
                opts.quiet
            ),
            describe(&unloaded),
            "",
            "",
        ),
        row(
            SECTION,
            &format!(
                "  same, beside app demo's {} orders whose notify URL hangs {} s",
                opts.loud,
                opts.hang.as_secs()
            ),
            format!("{}; p50 {ratio:.2}x alone", describe(&loaded)),
            "p50 <= 2x alone",
            if ratio <= 2.0 { "meets" } else { "MISSES" },
        ),
    ])
}

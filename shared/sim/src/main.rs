//! `recharge-sim` binary: parses the command line, starts one simulator, prints its base URL, serves until
//! Ctrl-C. All behaviour lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use recharge_sim::{ChaosConfig, Protocol, SimConfig};

/// Simulates one recharge provider protocol family over HTTP (see docs/simulators.md §2).
#[derive(Debug, Parser)]
#[command(name = "recharge-sim")]
struct Args {
    /// suka-xml | wikeyun | ice-microservice | openapi-rsa | sms-billing
    #[arg(long)]
    protocol: Protocol,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// JSON credentials file (shape per protocol in docs/simulators.md §4).
    #[arg(long)]
    credentials: PathBuf,
    /// Callback (or sms-billing sync) target when a request names none.
    #[arg(long)]
    callback_url: Option<String>,
    /// Divides every protocol duration (60 = a minute becomes a second).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Ordinary order settle time in ms, before scaling.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// How long account 0009 and chaos late failures stay processing, in seconds before scaling.
    #[arg(long, default_value_t = 3600)]
    long_processing_secs: u64,
    /// How long a hanging submit holds its response, in ms (not scaled).
    #[arg(long, default_value_t = 35_000)]
    hang_ms: u64,
    /// Replace the protocol's callback retry delays: comma-separated seconds before scaling (e.g. 1,5,30).
    #[arg(long, value_delimiter = ',')]
    callback_schedule_secs: Option<Vec<u64>>,
    /// Turn scripted accounts off: a clean backup provider.
    #[arg(long)]
    no_scripts: bool,
    /// Turn chaos on with this seed.
    #[arg(long)]
    chaos_seed: Option<u64>,
    /// Chaos rate (0..1): refused at submit.
    #[arg(long, default_value_t = 0.0)]
    chaos_refuse: f64,
    /// Chaos rate: submit hangs past the caller's timeout.
    #[arg(long, default_value_t = 0.0)]
    chaos_hang: f64,
    /// Chaos rate: HTTP 500 after recording the order.
    #[arg(long, default_value_t = 0.0)]
    chaos_5xx: f64,
    /// Chaos rate: callback never sent.
    #[arg(long, default_value_t = 0.0)]
    chaos_lost_callback: f64,
    /// Chaos rate: final callback delivered twice.
    #[arg(long, default_value_t = 0.0)]
    chaos_duplicate_callback: f64,
    /// Chaos rate: the protocol's "unknown result" answer after recording (suka-xml 9999, else HTTP 500).
    #[arg(long, default_value_t = 0.0)]
    chaos_unknown: f64,
    /// Chaos rate: after recording, an in-band error code no document calls a refusal (wikeyun 2001 系统繁忙,
    /// ice code 1 失败, openapi-rsa status 500, suka-xml 9999); the order still ends as planned.
    #[arg(long, default_value_t = 0.0)]
    chaos_inband_error: f64,
    /// How this account departs from the protocol's document: a JSON file, or random:SEED (a seeded
    /// perturbation; see the dialect module). Default: as documented.
    #[arg(long)]
    dialect: Option<String>,
    /// Chaos rate: long processing, then failure.
    #[arg(long, default_value_t = 0.0)]
    chaos_late_failure: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let text = std::fs::read_to_string(&a.credentials)?;
    let mut c = SimConfig::new(a.protocol, serde_json::from_str(&text)?);
    c.listen = a.listen;
    c.callback_url = a.callback_url;
    c.time_scale = a.time_scale;
    c.settle = Duration::from_millis(a.settle_ms);
    c.long_processing = Duration::from_secs(a.long_processing_secs);
    c.hang = Duration::from_millis(a.hang_ms);
    c.scripts = !a.no_scripts;
    c.callback_schedule = a
        .callback_schedule_secs
        .map(|v| v.into_iter().map(Duration::from_secs).collect());
    c.chaos = a.chaos_seed.map(|seed| ChaosConfig {
        seed,
        refuse: a.chaos_refuse,
        hang: a.chaos_hang,
        http_500: a.chaos_5xx,
        lost_callback: a.chaos_lost_callback,
        duplicate_callback: a.chaos_duplicate_callback,
        late_failure: a.chaos_late_failure,
        unknown_answer: a.chaos_unknown,
        inband_error: a.chaos_inband_error,
    });
    if let Some(d) = &a.dialect {
        c.dialect = recharge_sim::Dialect::from_arg(d, a.protocol)?;
    }
    let sim = recharge_sim::start(c).await?;
    println!("{}", sim.base_url());
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}

//! `recharge-local`: start the local stack, or place one order against it. Wiring only; see `lib.rs`.

use clap::{Parser, Subcommand};
use recharge_local::follow::{self, OrderCommand};
use recharge_local::{LocalConfig, LocalOptions, LocalStack, StoreChoice};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "recharge-local",
    about = "The recharge gateway in one process, with provider simulators"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// `memory` or `dynamodb`.
    #[arg(long, default_value = "memory")]
    store: String,
    /// DynamoDB endpoint with `--store dynamodb` (e.g. DynamoDB Local).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// With `--store dynamodb` and no endpoint: use real AWS (the environment's credentials). Refused without it.
    #[arg(long)]
    aws: bool,
    /// Guard notify URLs as in production (https to public addresses only, by DNS too) instead of allowing
    /// loopback, to try the SSRF guard.
    #[arg(long)]
    no_local_mode: bool,
    #[arg(long, default_value = "recharge-local-orders")]
    table: String,
    /// JSON replacing any of the demo's `apps`, `accounts`, `catalog`.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Divides every provider timing and retry schedule.
    #[arg(long, default_value_t = 20.0)]
    time_scale: f64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Place one order as the demo merchant and follow it to the end.
    Order {
        product: String,
        account: String,
        /// A running local stack; if none answers there, one is started in this process.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long, default_value = "demo")]
        app: String,
        #[arg(long, default_value = "demo-secret")]
        secret: String,
        /// `key=value` extras (electricity region, carrier-billing IMSI, ...).
        #[arg(long = "extra", value_parser = parse_pair)]
        extra: Vec<(String, String)>,
        #[arg(long)]
        merchant_order_no: Option<String>,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,recharge_api=info".into()),
        )
        .init();
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => Some(serde_json::from_str::<LocalConfig>(
            &std::fs::read_to_string(path)?,
        )?),
        None => None,
    };
    let store = StoreChoice::from_flags(
        &cli.store,
        cli.dynamodb_endpoint.clone(),
        cli.aws,
        cli.table.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let mut options = LocalOptions {
        listen: cli.listen,
        store,
        config,
        time_scale: cli.time_scale,
        local_mode: !cli.no_local_mode,
        ..LocalOptions::default()
    };
    match cli.command {
        None => {
            let stack = LocalStack::start(options).await?;
            print_banner(&stack);
            tokio::signal::ctrl_c().await?;
            stack.stop().await;
        }
        Some(Command::Order {
            product,
            account,
            base,
            app,
            secret,
            extra,
            merchant_order_no,
            timeout_secs,
        }) => {
            let running = reqwest::Client::builder()
                .no_proxy()
                .build()?
                .get(format!("{base}/_local"))
                .send()
                .await;
            let (base, _stack) = match running {
                Ok(r) if r.status().is_success() => (base, None),
                _ => {
                    options.listen = SocketAddr::from(([127, 0, 0, 1], 0));
                    let stack = LocalStack::start(options).await?;
                    println!(
                        "(no local stack at {base}; started one at {})",
                        stack.base_url()
                    );
                    (stack.base_url().to_owned(), Some(stack))
                }
            };
            let cmd = OrderCommand {
                base_url: base,
                app,
                secret,
                product,
                account,
                extra,
                merchant_order_no,
                timeout: Duration::from_secs(timeout_secs),
            };
            follow::run(&cmd).await?;
        }
    }
    Ok(())
}

fn print_banner(stack: &LocalStack) {
    println!("recharge gateway (local) at {}", stack.base_url());
    println!("  apps: demo / demo-secret, demo2 / demo2-secret, ops / ops-secret (admin)");
    for (id, sim) in stack.sims() {
        println!("  provider {id:<14} simulator {}", sim.base_url());
    }
    println!(
        "  GET {}/_local shows the accounts and the catalog",
        stack.base_url()
    );
    if stack.state().settings.local_mode {
        println!(
            "  operator console: {}/ops/console (signed as the admin app ops)",
            stack.base_url()
        );
    }
    println!("  try: cargo run -p recharge-local -- order mobile.100 13800138000");
}

//! The `recharge-local` command line (docs/architecture.md §5): start the local stack, or place one order against
//! it and follow it.

use crate::banner::{DEFAULT_BASE, banner};
use crate::follow::{self, OrderCommand};
use crate::{LocalConfig, LocalOptions, LocalStack, StoreChoice};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "recharge-local",
    about = "The recharge gateway in one process, with provider simulators"
)]
pub struct Cli {
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
    /// Run the daily reconciliation of yesterday and today so far every this many seconds (a scaled day;
    /// docs/reconciliation.md §3). 0: never (run it from the ops route, the CLI or the console).
    #[arg(long, default_value_t = 60)]
    recon_every: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place one order as the demo merchant and follow it to the end: prints the route and every attempt; exits
    /// 0 if it succeeded, 1 if it ended otherwise, 2 if it is still open when the wait ends.
    Order {
        product: String,
        account: String,
        /// A running local stack; if none answers there, one is started in this process.
        #[arg(long, default_value = DEFAULT_BASE)]
        base: String,
        #[arg(long, default_value = "demo")]
        app: String,
        #[arg(long, default_value = "demo-secret")]
        secret: String,
        /// The admin app whose signature reads the attempts (the operators' view).
        #[arg(long, default_value = "ops")]
        ops_app: String,
        #[arg(long, default_value = "ops-secret")]
        ops_secret: String,
        /// `key=value` extras (electricity region, carrier-billing IMSI, ...).
        #[arg(long = "extra", value_parser = parse_pair)]
        extra: Vec<(String, String)>,
        #[arg(long)]
        merchant_order_no: Option<String>,
        /// How long to follow the order; default: the stack's longest scripted scenario plus a minute.
        #[arg(long)]
        timeout_secs: Option<u64>,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// Logs to stdout, `RUST_LOG` or `warn,recharge_api=info`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,recharge_api=info".into()),
        )
        .init();
}

/// Runs what the command line asks for: the stack until Ctrl-C, or one order followed to its end.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config {}: cannot read the file", path.display()))?;
            Some(serde_json::from_str::<LocalConfig>(&text).with_context(|| {
                format!("--config {}: not a local configuration", path.display())
            })?)
        }
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
        recon_every: (cli.recon_every > 0).then(|| std::time::Duration::from_secs(cli.recon_every)),
        ..LocalOptions::default()
    };
    match cli.command {
        None => {
            let stack = LocalStack::start(options).await?;
            let sims: Vec<(&str, &str)> = stack
                .sims()
                .map(|(id, sim)| (id.as_str(), sim.base_url()))
                .collect();
            print!("{}", banner(stack.base_url(), sims));
            tokio::signal::ctrl_c().await?;
            stack.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Order {
            product,
            account,
            base,
            app,
            secret,
            ops_app,
            ops_secret,
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
                ops_app,
                ops_secret,
                product,
                account,
                extra,
                merchant_order_no,
                timeout: timeout_secs.map(Duration::from_secs),
            };
            let followed = follow::run(&cmd, &mut std::io::stdout()).await?;
            Ok(ExitCode::from(followed.ending.exit_code()))
        }
    }
}

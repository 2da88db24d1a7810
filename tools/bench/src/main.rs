//! `recharge-bench faults [--orders N] [--seed S]`, `recharge-bench bench` and `recharge-bench noisy`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "recharge-bench",
    about = "Benchmarks and the fault campaign of the recharge gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N orders through the local stack with every simulator in chaos mode and random crashes, then checks.
    Faults {
        #[arg(long, default_value_t = 100_000)]
        orders: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Seconds to wait for every order to settle after the last create.
        #[arg(long, default_value_t = 300)]
        settle_secs: u64,
        /// Where the gateway keeps its orders: memory, or dynamodb (a fresh table per run at
        /// --dynamodb-endpoint; `make faults STORE=dynamodb` starts DynamoDB Local for it).
        #[arg(long, default_value = "memory")]
        store: String,
        /// The DynamoDB endpoint of --store dynamodb (DynamoDB Local; default AWS_ENDPOINT_URL_DYNAMODB).
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        /// `random`: every simulator speaks a seeded random dialect (seed --seed and its account id);
        /// `documented` (default): as the protocol documents say.
        #[arg(long, default_value = "documented")]
        dialects: String,
        /// A dialect JSON file for one account: ACCOUNT=FILE (repeatable), e.g. a planted broken provider.
        #[arg(long = "dialect")]
        dialect_files: Vec<String>,
        /// Skip the daily reconciliation of the campaign's day after the checks.
        #[arg(long)]
        no_recon: bool,
    },
    /// Only the noisy-neighbour row: one app's orders with a hanging notify URL beside another app's
    /// query-driven orders (also part of `bench`).
    Noisy {
        #[arg(long, default_value_t = 100)]
        loud: usize,
        #[arg(long, default_value_t = 20)]
        quiet: usize,
        /// Seconds the loud app's notify URL holds each request.
        #[arg(long, default_value_t = 8)]
        hang_secs: u64,
    },
    /// Only the sweep-at-scale rows on DynamoDB Local (also part of `bench`; needs AWS_ENDPOINT_URL_DYNAMODB).
    Scale {
        #[arg(long, default_value_t = 100_000)]
        stored: usize,
        #[arg(long, default_value_t = 10_000)]
        stored_due: usize,
    },
    /// The figures table (local throughput and sweep; with DynamoDB and Secrets Manager endpoints in the
    /// environment, round trips per lifecycle and warm latency).
    Bench {
        /// Orders for the throughput run.
        #[arg(long, default_value_t = 20_000)]
        orders: usize,
        /// Due orders for the sweep run.
        #[arg(long, default_value_t = 10_000)]
        due: usize,
        /// Orders stored in the sweep-at-scale row on DynamoDB Local (0 skips it). The documented run is
        /// 1,000,000 (`make bench BENCH_ARGS="--stored 1000000"`); loading that many takes a while, so the
        /// default is smaller (docs/benchmarks.md §8).
        #[arg(long, default_value_t = 100_000)]
        stored: usize,
        /// Of those, orders that are due.
        #[arg(long, default_value_t = 10_000)]
        stored_due: usize,
        /// Samples per latency figure.
        #[arg(long, default_value_t = 300)]
        samples: usize,
        /// Cold starts measured per function binary (median reported; one more start is discarded).
        #[arg(long, default_value_t = 20)]
        starts: usize,
        /// Skip the Lambda section (cold starts, runtime API latency, peak memory).
        #[arg(long)]
        no_lambda: bool,
        /// The Python with boto3 for the cold-start peer (scripts/bench passes .tools/venv/bin/python).
        #[arg(long)]
        python: Option<std::path::PathBuf>,
        /// Config files and function logs of the Lambda section.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("recharge-bench-lambda"))]
        work_dir: std::path::PathBuf,
        /// The functions' binaries (default: beside this one, the same target/release).
        #[arg(long)]
        bin_dir: Option<std::path::PathBuf>,
        /// `cargo lambda build --release --arm64` output (target/lambda) for the package sizes.
        #[arg(long)]
        packages: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Faults {
                orders,
                seed,
                settle_secs,
                store,
                dynamodb_endpoint,
                dialects,
                dialect_files,
                no_recon,
            } => {
                let mut opts = recharge_bench::faults::FaultOptions::new(orders, seed);
                let endpoint = dynamodb_endpoint
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok());
                match (store.as_str(), endpoint) {
                    ("memory", _) => {}
                    ("dynamodb", Some(url)) => opts = opts.on_dynamodb(url),
                    ("dynamodb", None) => anyhow::bail!(
                        "--store dynamodb needs --dynamodb-endpoint URL (or AWS_ENDPOINT_URL_DYNAMODB): DynamoDB Local, never AWS"
                    ),
                    (other, _) => anyhow::bail!("--store {other}: expected memory or dynamodb"),
                }
                opts.settle_timeout = std::time::Duration::from_secs(settle_secs);
                opts.progress = true;
                opts.recon = !no_recon;
                match dialects.as_str() {
                    "documented" => {}
                    "random" => opts.dialect_seed = Some(seed),
                    other => anyhow::bail!("--dialects {other}: expected documented or random"),
                }
                for spec in dialect_files {
                    let Some((account, file)) = spec.split_once('=') else {
                        anyhow::bail!("--dialect {spec}: expected ACCOUNT=FILE");
                    };
                    let text = std::fs::read_to_string(file)
                        .map_err(|e| anyhow::anyhow!("--dialect {spec}: {e}"))?;
                    let mut d = recharge_sim::Dialect::from_json(&text)?;
                    if d.name == "default" {
                        d.name = file.to_owned();
                    }
                    opts.dialects.insert(account.to_owned(), d);
                }
                let report = recharge_bench::faults::run(opts).await?;
                report.print();
                Ok::<bool, anyhow::Error>(report.passed())
            }
            Command::Noisy {
                loud,
                quiet,
                hang_secs,
            } => {
                let rows = recharge_bench::noisy::run(&recharge_bench::noisy::NoisyOptions {
                    loud,
                    quiet,
                    hang: std::time::Duration::from_secs(hang_secs),
                })
                .await?;
                recharge_bench::table::print_table(&rows);
                Ok(true)
            }
            Command::Scale { stored, stored_due } => {
                let rows = recharge_bench::scale::run(stored, stored_due).await?;
                recharge_bench::table::print_table(&rows);
                Ok(true)
            }
            Command::Bench {
                orders,
                due,
                stored,
                stored_due,
                samples,
                starts,
                no_lambda,
                python,
                work_dir,
                packages,
                bin_dir,
            } => {
                let lambda = if no_lambda {
                    None
                } else {
                    let mut l =
                        recharge_bench::lambda::LambdaOptions::beside_this_binary(work_dir)?;
                    l.python = python;
                    l.starts = starts;
                    if let Some(dir) = bin_dir {
                        l.bin_dir = dir;
                    }
                    Some(l)
                };
                recharge_bench::perf::run(recharge_bench::perf::BenchOptions {
                    orders,
                    due,
                    stored,
                    stored_due,
                    samples,
                    lambda,
                    packages,
                })
                .await?;
                Ok(true)
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

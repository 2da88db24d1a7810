//! `recharge-local`: start the local stack, or place one order against it. Wiring only; the command line is
//! `recharge_local::cli`.

use clap::Parser;
use recharge_local::cli::{self, Cli};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    cli::init_tracing();
    cli::run(Cli::parse()).await
}

//! `recharge-ops`: see the library for the commands (wiring only).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    recharge_ops::main(std::env::args()).await
}

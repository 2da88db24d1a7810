//! `check-balance`: provider balances, on an EventBridge schedule every 5 minutes (wiring only).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use recharge_lambda::{Function, bootstrap, handlers, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let service = bootstrap(Function::CheckBalance).await?;
    let service = &service;
    run(service_fn(move |event: LambdaEvent<_>| {
        handlers::check_balance(service, event)
    }))
    .await
}

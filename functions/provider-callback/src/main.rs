//! `provider-callback`: `POST|GET /v1/callbacks/{provider_account}` (wiring only).

use lambda_http::{Error, Request, run, service_fn};
use recharge_lambda::{Function, bootstrap, handlers, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let service = bootstrap(Function::ProviderCallback).await?;
    let service = &service;
    run(service_fn(move |req: Request| handlers::http(service, req))).await
}

//! `ops`: the operators' API, `/ops/...` behind the HTTP API's `AWS_IAM` authorizer (wiring only).

use lambda_http::{Error, Request, run, service_fn};
use recharge_lambda::{Function, bootstrap, handlers, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let service = bootstrap(Function::Ops).await?;
    let service = &service;
    run(service_fn(move |req: Request| handlers::ops(service, req))).await
}

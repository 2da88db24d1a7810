//! `order-status`: `GET /v1/orders/{merchant_order_no}` and `GET /v1/balances` (wiring only).

use lambda_http::{Error, Request, run, service_fn};
use recharge_lambda::{Function, bootstrap, handlers, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let service = bootstrap(Function::OrderStatus).await?;
    let service = &service;
    run(service_fn(move |req: Request| handlers::http(service, req))).await
}

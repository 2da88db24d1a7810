//! `recharge-lambda`: the Lambda glue shared by the gateway's five functions (docs/architecture.md §2), so that
//! `lambda_runtime`, `lambda_http` and the event types stay out of `recharge-api` and the local stack.
//!
//! - [`bootstrap`]: builds the `AppState` once per cold start from typed env config, and warms the clients;
//! - [`apigw`]: `lambda_http`'s requests and responses (API Gateway HTTP API, payload v2) ⇄
//!   `ApiRequest`/`ApiResponse`, raw path, raw query and bodies byte-exact;
//! - [`metrics`]: CloudWatch embedded-metric-format lines, and the store decorator that emits order metrics;
//! - [`handlers`]: the three handler shapes (HTTP, sweep schedule, balance schedule) and their error mapping
//!   to Lambda diagnostics ([`handlers::InvocationError`]).

pub mod apigw;
pub mod bootstrap;
pub mod handlers;
pub mod metrics;

pub use bootstrap::{BootstrapError, Function, Service, bootstrap};
pub use handlers::InvocationError;

/// JSON or text logs as the Lambda runtime's `AWS_LAMBDA_LOG_FORMAT` / `AWS_LAMBDA_LOG_LEVEL` say.
pub fn init_tracing() {
    lambda_runtime::tracing::init_default_subscriber();
}

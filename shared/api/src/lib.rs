//! `recharge-api`: the gateway's use cases and their HTTP and event handlers, over an `AppState` of ports
//! (docs/architecture.md §2). The Lambda functions and the local stack are thin wiring around
//! `http::routes::handle`, `usecases::sweep::sweep` and `usecases::balance_check::check_balances`, over one
//! state built by `AppState::assemble`.
//!
//! - [`http`]: the HTTP face: request and response values, the route table and dispatch, merchant request
//!   authentication and client secrets, the error → status mapping, the order as a merchant sees it;
//! - [`usecases`]: what the gateway does: orders and their flows, provider callbacks, the client routes, the
//!   sweep and merchant notifications, the balance check, the reconciliation and statements, the operators' API
//!   and merchant apps, routing;
//! - [`state`]: the `AppState` every handler works over, and its assembly; [`catalog`]: the product catalog.

pub mod catalog;
pub mod http;
pub mod state;
pub mod usecases;

pub use http::error::ApiError;
pub use http::{ApiRequest, ApiResponse};
pub use state::{AppState, BootError, Ports, Providers, Settings, StateConfig};

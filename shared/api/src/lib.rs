//! `recharge-api`: the gateway's use cases and their HTTP and event handlers, over an `AppState` of ports
//! (docs/architecture.md §2). The Lambda functions and the local stack are thin wiring around
//! `http::routes::handle`, `usecases::sweep::sweep` and `usecases::balance_check::check_balances`, over one
//! state built by `AppState::assemble`.
//!
//! - [`http`]: the HTTP face: request and response values, the route table and dispatch, merchant request
//!   authentication and client secrets, the error → status mapping, the order as a merchant sees it;
//! - [`usecases`]: what the gateway does: orders and their flows, provider callbacks, the client routes, the
//!   sweep and merchant notifications, the balance check, the reconciliation and statements, the operators' API
//!   and merchant apps' administration, routing;
//! - [`state`]: the `AppState` every handler works over, and its assembly, with what it holds: [`apps`] (the
//!   merchant app directory), [`catalog`] (the product catalog) and [`limits`] (in-process rate limits).
//!
//! Use cases depend on the state, never the other way round (`scripts/check-imports` finds a circle).

pub mod apps;
pub mod catalog;
pub mod http;
pub mod limits;
pub mod state;
pub mod usecases;

pub use http::error::ApiError;
pub use http::{ApiRequest, ApiResponse};
pub use state::{AppState, BootError, Ports, Providers, Settings, StateConfig};

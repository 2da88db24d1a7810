//! `recharge-api`: the gateway's use cases and their HTTP and event handlers, over an `AppState` of ports
//! (docs/architecture.md §2). The Lambda functions and the local stack are thin wiring around `http_routes::handle`,
//! `sweep::sweep` and `balance_check::check_balances`.

pub mod apps;
pub mod auth;
pub mod balance_check;
pub mod callbacks;
pub mod catalog;
pub mod client;
pub mod client_secret;
pub mod error;
pub mod flow;
pub mod http;
pub mod http_routes;
pub mod notify;
pub mod ops;
pub mod ops_apps;
pub mod orders;
pub mod recon;
pub mod route_choice;
pub mod state;
pub mod statement;
pub mod sweep;
pub mod view;

pub use error::ApiError;
pub use http::{ApiRequest, ApiResponse};
pub use state::{AppState, BootError, Ports, Providers, Settings, StateConfig};

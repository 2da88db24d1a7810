//! The use cases: each module is one thing the gateway does, with its handler (an HTTP route's, or an
//! EventBridge schedule's) over `&AppState`.

pub mod balance_check;
pub mod callbacks;
pub mod client;
pub mod flow;
pub mod notify;
pub mod operator;
pub mod ops;
pub mod ops_apps;
pub mod orders;
pub mod recon;
pub mod route_choice;
pub mod statement;
pub mod sweep;

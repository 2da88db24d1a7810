//! `recharge-local`: the whole gateway in one process on loopback (docs/architecture.md §5), for a first order in a
//! minute, for merchants' integration work, and for the end-to-end tests. See docs/architecture.md §5.

pub mod banner;
pub mod cli;
pub mod client;
pub mod demo;
pub mod follow;
pub mod stack;

pub use client::SigningClient;
pub use demo::LocalConfig;
pub use stack::{LocalError, LocalOptions, LocalStack, StoreChoice};

//! End-to-end tests of the gateway through the local stack, over real HTTP on 127.0.0.1, with the DynamoDB Local
//! store: the scripted simulator accounts of docs/simulators.md §5 on every product, the merchant API's refusals,
//! SSRF-guarded notify URLs, and a crash between the `Submitting` write and the provider call.
//!
//! `./scripts/test` starts DynamoDB Local and exports `AWS_ENDPOINT_URL_DYNAMODB`; without it these tests refuse
//! to run. Each test starts its own stack (ephemeral ports, its own table), so tests never see each other's
//! orders, and plays the merchant: it signs its requests itself and runs a loopback receiver for notifications.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test binary: failing loudly is its job

#[path = "../common/mod.rs"]
#[allow(dead_code)] // each suite of tests/ uses its part
mod common;

mod apps;
mod browser;
mod bulkheads;
mod callbacks;
mod cli;
mod client_routes;
mod code_overrides;
mod console;
mod crash;
mod helpers;
mod log_secrets;
mod merchant_api;
mod notifications;
mod ops;
mod ops_round_trips;
mod order_command;
mod provider_safety;
mod recon;
mod sample_client;
mod scripted;

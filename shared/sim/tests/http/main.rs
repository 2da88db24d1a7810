//! HTTP tests of every simulator: requests are built and signed here, from the pages of docs/providers/, never with the
//! simulator's own helpers, and callbacks are received by a tiny loopback server that can refuse to
//! acknowledge. Everything runs on 127.0.0.1 with a large time scale; every wait has a timeout.

// clippy.toml allows these inside #[test] functions only; the helpers of this test binary need them too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ice_microservice;
mod openapi_rsa;
mod sms_billing;
mod suka_xml;
mod wikeyun;

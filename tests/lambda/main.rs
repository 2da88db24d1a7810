//! Integration tests of the Lambda glue: every file of `events/` through the conversion and the real
//! handlers over an in-memory state, and the SAM template against the code it deploys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test binary: failing loudly is its job
#[path = "../common/mod.rs"]
#[allow(dead_code)] // each suite of tests/ uses its part
mod common;

mod degraded;
mod deployed;
mod events;
mod iam;
mod openapi;
mod support;
mod template;

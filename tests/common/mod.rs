//! What more than one suite of the workspace's `tests/` needs (docs/architecture.md §2). Each suite includes
//! it as `#[path = "../common/mod.rs"] mod common;` and uses its part.
//!
//! `./scripts/test` starts DynamoDB Local and moto and exports `AWS_ENDPOINT_URL_DYNAMODB` and
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`; a test that needs them refuses to run without them, and refuses any
//! endpoint that is not loopback, so no test can touch a real AWS account.

use std::path::PathBuf;

/// The workspace root: every package that owns a suite of `tests/` sits two folders below it.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The endpoint `./scripts/test` exports in `var`; panics if it is unset or not loopback.
pub fn loopback_endpoint(var: &str) -> String {
    let url = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run ./scripts/test, which starts DynamoDB Local and moto and sets it"
        )
    });
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
        "{var}={url} is not a loopback endpoint"
    );
    url
}

/// The SDK configuration of a test that talks to both DynamoDB Local and moto (both endpoints loopback).
pub async fn local_sdk() -> aws_config::SdkConfig {
    loopback_endpoint("AWS_ENDPOINT_URL_DYNAMODB");
    loopback_endpoint("AWS_ENDPOINT_URL_SECRETS_MANAGER");
    recharge_aws::sdk_config().await
}

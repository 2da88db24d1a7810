//! Tests against the real things, on loopback: DynamoDB Local (Amazon's server) and moto's Secrets Manager.
//! `./scripts/test` starts both and exports `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test binary: failing loudly is its job
mod budget;
mod contract;
mod secrets;

use recharge_aws::{CallCounter, DynamoOrderStore};
use std::sync::Arc;
use tokio::sync::OnceCell;

pub const TABLE: &str = "recharge-test-orders";
pub const SHARDS: u32 = 4;

/// The endpoint a test must use; refuses anything but loopback, so a test can never touch a real account.
pub fn local_endpoint(var: &str) -> String {
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

pub async fn sdk() -> aws_config::SdkConfig {
    local_endpoint("AWS_ENDPOINT_URL_DYNAMODB");
    local_endpoint("AWS_ENDPOINT_URL_SECRETS_MANAGER");
    recharge_aws::sdk_config().await
}

/// A DynamoDB client, counting its round trips into `counter` when given one.
pub async fn dynamodb(counter: Option<&CallCounter>) -> aws_sdk_dynamodb::Client {
    let sdk = sdk().await;
    let mut conf = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(c) = counter {
        conf = conf.interceptor(c.clone());
    }
    let client = aws_sdk_dynamodb::Client::from_conf(conf.build());
    static TABLE_READY: OnceCell<()> = OnceCell::const_new();
    TABLE_READY
        .get_or_init(|| async {
            recharge_aws::table::ensure_table(&client, TABLE)
                .await
                .unwrap_or_else(|e| panic!("creating {TABLE}: {e:?}"))
        })
        .await;
    client
}

pub async fn store(counter: Option<&CallCounter>) -> DynamoOrderStore {
    DynamoOrderStore::new(dynamodb(counter).await, TABLE, SHARDS)
}

pub async fn dyn_store() -> Arc<dyn recharge_core::store::OrderStore> {
    Arc::new(store(None).await)
}

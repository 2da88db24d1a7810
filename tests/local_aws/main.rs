//! Tests against the real things, on loopback: DynamoDB Local (Amazon's server) and moto's Secrets Manager.
//! `./scripts/test` starts both and exports `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test binary: failing loudly is its job
#[path = "../common/mod.rs"]
#[allow(dead_code)] // each suite of tests/ uses its part
mod common;

mod budget;
mod contract;
mod secrets;

use recharge_aws::{CallCounter, DynamoOrderStore};
use std::sync::Arc;
use tokio::sync::OnceCell;

pub const TABLE: &str = "recharge-test-orders";
pub const SHARDS: u32 = 4;

/// A DynamoDB client, counting its round trips into `counter` when given one.
pub async fn dynamodb(counter: Option<&CallCounter>) -> aws_sdk_dynamodb::Client {
    let sdk = common::local_sdk().await;
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

//! The orders table, from its one definition in `infra/table.json` (the SAM template's table must match it).
//!
//! Items: the order at `pk = O#<order_id>, sk = ORDER`, its audit trail at `sk = A#<version>` in the same
//! partition. The sparse GSI `due` (`due_shard`, `due_at`) holds only orders with something pending.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use serde::Deserialize;
use std::time::Duration;

/// `infra/table.json`, compiled in.
pub const TABLE_JSON: &str = include_str!("../../../infra/table.json");

pub const DUE_INDEX: &str = "due";
/// Every order, by `<public status>#<shard>` and `<created millis>#<order id>`: the operators' listing.
pub const STATUS_INDEX: &str = "by_status";
/// The sparse operator queue: orders with an attention time (`Order::attention`), by shard and
/// `<attention millis>#<order id>`.
pub const ATTENTION_INDEX: &str = "attention";

/// The parts of the CloudFormation `AWS::DynamoDB::Table` properties we define.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableSpec {
    pub attribute_definitions: Vec<AttributeSpec>,
    pub key_schema: Vec<KeySpec>,
    pub global_secondary_indexes: Vec<IndexSpec>,
    pub billing_mode: String,
    pub time_to_live_specification: TtlSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeSpec {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySpec {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexSpec {
    pub index_name: String,
    pub key_schema: Vec<KeySpec>,
    pub projection: ProjectionSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionSpec {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlSpec {
    pub attribute_name: String,
    pub enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("infra/table.json does not parse: {0}")]
    Spec(String),
    #[error("{operation} failed for table {table}")]
    Aws {
        operation: &'static str,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("table {0} did not become ACTIVE in time")]
    NotActive(String),
}

impl TableSpec {
    pub fn load() -> Result<TableSpec, TableError> {
        serde_json::from_str(TABLE_JSON).map_err(|e| TableError::Spec(e.to_string()))
    }
}

fn key(k: &KeySpec) -> Result<KeySchemaElement, TableError> {
    KeySchemaElement::builder()
        .attribute_name(&k.attribute_name)
        .key_type(KeyType::from(k.key_type.as_str()))
        .build()
        .map_err(|e| TableError::Spec(e.to_string()))
}

/// Creates the table from the spec if it does not exist, waits until it is ACTIVE, and turns TTL on.
/// Safe to call concurrently from many test processes. For tests and the local stack; production tables come
/// from the SAM template.
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), TableError> {
    let spec = TableSpec::load()?;
    let aws = |operation: &'static str| {
        let table = table.to_owned();
        move |e: Box<dyn std::error::Error + Send + Sync>| TableError::Aws {
            operation,
            table,
            source: e,
        }
    };
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(spec.billing_mode.as_str()));
    for a in &spec.attribute_definitions {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(|e| TableError::Spec(e.to_string()))?,
        );
    }
    for k in &spec.key_schema {
        create = create.key_schema(key(k)?);
    }
    for i in &spec.global_secondary_indexes {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(&i.index_name)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(i.projection.projection_type.as_str()))
                    .set_non_key_attributes(
                        (!i.projection.non_key_attributes.is_empty())
                            .then(|| i.projection.non_key_attributes.clone()),
                    )
                    .build(),
            );
        for k in &i.key_schema {
            gsi = gsi.key_schema(key(k)?);
        }
        create = create
            .global_secondary_indexes(gsi.build().map_err(|e| TableError::Spec(e.to_string()))?);
    }
    match create.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(aws("CreateTable")(Box::new(e))),
    }
    for _ in 0..100 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| aws("DescribeTable")(Box::new(e)))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            let ttl = TimeToLiveSpecification::builder()
                .attribute_name(&spec.time_to_live_specification.attribute_name)
                .enabled(spec.time_to_live_specification.enabled)
                .build()
                .map_err(|e| TableError::Spec(e.to_string()))?;
            // Turning TTL on twice is refused ("already enabled"); that is the state we want.
            if let Err(e) = client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(ttl)
                .send()
                .await
            {
                tracing::debug!(table, error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "TTL not changed");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(TableError::NotActive(table.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_definition_parses_and_has_the_sparse_due_index() {
        let spec = TableSpec::load().unwrap();
        assert_eq!(spec.key_schema.len(), 2);
        let due = spec
            .global_secondary_indexes
            .iter()
            .find(|i| i.index_name == DUE_INDEX)
            .unwrap();
        let names: Vec<&str> = due
            .key_schema
            .iter()
            .map(|k| k.attribute_name.as_str())
            .collect();
        assert_eq!(
            names,
            vec![crate::dynamo::attr::DUE_SHARD, crate::dynamo::attr::DUE_AT]
        );
        assert_eq!(spec.billing_mode, "PAY_PER_REQUEST");
        assert_eq!(
            spec.time_to_live_specification.attribute_name,
            crate::dynamo::attr::EXPIRES_AT
        );
        // Every key attribute is defined, and nothing else is (CloudFormation refuses extra definitions).
        let defined: Vec<&str> = spec
            .attribute_definitions
            .iter()
            .map(|a| a.attribute_name.as_str())
            .collect();
        let mut used: Vec<&str> = spec
            .key_schema
            .iter()
            .chain(
                spec.global_secondary_indexes
                    .iter()
                    .flat_map(|i| i.key_schema.iter()),
            )
            .map(|k| k.attribute_name.as_str())
            .collect();
        used.sort();
        let mut defined_sorted = defined.clone();
        defined_sorted.sort();
        assert_eq!(used, defined_sorted);
    }
}

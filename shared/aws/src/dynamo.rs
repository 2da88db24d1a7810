//! The DynamoDB `OrderStore` (DESIGN §6): one table, conditional writes, a sharded sparse due index.
//!
//! Every write is one `TransactWriteItems` round trip holding the conditional put of the order and the put of
//! its audit entry, so the trail can never miss or invent a change. A failed condition returns the current order
//! with the cancellation reason (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); only where a server does not
//! return it is the order read.

use crate::table::DUE_INDEX;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use recharge_core::store::{
    AuditEntry, BalanceSnapshot, BalanceStore, Created, DueOrder, OrderStore, Replaced, StoreError,
};
use recharge_core::{Fen, Order, OrderId, ProviderAccountId, Timestamp};
use std::collections::HashMap;
use std::time::Duration;

/// Attribute names. `#name` placeholders are used everywhere (DynamoDB Local rejects some bare names).
pub mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const VERSION: &str = "v";
    pub const DOC: &str = "doc";
    pub const APP: &str = "app";
    pub const STATUS: &str = "status";
    pub const SEQUENCE: &str = "seq";
    pub const UPDATED: &str = "updated_at";
    pub const DUE_SHARD: &str = "due_shard";
    pub const DUE_AT: &str = "due_at";
    pub const AT: &str = "at";
    pub const SUMMARY: &str = "summary";
    pub const DETAIL: &str = "detail";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const BALANCE: &str = "balance_fen";
    pub const CLIENT_ATTEMPTS: &str = "attempts";
}

/// Balance snapshots share one partition: a handful of provider accounts, read together by routing.
const BALANCE_PK: &str = "BALANCE";

const ORDER_SK: &str = "ORDER";
/// The client verification counter of an order (issue 18), beside its order item.
const CLIENT_SK: &str = "CLIENT";
const AUDIT_PREFIX: &str = "A#";
/// Audit entries expire (TTL) this long after they were written.
const AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);
/// `TransactionConflict` means another transaction held the item; retry the same conditional write a few times.
const CONFLICT_RETRIES: u32 = 6;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoOrderStore {
    client: Client,
    table: String,
    shards: u32,
}

impl DynamoOrderStore {
    pub fn new(client: Client, table: impl Into<String>, shards: u32) -> Self {
        DynamoOrderStore {
            client,
            table: table.into(),
            shards: shards.max(1),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn pk(id: &OrderId) -> AttributeValue {
        AttributeValue::S(format!("O#{id}"))
    }

    fn order_item(&self, order: &Order) -> Result<Item, StoreError> {
        let doc = serde_json::to_string(order).map_err(|e| StoreError::Corrupt {
            order_id: order.id().to_string(),
            reason: e.to_string(),
        })?;
        let mut item: Item = HashMap::from([
            (attr::PK.into(), Self::pk(order.id())),
            (attr::SK.into(), AttributeValue::S(ORDER_SK.into())),
            (
                attr::VERSION.into(),
                AttributeValue::N(order.version().to_string()),
            ),
            (attr::DOC.into(), AttributeValue::S(doc)),
            (
                attr::APP.into(),
                AttributeValue::S(order.app_id().to_string()),
            ),
            (
                attr::STATUS.into(),
                AttributeValue::S(order.public_view().status.as_str().into()),
            ),
            (
                attr::SEQUENCE.into(),
                AttributeValue::N(order.sequence().to_string()),
            ),
            (
                attr::UPDATED.into(),
                AttributeValue::N(order.updated_at().millis().to_string()),
            ),
        ]);
        // Sparse index: only orders with something pending carry the index keys.
        if let Some(due) = order.due_at() {
            item.insert(
                attr::DUE_SHARD.into(),
                AttributeValue::S(order.id().shard(self.shards).to_string()),
            );
            item.insert(
                attr::DUE_AT.into(),
                AttributeValue::N(due.millis().to_string()),
            );
        }
        Ok(item)
    }

    fn audit_item(id: &OrderId, entry: &AuditEntry) -> Item {
        let mut item: Item = HashMap::from([
            (attr::PK.into(), Self::pk(id)),
            (
                attr::SK.into(),
                AttributeValue::S(format!("{AUDIT_PREFIX}{:010}", entry.version)),
            ),
            (
                attr::VERSION.into(),
                AttributeValue::N(entry.version.to_string()),
            ),
            (
                attr::AT.into(),
                AttributeValue::N(entry.at.millis().to_string()),
            ),
            (
                attr::SUMMARY.into(),
                AttributeValue::S(entry.summary.clone()),
            ),
            (
                attr::EXPIRES_AT.into(),
                AttributeValue::N(entry.at.plus(AUDIT_RETENTION).seconds().to_string()),
            ),
        ]);
        if let Some(detail) = &entry.detail {
            item.insert(attr::DETAIL.into(), AttributeValue::S(detail.clone()));
        }
        item
    }

    fn parse_order(item: &Item) -> Result<Order, StoreError> {
        let id = match item.get(attr::PK) {
            Some(AttributeValue::S(pk)) => pk.clone(),
            _ => String::from("?"),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            order_id: id.clone(),
            reason,
        };
        let Some(AttributeValue::S(doc)) = item.get(attr::DOC) else {
            return Err(corrupt("no doc attribute".into()));
        };
        serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))
    }

    fn parse_audit(item: &Item) -> Result<AuditEntry, StoreError> {
        let num = |name: &str| match item.get(name) {
            Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
            _ => None,
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        let corrupt = || StoreError::Corrupt {
            order_id: text(attr::PK).unwrap_or_default(),
            reason: "unreadable audit entry".into(),
        };
        Ok(AuditEntry {
            version: num(attr::VERSION)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(corrupt)?,
            at: Timestamp::from_millis(num(attr::AT).ok_or_else(corrupt)?),
            summary: text(attr::SUMMARY).ok_or_else(corrupt)?,
            detail: text(attr::DETAIL),
        })
    }

    fn put(
        &self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: Item,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (k, v) in names {
            put = put.expression_attribute_names(*k, *v);
        }
        if !values.is_empty() {
            put = put.set_expression_attribute_values(Some(values));
        }
        let put = put.build().map_err(|e| unavailable("build Put", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Sends one transaction of (order put, audit put). `Ok(None)`: written. `Ok(Some(old))`: the order's
    /// condition failed; `old` is the stored order item if DynamoDB returned it.
    async fn write(
        &self,
        items: Vec<TransactWriteItem>,
        operation: &'static str,
    ) -> Result<Option<Option<Item>>, StoreError> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(None),
                Err(e) => e,
            };
            if let SdkError::ServiceError(service) = &err
                && let TransactWriteItemsError::TransactionCanceledException(cancel) = service.err()
            {
                let reasons = cancel.cancellation_reasons();
                let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
                if code(0) == "ConditionalCheckFailed" || code(1) == "ConditionalCheckFailed" {
                    return Ok(Some(reasons.first().and_then(|r| r.item()).cloned()));
                }
                if reasons
                    .iter()
                    .any(|r| r.code() == Some("TransactionConflict"))
                    && attempt < CONFLICT_RETRIES
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    continue;
                }
            }
            return Err(unavailable(operation, err));
        }
    }

    async fn read_current(
        &self,
        id: &OrderId,
        returned: Option<Item>,
    ) -> Result<Option<Order>, StoreError> {
        match returned {
            Some(item) if item.contains_key(attr::DOC) => Self::parse_order(&item).map(Some),
            _ => self.get(id).await,
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
    e: E,
) -> StoreError {
    StoreError::Unavailable {
        operation,
        source: Box::new(e),
    }
}

#[async_trait]
impl OrderStore for DynamoOrderStore {
    async fn create(&self, order: &Order, audit: &AuditEntry) -> Result<Created, StoreError> {
        let items = vec![
            self.put(
                self.order_item(order)?,
                "attribute_not_exists(#pk)",
                &[("#pk", attr::PK)],
                Item::new(),
            )?,
            self.put(
                Self::audit_item(order.id(), audit),
                "attribute_not_exists(#pk)",
                &[("#pk", attr::PK)],
                Item::new(),
            )?,
        ];
        match self.write(items, "create").await? {
            None => Ok(Created::New(order.clone())),
            Some(returned) => match self.read_current(order.id(), returned).await? {
                Some(existing) => Ok(Created::Existing(existing)),
                // Condition failed yet nothing is there: only possible if it was deleted in between.
                None => Err(StoreError::Missing(order.id().clone())),
            },
        }
    }

    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, Self::pk(id))
            .key(attr::SK, AttributeValue::S(ORDER_SK.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get", e))?;
        out.item().map(Self::parse_order).transpose()
    }

    async fn replace(&self, next: &Order, audit: &AuditEntry) -> Result<Replaced, StoreError> {
        let expected = next.version().saturating_sub(1);
        let items = vec![
            self.put(
                self.order_item(next)?,
                "#v = :expected",
                &[("#v", attr::VERSION)],
                HashMap::from([(
                    ":expected".to_owned(),
                    AttributeValue::N(expected.to_string()),
                )]),
            )?,
            self.put(
                Self::audit_item(next.id(), audit),
                "attribute_not_exists(#pk)",
                &[("#pk", attr::PK)],
                Item::new(),
            )?,
        ];
        match self.write(items, "replace").await? {
            None => Ok(Replaced::Applied),
            Some(returned) => Ok(Replaced::Conflict {
                current: self.read_current(next.id(), returned).await?.map(Box::new),
            }),
        }
    }

    async fn due(
        &self,
        shard: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueOrder>, StoreError> {
        let mut found = Vec::new();
        let mut start = None;
        while found.len() < limit {
            let page = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#s = :s AND #d <= :now")
                .expression_attribute_names("#s", attr::DUE_SHARD)
                .expression_attribute_names("#d", attr::DUE_AT)
                .expression_attribute_values(":s", AttributeValue::S(shard.to_string()))
                .expression_attribute_values(":now", AttributeValue::N(now.millis().to_string()))
                .scan_index_forward(true)
                .limit(page)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("due", e))?;
            for item in out.items() {
                let id = match item.get(attr::PK) {
                    Some(AttributeValue::S(pk)) => {
                        pk.strip_prefix("O#").and_then(|s| OrderId::parse(s).ok())
                    }
                    _ => None,
                };
                let due_at = match item.get(attr::DUE_AT) {
                    Some(AttributeValue::N(n)) => n.parse().ok().map(Timestamp::from_millis),
                    _ => None,
                };
                match (id, due_at) {
                    (Some(order_id), Some(due_at)) => found.push(DueOrder { order_id, due_at }),
                    _ => tracing::warn!(shard, "skipping an unreadable due-index entry"),
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    async fn audit_trail(&self, id: &OrderId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :a)")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":pk", Self::pk(id))
                .expression_attribute_values(":a", AttributeValue::S(AUDIT_PREFIX.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("audit_trail", e))?;
            for item in out.items() {
                entries.push(Self::parse_audit(item)?);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(entries)
    }

    fn due_shards(&self) -> u32 {
        self.shards
    }

    /// One `UpdateItem` of `pk = O#<id>, sk = CLIENT`: `ADD attempts 1` if `attempts < limit` (or absent).
    /// Not the order item: the order's version is the condition of every transition, and a counter must not
    /// make a racing callback retry.
    async fn count_client_attempt(
        &self,
        id: &OrderId,
        limit: u32,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, Self::pk(id))
            .key(attr::SK, AttributeValue::S(CLIENT_SK.into()))
            .update_expression("ADD #n :one SET #exp = :exp")
            .condition_expression("attribute_not_exists(#n) OR #n < :limit")
            .expression_attribute_names("#n", attr::CLIENT_ATTEMPTS)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
            .expression_attribute_values(
                ":exp",
                AttributeValue::N(expires_at.seconds().to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(service))
                if service.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("count_client_attempt", e)),
        }
    }
}

#[async_trait]
impl BalanceStore for DynamoOrderStore {
    async fn put_balance(&self, snapshot: &BalanceSnapshot) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, AttributeValue::S(BALANCE_PK.into()))
            .item(attr::SK, AttributeValue::S(snapshot.account.to_string()))
            .item(
                attr::BALANCE,
                AttributeValue::N(snapshot.balance.get().to_string()),
            )
            .item(
                attr::AT,
                AttributeValue::N(snapshot.at.millis().to_string()),
            )
            .condition_expression("attribute_not_exists(#pk) OR #at <= :at")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#at", attr::AT)
            .expression_attribute_values(":at", AttributeValue::N(snapshot.at.millis().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("put_balance", e)),
        }
    }

    async fn balances(&self) -> Result<Vec<BalanceSnapshot>, StoreError> {
        let mut all = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_values(":pk", AttributeValue::S(BALANCE_PK.into()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("balances", e))?;
            for item in out.items() {
                let text = |k: &str| match item.get(k) {
                    Some(AttributeValue::S(s)) => Some(s.as_str()),
                    _ => None,
                };
                let num = |k: &str| match item.get(k) {
                    Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
                    _ => None,
                };
                match (
                    text(attr::SK).and_then(|a| ProviderAccountId::parse(a).ok()),
                    num(attr::BALANCE),
                    num(attr::AT),
                ) {
                    (Some(account), Some(balance), Some(at)) => all.push(BalanceSnapshot {
                        account,
                        balance: Fen::new(balance),
                        at: Timestamp::from_millis(at),
                    }),
                    _ => tracing::warn!("skipping an unreadable balance snapshot"),
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(all)
    }
}

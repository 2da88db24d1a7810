//! The DynamoDB `OrderStore` (docs/storage.md): one table, conditional writes, a sharded sparse due index.
//!
//! Every write is one plain conditional write of the order item (a `PutItem` to create, an `UpdateItem` to
//! change), and the audit entry of the change travels inside that same item (`audit`, a list appended to by
//! the same request), so the trail can never miss or invent a change and no write needs a transaction (which
//! DynamoDB bills at twice the units). The inline list is bounded: when it would outgrow
//! [`INLINE_AUDIT_BYTES`], its entries are first copied to their own items (`sk = A#<version>`, the layout
//! older orders have throughout) and then the order write starts a fresh list. A crash between the two leaves
//! each copied entry in both places; the trail reads them once. See docs/storage.md §6.
//!
//! A failed condition returns the current order (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); only where
//! a server does not return it is the order read.

use crate::table::{ATTENTION_INDEX, DUE_INDEX, STATUS_INDEX};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, PutRequest, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use recharge_core::recon::{Mismatch, ReconReport, Settlement};
use recharge_core::store::{
    AccountControl, AppRecord, AppStore, AuditEntry, BalanceSnapshot, BalanceStore, Created,
    DueOrder, OrderFilter, OrderPage, OrderStore, OrderSummary, Replaced, StoreError, check_cursor,
    sort_key,
};
use recharge_core::{
    AppId, Attention, Fen, Order, OrderId, ProductCode, ProviderAccountId, PublicStatus, Timestamp,
};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
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
    pub const ACCOUNT: &str = "acct";
    pub const PRODUCT: &str = "product";
    pub const OPS_PART: &str = "ops_part";
    pub const OPS_SK: &str = "ops_sk";
    pub const ATTN_PART: &str = "attn_part";
    pub const ATTN_SK: &str = "attn_sk";
    pub const ATTN_WHY: &str = "attn_why";
    pub const CLIENT_ATTEMPTS: &str = "attempts";
    /// On the order item: its latest audit entries (a list of maps with the short keys below).
    pub const AUDIT: &str = "audit";
    /// On the order item: the estimated bytes of `audit` (see `entry_bytes`).
    pub const AUDIT_BYTES: &str = "audit_bytes";
    /// Keys of one inline audit entry (short: every write of the order pays for the names too).
    pub const ENTRY_VERSION: &str = "v";
    pub const ENTRY_AT: &str = "t";
    pub const ENTRY_SUMMARY: &str = "s";
    pub const ENTRY_DETAIL: &str = "d";
}

/// How many bytes of audit entries the order item carries before they are moved to their own items. Every
/// write of an order pays for the whole item (1 write unit per KB), so the bound keeps a usual lifecycle's
/// four to six entries inline (about 60 to 120 bytes each) and a long history from making each write dearer.
pub const INLINE_AUDIT_BYTES: i64 = 1024;

/// Balance snapshots share one partition: a handful of provider accounts, read together by routing.
const BALANCE_PK: &str = "BALANCE";
/// Operators' runtime configuration (docs/operations.md §3): one partition, read whole by every function's cache. Only
/// the ops function's IAM policy may write it (`dynamodb:LeadingKeys`, infra/template.yaml).
pub const CONFIG_PK: &str = "CONFIG";
const ACCOUNT_CONTROL_PREFIX: &str = "ACCOUNT#";
/// Merchant apps the operators created or changed (`apps.json` is the seed), beside the account controls.
const APP_PREFIX: &str = "APP#";

/// An account's balance history (docs/reconciliation.md §5): pk `BALHIST#<account>`, sk `<13-digit millis>`.
pub const BALANCE_HISTORY_PREFIX: &str = "BALHIST#";
/// Reconciliation reports: pk `RECON#<account>`, sk `<date>#R` (the report) and `<date>#M#<6-digit seq>` (its
/// mismatches, one item each; a report names how many are its own, so a shorter rerun needs no deletes), and
/// `<date>#S#<mismatch key>` (an operator's settlement of a mismatch, which no rerun overwrites).
pub const RECON_PREFIX: &str = "RECON#";
/// Reports and balance history expire (TTL) this long after they were written.
const RECON_RETENTION: Duration = Duration::from_secs(400 * 86_400);

const ORDER_SK: &str = "ORDER";
/// The client verification counter of an order (issue 18), beside its order item.
const CLIENT_SK: &str = "CLIENT";
const AUDIT_PREFIX: &str = "A#";
/// Audit entries expire (TTL) this long after they were written.
const AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);
/// BatchWriteItem takes at most 25 puts; unprocessed ones of an audit spill are retried this many times.
const BATCH_WRITE: usize = 25;
const BATCH_RETRIES: u32 = 6;
/// The order attributes that are absent when they do not apply (removed by a change that ends them), and
/// those only orders written before 2026-12-01 carry (`seq` and `updated_at`, copies of the doc's that no
/// reader used; a change removes them, so each write of the item pays for its bytes no more).
const OPTIONAL_ORDER_ATTRS: [&str; 8] = [
    attr::ACCOUNT,
    attr::ATTN_PART,
    attr::ATTN_SK,
    attr::ATTN_WHY,
    attr::DUE_SHARD,
    attr::DUE_AT,
    attr::SEQUENCE,
    attr::UPDATED,
];
/// An order's JSON is a few KB at most; a `doc` that inflates past this is refused as corrupt.
const MAX_DOC_BYTES: usize = 400 * 1024;

/// The attribute names of an audit entry's fields: in an item of its own (`sk = A#<version>`) or in the order
/// item's inline list (short, as every write of the order pays for them).
struct EntryKeys {
    version: &'static str,
    at: &'static str,
    summary: &'static str,
    detail: &'static str,
}

impl EntryKeys {
    const OWN_ITEM: EntryKeys = EntryKeys {
        version: attr::VERSION,
        at: attr::AT,
        summary: attr::SUMMARY,
        detail: attr::DETAIL,
    };
    const INLINE: EntryKeys = EntryKeys {
        version: attr::ENTRY_VERSION,
        at: attr::ENTRY_AT,
        summary: attr::ENTRY_SUMMARY,
        detail: attr::ENTRY_DETAIL,
    };

    /// The entry's fields under these names (`detail` only when it has one).
    fn map_of(&self, entry: &AuditEntry) -> Item {
        let mut m: Item = HashMap::from([
            (
                self.version.into(),
                AttributeValue::N(entry.version.to_string()),
            ),
            (
                self.at.into(),
                AttributeValue::N(entry.at.millis().to_string()),
            ),
            (
                self.summary.into(),
                AttributeValue::S(entry.summary.clone()),
            ),
        ]);
        if let Some(detail) = &entry.detail {
            m.insert(self.detail.into(), AttributeValue::S(detail.clone()));
        }
        m
    }

    /// The entry `map_of` wrote; `None` if a field it needs is missing or unreadable.
    fn entry_of(&self, m: &Item) -> Option<AuditEntry> {
        let num = |k: &str| match m.get(k) {
            Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
            _ => None,
        };
        let text = |k: &str| match m.get(k) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        Some(AuditEntry {
            version: num(self.version).and_then(|v| u64::try_from(v).ok())?,
            at: Timestamp::from_millis(num(self.at)?),
            summary: text(self.summary)?,
            detail: text(self.detail),
        })
    }
}

/// The order's JSON, deflated (raw DEFLATE, RFC 1951): a usual order's 800 bytes of JSON take about 470,
/// which keeps the order item, its inline audit included, under the 1 KB of one write unit
/// (docs/storage.md §6).
fn deflate(json: &[u8]) -> aws_smithy_types::Blob {
    aws_smithy_types::Blob::new(miniz_oxide::deflate::compress_to_vec(json, 9))
}

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
            (attr::DOC.into(), AttributeValue::B(deflate(doc.as_bytes()))),
            (
                attr::APP.into(),
                AttributeValue::S(order.app_id().to_string()),
            ),
            (
                attr::STATUS.into(),
                AttributeValue::S(order.public_view().status.as_str().into()),
            ),
        ]);
        // The operators' listing and queue (docs/operations.md §1, §2): every order in `by_status`, the ones with an
        // attention time (sparse) in `attention`. Both partitions are sharded like the due index, so no index partition
        // takes more than its share of the write rate.
        let shard = order.id().shard(self.shards);
        let summary = OrderSummary::of(order);
        item.insert(
            attr::OPS_PART.into(),
            AttributeValue::S(format!("{}#{shard}", summary.status.as_str())),
        );
        item.insert(
            attr::OPS_SK.into(),
            AttributeValue::S(sort_key(summary.created_at, order.id())),
        );
        item.insert(
            attr::PRODUCT.into(),
            AttributeValue::S(order.product_code().to_string()),
        );
        if let Some(account) = &summary.provider_account {
            item.insert(attr::ACCOUNT.into(), AttributeValue::S(account.to_string()));
        }
        if let Some((at, why)) = summary.attention {
            item.insert(attr::ATTN_PART.into(), AttributeValue::S(shard.to_string()));
            item.insert(
                attr::ATTN_SK.into(),
                AttributeValue::S(sort_key(at, order.id())),
            );
            item.insert(
                attr::ATTN_WHY.into(),
                AttributeValue::S(why.as_str().into()),
            );
        }
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
        let mut item = EntryKeys::OWN_ITEM.map_of(entry);
        item.insert(attr::PK.into(), Self::pk(id));
        item.insert(
            attr::SK.into(),
            AttributeValue::S(format!("{AUDIT_PREFIX}{:010}", entry.version)),
        );
        item.insert(
            attr::EXPIRES_AT.into(),
            AttributeValue::N(entry.at.plus(AUDIT_RETENTION).seconds().to_string()),
        );
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
        match item.get(attr::DOC) {
            // Written since 2026-12-01: the JSON, deflated.
            Some(AttributeValue::B(blob)) => {
                let json = miniz_oxide::inflate::decompress_to_vec_with_limit(
                    blob.as_ref(),
                    MAX_DOC_BYTES,
                )
                .map_err(|e| corrupt(format!("doc does not inflate: {e}")))?;
                serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
            }
            // Written before: the JSON as text.
            Some(AttributeValue::S(doc)) => {
                serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))
            }
            _ => Err(corrupt("no doc attribute".into())),
        }
    }

    fn parse_audit(item: &Item) -> Result<AuditEntry, StoreError> {
        EntryKeys::OWN_ITEM
            .entry_of(item)
            .ok_or_else(|| StoreError::Corrupt {
                order_id: match item.get(attr::PK) {
                    Some(AttributeValue::S(pk)) => pk.clone(),
                    _ => String::new(),
                },
                reason: "unreadable audit entry".into(),
            })
    }

    /// One inline audit entry (a map) and its estimated size in bytes (names and values, as DynamoDB counts).
    fn inline_entry(entry: &AuditEntry) -> (AttributeValue, i64) {
        (
            AttributeValue::M(EntryKeys::INLINE.map_of(entry)),
            entry_bytes(entry),
        )
    }

    fn parse_inline(item: &Item) -> Result<Vec<AuditEntry>, StoreError> {
        let Some(AttributeValue::L(list)) = item.get(attr::AUDIT) else {
            return Ok(Vec::new());
        };
        let corrupt = || StoreError::Corrupt {
            order_id: match item.get(attr::PK) {
                Some(AttributeValue::S(pk)) => pk.clone(),
                _ => String::from("?"),
            },
            reason: "unreadable inline audit entry".into(),
        };
        list.iter()
            .map(|e| match e {
                AttributeValue::M(m) => EntryKeys::INLINE.entry_of(m).ok_or_else(corrupt),
                _ => Err(corrupt()),
            })
            .collect()
    }

    /// The order's version as stored in `item`.
    fn version_of(item: &Item) -> Option<u64> {
        match item.get(attr::VERSION) {
            Some(AttributeValue::N(n)) => n.parse().ok(),
            _ => None,
        }
    }

    /// The conditional `UpdateItem` that stores `next` over version `next.version() - 1`: every order attribute
    /// set (the absent optional ones removed), and the audit entry either appended to the inline list, if the
    /// list has room for it (part of the condition), or, with `fresh_audit`, as the start of a new list.
    async fn update_order(
        &self,
        next: &Order,
        audit: &AuditEntry,
        fresh_audit: bool,
    ) -> Result<Option<Option<Item>>, StoreError> {
        let expected = next.version().saturating_sub(1);
        let item = self.order_item(next)?;
        let (entry, bytes) = Self::inline_entry(audit);
        let mut names: HashMap<String, String> = HashMap::new();
        let mut values: Item = HashMap::new();
        let mut sets = Vec::new();
        for (i, (name, value)) in item
            .into_iter()
            .filter(|(k, _)| k != attr::PK && k != attr::SK)
            .enumerate()
        {
            names.insert(format!("#a{i}"), name);
            values.insert(format!(":a{i}"), value);
            sets.push(format!("#a{i} = :a{i}"));
        }
        let present: Vec<String> = names.values().cloned().collect();
        let removes: Vec<String> = OPTIONAL_ORDER_ATTRS
            .iter()
            .filter(|a| !present.iter().any(|p| p.as_str() == **a))
            .enumerate()
            .map(|(i, a)| {
                names.insert(format!("#r{i}"), (*a).to_owned());
                format!("#r{i}")
            })
            .collect();
        names.insert("#audit".into(), attr::AUDIT.into());
        names.insert("#ab".into(), attr::AUDIT_BYTES.into());
        names.insert("#cv".into(), attr::VERSION.into());
        values.insert(":entry".into(), AttributeValue::L(vec![entry]));
        values.insert(":bytes".into(), AttributeValue::N(bytes.to_string()));
        values.insert(":expected".into(), AttributeValue::N(expected.to_string()));
        let condition = if fresh_audit {
            sets.push("#audit = :entry".into());
            sets.push("#ab = :bytes".into());
            "#cv = :expected".to_owned()
        } else {
            values.insert(":empty".into(), AttributeValue::L(Vec::new()));
            values.insert(
                ":room".into(),
                AttributeValue::N((INLINE_AUDIT_BYTES - bytes).to_string()),
            );
            sets.push("#audit = list_append(if_not_exists(#audit, :empty), :entry)".into());
            // Orders written before inline audit have no counter: their list starts here.
            "#cv = :expected AND (attribute_not_exists(#ab) OR #ab <= :room)".to_owned()
        };
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        if !fresh_audit {
            expression.push_str(" ADD #ab :bytes");
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, Self::pk(next.id()))
            .key(attr::SK, AttributeValue::S(ORDER_SK.into()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(service))
                if service.err().is_conditional_check_failed_exception() =>
            {
                Ok(Some(match service.err() {
                    UpdateItemError::ConditionalCheckFailedException(e) => e.item().cloned(),
                    _ => None,
                }))
            }
            Err(e) => Err(unavailable("replace", e)),
        }
    }

    /// Copies the inline audit entries of `item` to their own `A#<version>` items (plain puts of entries that are
    /// already committed: repeating one writes the same item again).
    async fn spill(&self, id: &OrderId, item: &Item) -> Result<(), StoreError> {
        let items: Vec<Item> = Self::parse_inline(item)?
            .iter()
            .map(|e| Self::audit_item(id, e))
            .collect();
        self.batch_put(
            "spill audit",
            &items,
            BATCH_RETRIES + 1,
            Duration::from_millis(10),
        )
        .await
    }

    /// Puts `items` with one `BatchWriteItem` per 25, sending again what comes back unprocessed after
    /// `backoff` times the sends so far, and failing when `sends` did not write them all.
    async fn batch_put(
        &self,
        operation: &'static str,
        items: &[Item],
        sends: u32,
        backoff: Duration,
    ) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_WRITE) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|e| unavailable(operation, e))
                })
                .collect::<Result<_, _>>()?;
            let mut sent = 0;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| unavailable(operation, e))?;
                sent += 1;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !requests.is_empty() {
                    if sent >= sends {
                        return Err(StoreError::Unavailable {
                            operation,
                            source: format!(
                                "{} writes left unprocessed after {sent} sends",
                                requests.len()
                            )
                            .into(),
                        });
                    }
                    tokio::time::sleep(backoff * sent).await;
                }
            }
        }
        Ok(())
    }

    /// The stored order item, by a strongly consistent read.
    async fn get_item(&self, id: &OrderId) -> Result<Option<Item>, StoreError> {
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
        Ok(out.item().cloned())
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

impl DynamoOrderStore {
    /// A `Query` of the table, for `query_all` or `query_until` to send once its conditions are set.
    fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// The records of the config partition whose sort key starts with `prefix` (one `Query` per page), each
    /// item read by `decode`, which says itself why it skips one (`None`).
    async fn config_records<T: Send>(
        &self,
        operation: &'static str,
        prefix: &str,
        decode: impl Fn(&Item) -> Option<T> + Send + Sync,
    ) -> Result<Vec<T>, StoreError> {
        let query = self
            .query()
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :a)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", AttributeValue::S(CONFIG_PK.into()))
            .expression_attribute_values(":a", AttributeValue::S(prefix.into()));
        let mut all = Vec::new();
        query_all(operation, query, |item| {
            all.extend(decode(item));
            Ok(())
        })
        .await?;
        Ok(all)
    }
}

/// A conditional write's answer: `true` written, `false` its condition failed (nothing was written).
fn conditional_write<O, E, R>(
    operation: &'static str,
    result: Result<O, SdkError<E, R>>,
    condition_failed: impl Fn(&E) -> bool,
) -> Result<bool, StoreError>
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(condition_failed) => Ok(false),
        Err(e) => Err(unavailable(operation, e)),
    }
}

/// Sends `query` and follows its pages (`LastEvaluatedKey`), giving `each` every item in order until it says
/// `Break`: `Ok(true)` when every page was read, `Ok(false)` when `each` stopped first.
async fn query_until(
    operation: &'static str,
    query: QueryFluentBuilder,
    mut each: impl FnMut(&Item) -> Result<ControlFlow<()>, StoreError> + Send,
) -> Result<bool, StoreError> {
    let mut start = None;
    loop {
        let out = query
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| unavailable(operation, e))?;
        for item in out.items() {
            if each(item)?.is_break() {
                return Ok(false);
            }
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(true),
        }
    }
}

/// `query_until` for a reader of every item.
async fn query_all(
    operation: &'static str,
    query: QueryFluentBuilder,
    mut each: impl FnMut(&Item) -> Result<(), StoreError> + Send,
) -> Result<(), StoreError> {
    query_until(operation, query, |item| {
        each(item).map(|()| ControlFlow::Continue(()))
    })
    .await
    .map(|_| ())
}

#[async_trait]
impl OrderStore for DynamoOrderStore {
    async fn create(&self, order: &Order, audit: &AuditEntry) -> Result<Created, StoreError> {
        let mut item = self.order_item(order)?;
        let (entry, bytes) = Self::inline_entry(audit);
        item.insert(attr::AUDIT.into(), AttributeValue::L(vec![entry]));
        item.insert(
            attr::AUDIT_BYTES.into(),
            AttributeValue::N(bytes.to_string()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let returned = match result {
            Ok(_) => return Ok(Created::New(order.clone())),
            Err(SdkError::ServiceError(service))
                if service.err().is_conditional_check_failed_exception() =>
            {
                match service.err() {
                    PutItemError::ConditionalCheckFailedException(e) => e.item().cloned(),
                    _ => None,
                }
            }
            Err(e) => return Err(unavailable("create", e)),
        };
        match self.read_current(order.id(), returned).await? {
            Some(existing) => Ok(Created::Existing(existing)),
            // Condition failed yet nothing is there: only possible if it was deleted in between.
            None => Err(StoreError::Missing(order.id().clone())),
        }
    }

    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        self.get_item(id)
            .await?
            .as_ref()
            .map(Self::parse_order)
            .transpose()
    }

    /// One conditional `UpdateItem` when the inline audit list has room. When it has not, the order is read,
    /// its inline entries copied out (one `BatchWriteItem`), and the update sent again with a fresh list.
    async fn replace(&self, next: &Order, audit: &AuditEntry) -> Result<Replaced, StoreError> {
        let expected = next.version().saturating_sub(1);
        let returned = match self.update_order(next, audit, false).await? {
            None => return Ok(Replaced::Applied),
            Some(returned) => returned,
        };
        let current = match returned {
            Some(item) if item.contains_key(attr::DOC) => Some(item),
            _ => self.get_item(next.id()).await?,
        };
        let Some(current) = current else {
            return Ok(Replaced::Conflict { current: None });
        };
        if Self::version_of(&current) != Some(expected) {
            return Ok(Replaced::Conflict {
                current: Some(Box::new(Self::parse_order(&current)?)),
            });
        }
        // The version is the expected one: the inline list was full.
        self.spill(next.id(), &current).await?;
        match self.update_order(next, audit, true).await? {
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

    /// One query of the order's partition: the inline entries of the order item and the `A#` items, each
    /// version once (an entry copied out by a spill that crashed before its order write is in both).
    async fn audit_trail(&self, id: &OrderId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries: BTreeMap<u64, AuditEntry> = BTreeMap::new();
        let query = self
            .query()
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", Self::pk(id))
            .consistent_read(true);
        query_all("audit_trail", query, |item| {
            let sk = match item.get(attr::SK) {
                Some(AttributeValue::S(sk)) => sk.as_str(),
                _ => "",
            };
            if sk == ORDER_SK {
                for e in Self::parse_inline(item)? {
                    entries.insert(e.version, e);
                }
            } else if sk.starts_with(AUDIT_PREFIX) {
                let e = Self::parse_audit(item)?;
                entries.insert(e.version, e);
            }
            Ok(())
        })
        .await?;
        Ok(entries.into_values().collect())
    }

    async fn list(
        &self,
        filter: &OrderFilter,
        now: Timestamp,
        limit: usize,
        after: Option<&str>,
    ) -> Result<OrderPage, StoreError> {
        check_cursor(after)?;
        let queue = filter.needs_operator;
        let partitions: Vec<String> = if queue {
            (0..self.shards).map(|s| s.to_string()).collect()
        } else {
            let statuses: Vec<PublicStatus> = match filter.status {
                Some(s) => vec![s],
                None => PublicStatus::ALL.to_vec(),
            };
            statuses
                .iter()
                .flat_map(|st| (0..self.shards).map(move |s| format!("{}#{s}", st.as_str())))
                .collect()
        };
        let mut found: Vec<(String, OrderSummary)> = Vec::new();
        let mut more = false;
        for part in partitions {
            let (items, exhausted) = self
                .list_partition(filter, &part, now, limit, after)
                .await?;
            more |= !exhausted;
            found.extend(items);
        }
        Ok(OrderPage::of_candidates(found, queue, limit, more))
    }

    /// One Query per `by_status` partition (status × shard) and 1 MB page over the creation-time range
    /// (`ops_sk BETWEEN`), reading index entries only; docs/storage.md lists the round trips.
    async fn created_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<OrderSummary>, StoreError> {
        let mut found = Vec::new();
        if to <= from {
            return Ok(found);
        }
        let lo = format!("{:013}#", from.millis().max(0));
        let hi = after_all_of(Timestamp::from_millis(to.millis() - 1));
        for status in PublicStatus::ALL {
            for shard in 0..self.shards {
                let query = self
                    .query()
                    .index_name(STATUS_INDEX)
                    .key_condition_expression("#p = :p AND #k BETWEEN :lo AND :hi")
                    .expression_attribute_names("#p", attr::OPS_PART)
                    .expression_attribute_names("#k", attr::OPS_SK)
                    .expression_attribute_values(
                        ":p",
                        AttributeValue::S(format!("{}#{shard}", status.as_str())),
                    )
                    .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                    .expression_attribute_values(":hi", AttributeValue::S(hi.clone()));
                query_all("created_between", query, |item| {
                    match Self::parse_summary(item) {
                        Some(s) => found.push(s),
                        None => tracing::warn!("skipping an unreadable listing entry"),
                    }
                    Ok(())
                })
                .await?;
            }
        }
        Ok(found)
    }

    /// One `BatchGetItem` per 100 ids (eventually consistent: the orders are a day old), plus one per
    /// retried batch of unprocessed keys.
    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Order>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|id| {
                    HashMap::from([
                        (attr::PK.to_owned(), Self::pk(id)),
                        (attr::SK.to_owned(), AttributeValue::S(ORDER_SK.into())),
                    ])
                })
                .collect();
            let mut rounds = 0;
            while !keys.is_empty() {
                rounds += 1;
                if rounds > 10 {
                    return Err(StoreError::Unavailable {
                        operation: "get_many",
                        source: "unprocessed keys after 10 rounds".into(),
                    });
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .build()
                    .map_err(|e| unavailable("get_many", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| unavailable("get_many", e))?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    for item in items {
                        found.push(Self::parse_order(item)?);
                    }
                }
                if let Some(rest) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    keys = rest.keys().to_vec();
                    if !keys.is_empty() {
                        tokio::time::sleep(Duration::from_millis(50 * rounds)).await;
                    }
                }
            }
        }
        Ok(found)
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
        conditional_write(
            "count_client_attempt",
            result,
            UpdateItemError::is_conditional_check_failed_exception,
        )
    }
}

/// The bytes an audit entry adds to the order item as DynamoDB sizes it: its values, the keys of its map
/// (`v`, `t`, `s`, `d`) and a few bytes of list and map overhead per entry.
pub fn entry_bytes(entry: &AuditEntry) -> i64 {
    let len = |s: &str| i64::try_from(s.len()).unwrap_or(i64::MAX / 4);
    let digits = |n: i64| len(&n.to_string());
    let version = i64::try_from(entry.version).unwrap_or(i64::MAX / 4);
    12 + digits(version)
        + digits(entry.at.millis())
        + len(&entry.summary)
        + entry.detail.as_deref().map_or(0, |d| 1 + len(d))
}

/// A key that sorts after every sort key of `at` (`<millis>#` followed by base32 ids, all below `~`).
fn after_all_of(at: Timestamp) -> String {
    format!("{:013}#~", at.millis().max(0))
}

impl DynamoOrderStore {
    /// Up to `limit` matching summaries of one index partition in listing order, following DynamoDB's pages
    /// (a filter is applied after the page limit); `true` when the partition has nothing more.
    async fn list_partition(
        &self,
        filter: &OrderFilter,
        part: &str,
        now: Timestamp,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<(String, OrderSummary)>, bool), StoreError> {
        let queue = filter.needs_operator;
        let (index, pk_attr, sk_attr) = if queue {
            (ATTENTION_INDEX, attr::ATTN_PART, attr::ATTN_SK)
        } else {
            (STATUS_INDEX, attr::OPS_PART, attr::OPS_SK)
        };
        let mut values: Item = HashMap::from([(":p".to_owned(), AttributeValue::S(part.into()))]);
        let mut names: Vec<(&str, &str)> = vec![("#p", pk_attr)];
        let key_condition = if queue {
            // The queue: entries whose time has come, oldest first, after the cursor.
            values.insert(":hi".into(), AttributeValue::S(after_all_of(now)));
            names.push(("#k", sk_attr));
            match after {
                // A cursor past `now` (another clock's page): nothing more is due yet.
                Some(c) if c > after_all_of(now).as_str() => return Ok((Vec::new(), true)),
                Some(c) => {
                    values.insert(":lo".into(), AttributeValue::S(format!("{c}!")));
                    "#p = :p AND #k BETWEEN :lo AND :hi"
                }
                None => "#p = :p AND #k <= :hi",
            }
        } else {
            // Newest first, before the cursor and the age bound.
            let bound = match (after, filter.created_before.map(after_all_of)) {
                (Some(c), Some(b)) => Some(if c < b.as_str() { c.to_owned() } else { b }),
                (Some(c), None) => Some(c.to_owned()),
                (None, b) => b,
            };
            match bound {
                Some(b) => {
                    values.insert(":hi".into(), AttributeValue::S(b));
                    names.push(("#k", sk_attr));
                    "#p = :p AND #k < :hi"
                }
                None => "#p = :p",
            }
        };
        let mut conditions: Vec<&str> = Vec::new();
        if let Some(app) = &filter.app {
            values.insert(":app".into(), AttributeValue::S(app.to_string()));
            names.push(("#app", attr::APP));
            conditions.push("#app = :app");
        }
        if let Some(account) = &filter.provider_account {
            values.insert(":acct".into(), AttributeValue::S(account.to_string()));
            names.push(("#acct", attr::ACCOUNT));
            conditions.push("#acct = :acct");
        }
        if queue {
            if let Some(status) = filter.status {
                values.insert(":st".into(), AttributeValue::S(status.as_str().into()));
                names.push(("#st", attr::STATUS));
                conditions.push("#st = :st");
            }
            if let Some(before) = filter.created_before {
                values.insert(":cb".into(), AttributeValue::S(after_all_of(before)));
                names.push(("#osk", attr::OPS_SK));
                conditions.push("#osk < :cb");
            }
            if let Some(why) = filter.attention {
                values.insert(":why".into(), AttributeValue::S(why.as_str().into()));
                names.push(("#why", attr::ATTN_WHY));
                conditions.push("#why = :why");
            }
        }
        let filter_expression = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let mut query = self
            .query()
            .index_name(index)
            .key_condition_expression(key_condition)
            .set_filter_expression(filter_expression)
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(queue)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX));
        for (k, v) in &names {
            query = query.expression_attribute_names(*k, *v);
        }
        let mut found = Vec::new();
        let exhausted = query_until("list", query, |item| {
            match Self::parse_summary(item) {
                Some(s) => found.push((s.sort_key(queue), s)),
                None => tracing::warn!(index, "skipping an unreadable listing entry"),
            }
            Ok(if found.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .await?;
        Ok((found, exhausted))
    }

    fn parse_summary(item: &Item) -> Option<OrderSummary> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(s)) => Some(s.as_str()),
            _ => None,
        };
        let time_of = |key: &str| {
            key.split_once('#')
                .and_then(|(ms, _)| ms.parse::<i64>().ok())
                .map(Timestamp::from_millis)
        };
        let attention = match (text(attr::ATTN_SK).and_then(time_of), text(attr::ATTN_WHY)) {
            (Some(at), Some(why)) => Some((at, Attention::parse(why)?)),
            _ => None,
        };
        Some(OrderSummary {
            order_id: OrderId::parse(text(attr::PK)?.strip_prefix("O#")?).ok()?,
            app: AppId::parse(text(attr::APP)?).ok()?,
            status: PublicStatus::parse(text(attr::STATUS)?)?,
            provider_account: text(attr::ACCOUNT).and_then(|a| ProviderAccountId::parse(a).ok()),
            product_code: ProductCode::parse(text(attr::PRODUCT)?).ok()?,
            created_at: text(attr::OPS_SK).and_then(time_of)?,
            attention,
        })
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
        conditional_write(
            "put_balance",
            result,
            PutItemError::is_conditional_check_failed_exception,
        )
    }

    async fn balances(&self) -> Result<Vec<BalanceSnapshot>, StoreError> {
        let mut all = Vec::new();
        let query = self
            .query()
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", AttributeValue::S(BALANCE_PK.into()));
        query_all("balances", query, |item| {
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
            Ok(())
        })
        .await?;
        Ok(all)
    }

    async fn account_controls(&self) -> Result<Vec<AccountControl>, StoreError> {
        let mut all = self
            .config_records(
                "account_controls",
                ACCOUNT_CONTROL_PREFIX,
                |item| match item.get(attr::DOC) {
                    Some(AttributeValue::S(doc)) => match serde_json::from_str(doc) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "skipping an unreadable account control");
                            None
                        }
                    },
                    _ => {
                        tracing::warn!("skipping an account control without a doc");
                        None
                    }
                },
            )
            .await?;
        all.sort_by(|a: &AccountControl, b| a.account.cmp(&b.account));
        Ok(all)
    }

    async fn put_account_control(&self, control: &AccountControl) -> Result<(), StoreError> {
        let doc = serde_json::to_string(control).map_err(|e| StoreError::Corrupt {
            order_id: String::new(),
            reason: e.to_string(),
        })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, AttributeValue::S(CONFIG_PK.into()))
            .item(
                attr::SK,
                AttributeValue::S(format!("{ACCOUNT_CONTROL_PREFIX}{}", control.account)),
            )
            .item(attr::DOC, AttributeValue::S(doc))
            .send()
            .await
            .map_err(|e| unavailable("put_account_control", e))?;
        Ok(())
    }

    async fn put_balance_history(
        &self,
        snapshot: &BalanceSnapshot,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                attr::PK,
                AttributeValue::S(format!("{BALANCE_HISTORY_PREFIX}{}", snapshot.account)),
            )
            .item(
                attr::SK,
                AttributeValue::S(format!("{:013}", snapshot.at.millis().max(0))),
            )
            .item(
                attr::BALANCE,
                AttributeValue::N(snapshot.balance.get().to_string()),
            )
            .item(
                attr::AT,
                AttributeValue::N(snapshot.at.millis().to_string()),
            )
            .item(
                attr::EXPIRES_AT,
                AttributeValue::N(expires_at.seconds().to_string()),
            )
            .send()
            .await
            .map_err(|e| unavailable("put_balance_history", e))?;
        Ok(())
    }

    async fn balance_history(
        &self,
        account: &ProviderAccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<BalanceSnapshot>, StoreError> {
        let pk = AttributeValue::S(format!("{BALANCE_HISTORY_PREFIX}{account}"));
        let key = |t: Timestamp| AttributeValue::S(format!("{:013}", t.millis().max(0)));
        let parse = |item: &Item| -> Option<BalanceSnapshot> {
            let num = |k: &str| match item.get(k) {
                Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
                _ => None,
            };
            Some(BalanceSnapshot {
                account: account.clone(),
                balance: Fen::new(num(attr::BALANCE)?),
                at: Timestamp::from_millis(num(attr::AT)?),
            })
        };
        // The opening balance: the newest snapshot before the day.
        let before = self
            .query()
            .key_condition_expression("#pk = :pk AND #sk < :from")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", pk.clone())
            .expression_attribute_values(":from", key(from))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| unavailable("balance_history", e))?;
        let mut all: Vec<BalanceSnapshot> = before.items().iter().filter_map(parse).collect();
        if from >= to {
            return Ok(all);
        }
        let query = self
            .query()
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", pk)
            .expression_attribute_values(":from", key(from))
            .expression_attribute_values(":to", key(Timestamp::from_millis(to.millis() - 1)));
        query_all("balance_history", query, |item| {
            match parse(item) {
                Some(s) => all.push(s),
                None => {
                    tracing::warn!(provider_account = %account, "skipping an unreadable balance snapshot")
                }
            }
            Ok(())
        })
        .await?;
        Ok(all)
    }

    async fn put_recon(&self, report: &ReconReport) -> Result<(), StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            order_id: String::new(),
            reason: e.to_string(),
        };
        let pk = AttributeValue::S(format!("{RECON_PREFIX}{}", report.account));
        let expires = AttributeValue::N(
            Timestamp::from_millis(report.generated_at.millis())
                .plus(RECON_RETENTION)
                .seconds()
                .to_string(),
        );
        let mut items: Vec<Item> = Vec::with_capacity(report.mismatches.len());
        for (i, m) in report.mismatches.iter().enumerate() {
            // Settlements live in their own items (`settle_mismatch`), never in the run's.
            let m = Mismatch {
                settlement: None,
                ..m.clone()
            };
            items.push(HashMap::from([
                (attr::PK.to_owned(), pk.clone()),
                (
                    attr::SK.to_owned(),
                    AttributeValue::S(format!("{}#M#{i:06}", report.date)),
                ),
                (
                    attr::DOC.to_owned(),
                    AttributeValue::S(serde_json::to_string(&m).map_err(corrupt)?),
                ),
                (attr::EXPIRES_AT.to_owned(), expires.clone()),
            ]));
        }
        self.batch_put("put_recon", &items, 10, Duration::from_millis(50))
            .await?;
        let mut head = report.clone();
        head.mismatches.clear();
        self.client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, pk)
            .item(attr::SK, AttributeValue::S(format!("{}#R", report.date)))
            .item(
                attr::DOC,
                AttributeValue::S(serde_json::to_string(&head).map_err(corrupt)?),
            )
            .item(
                RECON_MISMATCHES,
                AttributeValue::N(report.mismatches.len().to_string()),
            )
            .item(attr::EXPIRES_AT, expires)
            .send()
            .await
            .map_err(|e| unavailable("put_recon", e))?;
        Ok(())
    }

    async fn recon(
        &self,
        account: &ProviderAccountId,
        date: &str,
    ) -> Result<Option<ReconReport>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            order_id: String::new(),
            reason,
        };
        let mut head: Option<(ReconReport, usize)> = None;
        let mut mismatches: Vec<(usize, Mismatch)> = Vec::new();
        let mut settlements: HashMap<String, Settlement> = HashMap::new();
        let query = self
            .query()
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :d)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(format!("{RECON_PREFIX}{account}")),
            )
            .expression_attribute_values(":d", AttributeValue::S(format!("{date}#")));
        query_all("recon", query, |item| {
            let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(doc))) =
                (item.get(attr::SK), item.get(attr::DOC))
            else {
                return Ok(());
            };
            let rest = sk.strip_prefix(date).and_then(|r| r.strip_prefix('#'));
            match rest {
                Some("R") => {
                    let report: ReconReport = serde_json::from_str(doc)
                        .map_err(|e| corrupt(format!("recon report {account} {date}: {e}")))?;
                    let count = match item.get(RECON_MISMATCHES) {
                        Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
                        _ => 0,
                    };
                    head = Some((report, count));
                }
                Some(m) => {
                    if let Some(seq) = m.strip_prefix("M#").and_then(|n| n.parse().ok()) {
                        let mismatch: Mismatch = serde_json::from_str(doc).map_err(|e| {
                            corrupt(format!("recon mismatch {account} {date}: {e}"))
                        })?;
                        mismatches.push((seq, mismatch));
                    } else if let Some(key) = m.strip_prefix("S#") {
                        let settlement: Settlement = serde_json::from_str(doc).map_err(|e| {
                            corrupt(format!("recon settlement {account} {date}: {e}"))
                        })?;
                        settlements.insert(key.to_owned(), settlement);
                    }
                }
                None => {}
            }
            Ok(())
        })
        .await?;
        Ok(head.map(|(mut report, count)| {
            mismatches.sort_by_key(|(seq, _)| *seq);
            report.mismatches = mismatches
                .into_iter()
                .filter(|(seq, _)| *seq < count)
                .map(|(_, mut m)| {
                    m.settlement = settlements.get(&m.key()).cloned();
                    m
                })
                .collect();
            report
        }))
    }

    async fn settle_mismatch(
        &self,
        account: &ProviderAccountId,
        date: &str,
        settlement: &Settlement,
    ) -> Result<bool, StoreError> {
        let doc = serde_json::to_string(settlement).map_err(|e| StoreError::Corrupt {
            order_id: String::new(),
            reason: e.to_string(),
        })?;
        let expires = Timestamp::from_millis(settlement.at.millis())
            .plus(RECON_RETENTION)
            .seconds()
            .to_string();
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                attr::PK,
                AttributeValue::S(format!("{RECON_PREFIX}{account}")),
            )
            .item(
                attr::SK,
                AttributeValue::S(format!("{date}#S#{}", settlement.key)),
            )
            .item(attr::DOC, AttributeValue::S(doc))
            .item(attr::EXPIRES_AT, AttributeValue::N(expires))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .send()
            .await;
        conditional_write(
            "settle_mismatch",
            out,
            PutItemError::is_conditional_check_failed_exception,
        )
    }
}

/// Merchant apps in the config partition: `pk = CONFIG`, `sk = APP#<id>`, `v` (the record's version, the
/// condition of every write), `doc` (the record as JSON). Round trips: get 1 `GetItem`, list 1 `Query` per
/// page, put 1 conditional `PutItem`.
#[async_trait]
impl AppStore for DynamoOrderStore {
    async fn get_app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, AttributeValue::S(CONFIG_PK.into()))
            .key(attr::SK, AttributeValue::S(format!("{APP_PREFIX}{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get_app", e))?;
        out.item().map(|item| app_of(item, id.as_str())).transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let mut all = self
            .config_records("list_apps", APP_PREFIX, |item| match app_of(item, "?") {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable app record");
                    None
                }
            })
            .await?;
        all.sort_by(|a: &AppRecord, b| a.app.cmp(&b.app));
        Ok(all)
    }

    async fn put_app(&self, record: &AppRecord) -> Result<bool, StoreError> {
        if record.version == 0 {
            return Ok(false);
        }
        let doc = serde_json::to_string(record).map_err(|e| StoreError::Corrupt {
            order_id: format!("app {}", record.app),
            reason: e.to_string(),
        })?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, AttributeValue::S(CONFIG_PK.into()))
            .item(
                attr::SK,
                AttributeValue::S(format!("{APP_PREFIX}{}", record.app)),
            )
            .item(attr::VERSION, AttributeValue::N(record.version.to_string()))
            .item(attr::DOC, AttributeValue::S(doc));
        put = if record.version == 1 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", attr::PK)
        } else {
            put.condition_expression("#v = :v")
                .expression_attribute_names("#v", attr::VERSION)
                .expression_attribute_values(
                    ":v",
                    AttributeValue::N((record.version - 1).to_string()),
                )
        };
        conditional_write(
            "put_app",
            put.send().await,
            PutItemError::is_conditional_check_failed_exception,
        )
    }
}

fn app_of(item: &Item, id: &str) -> Result<AppRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        order_id: format!("app {id}"),
        reason,
    };
    match item.get(attr::DOC) {
        Some(AttributeValue::S(doc)) => {
            serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))
        }
        _ => Err(corrupt("no doc".into())),
    }
}
/// How many mismatch items belong to a stored report (a rerun with fewer leaves older ones unread).
const RECON_MISMATCHES: &str = "mismatches";

//! The `OrderStore` port: where orders live, and the one contract every implementation must meet
//! (`contract`, run against the in-memory store here and against DynamoDB Local in `recharge-aws`).
//!
//! Writes are conditional: a create succeeds only if the order does not exist (the idempotency check), a
//! replace only if the stored version is the one the change was computed from (invariant 5). Every write
//! appends to the order's audit trail in the same atomic step.

use crate::ids::{AppId, OrderId, ProductCode, ProviderAccountId};
use crate::machine::{Applied, Event, Policy, Refusal, apply};
use crate::money::Fen;
use crate::order::{Attention, Order, PublicStatus};
use crate::recon::ReconReport;
use crate::time::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "contract"))]
pub mod contract;

/// One line of an order's append-only audit trail. Must not hold secrets or unmasked personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The order version this entry produced.
    pub version: u64,
    pub at: Timestamp,
    pub summary: String,
    /// Masked raw material: the provider request/response or callback behind the change.
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn for_create(order: &Order, detail: Option<String>) -> AuditEntry {
        let route = order
            .last_attempt()
            .map(|a| a.route().provider_account.to_string())
            .unwrap_or_default();
        AuditEntry {
            version: order.version(),
            at: order.created_at(),
            summary: format!("created; attempt 1 submitting on {route}"),
            detail,
        }
    }

    pub fn for_applied(applied: &Applied, detail: Option<String>) -> AuditEntry {
        AuditEntry {
            version: applied.order.version(),
            at: applied.order.updated_at(),
            summary: applied.summary.clone(),
            detail,
        }
    }
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This call wrote the order.
    New(Order),
    /// An order with this id already existed; nothing was written. It may differ from the one offered
    /// (a replay with another body is the caller's 409).
    Existing(Order),
}

/// What a conditional replace did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    Applied,
    /// The stored version was not the expected one: here is the current order (`None` if it does not exist).
    Conflict {
        current: Option<Box<Order>>,
    },
}

/// An order whose due time has come, from the sweep's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueOrder {
    pub order_id: OrderId,
    pub due_at: Timestamp,
}

/// What an operator's order listing selects (docs/operations.md §1). Every filter is optional; all given ones hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Orders with this public status.
    pub status: Option<PublicStatus>,
    /// Only orders in the operator queue at `now` (see `Order::attention`), oldest entry first; otherwise
    /// every order, newest first.
    pub needs_operator: bool,
    /// With `needs_operator`: only this reason for being in the queue.
    pub attention: Option<Attention>,
    pub app: Option<AppId>,
    /// The provider account of the order's latest attempt.
    pub provider_account: Option<ProviderAccountId>,
    /// Only orders created at or before this time (an age filter: "older than").
    pub created_before: Option<Timestamp>,
}

impl OrderFilter {
    /// Whether `order` passes every filter at `now` (the in-memory store's listing, and a check for tests).
    pub fn matches(&self, order: &Order, now: Timestamp) -> bool {
        let summary = OrderSummary::of(order);
        self.status.is_none_or(|s| s == summary.status)
            && self.app.as_ref().is_none_or(|a| a == &summary.app)
            && self
                .provider_account
                .as_ref()
                .is_none_or(|a| Some(a) == summary.provider_account.as_ref())
            && self.created_before.is_none_or(|t| summary.created_at <= t)
            && (!self.needs_operator
                || summary.attention.is_some_and(|(at, why)| {
                    at <= now && self.attention.is_none_or(|want| want == why)
                }))
    }
}

/// One line of an operator's order listing: what the indexes hold, no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub order_id: OrderId,
    pub app: AppId,
    pub status: PublicStatus,
    pub provider_account: Option<ProviderAccountId>,
    pub product_code: ProductCode,
    pub created_at: Timestamp,
    /// When the order enters (or entered) the operator queue, and why.
    pub attention: Option<(Timestamp, Attention)>,
}

impl OrderSummary {
    pub fn of(order: &Order) -> OrderSummary {
        OrderSummary {
            order_id: order.id().clone(),
            app: order.app_id().clone(),
            status: order.public_view().status,
            provider_account: order
                .last_attempt()
                .map(|a| a.route().provider_account.clone()),
            product_code: order.product_code().clone(),
            created_at: order.created_at(),
            attention: order.attention(),
        }
    }

    /// The listing's sort key and cursor: `<13-digit millis>#<order id>` of the creation time (newest-first
    /// listing) or of the queue entry (operator queue, oldest first). Unique and ordered like the listing.
    pub fn sort_key(&self, needs_operator: bool) -> String {
        let at = if needs_operator {
            self.attention.map(|(at, _)| at).unwrap_or(self.created_at)
        } else {
            self.created_at
        };
        sort_key(at, &self.order_id)
    }
}

/// `<13-digit millis>#<order id>`: orders by time, then id, as text.
pub fn sort_key(at: Timestamp, id: &OrderId) -> String {
    format!("{:013}#{id}", at.millis().max(0))
}

/// Checks a listing cursor's shape (a sort key of `sort_key`), so a store never sends garbage to its index.
pub fn valid_cursor(cursor: &str) -> bool {
    cursor.split_once('#').is_some_and(|(ms, id)| {
        ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()) && OrderId::parse(id).is_ok()
    })
}

/// A store's check of a listing's `after` before it reads anything: `StoreError::Corrupt` for a cursor that is
/// not a sort key (`valid_cursor`).
pub fn check_cursor(after: Option<&str>) -> Result<(), StoreError> {
    match after {
        Some(cursor) if !valid_cursor(cursor) => Err(StoreError::Corrupt {
            order_id: String::new(),
            reason: format!("invalid listing cursor {cursor:?}"),
        }),
        _ => Ok(()),
    }
}

/// One page of a listing; `next` is the cursor of the following page, `None` on the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    pub next: Option<String>,
}

impl OrderPage {
    /// The page a store makes of its candidates (each with its `OrderSummary::sort_key`): in listing order (the
    /// operator queue, `needs_operator`, oldest first; else newest first), at most `limit`, and a `next` cursor
    /// (the last key kept) when more candidates were found than kept or `more` says the store left some unread.
    pub fn of_candidates(
        mut found: Vec<(String, OrderSummary)>,
        needs_operator: bool,
        limit: usize,
        more: bool,
    ) -> OrderPage {
        if needs_operator {
            found.sort_by(|a, b| a.0.cmp(&b.0));
        } else {
            found.sort_by(|a, b| b.0.cmp(&a.0));
        }
        let more = more || found.len() > limit;
        found.truncate(limit);
        let next = if more {
            found.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        OrderPage {
            orders: found.into_iter().map(|(_, s)| s).collect(),
            next,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service failed or could not be reached; the operation may be retried.
    #[error("order store unavailable during {operation}")]
    Unavailable {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored item could not be read back into an order.
    #[error("stored order {order_id} is unreadable: {reason}")]
    Corrupt { order_id: String, reason: String },
    /// Too many concurrent writers on one order for the retry budget.
    #[error("order {0} is contended: gave up after repeated version conflicts")]
    Contended(OrderId),
    /// The order to change does not exist.
    #[error("order {0} does not exist")]
    Missing(OrderId),
}

impl StoreError {
    /// Worth retrying the whole invocation (Lambda diagnostics map this to a retryable error).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } | StoreError::Contended(_) => true,
            StoreError::Corrupt { .. } | StoreError::Missing(_) => false,
        }
    }
}

/// Where orders live.
#[async_trait]
pub trait OrderStore: Send + Sync + std::fmt::Debug {
    /// Writes `order` (a fresh `Order::new`, version 1) if and only if no order with its id exists: one
    /// conditional write. If one exists, writes nothing and returns it (reading it costs one read, but no write).
    async fn create(&self, order: &Order, audit: &AuditEntry) -> Result<Created, StoreError>;

    /// Reads one order by its key: one read. `None` if there is none.
    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError>;

    /// Stores `next` if and only if the stored version is `next.version() - 1`, appending `audit` in the same
    /// atomic write: one conditional write. On a version mismatch nothing is written and the current order
    /// is returned (read only in that case).
    async fn replace(&self, next: &Order, audit: &AuditEntry) -> Result<Replaced, StoreError>;

    /// Orders of due-index shard `shard` whose due time is at or before `now`, earliest first, at most
    /// `limit`: one query. Orders with nothing pending are not in the index at all (sparse).
    async fn due(
        &self,
        shard: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueOrder>, StoreError>;

    /// The order's audit trail, oldest first.
    async fn audit_trail(&self, id: &OrderId) -> Result<Vec<AuditEntry>, StoreError>;

    /// An operator's listing (docs/operations.md §1): at most `limit` orders passing `filter` at `now`, newest first,
    /// or with `needs_operator` oldest queue entry first; `after` is the previous page's `next` cursor (an invalid
    /// cursor is `StoreError::Corrupt`). Never a scan: queries of an index, one per index partition and page (the
    /// DynamoDB store's round trips are in docs/storage.md §4 and docs/operations.md §1).
    async fn list(
        &self,
        filter: &OrderFilter,
        now: Timestamp,
        limit: usize,
        after: Option<&str>,
    ) -> Result<OrderPage, StoreError>;

    /// How many shards the due index has (`OrderId::shard` spreads orders over them).
    fn due_shards(&self) -> u32;

    /// Every order created in `[from, to)`, of every status, app and account, in no particular order: the daily
    /// reconciliation's input (docs/reconciliation.md §5). Never a scan: the DynamoDB store queries each
    /// `by_status` index partition once per page over the creation-time range. This default pages through
    /// `list`, which every store has.
    async fn created_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<OrderSummary>, StoreError> {
        let mut found = Vec::new();
        if to <= from {
            return Ok(found);
        }
        let filter = OrderFilter {
            created_before: Some(Timestamp::from_millis(to.millis() - 1)),
            ..OrderFilter::default()
        };
        let mut after: Option<String> = None;
        loop {
            let page = self.list(&filter, from, 200, after.as_deref()).await?;
            let mut older = false;
            for s in page.orders {
                if s.created_at < from {
                    older = true;
                } else {
                    found.push(s);
                }
            }
            match page.next {
                Some(next) if !older => after = Some(next),
                _ => return Ok(found),
            }
        }
    }

    /// The orders with these ids that exist, in no particular order. The DynamoDB store reads them with one
    /// `BatchGetItem` per 100; this default reads one by one.
    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Order>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(o) = self.get(id).await? {
                found.push(o);
            }
        }
        Ok(found)
    }

    /// Counts one client verification attempt on order `id` (issue 18) if fewer than `limit` are counted, and
    /// says whether it was: one conditional write of a counter item beside the order, never of the order itself
    /// (its version and audit trail are untouched, so the count races with no transition). `Ok(false)`: the
    /// limit was reached and nothing was written. The counter may be forgotten after `expires_at` (TTL).
    async fn count_client_attempt(
        &self,
        id: &OrderId,
        limit: u32,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// The last known balance of a provider account (routing input, low-balance alarm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceSnapshot {
    pub account: ProviderAccountId,
    pub balance: Fen,
    pub at: Timestamp,
}

/// Whether routing may send new orders to a provider account (docs/operations.md §3: runtime control, no deploy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountMode {
    Enabled,
    /// Switched off: no new orders and no balance checks. Open attempts are still followed to the end (one
    /// may still deliver).
    Disabled,
    /// No new orders; open ones continue as usual (balance checks too).
    Draining,
}

impl AccountMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountMode::Enabled => "enabled",
            AccountMode::Disabled => "disabled",
            AccountMode::Draining => "draining",
        }
    }

    /// Routing may open new attempts on the account.
    pub fn takes_new_orders(self) -> bool {
        match self {
            AccountMode::Enabled => true,
            AccountMode::Disabled | AccountMode::Draining => false,
        }
    }
}

/// An operator's runtime settings of one provider account, stored beside its balance and read by every function
/// through a short cache. Absent fields keep the deployed configuration's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountControl {
    pub account: ProviderAccountId,
    pub mode: AccountMode,
    #[serde(default)]
    pub low_balance_fen: Option<i64>,
    /// Escalation limit of new orders routed to the account (docs/operations.md §2), instead of the product kind's.
    #[serde(default)]
    pub escalate_after_secs: Option<u64>,
    /// The operators' code-table overrides of the account, `{"submit": {"7777": "refusal"}, ...}` (the shape of
    /// `recharge_providers::codes::CodeOverrides`, checked by the ops function before it is stored; every
    /// function applies them over the account's configured codes, docs/operations.md §3).
    #[serde(default)]
    pub code_overrides: Option<serde_json::Value>,
    pub updated_at: Timestamp,
    /// Who changed it last (an operator's name and principal).
    pub updated_by: String,
}

/// Where balance snapshots, their history and the daily reconciliation reports live.
#[async_trait]
pub trait BalanceStore: Send + Sync + std::fmt::Debug {
    /// Records a snapshot: one conditional write. A snapshot older than the stored one is ignored (`Ok(false)`),
    /// so a slow balance check cannot overwrite a newer figure.
    async fn put_balance(&self, snapshot: &BalanceSnapshot) -> Result<bool, StoreError>;

    /// The latest snapshot of every account: one query.
    async fn balances(&self) -> Result<Vec<BalanceSnapshot>, StoreError>;

    /// Every account's runtime control record (accounts never changed have none): one query.
    async fn account_controls(&self) -> Result<Vec<AccountControl>, StoreError>;

    /// Stores one account's control record, replacing the previous one: one write.
    async fn put_account_control(&self, control: &AccountControl) -> Result<(), StoreError>;

    /// Appends a snapshot to the account's balance history (the daily reconciliation's input, see
    /// docs/reconciliation.md §4): one write. It may be forgotten after `expires_at` (TTL). Writing the same
    /// account and instant twice keeps one.
    async fn put_balance_history(
        &self,
        snapshot: &BalanceSnapshot,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The account's snapshots taken in `[from, to)`, oldest first, and the last one before `from` (the
    /// opening balance) if any: one query per page, plus one query of at most one item.
    async fn balance_history(
        &self,
        account: &ProviderAccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<BalanceSnapshot>, StoreError>;

    /// Stores one reconciliation report with its mismatches, replacing any earlier run of the same account and
    /// day: one write per 25 mismatches, then one write of the report (so a reader never sees a report whose
    /// mismatches are not all written).
    async fn put_recon(&self, report: &ReconReport) -> Result<(), StoreError>;

    /// The stored report of one account and day (`YYYY-MM-DD`), with its mismatches, each with its operator's
    /// settlement if one was recorded (matched by `Mismatch::key`): one query per page.
    async fn recon(
        &self,
        account: &ProviderAccountId,
        date: &str,
    ) -> Result<Option<ReconReport>, StoreError>;

    /// Records an operator's settlement of one mismatch of an account and day, apart from the reports (a rerun's
    /// `put_recon` keeps it): one conditional write. `Ok(false)` if that key was settled already (the first
    /// settlement stands).
    async fn settle_mismatch(
        &self,
        account: &ProviderAccountId,
        date: &str,
        settlement: &crate::recon::Settlement,
    ) -> Result<bool, StoreError>;
}

/// Whether a merchant app may call the API (an operator adds, disables or rotates an app with no
/// deploy; see docs/operations.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Being created: its secret is being written. Not usable; a create that failed half-way leaves it here,
    /// and a later create of the same id takes it over.
    Pending,
    Enabled,
    /// Refused with `app_disabled` by every function within its app cache's TTL. Its orders go on.
    Disabled,
}

impl AppStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Pending => "pending",
            AppStatus::Enabled => "enabled",
            AppStatus::Disabled => "disabled",
        }
    }
}

/// A merchant app as the operators' API stores it (pk `CONFIG`, sk `APP#<id>` in DynamoDB). `apps.json` stays
/// the seed: an app with no record is the deployed file's; a record replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub app: AppId,
    pub status: AppStatus,
    /// The app's configuration as the API defines it (`recharge_api::apps::AppConfig`: role, secret name,
    /// client access), kept as JSON so the store need not know its shape.
    pub config: serde_json::Value,
    /// Grows with every rotation of the app's secret: a function that saw another number reads the secret
    /// again instead of trusting its cache.
    pub secret_version: u64,
    /// Until when the previous secret (Secrets Manager's `AWSPREVIOUS`) still verifies; `None`: it does not.
    #[serde(default)]
    pub previous_secret_valid_until: Option<Timestamp>,
    /// The record's own version: every write is conditional on it (1 for a new record).
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who changed it last (an operator's name and principal).
    pub updated_by: String,
}

/// Where the operators' merchant apps live.
#[async_trait]
pub trait AppStore: Send + Sync + std::fmt::Debug {
    /// One app's record: one read. `None` if the operators never wrote one (the seed may still know it).
    async fn get_app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError>;

    /// Every app record, ordered by id: one query per page (1 MB) of the config partition.
    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError>;

    /// Writes `record` if and only if the stored record's version is `record.version - 1` (no record at all for
    /// version 1): one conditional write. `Ok(false)`: another write got there first and nothing was written.
    async fn put_app(&self, record: &AppRecord) -> Result<bool, StoreError>;
}

/// The result of `record`.
#[derive(Debug, Clone)]
pub enum Recorded {
    Applied(Box<Applied>),
    /// The event changes nothing (duplicate, stale, conflicting…); `order` is the order it was judged on.
    Refused {
        order: Box<Order>,
        refusal: Refusal,
    },
}

/// How many version conflicts `record` absorbs before giving up (each one means another writer won).
const MAX_RACES: usize = 8;

/// Applies `event` to `order` and stores the result: one conditional write when `order` is current. When
/// another writer got there first, the event is judged again on the order that writer stored, so racing
/// callbacks, queries and sweeps each take effect once or are refused as duplicates.
pub async fn record(
    store: &dyn OrderStore,
    order: Order,
    event: &Event,
    now: Timestamp,
    policy: &Policy,
    detail: Option<String>,
) -> Result<Recorded, StoreError> {
    let mut order = order;
    for _ in 0..MAX_RACES {
        let applied = match apply(&order, event, now, policy) {
            Ok(applied) => applied,
            Err(refusal) => {
                return Ok(Recorded::Refused {
                    order: Box::new(order),
                    refusal,
                });
            }
        };
        let audit = AuditEntry::for_applied(&applied, detail.clone());
        match store.replace(&applied.order, &audit).await? {
            Replaced::Applied => return Ok(Recorded::Applied(Box::new(applied))),
            Replaced::Conflict {
                current: Some(current),
            } => order = *current,
            Replaced::Conflict { current: None } => {
                return Err(StoreError::Missing(order.id().clone()));
            }
        }
    }
    Err(StoreError::Contended(order.id().clone()))
}

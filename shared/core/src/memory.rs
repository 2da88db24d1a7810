//! The in-memory `OrderStore`: for unit tests and the local stack. Same contract as DynamoDB (the suite in
//! `store::contract` runs against both); a mutex makes each operation atomic.

use crate::ids::ProviderAccountId;
use crate::ids::{AppId, OrderId};
use crate::order::Order;
use crate::recon::ReconReport;
use crate::store::{
    AccountControl, AppRecord, AppStore, AuditEntry, BalanceSnapshot, BalanceStore, Created,
    DueOrder, OrderFilter, OrderPage, OrderStore, OrderSummary, Replaced, StoreError, check_cursor,
};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Inner {
    orders: HashMap<OrderId, Order>,
    audit: HashMap<OrderId, Vec<AuditEntry>>,
    balances: HashMap<ProviderAccountId, BalanceSnapshot>,
    controls: HashMap<ProviderAccountId, AccountControl>,
    apps: std::collections::BTreeMap<AppId, AppRecord>,
    /// The sparse due index, one sorted set per shard, kept in step with `orders` on every write (a scan of
    /// every order per sweep tick held the lock long enough to throttle creates).
    due: Vec<BTreeSet<(Timestamp, OrderId)>>,
    /// Client verification attempts per order (issue 18); the TTL is not modelled.
    client_attempts: HashMap<OrderId, u32>,
    /// Balance history per account, by instant (the TTL is not modelled).
    balance_history: HashMap<ProviderAccountId, BTreeMap<Timestamp, BalanceSnapshot>>,
    /// Reconciliation reports by account and date.
    recon: HashMap<(ProviderAccountId, String), ReconReport>,
    /// Operators' settlements of mismatches by account, date and mismatch key.
    settlements: HashMap<(ProviderAccountId, String, String), crate::recon::Settlement>,
}

impl Inner {
    fn reindex(&mut self, shards: u32, before: Option<&Order>, after: &Order) {
        let shard = after.id().shard(shards) as usize;
        if self.due.len() < shards as usize {
            self.due.resize_with(shards as usize, BTreeSet::new);
        }
        if let Some(old) = before.and_then(Order::due_at) {
            self.due[shard].remove(&(old, after.id().clone()));
        }
        if let Some(new) = after.due_at() {
            self.due[shard].insert((new, after.id().clone()));
        }
    }
}

#[derive(Debug)]
pub struct InMemoryOrderStore {
    inner: Mutex<Inner>,
    shards: u32,
}

impl InMemoryOrderStore {
    pub fn new(shards: u32) -> InMemoryOrderStore {
        InMemoryOrderStore {
            inner: Mutex::new(Inner::default()),
            shards: shards.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written order (each write is one insert),
        // so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many orders are stored (for the local stack's status page and tests).
    pub fn len(&self) -> usize {
        self.lock().orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for InMemoryOrderStore {
    fn default() -> Self {
        InMemoryOrderStore::new(8)
    }
}

#[async_trait]
impl OrderStore for InMemoryOrderStore {
    async fn create(&self, order: &Order, audit: &AuditEntry) -> Result<Created, StoreError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.orders.get(order.id()) {
            return Ok(Created::Existing(existing.clone()));
        }
        inner.orders.insert(order.id().clone(), order.clone());
        inner.audit.insert(order.id().clone(), vec![audit.clone()]);
        inner.reindex(self.shards, None, order);
        Ok(Created::New(order.clone()))
    }

    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.lock().orders.get(id).cloned())
    }

    async fn replace(&self, next: &Order, audit: &AuditEntry) -> Result<Replaced, StoreError> {
        let mut inner = self.lock();
        let Some(current) = inner.orders.get(next.id()) else {
            return Ok(Replaced::Conflict { current: None });
        };
        if current.version().checked_add(1) != Some(next.version()) {
            return Ok(Replaced::Conflict {
                current: Some(Box::new(current.clone())),
            });
        }
        let before = inner.orders.insert(next.id().clone(), next.clone());
        inner.reindex(self.shards, before.as_ref(), next);
        inner
            .audit
            .entry(next.id().clone())
            .or_default()
            .push(audit.clone());
        Ok(Replaced::Applied)
    }

    async fn due(
        &self,
        shard: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueOrder>, StoreError> {
        let inner = self.lock();
        let Some(index) = inner.due.get(shard as usize) else {
            return Ok(Vec::new());
        };
        Ok(index
            .iter()
            .take_while(|(due_at, _)| *due_at <= now)
            .take(limit)
            .map(|(due_at, id)| DueOrder {
                order_id: id.clone(),
                due_at: *due_at,
            })
            .collect())
    }

    async fn audit_trail(&self, id: &OrderId) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.lock().audit.get(id).cloned().unwrap_or_default())
    }

    /// Filters every order under the lock: fine for the local stack and tests, whose stores are small.
    async fn list(
        &self,
        filter: &OrderFilter,
        now: Timestamp,
        limit: usize,
        after: Option<&str>,
    ) -> Result<OrderPage, StoreError> {
        check_cursor(after)?;
        let queue = filter.needs_operator;
        let found: Vec<(String, OrderSummary)> = self
            .lock()
            .orders
            .values()
            .filter(|o| filter.matches(o, now))
            .map(|o| {
                let s = OrderSummary::of(o);
                (s.sort_key(queue), s)
            })
            .filter(|(key, _)| match after {
                None => true,
                Some(c) if queue => key.as_str() > c,
                Some(c) => key.as_str() < c,
            })
            .collect();
        Ok(OrderPage::of_candidates(found, queue, limit, false))
    }

    async fn created_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<OrderSummary>, StoreError> {
        Ok(self
            .lock()
            .orders
            .values()
            .filter(|o| o.created_at() >= from && o.created_at() < to)
            .map(OrderSummary::of)
            .collect())
    }

    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Order>, StoreError> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| inner.orders.get(id).cloned())
            .collect())
    }

    fn due_shards(&self) -> u32 {
        self.shards
    }

    async fn count_client_attempt(
        &self,
        id: &OrderId,
        limit: u32,
        _expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let count = inner.client_attempts.entry(id.clone()).or_insert(0);
        if *count >= limit {
            return Ok(false);
        }
        *count += 1;
        Ok(true)
    }
}

#[async_trait]
impl BalanceStore for InMemoryOrderStore {
    async fn put_balance(&self, snapshot: &BalanceSnapshot) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.balances.get(&snapshot.account) {
            Some(stored) if stored.at > snapshot.at => Ok(false),
            _ => {
                inner
                    .balances
                    .insert(snapshot.account.clone(), snapshot.clone());
                Ok(true)
            }
        }
    }

    async fn balances(&self) -> Result<Vec<BalanceSnapshot>, StoreError> {
        let mut all: Vec<BalanceSnapshot> = self.lock().balances.values().cloned().collect();
        all.sort_by(|a, b| a.account.cmp(&b.account));
        Ok(all)
    }

    async fn account_controls(&self) -> Result<Vec<AccountControl>, StoreError> {
        let mut all: Vec<AccountControl> = self.lock().controls.values().cloned().collect();
        all.sort_by(|a, b| a.account.cmp(&b.account));
        Ok(all)
    }

    async fn put_account_control(&self, control: &AccountControl) -> Result<(), StoreError> {
        self.lock()
            .controls
            .insert(control.account.clone(), control.clone());
        Ok(())
    }

    async fn put_balance_history(
        &self,
        snapshot: &BalanceSnapshot,
        _expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.lock()
            .balance_history
            .entry(snapshot.account.clone())
            .or_default()
            .insert(snapshot.at, snapshot.clone());
        Ok(())
    }

    async fn balance_history(
        &self,
        account: &ProviderAccountId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<BalanceSnapshot>, StoreError> {
        let inner = self.lock();
        let Some(history) = inner.balance_history.get(account) else {
            return Ok(Vec::new());
        };
        let opening = history.range(..from).next_back().map(|(_, s)| s.clone());
        let within = if from < to {
            history.range(from..to).map(|(_, s)| s.clone()).collect()
        } else {
            Vec::new()
        };
        Ok(opening.into_iter().chain(within).collect())
    }

    async fn put_recon(&self, report: &ReconReport) -> Result<(), StoreError> {
        let mut stored = report.clone();
        for m in &mut stored.mismatches {
            m.settlement = None;
        }
        self.lock()
            .recon
            .insert((report.account.clone(), report.date.clone()), stored);
        Ok(())
    }

    async fn recon(
        &self,
        account: &ProviderAccountId,
        date: &str,
    ) -> Result<Option<ReconReport>, StoreError> {
        let inner = self.lock();
        let Some(mut report) = inner
            .recon
            .get(&(account.clone(), date.to_owned()))
            .cloned()
        else {
            return Ok(None);
        };
        for m in &mut report.mismatches {
            m.settlement = inner
                .settlements
                .get(&(account.clone(), date.to_owned(), m.key()))
                .cloned();
        }
        Ok(Some(report))
    }

    async fn settle_mismatch(
        &self,
        account: &ProviderAccountId,
        date: &str,
        settlement: &crate::recon::Settlement,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let key = (account.clone(), date.to_owned(), settlement.key.clone());
        if inner.settlements.contains_key(&key) {
            return Ok(false);
        }
        inner.settlements.insert(key, settlement.clone());
        Ok(true)
    }
}

#[async_trait]
impl AppStore for InMemoryOrderStore {
    async fn get_app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        Ok(self.lock().apps.get(id).cloned())
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        Ok(self.lock().apps.values().cloned().collect())
    }

    async fn put_app(&self, record: &AppRecord) -> Result<bool, StoreError> {
        if record.version == 0 {
            return Ok(false);
        }
        let mut inner = self.lock();
        let stored = inner.apps.get(&record.app).map(|r| r.version);
        let expected = record.version.checked_sub(1).filter(|v| *v > 0);
        if stored != expected {
            return Ok(false);
        }
        inner.apps.insert(record.app.clone(), record.clone());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    async fn store() -> std::sync::Arc<dyn crate::store::OrderStore> {
        std::sync::Arc::new(super::InMemoryOrderStore::new(4))
    }

    crate::order_store_contract!(store);

    async fn balance_store() -> std::sync::Arc<dyn crate::store::BalanceStore> {
        std::sync::Arc::new(super::InMemoryOrderStore::new(4))
    }

    crate::balance_store_contract!(balance_store);

    async fn app_store() -> std::sync::Arc<dyn crate::store::AppStore> {
        std::sync::Arc::new(super::InMemoryOrderStore::new(4))
    }

    crate::app_store_contract!(app_store);
}

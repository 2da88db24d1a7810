//! CloudWatch metrics in embedded metric format (EMF): one JSON line on stdout per data point, which
//! CloudWatch Logs turns into metrics with no API call and no extra permission. The alarms of
//! `infra/template.yaml` are defined on exactly these names and dimensions.
//!
//! | metric | dimensions | emitted when |
//! |---|---|---|
//! | `FunctionErrors` | `Service`; `Service, Function` | an invocation fails, an HTTP answer is a 5xx, a sweep has errors |
//! | `OrderOutcomes` | `Service, ProviderAccount, Outcome` | an attempt's state is written (`submitting`, `succeeded`, `unknown`, …) |
//! | `UnknownOrders` | `Service`; `Service, ProviderAccount` | a write leaves an attempt `unknown` |
//! | `StaleUnknownOrders` | `Service` | the sweep reads an order whose `unknown` attempt is older than 10 minutes |
//! | `Anomalies` | `Service`; `Service, Kind` | a write raises an anomaly (late success, second delivery, reversal, partial) |
//! | `ProviderAccountDisabled` | `Service`; `Service, ProviderAccount` | a cold start finds an account's secret missing or malformed |
//! | `LowBalance` | `Service`; `Service, ProviderAccount` | the balance check finds an account below its threshold |
//! | `MerchantNotifications` | `Service`; `Service, Result` | a notification try is recorded (`acknowledged`, `failed`, `abandoned`) |
//! | `ProviderBalanceFen` | `Service, ProviderAccount` | the balance check stores a balance |
//! | `UnlistedProviderCodes` | `Service`; `Service, ProviderAccount, Phase, Code` | after an invocation in which a provider answered a code its account's table does not list |
//! | `OperatorQueue` | `Service` | after every sweep: orders in the operator queue (stuck attempts, abandoned notifications) |
//! | `ProviderLatency` (ms) | `Service, ProviderAccount`; `Service, ProviderAccount, Phase, Outcome` | after every invocation that called a provider: each call's duration (submit, probe, query, verify, balance) |

use async_trait::async_trait;
use recharge_core::store::{
    AuditEntry, Created, DueOrder, OrderFilter, OrderPage, OrderStore, Replaced, StoreError,
};
use recharge_core::{AttemptState, Clock, Order, OrderId, Timestamp};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `Service` dimension value on every metric.
pub const SERVICE: &str = "recharge";
/// An `unknown` attempt older than this is an alarm (docs/state-machine.md §4: the not-found grace window).
pub const STALE_UNKNOWN_AFTER: Duration = Duration::from_secs(600);

/// Writes EMF lines. Cheap to clone; tests capture the lines instead of printing them.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    function: String,
    capture: Option<Arc<Mutex<Vec<Value>>>>,
}

impl Metrics {
    /// Namespace from `RECHARGE_METRICS_NAMESPACE` (the template sets `Recharge/<stage>`), default `Recharge`.
    pub fn from_env(function: &str) -> Metrics {
        let namespace = std::env::var("RECHARGE_METRICS_NAMESPACE")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "Recharge".to_owned());
        recharge_providers::latency::enable();
        Metrics {
            namespace,
            function: function.to_owned(),
            capture: None,
        }
    }

    /// A sink that keeps the lines in memory, for tests.
    pub fn capturing(function: &str) -> (Metrics, Arc<Mutex<Vec<Value>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        recharge_providers::latency::enable();
        (
            Metrics {
                namespace: "Recharge/test".to_owned(),
                function: function.to_owned(),
                capture: Some(Arc::clone(&lines)),
            },
            lines,
        )
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    /// One data point of `name` (unit `Count` unless given) with the given dimension values; `sets` lists the
    /// dimension sets CloudWatch aggregates by (each always includes `Service`).
    pub fn emit(
        &self,
        name: &str,
        value: f64,
        unit: &str,
        dims: &[(&str, &str)],
        sets: &[&[&str]],
    ) {
        self.emit_value(name, json!(value), unit, dims, sets);
    }

    /// Like `emit`, with the value as given: a number, or an array of up to 100 numbers (EMF's limit), each a
    /// data point of its own (so CloudWatch computes percentiles over them).
    fn emit_value(
        &self,
        name: &str,
        value: Value,
        unit: &str,
        dims: &[(&str, &str)],
        sets: &[&[&str]],
    ) {
        let mut root = Map::new();
        let dimension_sets: Vec<Vec<&str>> = sets
            .iter()
            .map(|set| {
                let mut s = vec!["Service"];
                s.extend(set.iter().copied());
                s
            })
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": dimension_sets,
                    "Metrics": [{"Name": name, "Unit": unit}],
                }],
            }),
        );
        root.insert("Service".to_owned(), json!(SERVICE));
        root.insert("Function".to_owned(), json!(self.function));
        for (k, v) in dims {
            root.insert((*k).to_owned(), json!(v));
        }
        root.insert(name.to_owned(), value);
        let line = Value::Object(root);
        match &self.capture {
            Some(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).push(line),
            None => println!("{line}"),
        }
    }

    pub fn count(&self, name: &str, dims: &[(&str, &str)], sets: &[&[&str]]) {
        self.emit(name, 1.0, "Count", dims, sets);
    }

    pub fn function_error(&self) {
        let function = self.function.clone();
        self.count(
            "FunctionErrors",
            &[("Function", function.as_str())],
            &[&[], &["Function"]],
        );
    }

    /// The unlisted provider codes seen since the last call (docs/providers/README.md §4 rule 1), one data point per
    /// (account, phase, code) with the count. Called after every invocation.
    pub fn unlisted_codes(&self) {
        for (account, phase, code, n) in recharge_providers::codes::take_unlisted_counts() {
            #[allow(clippy::cast_precision_loss)] // counts per invocation are small
            let value = n as f64;
            self.emit(
                "UnlistedProviderCodes",
                value,
                "Count",
                &[
                    ("ProviderAccount", account.as_str()),
                    ("Phase", phase.as_str()),
                    ("Code", code.as_str()),
                ],
                &[&[], &["ProviderAccount", "Phase", "Code"]],
            );
        }
    }

    /// The duration of every provider call since the last drain (`recharge_providers::latency`), per account,
    /// phase and outcome class, in lines of up to 100 values. Called after every invocation.
    pub fn provider_latency(&self) {
        for (account, phase, class, values) in recharge_providers::latency::take() {
            for chunk in values.chunks(100) {
                self.emit_value(
                    "ProviderLatency",
                    json!(chunk),
                    "Milliseconds",
                    &[
                        ("ProviderAccount", account.as_str()),
                        ("Phase", phase.as_str()),
                        ("Outcome", class.as_str()),
                    ],
                    &[
                        &["ProviderAccount"],
                        &["ProviderAccount", "Phase", "Outcome"],
                    ],
                );
            }
        }
    }

    /// An account disabled at cold start because its secret is missing or malformed.
    pub fn provider_account_disabled(&self, account: &str) {
        self.count(
            "ProviderAccountDisabled",
            &[("ProviderAccount", account)],
            &[&[], &["ProviderAccount"]],
        );
    }

    pub fn low_balance(&self, account: &str) {
        self.count(
            "LowBalance",
            &[("ProviderAccount", account)],
            &[&[], &["ProviderAccount"]],
        );
    }

    /// Mismatches of one reconciliation report that raise the alarm (docs/reconciliation.md §7), 0 on a
    /// clean day; the template alarms on any.
    pub fn recon_mismatches(&self, account: &str, alarming: usize) {
        #[allow(clippy::cast_precision_loss)]
        let value = alarming as f64;
        self.emit(
            "ReconMismatches",
            value,
            "Count",
            &[("ProviderAccount", account)],
            &[&[], &["ProviderAccount"]],
        );
    }

    /// How many orders need an operator now (a gauge, emitted after every sweep).
    pub fn operator_queue(&self, orders: usize) {
        #[allow(clippy::cast_precision_loss)]
        let value = orders as f64;
        self.emit("OperatorQueue", value, "Count", &[], &[&[]]);
    }

    pub fn balance(&self, account: &str, fen: i64) {
        // Fen fit an f64 exactly up to 2^53.
        #[allow(clippy::cast_precision_loss)]
        let value = fen as f64;
        self.emit(
            "ProviderBalanceFen",
            value,
            "None",
            &[("ProviderAccount", account)],
            &[&["ProviderAccount"]],
        );
    }

    fn order_written(&self, order: &Order) {
        let Some(last) = order.last_attempt() else {
            return;
        };
        let account = last.route().provider_account.to_string();
        let outcome = last.state().name();
        self.count(
            "OrderOutcomes",
            &[("ProviderAccount", account.as_str()), ("Outcome", outcome)],
            &[&["ProviderAccount", "Outcome"]],
        );
        if matches!(last.state(), AttemptState::Unknown { .. }) {
            self.count(
                "UnknownOrders",
                &[("ProviderAccount", account.as_str())],
                &[&[], &["ProviderAccount"]],
            );
        }
        // An anomaly raised by this very write carries the write's time.
        for anomaly in order.anomalies() {
            if anomaly.at == order.updated_at() {
                self.count(
                    "Anomalies",
                    &[("Kind", anomaly.kind.as_str())],
                    &[&[], &["Kind"]],
                );
            }
        }
    }
}

/// An `OrderStore` decorator that emits the order metrics on every successful write, and (when `watch_stale`,
/// i.e. in the sweep, which reads every due order) counts `unknown` attempts older than 10 minutes.
/// It sits between `recharge-api` and the real store, so the use cases stay free of metrics code.
#[derive(Debug)]
pub struct ObservedStore {
    inner: Arc<dyn OrderStore>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    watch_stale: bool,
}

impl ObservedStore {
    pub fn new(
        inner: Arc<dyn OrderStore>,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
        watch_stale: bool,
    ) -> ObservedStore {
        ObservedStore {
            inner,
            metrics,
            clock,
            watch_stale,
        }
    }

    fn observe_read(&self, order: &Order, now: Timestamp) {
        if let Some(open) = order.open_attempt()
            && matches!(open.state(), AttemptState::Unknown { .. })
            && now.since(open.opened_at()) > STALE_UNKNOWN_AFTER
        {
            let account = open.route().provider_account.to_string();
            self.metrics.count(
                "StaleUnknownOrders",
                &[("ProviderAccount", account.as_str())],
                &[&[]],
            );
        }
    }
}

#[async_trait]
impl OrderStore for ObservedStore {
    async fn create(&self, order: &Order, audit: &AuditEntry) -> Result<Created, StoreError> {
        let created = self.inner.create(order, audit).await?;
        if let Created::New(o) = &created {
            self.metrics.order_written(o);
        }
        Ok(created)
    }

    async fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let got = self.inner.get(id).await?;
        if self.watch_stale
            && let Some(order) = &got
        {
            self.observe_read(order, self.clock.now());
        }
        Ok(got)
    }

    async fn replace(&self, next: &Order, audit: &AuditEntry) -> Result<Replaced, StoreError> {
        let replaced = self.inner.replace(next, audit).await?;
        if replaced == Replaced::Applied {
            self.metrics.order_written(next);
            if let Some(result) = notification_result(&audit.summary) {
                self.metrics.count(
                    "MerchantNotifications",
                    &[("Result", result)],
                    &[&[], &["Result"]],
                );
            }
        }
        Ok(replaced)
    }

    async fn due(
        &self,
        shard: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueOrder>, StoreError> {
        self.inner.due(shard, now, limit).await
    }

    async fn audit_trail(&self, id: &OrderId) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_trail(id).await
    }

    async fn list(
        &self,
        filter: &OrderFilter,
        now: Timestamp,
        limit: usize,
        after: Option<&str>,
    ) -> Result<OrderPage, StoreError> {
        self.inner.list(filter, now, limit, after).await
    }

    async fn created_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<recharge_core::store::OrderSummary>, StoreError> {
        self.inner.created_between(from, to).await
    }

    async fn get_many(&self, ids: &[OrderId]) -> Result<Vec<Order>, StoreError> {
        self.inner.get_many(ids).await
    }

    fn due_shards(&self) -> u32 {
        self.inner.due_shards()
    }

    async fn count_client_attempt(
        &self,
        id: &OrderId,
        limit: u32,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.count_client_attempt(id, limit, expires_at).await
    }
}

/// The result of a merchant notification, from the audit summary the state machine writes for an
/// `Event::Notified` (`recharge_core::machine`: "notification of sequence N delivered / failed (k tries) /
/// abandoned after k tries"); `None` for every other write.
fn notification_result(summary: &str) -> Option<&'static str> {
    let rest = summary.strip_prefix("notification of sequence ")?;
    if rest.ends_with(" delivered") {
        Some("acknowledged")
    } else if rest.contains(" abandoned after ") {
        Some("abandoned")
    } else if rest.contains(" failed (") {
        Some("failed")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_writes_are_told_apart_by_their_audit_summary() {
        assert_eq!(
            notification_result("notification of sequence 3 delivered"),
            Some("acknowledged")
        );
        assert_eq!(
            notification_result("notification of sequence 3 failed (2 tries)"),
            Some("failed")
        );
        assert_eq!(
            notification_result("notification of sequence 3 abandoned after 15 tries"),
            Some("abandoned")
        );
        assert_eq!(notification_result("attempt 1 accepted"), None);
    }

    #[test]
    fn an_emf_line_declares_its_metric_and_carries_every_dimension() {
        let (m, lines) = Metrics::capturing("check-balance");
        m.low_balance("dingyin-1");
        let lines = lines.lock().unwrap();
        let line = &lines[0];
        let decl = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], "Recharge/test");
        assert_eq!(decl["Metrics"][0]["Name"], "LowBalance");
        assert_eq!(
            decl["Dimensions"],
            serde_json::json!([["Service"], ["Service", "ProviderAccount"]])
        );
        assert_eq!(line["Service"], SERVICE);
        assert_eq!(line["ProviderAccount"], "dingyin-1");
        assert_eq!(line["LowBalance"], 1.0);
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn provider_latency_is_emitted_per_account_phase_and_outcome_in_lines_of_at_most_100_values() {
        use recharge_providers::latency::{CallPhase, OutcomeClass, record};
        let (m, lines) = Metrics::capturing("reconcile");
        for i in 0..150 {
            record(
                "ice-latency-test",
                CallPhase::Query,
                OutcomeClass::Answered,
                Duration::from_millis(i),
            );
        }
        record(
            "ice-latency-test",
            CallPhase::Submit,
            OutcomeClass::Unknown,
            Duration::from_millis(2000),
        );
        m.provider_latency();
        let lines = lines.lock().unwrap();
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| l["ProviderAccount"] == "ice-latency-test")
            .collect();
        let queries: Vec<&&Value> = mine.iter().filter(|l| l["Phase"] == "query").collect();
        assert_eq!(queries.len(), 2, "150 values in lines of at most 100");
        let n: usize = queries
            .iter()
            .map(|l| l["ProviderLatency"].as_array().unwrap().len())
            .sum();
        assert_eq!(n, 150);
        assert_eq!(queries[0]["Outcome"], "answered");
        let decl = &queries[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Metrics"][0]["Unit"], "Milliseconds");
        assert_eq!(
            decl["Dimensions"],
            serde_json::json!([
                ["Service", "ProviderAccount"],
                ["Service", "ProviderAccount", "Phase", "Outcome"]
            ])
        );
        let submit = mine.iter().find(|l| l["Phase"] == "submit").unwrap();
        assert_eq!(submit["Outcome"], "unknown");
        assert_eq!(submit["ProviderLatency"], serde_json::json!([2000.0]));
    }

    #[test]
    fn unlisted_provider_codes_are_counted_per_account_phase_and_code_after_an_invocation() {
        use recharge_providers::codes::{Phase, Unlisted, note_unlisted};
        let u = Unlisted {
            phase: Phase::Submit,
            code: "2001".to_owned(),
            message: "系统繁忙".to_owned(),
        };
        note_unlisted("wikeyun-metric-test", &u);
        note_unlisted("wikeyun-metric-test", &u);
        let (m, lines) = Metrics::capturing("submit-order");
        m.unlisted_codes();
        let lines = lines.lock().unwrap();
        let line = lines
            .iter()
            .find(|l| l["ProviderAccount"] == "wikeyun-metric-test")
            .expect("a data point for the account");
        assert_eq!(line["UnlistedProviderCodes"], 2.0);
        assert_eq!(line["Phase"], "submit");
        assert_eq!(line["Code"], "2001");
        drop(lines);
        // Counted once: the next invocation starts from zero.
        let (m, lines) = Metrics::capturing("submit-order");
        m.unlisted_codes();
        assert!(
            !lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l["ProviderAccount"] == "wikeyun-metric-test")
        );
    }
}

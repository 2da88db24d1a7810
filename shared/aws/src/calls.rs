//! Counts SDK round trips per operation (an SDK interceptor), so tests and benchmarks can hold the code to
//! the DynamoDB budget of docs/storage.md §4 and show that warm secret reads make no call. Built with
//! [`CallCounter::recording`] it also keeps every call's service, operation and request body, from which a test
//! derives the IAM action and resource of each call (both services speak JSON: the table, index and secret
//! names are in the body).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared tally of HTTP attempts by operation name (`PutItem`, `TransactWriteItems`, `GetSecretValue`, …).
/// Clone it into a client config with `.interceptor(counter.clone())`.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// `Some` when built with [`CallCounter::recording`].
    calls: Option<Arc<Mutex<Vec<RecordedCall>>>>,
}

/// One SDK round trip as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The SDK's service name (`dynamodb`, `secretsmanager`).
    pub service: String,
    /// The operation (`GetItem`, `BatchGetSecretValue`, …).
    pub operation: String,
    /// The request body as sent (JSON for both services); empty if it was streamed.
    pub body: String,
}

impl CallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter that also records every call (for tests: it keeps every request body in memory).
    pub fn recording() -> Self {
        CallCounter {
            counts: Arc::default(),
            calls: Some(Arc::default()),
        }
    }

    /// Every call recorded so far, in order (empty unless built with [`CallCounter::recording`]).
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// A copy of the tally so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Round trips of one operation so far.
    pub fn get(&self, operation: &str) -> u64 {
        self.snapshot().get(operation).copied().unwrap_or(0)
    }

    /// All round trips so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    // Once per HTTP attempt, so SDK retries count as the round trips they are.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let metadata = cfg.load::<Metadata>();
        let name = metadata
            .map(|m| m.name().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        if let Some(calls) = &self.calls {
            let body = context
                .request()
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RecordedCall {
                    service: metadata.map(|m| m.service().to_owned()).unwrap_or_default(),
                    operation: name.clone(),
                    body,
                });
        }
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default() += 1;
        Ok(())
    }
}

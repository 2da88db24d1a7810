//! Counts SDK round trips per operation (an SDK interceptor), so tests and benchmarks can hold the code to
//! the DynamoDB budget of docs/storage.md §4 and show that warm secret reads make no call. Built with
//! [`CallCounter::recording`] it also keeps every call's service, operation and request body, from which a test
//! derives the IAM action and resource of each call (both services speak JSON: the table, index and secret
//! names are in the body). Built with [`CallCounter::metering`] it also asks DynamoDB for the capacity each
//! call consumed (`ReturnConsumedCapacity = INDEXES`) and adds it up, table and indexes, per operation: the
//! write and read units of the bench's cost per order.

use aws_sdk_dynamodb::operation as ddb;
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
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
    /// `Some` when built with [`CallCounter::metering`]: each call's units and its indexes' share by name.
    capacity: Option<Arc<Mutex<Vec<MeteredCall>>>>,
}

/// The units a call consumed on each global secondary index, by index name.
pub type IndexUnits = BTreeMap<String, f64>;
/// One metered call as kept: its operation and units, and its indexes' share.
type MeteredCall = (Metered, IndexUnits);

/// One metered call: its operation and the capacity it consumed.
pub type Metered = (String, Units);

/// Capacity units DynamoDB reported as consumed (table and indexes together), as it bills them: a write unit
/// per KB written (twice in a transaction), a read unit per 4 KB read strongly (half for an eventually
/// consistent read). A refused conditional write is billed too, but its error carries no figure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
    /// The part of `read` or `write` that went to global secondary indexes.
    pub index: f64,
}

impl std::ops::Add for Units {
    type Output = Units;
    fn add(self, o: Units) -> Units {
        Units {
            read: self.read + o.read,
            write: self.write + o.write,
            index: self.index + o.index,
        }
    }
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
            capacity: None,
        }
    }

    /// A counter that also asks DynamoDB for the consumed capacity of every call and adds it up
    /// ([`CallCounter::units`]). It changes the requests (one more field), not what they do.
    pub fn metering() -> Self {
        CallCounter {
            counts: Arc::default(),
            calls: None,
            capacity: Some(Arc::default()),
        }
    }

    /// Every metered call so far, in order, with the capacity it consumed (empty unless built with
    /// [`CallCounter::metering`]). Slice it by length to get the calls of one step.
    pub fn metered(&self) -> Vec<(String, Units)> {
        self.capacity
            .as_ref()
            .map(|c| {
                c.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|(m, _)| m.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every metered call so far, in the order of [`CallCounter::metered`], with the units each index took.
    pub fn metered_by_index(&self) -> Vec<(String, Units, IndexUnits)> {
        self.capacity
            .as_ref()
            .map(|c| {
                c.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|((op, u), i)| (op.clone(), *u, i.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The consumed capacity so far, added up by operation.
    pub fn units(&self) -> BTreeMap<String, Units> {
        let mut by_op: BTreeMap<String, Units> = BTreeMap::new();
        for (op, u) in self.metered() {
            let e = by_op.entry(op).or_default();
            *e = *e + u;
        }
        by_op
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
        if let Some(c) = &self.capacity {
            c.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

/// Sets `ReturnConsumedCapacity = INDEXES` on a DynamoDB input of the operations the store uses.
fn ask_for_capacity(input: &mut aws_smithy_runtime_api::client::interceptors::context::Input) {
    let want = Some(ReturnConsumedCapacity::Indexes);
    if let Some(i) = input.downcast_mut::<ddb::put_item::PutItemInput>() {
        i.return_consumed_capacity = want;
    } else if let Some(i) = input.downcast_mut::<ddb::update_item::UpdateItemInput>() {
        i.return_consumed_capacity = want;
    } else if let Some(i) = input.downcast_mut::<ddb::get_item::GetItemInput>() {
        i.return_consumed_capacity = want;
    } else if let Some(i) = input.downcast_mut::<ddb::query::QueryInput>() {
        i.return_consumed_capacity = want;
    } else if let Some(i) = input.downcast_mut::<ddb::delete_item::DeleteItemInput>() {
        i.return_consumed_capacity = want;
    } else if let Some(i) =
        input.downcast_mut::<ddb::transact_write_items::TransactWriteItemsInput>()
    {
        i.return_consumed_capacity = want;
    } else if let Some(i) = input.downcast_mut::<ddb::batch_write_item::BatchWriteItemInput>() {
        i.return_consumed_capacity = want;
    } else if let Some(i) = input.downcast_mut::<ddb::batch_get_item::BatchGetItemInput>() {
        i.return_consumed_capacity = want;
    } else if let Some(i) = input.downcast_mut::<ddb::scan::ScanInput>() {
        i.return_consumed_capacity = want;
    }
}

/// The capacity a DynamoDB output reports, with each index's share.
fn consumed(
    output: &aws_smithy_runtime_api::client::interceptors::context::Output,
) -> Option<(Units, IndexUnits)> {
    let units = consumed_units(output)?;
    let mut by_index = IndexUnits::new();
    let mut add = |c: &ConsumedCapacity| {
        for (name, u) in c.global_secondary_indexes().into_iter().flatten() {
            *by_index.entry(name.clone()).or_default() += u.capacity_units().unwrap_or(0.0);
        }
    };
    if let Some(o) = output.downcast_ref::<ddb::put_item::PutItemOutput>() {
        o.consumed_capacity().into_iter().for_each(&mut add);
    } else if let Some(o) = output.downcast_ref::<ddb::update_item::UpdateItemOutput>() {
        o.consumed_capacity().into_iter().for_each(&mut add);
    } else if let Some(o) = output.downcast_ref::<ddb::delete_item::DeleteItemOutput>() {
        o.consumed_capacity().into_iter().for_each(&mut add);
    } else if let Some(o) = output.downcast_ref::<ddb::get_item::GetItemOutput>() {
        o.consumed_capacity().into_iter().for_each(&mut add);
    } else if let Some(o) = output.downcast_ref::<ddb::query::QueryOutput>() {
        o.consumed_capacity().into_iter().for_each(&mut add);
    } else if let Some(o) = output.downcast_ref::<ddb::scan::ScanOutput>() {
        o.consumed_capacity().into_iter().for_each(&mut add);
    } else if let Some(o) =
        output.downcast_ref::<ddb::transact_write_items::TransactWriteItemsOutput>()
    {
        o.consumed_capacity().iter().for_each(&mut add);
    } else if let Some(o) = output.downcast_ref::<ddb::batch_write_item::BatchWriteItemOutput>() {
        o.consumed_capacity().iter().for_each(&mut add);
    } else if let Some(o) = output.downcast_ref::<ddb::batch_get_item::BatchGetItemOutput>() {
        o.consumed_capacity().iter().for_each(&mut add);
    }
    Some((units, by_index))
}

/// The capacity a DynamoDB output reports, split into read and write units by its operation.
fn consumed_units(
    output: &aws_smithy_runtime_api::client::interceptors::context::Output,
) -> Option<Units> {
    // (all units, the indexes' part)
    let one = |c: &ConsumedCapacity| {
        let index: f64 = c
            .global_secondary_indexes()
            .map(|g| g.values().filter_map(|u| u.capacity_units()).sum())
            .unwrap_or(0.0);
        (c.capacity_units().unwrap_or(0.0), index)
    };
    let total = |c: &[ConsumedCapacity]| {
        c.iter()
            .map(one)
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y))
    };
    let single = |c: Option<&ConsumedCapacity>| c.map(one).unwrap_or((0.0, 0.0));
    let write = |(w, index): (f64, f64)| Units {
        read: 0.0,
        write: w,
        index,
    };
    let read = |(r, index): (f64, f64)| Units {
        read: r,
        write: 0.0,
        index,
    };
    if let Some(o) = output.downcast_ref::<ddb::put_item::PutItemOutput>() {
        return Some(write(single(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::update_item::UpdateItemOutput>() {
        return Some(write(single(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::delete_item::DeleteItemOutput>() {
        return Some(write(single(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::transact_write_items::TransactWriteItemsOutput>() {
        return Some(write(total(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::batch_write_item::BatchWriteItemOutput>() {
        return Some(write(total(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::get_item::GetItemOutput>() {
        return Some(read(single(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::query::QueryOutput>() {
        return Some(read(single(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::scan::ScanOutput>() {
        return Some(read(single(o.consumed_capacity())));
    }
    if let Some(o) = output.downcast_ref::<ddb::batch_get_item::BatchGetItemOutput>() {
        return Some(read(total(o.consumed_capacity())));
    }
    None
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.capacity.is_some() {
            ask_for_capacity(context.input_mut());
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(capacity) = &self.capacity
            && let Ok(output) = context.output_or_error()
            && let Some((units, by_index)) = consumed(output)
        {
            let name = cfg
                .load::<Metadata>()
                .map(|m| m.name().to_owned())
                .unwrap_or_else(|| "unknown".to_owned());
            capacity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(((name, units), by_index));
        }
        Ok(())
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

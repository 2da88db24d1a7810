//! The in-process rate limits an `AppState` holds (each Lambda instance keeps its own): the client routes'
//! per-order bucket (issue 18, `crate::usecases::client`) and the per-account budget of queries that unverifiable
//! callbacks may cause (issue 15, `crate::usecases::callbacks`).

use recharge_core::{OrderId, ProviderAccountId, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;

/// Per order and process: a burst of this many client requests, then `RATE_PER_SEC`.
pub const RATE_BURST: f64 = 10.0;
pub const RATE_PER_SEC: f64 = 1.0;
/// Orders the rate limiter remembers at once (then it forgets idle ones, or all).
const LIMITER_CAPACITY: usize = 10_000;

/// A token bucket per order, in this process: a burst of `RATE_BURST` requests, then `RATE_PER_SEC`. Each
/// Lambda instance keeps its own (the API's route throttling in the template bounds the sum); in the local
/// stack it is exact. Only requests with a genuine secret reach it, so a flood of forged ones cannot fill it.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<OrderId, (f64, Timestamp)>>,
}

impl Limiter {
    /// Takes one token for `id` at `now`; false when the bucket is empty.
    pub fn take(&self, id: &OrderId, now: Timestamp) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= LIMITER_CAPACITY && !buckets.contains_key(id) {
            // Forget the orders whose buckets have refilled (idle ones); if none, forget everything.
            buckets.retain(|_, (tokens, at)| refill(*tokens, *at, now) < RATE_BURST);
            if buckets.len() >= LIMITER_CAPACITY {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(id.clone()).or_insert((RATE_BURST, now));
        let available = refill(*tokens, *at, now);
        *at = now;
        if available >= 1.0 {
            *tokens = available - 1.0;
            true
        } else {
            *tokens = available;
            false
        }
    }
}

fn refill(tokens: f64, at: Timestamp, now: Timestamp) -> f64 {
    (tokens + now.since(at).as_secs_f64() * RATE_PER_SEC).min(RATE_BURST)
}

/// Per provider account, the queries unverifiable callbacks caused in the current minute.
#[derive(Debug, Default)]
pub struct QueryBudget {
    used: Mutex<HashMap<ProviderAccountId, (i64, u32)>>,
}

impl QueryBudget {
    /// Takes one query for `account` in the minute of `now_secs`; false once `per_minute` are taken.
    pub fn take(&self, account: &ProviderAccountId, now_secs: i64, per_minute: u32) -> bool {
        let minute = now_secs.div_euclid(60);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let entry = used.entry(account.clone()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= per_minute {
            return false;
        }
        entry.1 += 1;
        true
    }
}

//! The `OrderStore` contract (the same suite the in-memory store passes) on DynamoDB Local.

use crate::dyn_store;

recharge_core::order_store_contract!(dyn_store);

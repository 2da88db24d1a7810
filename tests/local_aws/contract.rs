//! The `OrderStore` contract (the same suite the in-memory store passes) on DynamoDB Local.

use crate::dyn_store;

recharge_core::order_store_contract!(dyn_store);

async fn balance_store() -> std::sync::Arc<dyn recharge_core::store::BalanceStore> {
    std::sync::Arc::new(crate::store(None).await)
}

recharge_core::balance_store_contract!(balance_store);

async fn app_store() -> std::sync::Arc<dyn recharge_core::store::AppStore> {
    std::sync::Arc::new(crate::store(None).await)
}

recharge_core::app_store_contract!(app_store);

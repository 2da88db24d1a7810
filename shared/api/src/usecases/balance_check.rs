//! The balance check (EventBridge, every 5 minutes): asks every provider account with a balance API for its
//! balance, stores the snapshot (routing input), and raises the low-balance alarm.

use crate::state::AppState;
use recharge_core::store::BalanceSnapshot;
use recharge_providers::BalanceError;
use serde::Serialize;

/// How long balance history snapshots are kept (TTL): long enough to rerun a month-old reconciliation.
pub const BALANCE_HISTORY_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(40 * 86_400);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BalanceReport {
    pub checked: Vec<String>,
    pub low: Vec<String>,
    pub failed: Vec<String>,
    pub unsupported: Vec<String>,
    /// Switched off by an operator: not asked.
    pub disabled: Vec<String>,
}

pub async fn check_balances(state: &AppState) -> BalanceReport {
    let mut report = BalanceReport::default();
    let controls = state.account_controls().await;
    for provider in state.providers.loaded() {
        let id = provider.account.id.clone();
        // An operator switched the account off: leave its provider alone.
        if controls
            .get(&id)
            .is_some_and(|c| c.mode == recharge_core::store::AccountMode::Disabled)
        {
            report.disabled.push(id.to_string());
            continue;
        }
        if !provider.capabilities().has_balance {
            report.unsupported.push(id.to_string());
            continue;
        }
        let result = provider
            .balance(&state.executor, state.clock.now())
            .await
            .map_err(|e| match e {
                BalanceError::Unsupported => "unsupported".to_owned(),
                BalanceError::Unknown(r) => r.to_string(),
            });
        match result {
            Ok(balance) => {
                let snapshot = BalanceSnapshot {
                    account: id.clone(),
                    balance,
                    at: state.clock.now(),
                };
                if let Err(e) = state.balances.put_balance(&snapshot).await {
                    tracing::error!(provider_account = %id, error = %e, "balance not stored");
                    report.failed.push(id.to_string());
                    continue;
                }
                // The history the daily reconciliation compares with what was delivered
                // (docs/reconciliation.md §4); without it the day's balance is not judged.
                let expires = snapshot.at.plus(BALANCE_HISTORY_RETENTION);
                if let Err(e) = state.balances.put_balance_history(&snapshot, expires).await {
                    tracing::error!(provider_account = %id, error = %e, "balance history not stored");
                }
                let threshold = state.effective_settings(&controls, &id).low_balance_fen;
                let low = threshold.is_some_and(|t| balance.get() < t);
                tracing::info!(provider_account = %id, balance_fen = balance.get(), low, "provider balance");
                if low {
                    tracing::error!(
                        alert = "low_balance",
                        provider_account = %id,
                        balance_fen = balance.get(),
                        threshold_fen = threshold.unwrap_or_default(),
                        "provider balance below threshold"
                    );
                    report.low.push(id.to_string());
                }
                report.checked.push(id.to_string());
            }
            Err(why) => {
                tracing::warn!(provider_account = %id, error = %why, "balance check failed");
                report.failed.push(id.to_string());
            }
        }
    }
    state.forget_balances();
    report
}

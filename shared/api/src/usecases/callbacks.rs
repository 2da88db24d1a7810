//! Provider callbacks at `/v1/callbacks/{provider_account}`: verify over the raw bytes, apply as a conditional
//! transition, answer with the provider's exact acknowledgement only after the result is stored.
//!
//! A duplicate or stale callback changes nothing and is still acknowledged (the provider would otherwise
//! resend it). An unverifiable callback changes nothing: it is refused (so the provider resends), and any of
//! our attempt ids found in it are queried instead, because a query is authenticated and a forged callback
//! must not be able to hide a real result either. An unsigned-by-protocol callback is only a hint: the
//! attempt is queried and the query's answer is applied. Where the protocol has no query (carrier-billing
//! syncs), an unsigned result cannot be confirmed at all: it is kept on the attempt (masked) for an operator,
//! raised as an anomaly, and not acknowledged, so the channel resends it (docs/providers/README.md §4).
//!
//! The queries that callbacks which *failed* verification cause are budgeted (issue 15): at most
//! `Settings::callback_queries_per_minute` per provider account and minute, in this process, so a stream of
//! forged callbacks (each naming up to four ids) cannot turn into a stream of provider queries. Past the budget
//! the callback is refused without a query (the provider resends; the sweep queries due orders on its own
//! schedule). A callback that is unsigned *by protocol* (wikeyun) is the provider's normal way to report, so it
//! is not budgeted: its one query is how every such result, a reversal after success included, is learned;
//! a per-account budget measured the 100,000-order campaign down from 364 reversals learned to 24.

use crate::http::ApiResponse;
use crate::state::AppState;
use crate::usecases::flow::{self, apply_event};
use recharge_core::mask::mask;
use recharge_core::{AttemptId, Event, ProviderAccountId, Source};
use recharge_providers::{CallbackAck, CallbackTrust, Expect, RawCallback};

fn budget_allows(state: &AppState, account: &ProviderAccountId) -> bool {
    let allowed = state.callback_queries.take(
        account,
        state.clock.now().seconds(),
        state.settings.callback_queries_per_minute,
    );
    if !allowed {
        tracing::warn!(
            provider_account = %account,
            per_minute = state.settings.callback_queries_per_minute,
            "callback query budget spent; not querying"
        );
    }
    allowed
}

/// The most of a raw unverified result kept on an attempt.
const MAX_KEPT_CONTENT: usize = 2048;

/// Handles one callback. Always answers something the provider understands; never a 5xx with internals.
pub async fn handle(state: &AppState, account: &str, raw: RawCallback) -> ApiResponse {
    let Some(id) = ProviderAccountId::parse(account)
        .ok()
        .filter(|id| state.providers.is_configured(id))
    else {
        return crate::http::error::ApiError::RouteNotFound.to_response();
    };
    // Loaded on its first callback where accounts load on first use. Secrets Manager failing is a 503: the
    // provider sends the callback again, and nothing was read from it.
    if let Err(e) = state.ensure_accounts([&id]).await {
        tracing::warn!(provider_account = %id, error = %e, "callback not read: provider credentials unavailable");
        return crate::http::error::ApiError::Unavailable.to_response();
    }
    // With the operators' code overrides in force (docs/operations.md §3).
    let Some(provider) = state.provider(&id).await else {
        return crate::http::error::ApiError::RouteNotFound.to_response();
    };
    let account = provider.account.id.clone();
    let ack = |a| ApiResponse::from(provider.adapter.callback_ack(a));
    let event = match provider.adapter.verify_and_parse_callback(&raw) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(provider_account = %account, error = %e, "callback refused; querying instead");
            for id in find_attempt_ids(&raw) {
                if !budget_allows(state, &account) {
                    break;
                }
                if let Err(e) = query_by_attempt(state, &account, &id).await {
                    tracing::warn!(provider_account = %account, attempt_id = %id, error = %e, "query after refused callback failed");
                }
            }
            return ack(CallbackAck::Rejected);
        }
    };
    let order = match state.store.get(&event.attempt.order_id()).await {
        Ok(Some(order)) => order,
        Ok(None) => {
            tracing::warn!(provider_account = %account, attempt_id = %event.attempt, "callback for an unknown order");
            return ack(CallbackAck::Rejected);
        }
        Err(e) => {
            tracing::error!(provider_account = %account, error = %e, "store unavailable during callback");
            return ack(CallbackAck::Rejected);
        }
    };
    let no = event.attempt.attempt();
    match order.attempt(no) {
        Some(a) if a.route().provider_account == account => {}
        _ => {
            tracing::warn!(provider_account = %account, attempt_id = %event.attempt, "callback names an attempt of another account");
            return ack(CallbackAck::Rejected);
        }
    }
    tracing::info!(
        order_id = %order.id(),
        attempt_id = %event.attempt,
        provider_account = %account,
        outcome = flow::outcome_name(&event.outcome),
        trust = ?event.trust,
        "callback"
    );
    let queryable = provider.adapter.has_query()
        && (provider.capabilities().query_by_our_id
            || order.attempt(no).and_then(|a| a.provider_ref()).is_some());
    let result = match event.trust {
        CallbackTrust::Signed => {
            let Some(expect) = Expect::of(&order, no) else {
                return ack(CallbackAck::Rejected);
            };
            let answer = provider.review_callback(event, &expect);
            match flow::record_answer(state, order, no, Source::Callback, answer).await {
                Ok(step) => flow::advance(state, step.order).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        CallbackTrust::Unverified if queryable => {
            match flow::query_attempt(state, order, no).await {
                Ok(order) => flow::advance(state, order).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        // Nothing can confirm it: keep what it said for the operator, and let the channel resend.
        CallbackTrust::Unverified => {
            let content = kept_content(&raw);
            tracing::error!(
                alert = "unverified_result",
                order_id = %order.id(),
                attempt_id = %event.attempt,
                provider_account = %account,
                outcome = flow::outcome_name(&event.outcome),
                "an unsigned result on a protocol with no query: kept for an operator, not acknowledged"
            );
            let e = Event::UnverifiedResult {
                attempt: no,
                content,
            };
            return match apply_event(state, order, e, None).await {
                Ok(_) => ack(CallbackAck::Rejected),
                Err(e) => {
                    tracing::error!(provider_account = %account, error = %e, "unverified result not stored");
                    ack(CallbackAck::Rejected)
                }
            };
        }
    };
    match result {
        Ok(()) => ack(CallbackAck::Accepted),
        Err(e) => {
            // Not stored: let the provider resend.
            tracing::error!(provider_account = %account, error = %e, "callback not stored");
            ack(CallbackAck::Rejected)
        }
    }
}

/// The raw callback as text, capped, with every value that could be a phone or ID number (seven or more
/// digits, an ID card's trailing X allowed) masked; statuses and our ids stay readable for the operator.
fn kept_content(raw: &RawCallback) -> String {
    let text = if raw.body.is_empty() {
        raw.query.clone()
    } else {
        String::from_utf8_lossy(&raw.body).into_owned()
    };
    let masked: String = text
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if looks_personal(v) => format!("{k}={}", mask(v)),
            Some(_) | None => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    masked.chars().take(MAX_KEPT_CONTENT).collect()
}

fn looks_personal(v: &str) -> bool {
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    digits >= 7
        && v.bytes()
            .all(|b| b.is_ascii_digit() || b == b'X' || b == b'x' || b == b'+')
}

async fn query_by_attempt(
    state: &AppState,
    account: &ProviderAccountId,
    id: &AttemptId,
) -> Result<(), recharge_core::store::StoreError> {
    let Some(order) = state.store.get(&id.order_id()).await? else {
        return Ok(());
    };
    let open_here = order
        .attempt(id.attempt())
        .is_some_and(|a| &a.route().provider_account == account && a.state().is_open());
    if open_here {
        let order = flow::query_attempt(state, order, id.attempt()).await?;
        flow::advance(state, order).await?;
    }
    Ok(())
}

/// Our provider-facing ids (20 base32 characters + 2 digits) anywhere in the raw query or body.
pub fn find_attempt_ids(raw: &RawCallback) -> Vec<AttemptId> {
    let mut found: Vec<AttemptId> = Vec::new();
    for bytes in [raw.query.as_bytes(), raw.body.as_slice()] {
        let is_id_char =
            |b: u8| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b) || b.is_ascii_digit();
        let mut start = 0;
        while start < bytes.len() {
            if !is_id_char(bytes[start]) {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric()) {
                end += 1;
            }
            if end - start == 22
                && let Ok(text) = std::str::from_utf8(&bytes[start..end])
                && let Ok(id) = AttemptId::parse(text)
                && !found.contains(&id)
            {
                found.push(id);
            }
            start = end.max(start + 1);
        }
    }
    found.truncate(4);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::QueryBudget;
    use recharge_providers::Method;

    #[test]
    fn kept_content_masks_numbers_and_keeps_statuses_and_ids() {
        let raw = RawCallback {
            method: Method::Get,
            headers: vec![],
            query: "orderid=MP1&mobile=13800138000&status=DELIVRD&cpparam=7JUWX4CXN3GSIQOKCCTK01&idcard=11010119900307451X".into(),
            body: vec![],
        };
        assert_eq!(
            kept_content(&raw),
            "orderid=MP1&mobile=138****8000&status=DELIVRD&cpparam=7JUWX4CXN3GSIQOKCCTK01&idcard=110****451X"
        );
    }

    #[test]
    fn attempt_ids_are_found_in_forms_json_and_queries() {
        let raw = RawCallback {
            method: Method::Post,
            headers: vec![],
            query: "orderid=XS1&sporderid=7JUWX4CXN3GSIQOKCCTK01&x=1".into(),
            body: br#"{"order_no":"7JUWX4CXN3GSIQOKCCTK02","status":"2","sign":"ABCDEF0123456789ABCDEF0123456789"}"#.to_vec(),
        };
        let ids: Vec<String> = find_attempt_ids(&raw)
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            ids,
            vec!["7JUWX4CXN3GSIQOKCCTK01", "7JUWX4CXN3GSIQOKCCTK02"]
        );
    }

    #[test]
    fn the_query_budget_allows_so_many_per_account_and_minute() {
        let budget = QueryBudget::default();
        let a = ProviderAccountId::parse("suka-main").unwrap();
        let b = ProviderAccountId::parse("wikeyun-main").unwrap();
        let t = 1_700_000_020; // 20 s before a minute boundary (1_700_000_040 = 60 × 28_333_334)
        assert!((0..3).all(|_| budget.take(&a, t, 3)));
        assert!(!budget.take(&a, t + 19, 3), "a's minute is spent");
        assert!(budget.take(&b, t + 19, 3), "b has its own budget");
        assert!(budget.take(&a, t + 20, 3), "a new minute");
        assert!(!budget.take(&a, t + 20, 0), "a budget of 0 allows nothing");
    }

    #[test]
    fn longer_tokens_and_bad_attempt_numbers_are_not_ids() {
        let raw = RawCallback {
            method: Method::Get,
            headers: vec![],
            query: "a=7JUWX4CXN3GSIQOKCCTK011&b=7JUWX4CXN3GSIQOKCCTK00".into(),
            body: vec![],
        };
        assert!(find_attempt_ids(&raw).is_empty());
    }
}

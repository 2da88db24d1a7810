//! Test helpers shared by the adapters' unit tests.

use crate::account::{Protocol, ProviderAccount};
use crate::adapter::{RequestContext, SubmitRequest};
use crate::http::{HttpResponse, Method, RawCallback};
use recharge_core::{AttemptId, AttemptNo, Fen, OrderId, ProviderAccountId, Route, Timestamp};
use std::collections::BTreeMap;

/// `7JUWX4CXN3GSIQOKCCTK01`: attempt 1 of the order derived from ("demo", "M1").
pub fn attempt() -> AttemptId {
    let order = OrderId::parse("7JUWX4CXN3GSIQOKCCTK").unwrap();
    AttemptId::new(&order, AttemptNo::FIRST)
}

pub fn route(product: &str) -> Route {
    Route {
        provider_account: ProviderAccountId::parse("acct-1").unwrap(),
        provider_product: product.to_owned(),
        cost: Fen::new(9850),
    }
}

pub fn submit(product: &str, account: &str, extra: &[(&str, &str)]) -> SubmitRequest {
    SubmitRequest {
        attempt: attempt(),
        route: route(product),
        kind: recharge_core::ProductKind::MobileFast,
        account: account.to_owned(),
        face_value: Fen::new(10_000),
        extra: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        callback_url: None,
    }
}

pub fn account(
    protocol: Protocol,
    endpoints: &[(&str, &str)],
    options: serde_json::Value,
) -> ProviderAccount {
    ProviderAccount {
        id: ProviderAccountId::parse("acct-1").unwrap(),
        protocol,
        endpoints: endpoints
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        secret_name: "recharge/acct-1".to_owned(),
        capabilities: None,
        timeouts: Default::default(),
        max_body_bytes: 64 * 1024,
        not_found_grace_secs: 600,
        codes: Default::default(),
        options,
    }
}

/// `account` with `codes` (JSON: `{"query": {"2": "success"}}`) as its code-table overrides.
pub fn with_codes(mut account: ProviderAccount, codes: serde_json::Value) -> ProviderAccount {
    account.codes = serde_json::from_value(codes).unwrap();
    account
}

pub fn ctx_at(millis: i64) -> RequestContext {
    RequestContext {
        now: Timestamp::from_millis(millis),
        nonce: "24bc2c17-0fef-440e-ba32-385c47c6cfa4".to_owned(),
    }
}

pub fn ok(body: impl Into<Vec<u8>>) -> HttpResponse {
    HttpResponse::new(200, body)
}

pub fn post(headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> RawCallback {
    RawCallback {
        method: Method::Post,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        query: String::new(),
        body: body.into(),
    }
}

pub fn get(query: &str) -> RawCallback {
    RawCallback {
        method: Method::Get,
        headers: Vec::new(),
        query: query.to_owned(),
        body: Vec::new(),
    }
}

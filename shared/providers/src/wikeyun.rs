//! 002 微客云 wikeyun (docs/providers/wikeyun.md): TOP-style MD5 over the common and business params, sent in the query
//! string, business params (plus the common ones, as the SDK does) in a UTF-8 form body; JSON envelopes with
//! `code "0000"`; callbacks as JSON, form or GET whose signature algorithm is not public.

pub mod wire;

use crate::account::{ConfigError, Protocol, ProviderAccount};
use crate::adapter::{
    AdapterError, BalanceError, CallbackAck, CallbackError, CallbackEvent, CallbackTrust,
    Capabilities, Parsed, ProviderAdapter, QueryRequest, RequestContext, SubmitRequest,
    attempt_from, precheck, unknown,
};
use crate::codec::{self, Charset};
use crate::codes::{CodeTable, Phase};
use crate::http::{HttpRequest, HttpResponse, Method, RawCallback};
use crate::sign;
use recharge_core::{Fen, Outcome, Reason, Reported};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The secret: `app_key` (an integer issued by wikeyun) and `app_secret`.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    #[serde(deserialize_with = "string_or_number")]
    pub app_key: String,
    pub app_secret: SecretString,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

impl Credentials {
    pub fn validated(self) -> Result<Credentials, String> {
        if self.app_key.is_empty() || !self.app_key.bytes().all(|b| b.is_ascii_digit()) {
            return Err("app_key must be decimal digits".to_owned());
        }
        if self.app_secret.expose_secret().is_empty() {
            return Err("app_secret must not be empty".to_owned());
        }
        Ok(self)
    }
}

/// How to address an order in `Recharge/query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryBy {
    /// Always our id (`order_no`).
    OrderNo,
    /// The platform's `order_number` once we know it (the seed's form), else our id (which works even when
    /// the submit answer was lost).
    OrderNumber,
}

/// The assumptions of docs/providers/wikeyun.md §3 with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// `store_id` of the account (required).
    pub store_id: String,
    /// The `client` common param: the caller's IP as wikeyun has it whitelisted/logged.
    pub client: String,
    /// `recharge_type` when the route's product does not say (1 快充, 0 慢充).
    pub recharge_type: String,
    /// `change`: 0 = the provider must not switch channels (we fail over ourselves, docs/providers/README.md §3
    /// rule 7); `null` = omit (account setting).
    pub change: Option<u8>,
    /// `source` (force a channel), omitted when unset.
    pub source: Option<String>,
    /// Verify the callback `sign` as TOP MD5 over the other fields. Off by default: the algorithm is not public.
    pub verify_callback_sign: bool,
    pub callback_reply: String,
    pub query_by: QueryBy,
    /// The SDK sends `store_id` with queries (the seed's example does not): on by default.
    pub query_sends_store_id: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            store_id: String::new(),
            client: "127.0.0.1".to_owned(),
            recharge_type: "1".to_owned(),
            change: Some(0),
            source: None,
            verify_callback_sign: false,
            callback_reply: "success".to_owned(),
            query_by: QueryBy::OrderNumber,
            query_sends_store_id: true,
        }
    }
}

/// The 002 adapter for one account.
#[derive(Debug)]
pub struct Wikeyun {
    creds: Credentials,
    options: Options,
    submit_url: String,
    query_url: String,
    balance_url: String,
    max_body: usize,
    codes: CodeTable,
}

impl Wikeyun {
    pub fn new(account: &ProviderAccount, creds: Credentials) -> Result<Wikeyun, ConfigError> {
        let options: Options = account.options_as()?;
        let bad = |m: &str| ConfigError::Options {
            protocol: Protocol::Wikeyun,
            message: m.to_owned(),
        };
        if options.store_id.is_empty() {
            return Err(bad("store_id is required"));
        }
        if !matches!(options.recharge_type.as_str(), "0" | "1") {
            return Err(bad("recharge_type must be \"0\" or \"1\""));
        }
        if options.change.is_some_and(|c| c > 1) {
            return Err(bad("change must be 0, 1 or null"));
        }
        Ok(Wikeyun {
            submit_url: account.endpoint("submit")?,
            query_url: account.endpoint("query")?,
            balance_url: account.endpoint("balance")?,
            creds,
            options,
            max_body: account.max_body_bytes,
            codes: account.code_table(wire::DEFAULT_CODES),
        })
    }

    /// An order `status` (query or callback) through the account's table, with its reported amounts.
    fn classify_status(&self, phase: Phase, fields: &dyn Fn(&str) -> Option<String>) -> Parsed {
        let Some(status) = fields("status") else {
            return unknown("unparsable", "order data without status").into();
        };
        let mut message = wire::meaning(&status).to_owned();
        if let Some(r) = fields("failReason")
            .or_else(|| fields("reason"))
            .filter(|r| !r.is_empty())
        {
            message = format!("{message}: {r}");
        }
        let yuan = |k: &str| fields(k).and_then(|t| Fen::parse_yuan(&t).ok());
        let reported = Reported {
            cost: yuan("cost_price"),
            face: yuan("amount"),
            delivered: yuan("arrived_amount"),
            quantity: None,
        };
        let c = self.codes.classify(
            phase,
            &status,
            &message,
            fields("order_number").filter(|s| !s.is_empty()),
            reported.delivered,
        );
        Parsed::classified(c, self.codes.lookup(phase, &status))
            .echoing(fields("order_no"))
            .reporting(reported)
    }

    /// Builds the signed request: common params + sign in the query string, business + common params (no
    /// sign) in the form body.
    fn request(
        &self,
        url: &str,
        business: &[(&str, String)],
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let common: [(&str, String); 5] = [
            ("app_key", self.creds.app_key.clone()),
            ("timestamp", ctx.now.seconds().to_string()),
            ("client", self.options.client.clone()),
            ("format", "json".to_owned()),
            ("v", "1.0".to_owned()),
        ];
        let mut all: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in business.iter().chain(common.iter()) {
            all.insert((*k).to_owned(), v.clone());
        }
        let sign = sign::top_md5(self.creds.app_secret.expose_secret(), &all);
        let mut q: Vec<(&str, &str)> = common.iter().map(|(k, v)| (*k, v.as_str())).collect();
        q.push(("sign", &sign));
        let query = codec::encode_form(&q, Charset::Utf8)?;
        let body_pairs: Vec<(&str, &str)> = business
            .iter()
            .chain(common.iter())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let body = codec::encode_form(&body_pairs, Charset::Utf8)?;
        Ok(HttpRequest {
            method: Method::Post,
            url: format!("{url}?{query}"),
            headers: vec![(
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            )],
            body: body.into_bytes(),
        })
    }

    fn envelope(&self, resp: &HttpResponse) -> Result<wire::Envelope, Outcome> {
        let body = precheck(resp, self.max_body)?;
        wire::envelope(body).ok_or_else(|| unknown("unparsable", "no JSON {code,…} envelope"))
    }
}

/// Splits a route product `"100"` or `"100/0"` into `money` and an optional `recharge_type`.
fn product(p: &str) -> Result<(&str, Option<&str>), AdapterError> {
    let (money, kind) = match p.split_once('/') {
        Some((m, k)) => (m, Some(k)),
        None => (p, None),
    };
    if money.is_empty() || !money.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AdapterError::Invalid(format!(
            "wikeyun product must be <money> or <money>/<recharge_type>, got {p:?}"
        )));
    }
    if let Some(k) = kind
        && !matches!(k, "0" | "1")
    {
        return Err(AdapterError::Invalid(format!("recharge_type {k:?}")));
    }
    Ok((money, kind))
}

impl ProviderAdapter for Wikeyun {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            query_by_our_id: true,
            // docs/providers/wikeyun.md §3: order_no uniqueness is assumed but not documented; never rely on it.
            dedupes_our_id: false,
            sends_callbacks: true,
            callback_signed: self.options.verify_callback_sign,
            has_balance: true,
            two_step: false,
            provider_side_failover: true,
        }
    }

    fn build_submit(
        &self,
        req: &SubmitRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let (money, kind) = product(&req.route.provider_product)?;
        // Fast or slow comes from the route, never from the merchant (docs/providers/README.md §4 rule 6).
        let recharge_type = kind.unwrap_or(&self.options.recharge_type);
        let mut business: Vec<(&str, String)> = vec![
            ("store_id", self.options.store_id.clone()),
            ("mobile", req.account.clone()),
            ("order_no", req.attempt.as_str().to_owned()),
            ("money", money.to_owned()),
            ("recharge_type", recharge_type.to_owned()),
        ];
        if let Some(url) = &req.callback_url {
            business.push(("notify_url", url.clone()));
        }
        // Empty optionals are never sent, so both sides sign the same set (docs/providers/wikeyun.md §3).
        if let Some(c) = self.options.change {
            business.push(("change", c.to_string()));
        }
        if let Some(s) = &self.options.source {
            business.push(("source", s.clone()));
        }
        self.request(&self.submit_url, &business, ctx)
    }

    fn parse_submit(&self, resp: &HttpResponse) -> Parsed {
        let env = match self.envelope(resp) {
            Ok(e) => e,
            Err(o) => return o.into(),
        };
        if env.code.is_empty() {
            return unknown("unparsable", "empty code").into();
        }
        let provider_ref = wire::text(env.data.get("order_number")).filter(|s| !s.is_empty());
        let c = self
            .codes
            .classify(Phase::Submit, &env.code, &env.msg, provider_ref, None);
        Parsed::classified(c, self.codes.lookup(Phase::Submit, &env.code))
            .echoing(wire::text(env.data.get("order_no")))
    }

    fn build_query(
        &self,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let mut business: Vec<(&str, String)> = match (self.options.query_by, &req.provider_ref) {
            (QueryBy::OrderNumber, Some(r)) => vec![("order_number", r.clone())],
            (QueryBy::OrderNumber, None) | (QueryBy::OrderNo, _) => {
                vec![("order_no", req.attempt.as_str().to_owned())]
            }
        };
        if self.options.query_sends_store_id {
            business.push(("store_id", self.options.store_id.clone()));
        }
        self.request(&self.query_url, &business, ctx)
    }

    fn parse_query(&self, resp: &HttpResponse) -> Parsed {
        let env = match self.envelope(resp) {
            Ok(e) => e,
            Err(o) => return o.into(),
        };
        if env.code != wire::CODE_SUCCESS {
            // No not-found code is public: a failed query says nothing about the order.
            return unknown(&env.code, env.msg).into();
        }
        let d = &env.data;
        self.classify_status(Phase::Query, &|k| wire::text(d.get(k)))
    }

    fn build_balance(&self, ctx: &RequestContext) -> Result<HttpRequest, AdapterError> {
        self.request(&self.balance_url, &[], ctx)
    }

    fn parse_balance(&self, resp: &HttpResponse) -> Result<Fen, BalanceError> {
        let env = self.envelope(resp).map_err(|o| match o {
            Outcome::Unknown { reason } => BalanceError::Unknown(reason),
            other => BalanceError::Unknown(Reason::new("unparsable", format!("{other:?}"))),
        })?;
        if env.code != wire::CODE_SUCCESS {
            return Err(BalanceError::Unknown(Reason::new(env.code, env.msg)));
        }
        // Balance = data.money (yuan, string).
        let money = wire::text(env.data.get("money")).unwrap_or_default();
        Fen::parse_yuan(&money)
            .map_err(|e| BalanceError::Unknown(Reason::new("bad_balance", e.to_string())))
    }

    fn verify_and_parse_callback(&self, raw: &RawCallback) -> Result<CallbackEvent, CallbackError> {
        codec::check_cap(&raw.body, self.max_body)?;
        let fields = callback_fields(raw)?;
        let trust = if self.options.verify_callback_sign {
            let given = fields.get("sign").ok_or(CallbackError::MissingSignature)?;
            let signed: BTreeMap<String, String> = fields
                .iter()
                .filter(|(k, _)| k.as_str() != "sign")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let expected = sign::top_md5(self.creds.app_secret.expose_secret(), &signed);
            if !sign::ct_eq_ignore_ascii_case(given, &expected) {
                return Err(CallbackError::BadSignature);
            }
            CallbackTrust::Signed
        } else {
            // Unsigned by design: the caller must confirm with Recharge/query before acting.
            CallbackTrust::Unverified
        };
        let attempt = attempt_from(fields.get("order_no").map(String::as_str))?;
        if !fields.contains_key("status") {
            return Err(CallbackError::Malformed("status missing".to_owned()));
        }
        let provider_ref = fields
            .get("order_number")
            .filter(|s| !s.is_empty())
            .cloned();
        let parsed = self.classify_status(Phase::Callback, &|k| fields.get(k).cloned());
        Ok(CallbackEvent {
            attempt,
            outcome: parsed.outcome,
            provider_ref,
            trust,
            reported: parsed.reported,
            unlisted: parsed.unlisted,
        })
    }

    fn callback_ack(&self, ack: CallbackAck) -> HttpResponse {
        match ack {
            CallbackAck::Accepted => HttpResponse::text(200, &self.options.callback_reply),
            // Anything but `success` makes wikeyun resend (up to 5 times).
            CallbackAck::Rejected => HttpResponse::text(400, "fail"),
        }
    }
}

/// Callback fields from a JSON body, a form body, or (GET) the query string. All must be UTF-8.
fn callback_fields(raw: &RawCallback) -> Result<BTreeMap<String, String>, CallbackError> {
    let body = raw.body.as_slice();
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &body[i..])
        .unwrap_or(&[]);
    if trimmed.first() == Some(&b'{') {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| CallbackError::Malformed(format!("JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| CallbackError::Malformed("not an object".to_owned()))?;
        let mut out = BTreeMap::new();
        for (k, val) in obj {
            // Nulls and nested values are not signable text; skip them rather than guess a rendering.
            if let Some(t) = wire::text(Some(val)) {
                out.insert(k.clone(), t);
            }
        }
        return Ok(out);
    }
    let source = if body.is_empty() {
        raw.query.as_bytes()
    } else {
        body
    };
    let pairs = codec::parse_form(source, Charset::Utf8)?;
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        out.entry(k).or_insert(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

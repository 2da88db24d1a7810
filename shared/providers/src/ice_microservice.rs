//! 003 话费充值微服务 (彩生活 behind the ICE gateway, docs/providers/ice-microservice.md): ICE reserved params `ts, appID, sign`
//! in the query string with `sign = md5(appID + ts + token + "false")` lowercase; business params in the form body
//! (order, POST) or the query (status, GET). No callback, no balance.

pub mod wire;

use crate::account::{ConfigError, Protocol, ProviderAccount};
use crate::adapter::{
    AdapterError, BalanceError, CallbackAck, CallbackError, CallbackEvent, Capabilities, Parsed,
    ProviderAdapter, QueryRequest, RequestContext, SubmitRequest, precheck, unknown,
};
use crate::codec::{self, Charset};
use crate::codes::{CodeTable, Meaning, Phase};
use crate::http::{HttpRequest, HttpResponse, Method, RawCallback};
use crate::json::text;
use crate::sign::{self, HexCase};
use recharge_core::{Fen, Outcome};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The secret: ICE `appID` and app token, and the privilege-service `access_token` passed as a business
/// param.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub app_id: String,
    pub token: SecretString,
    pub access_token: SecretString,
}

impl Credentials {
    pub fn validated(self) -> Result<Credentials, String> {
        if self.app_id.trim().is_empty() {
            return Err("app_id must not be empty".to_owned());
        }
        if self.token.expose_secret().is_empty() || self.access_token.expose_secret().is_empty() {
            return Err("token and access_token must not be empty".to_owned());
        }
        Ok(self)
    }
}

/// Which signature the deployed gateway wants (docs/providers/ice-microservice.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignStyle {
    /// ICE 1.0: `md5(appID + ts + token + "false")`.
    Ice1,
    /// ICE 2.0 (`NEW_ICE`): `md5(appID + ts + token)`.
    Ice2,
    /// Generic fallback: sorted non-empty params except `sign` as `k=v&…&key=TOKEN`, MD5 uppercase.
    SortedParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TsUnit {
    Seconds,
    Millis,
}

/// The assumptions of docs/providers/ice-microservice.md §3 with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// `company` (e.g. 彩生活). Required.
    pub company: String,
    /// `Supplier` (e.g. 中国移动), sent with every order and query. Required; never the merchant's to set.
    pub supplier: String,
    /// `cstmOrderName` (the caller's name).
    pub cstm_order_name: String,
    pub sign_style: SignStyle,
    /// Case of the ICE md5 (lower, as PHP `md5()`); the sorted-params style is always uppercase.
    pub sign_case: HexCase,
    pub ts_unit: TsUnit,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            company: String::new(),
            supplier: String::new(),
            cstm_order_name: "recharge-gateway".to_owned(),
            sign_style: SignStyle::Ice1,
            sign_case: HexCase::Lower,
            ts_unit: TsUnit::Seconds,
        }
    }
}

/// `md5(appID + ts + token [+ "false"])`.
pub fn ice_sign(app_id: &str, ts: &str, token: &str, with_false: bool, case: HexCase) -> String {
    let mut s = format!("{app_id}{ts}{token}");
    if with_false {
        s.push_str("false");
    }
    sign::md5_hex(s.as_bytes(), case)
}

/// Privilege service `/app/auth` signature: `md5(appkey + timestamp + appSecret)` lowercase.
pub fn privilege_sign(app_key: &str, ts: &str, secret: &str) -> String {
    sign::md5_hex(format!("{app_key}{ts}{secret}").as_bytes(), HexCase::Lower)
}

/// The generic fallback signer: `MD5(k1=v1&k2=v2…&key=SECRET)` uppercase over sorted non-empty params.
pub fn sorted_params_sign(params: &BTreeMap<String, String>, secret: &str) -> String {
    let mut s = String::new();
    for (k, v) in params
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
    {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('&');
    }
    s.push_str("key=");
    s.push_str(secret);
    sign::md5_hex(s.as_bytes(), HexCase::Upper)
}

/// The 003 adapter for one account.
#[derive(Debug)]
pub struct IceMicroservice {
    creds: Credentials,
    options: Options,
    submit_url: String,
    query_url: String,
    max_body: usize,
    codes: CodeTable,
}

impl IceMicroservice {
    pub fn new(
        account: &ProviderAccount,
        creds: Credentials,
    ) -> Result<IceMicroservice, ConfigError> {
        let options: Options = account.options_as()?;
        if options.company.is_empty() || options.supplier.is_empty() {
            return Err(ConfigError::Options {
                protocol: Protocol::IceMicroservice,
                message: "company and supplier are required".to_owned(),
            });
        }
        let codes = account.code_table(wire::DEFAULT_CODES);
        codes
            .require(Phase::Query, Meaning::Success)
            .map_err(ConfigError::Codes)?;
        Ok(IceMicroservice {
            submit_url: account.endpoint("submit")?,
            query_url: account.endpoint("query")?,
            creds,
            options,
            max_body: account.max_body_bytes,
            codes,
        })
    }

    /// The ICE reserved params for `business`, in query-string order `ts, appID, sign`.
    fn reserved(
        &self,
        business: &[(&str, String)],
        ctx: &RequestContext,
    ) -> [(&'static str, String); 3] {
        let ts = match self.options.ts_unit {
            TsUnit::Seconds => ctx.now.seconds().to_string(),
            TsUnit::Millis => ctx.now.millis().to_string(),
        };
        let token = self.creds.token.expose_secret();
        let app_id = self.creds.app_id.as_str();
        let sign = match self.options.sign_style {
            SignStyle::Ice1 => ice_sign(app_id, &ts, token, true, self.options.sign_case),
            SignStyle::Ice2 => ice_sign(app_id, &ts, token, false, self.options.sign_case),
            SignStyle::SortedParams => {
                let mut all: BTreeMap<String, String> = business
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                all.insert("ts".to_owned(), ts.clone());
                all.insert("appID".to_owned(), app_id.to_owned());
                sorted_params_sign(&all, token)
            }
        };
        [("ts", ts), ("appID", app_id.to_owned()), ("sign", sign)]
    }

    fn answer(&self, resp: &HttpResponse) -> Result<wire::Answer, Outcome> {
        let body = precheck(resp, self.max_body)?;
        wire::answer(body).ok_or_else(|| unknown("unparsable", "no JSON {code,…} answer"))
    }
}

fn pairs<'a>(v: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

impl ProviderAdapter for IceMicroservice {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            query_by_our_id: true,
            dedupes_our_id: false,
            sends_callbacks: false,
            callback_signed: false,
            has_balance: false,
            two_step: false,
            provider_side_failover: false,
        }
    }

    fn build_submit(
        &self,
        req: &SubmitRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        // The supplier comes from the account, never from the merchant (docs/providers/README.md §4 rule 6), and the
        // query sends the same one.
        let supplier = self.options.supplier.clone();
        let business: Vec<(&str, String)> = vec![
            (
                "access_token",
                self.creds.access_token.expose_secret().to_owned(),
            ),
            ("company", self.options.company.clone()),
            ("Supplier", supplier),
            ("phoneNo", req.account.clone()),
            ("productId", req.route.provider_product.clone()),
            ("cstmOrderName", self.options.cstm_order_name.clone()),
            ("cstmOrderNo", req.attempt.as_str().to_owned()),
        ];
        let reserved = self.reserved(&business, ctx);
        let query = codec::encode_form(&pairs(&reserved), Charset::Utf8)?;
        let body = codec::encode_form(&pairs(&business), Charset::Utf8)?;
        Ok(HttpRequest {
            method: Method::Post,
            url: format!("{}?{query}", self.submit_url),
            headers: vec![(
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            )],
            body: body.into_bytes(),
        })
    }

    fn parse_submit(&self, resp: &HttpResponse) -> Parsed {
        let a = match self.answer(resp) {
            Ok(a) => a,
            Err(o) => return o.into(),
        };
        let provider_ref = text(a.data.get("orderNo")).filter(|s| !s.is_empty());
        let c = self
            .codes
            .classify(Phase::Submit, &a.code, &a.message, provider_ref, None);
        Parsed::classified(c, self.codes.lookup(Phase::Submit, &a.code))
            .echoing(text(a.data.get("cstmOrderNo")))
    }

    fn build_query(
        &self,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let mut business: Vec<(&str, String)> = vec![
            (
                "access_token",
                self.creds.access_token.expose_secret().to_owned(),
            ),
            ("company", self.options.company.clone()),
            ("Supplier", self.options.supplier.clone()),
            ("cstmOrderNo", req.attempt.as_str().to_owned()),
        ];
        if let Some(r) = &req.provider_ref {
            business.push(("orderNo", r.clone()));
        }
        let reserved = self.reserved(&business, ctx);
        // ICE reserved words override business params of the same name; they come last.
        let mut all = pairs(&business);
        all.extend(pairs(&reserved));
        let query = codec::encode_form(&all, Charset::Utf8)?;
        Ok(HttpRequest {
            method: Method::Get,
            url: format!("{}?{query}", self.query_url),
            headers: Vec::new(),
            body: Vec::new(),
        })
    }

    fn parse_query(&self, resp: &HttpResponse) -> Parsed {
        let a = match self.answer(resp) {
            Ok(a) => a,
            Err(o) => return o.into(),
        };
        if a.code != "0" {
            // A failed query (code 1 or other) says nothing about the order; no not-found code is known.
            return unknown(&a.code, a.message).into();
        }
        if !a.data.is_object() {
            return unknown("no_data", "query answer without an order").into();
        }
        let Some(status) = text(a.data.get("status")) else {
            return unknown("no_status", "order without status").into();
        };
        let message = text(a.data.get("msg")).unwrap_or_default();
        let provider_ref = text(a.data.get("orderNo")).filter(|s| !s.is_empty());
        let c = self
            .codes
            .classify(Phase::Query, &status, &message, provider_ref, None);
        Parsed::classified(c, self.codes.lookup(Phase::Query, &status))
            .echoing(text(a.data.get("cstmOrderNo")))
    }

    fn build_balance(&self, _ctx: &RequestContext) -> Result<HttpRequest, AdapterError> {
        // Balance: no endpoint known.
        Err(AdapterError::Unsupported("balance"))
    }

    fn parse_balance(&self, _resp: &HttpResponse) -> Result<Fen, BalanceError> {
        Err(BalanceError::Unsupported)
    }

    fn verify_and_parse_callback(
        &self,
        _raw: &RawCallback,
    ) -> Result<CallbackEvent, CallbackError> {
        // Callback: none known; the protocol is query-driven.
        Err(CallbackError::Unsupported)
    }

    fn callback_ack(&self, _ack: CallbackAck) -> HttpResponse {
        HttpResponse::text(404, "no callbacks for this provider")
    }
}

#[cfg(test)]
mod tests;

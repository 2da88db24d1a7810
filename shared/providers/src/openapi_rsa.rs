//! 004 兑换系统开放接口 (docs/providers/openapi-rsa.md): POST-only JSON with auth headers `businessId, nonce, timestamp,
//! [signType], sign`; the sign covers the sorted non-empty headers (`k=v&…`) followed by the body exactly as
//! sent, with SHA256withRSA (base64) or `MD5(content + signKey)` uppercase. Callbacks are signed the same way
//! (without `signType`) and answered `SUCCESS`.

pub mod wire;

use crate::account::{ConfigError, Protocol, ProviderAccount};
use crate::adapter::{
    AdapterError, BalanceError, CallbackAck, CallbackError, CallbackEvent, CallbackTrust,
    Capabilities, Parsed, ProviderAdapter, QueryRequest, RequestContext, SubmitRequest,
    attempt_from, balance_endpoint, precheck, unknown,
};
use crate::codec;
use crate::codes::{CodeTable, Meaning, Phase};
use crate::http::{HttpRequest, HttpResponse, Method, RawCallback, find_header};
use crate::sign::{self, HexCase, RsaSigner, RsaVerifier};
use recharge_core::{Fen, Outcome, Reason, Reported};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `signType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignType {
    #[serde(rename = "SHA256-RSA")]
    Sha256Rsa,
    #[serde(rename = "MD5")]
    Md5,
}

impl SignType {
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Sha256Rsa => "SHA256-RSA",
            SignType::Md5 => "MD5",
        }
    }
}

#[derive(Deserialize)]
struct SecretJson {
    business_id: String,
    merchant_id: String,
    #[serde(default = "default_sign_type")]
    sign_type: SignType,
    private_key_pem: Option<SecretString>,
    platform_public_key_pem: Option<String>,
    sign_key: Option<SecretString>,
}

fn default_sign_type() -> SignType {
    // Rules: signType defaults to SHA256-RSA.
    SignType::Sha256Rsa
}

/// Typed credentials; keys are parsed when loaded. Debug redacts them.
#[derive(Debug)]
pub struct Credentials {
    pub business_id: String,
    pub merchant_id: String,
    pub sign_type: SignType,
    signer: Option<RsaSigner>,
    platform_key: Option<RsaVerifier>,
    sign_key: Option<SecretString>,
}

impl Credentials {
    /// Parses the secret: `{business_id, merchant_id, sign_type, private_key_pem, platform_public_key_pem,
    /// sign_key}`. SHA256-RSA needs the merchant private key and the platform public key (callbacks are
    /// verified with it); MD5 needs `sign_key`.
    pub fn from_json(text: &str) -> Result<Credentials, String> {
        let s: SecretJson = serde_json::from_str(text).map_err(|e| crate::account::redacted(&e))?;
        if s.business_id.trim().is_empty() || s.merchant_id.trim().is_empty() {
            return Err("business_id and merchant_id are required".to_owned());
        }
        let signer = s
            .private_key_pem
            .as_ref()
            .map(|p| RsaSigner::from_pem(p.expose_secret()))
            .transpose()
            .map_err(|e| format!("private_key_pem: {e}"))?;
        let platform_key = s
            .platform_public_key_pem
            .as_deref()
            .map(RsaVerifier::from_pem)
            .transpose()
            .map_err(|e| format!("platform_public_key_pem: {e}"))?;
        let sign_key = s.sign_key.filter(|k| !k.expose_secret().is_empty());
        match s.sign_type {
            SignType::Sha256Rsa if signer.is_none() || platform_key.is_none() => {
                return Err(
                    "SHA256-RSA needs private_key_pem and platform_public_key_pem".to_owned(),
                );
            }
            SignType::Md5 if sign_key.is_none() => {
                return Err("MD5 needs sign_key".to_owned());
            }
            SignType::Sha256Rsa | SignType::Md5 => {}
        }
        Ok(Credentials {
            business_id: s.business_id,
            merchant_id: s.merchant_id,
            sign_type: s.sign_type,
            signer,
            platform_key,
            sign_key,
        })
    }
}

/// The assumptions of docs/providers/openapi-rsa.md §3 with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Envelope `status` meaning success. No default (docs/providers/README.md §4 rule 2: the seed's 961 is a smart-doc
    /// placeholder): an account without it refuses to load.
    pub success_status: Option<i64>,
    /// Send the `signType` header (and so sign it). Default true.
    pub send_sign_type: bool,
    /// The order object's status field (query `data` and callback body); its values are the account's
    /// `codes.query` (and `codes.callback`, which defaults to the query's).
    pub status_field: String,
    pub callback_reply: String,
    /// Verify the signature headers on responses too ("signed the same way"); a bad one makes the answer
    /// Unknown. Off by default: whether responses carry them is not documented.
    pub verify_response_sign: bool,
    /// How to check a callback or response that carries no `signType` header. Unset: the documented MD5
    /// routine when the secret has a `sign_key` (docs/providers/openapi-rsa.md §4 step 4: the doc verifies callbacks
    /// with MD5, and the RSA key exchange for callbacks is undocumented), else the account's own `sign_type`.
    pub callback_sign_type: Option<SignType>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            success_status: None,
            send_sign_type: true,
            status_field: "status".to_owned(),
            callback_reply: "SUCCESS".to_owned(),
            verify_response_sign: false,
            callback_sign_type: None,
        }
    }
}

/// The 004 adapter for one account.
#[derive(Debug)]
pub struct OpenapiRsa {
    creds: Credentials,
    options: Options,
    submit_url: String,
    query_url: String,
    balance_url: Option<String>,
    max_body: usize,
    success_status: i64,
    codes: CodeTable,
}

/// The content to sign: sorted non-empty auth headers (except `sign`) as `k=v&…`, then the body string.
pub fn sign_content(headers: &BTreeMap<&str, &str>, body: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in headers
        .iter()
        .filter(|(k, v)| **k != "sign" && !v.is_empty())
    {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `MD5(content + signKey)` uppercase.
pub fn md5_sign(content: &[u8], sign_key: &str) -> String {
    let mut buf = content.to_vec();
    buf.extend_from_slice(sign_key.as_bytes());
    sign::md5_hex(&buf, HexCase::Upper)
}

const AUTH_HEADERS: [&str; 4] = ["businessId", "nonce", "signType", "timestamp"];

impl OpenapiRsa {
    pub fn new(account: &ProviderAccount, creds: Credentials) -> Result<OpenapiRsa, ConfigError> {
        let options: Options = account.options_as()?;
        if options.status_field.is_empty() {
            return Err(ConfigError::Options {
                protocol: Protocol::OpenapiRsa,
                message: "status_field must not be empty".to_owned(),
            });
        }
        let success_status = options.success_status.ok_or_else(|| ConfigError::Options {
            protocol: Protocol::OpenapiRsa,
            message: "success_status is required: the provider's documents do not give it, so the \
                      account must state it (docs/providers/README.md §4 rule 2)"
                .to_owned(),
        })?;
        // Callbacks carry the same order object as queries: unless the account states a callback table, the
        // query's statuses apply to callbacks too.
        let mut overrides = account.codes.clone();
        if !overrides.contains_key(&Phase::Callback)
            && let Some(q) = overrides.get(&Phase::Query).cloned()
        {
            overrides.insert(Phase::Callback, q);
        }
        let codes = CodeTable::new(wire::DEFAULT_CODES, &overrides);
        codes
            .require(Phase::Query, Meaning::Success)
            .map_err(ConfigError::Codes)?;
        match options.callback_sign_type {
            Some(SignType::Md5) if creds.sign_key.is_none() => {
                return Err(ConfigError::Options {
                    protocol: Protocol::OpenapiRsa,
                    message: "callback_sign_type MD5 needs sign_key in the secret".to_owned(),
                });
            }
            Some(SignType::Sha256Rsa) if creds.platform_key.is_none() => {
                return Err(ConfigError::Options {
                    protocol: Protocol::OpenapiRsa,
                    message:
                        "callback_sign_type SHA256-RSA needs platform_public_key_pem in the secret"
                            .to_owned(),
                });
            }
            Some(_) | None => {}
        }
        let balance_url = account.optional_endpoint("balance")?;
        Ok(OpenapiRsa {
            submit_url: account.endpoint("submit")?,
            query_url: account.endpoint("query")?,
            balance_url,
            creds,
            options,
            max_body: account.max_body_bytes,
            success_status,
            codes,
        })
    }

    /// An order object (query `data`, callback body) through the account's table at `phase`.
    fn classify_order(&self, phase: Phase, order: &Value) -> Parsed {
        let provider_ref = wire::text(order.get("orderCode")).filter(|s| !s.is_empty());
        let Some(status) = wire::text(order.get(&self.options.status_field)) else {
            return unknown(
                "no_status",
                format!("no {} in order", self.options.status_field),
            )
            .into();
        };
        let message = wire::text(order.get("message")).unwrap_or_default();
        let c = self
            .codes
            .classify(phase, &status, &message, provider_ref, None);
        Parsed::classified(c, self.codes.lookup(phase, &status))
            .echoing(wire::text(order.get("bizCode")))
            .reporting(settlement(order))
    }

    fn sign(&self, content: &[u8]) -> Result<String, AdapterError> {
        match self.creds.sign_type {
            SignType::Sha256Rsa => self
                .creds
                .signer
                .as_ref()
                .ok_or(AdapterError::Missing("private key"))?
                .sign_base64(content)
                .map_err(AdapterError::from),
            SignType::Md5 => Ok(md5_sign(
                content,
                self.creds
                    .sign_key
                    .as_ref()
                    .ok_or(AdapterError::Missing("sign_key"))?
                    .expose_secret(),
            )),
        }
    }

    fn request(
        &self,
        url: &str,
        body: String,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let ts = ctx.now.millis().to_string();
        let mut auth: BTreeMap<&str, &str> = BTreeMap::new();
        auth.insert("businessId", &self.creds.business_id);
        auth.insert("nonce", &ctx.nonce);
        auth.insert("timestamp", &ts);
        if self.options.send_sign_type {
            auth.insert("signType", self.creds.sign_type.as_str());
        }
        let sign = self.sign(&sign_content(&auth, body.as_bytes()))?;
        let mut headers = vec![
            (
                "Content-Type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        for name in AUTH_HEADERS {
            if let Some(v) = auth.get(name) {
                headers.push((name.to_owned(), (*v).to_owned()));
            }
        }
        headers.push(("sign".to_owned(), sign));
        Ok(HttpRequest {
            method: Method::Post,
            url: url.to_owned(),
            headers,
            body: body.into_bytes(),
        })
    }

    /// Verifies `sign` over the auth headers present and the raw body, with the platform's key (RSA) or the
    /// shared sign key (MD5). The algorithm is the `signType` header's if sent, else `unsigned_type()`.
    fn verify(&self, headers: &[(String, String)], body: &[u8]) -> Result<(), CallbackError> {
        let given = find_header(headers, "sign")
            .filter(|s| !s.is_empty())
            .ok_or(CallbackError::MissingSignature)?;
        let mut auth: BTreeMap<&str, &str> = BTreeMap::new();
        for name in AUTH_HEADERS {
            if let Some(v) = find_header(headers, name) {
                auth.insert(name, v);
            }
        }
        let sign_type = match auth.get("signType") {
            None => self.unsigned_type(),
            Some(&"SHA256-RSA") => SignType::Sha256Rsa,
            Some(&"MD5") => SignType::Md5,
            Some(_) => return Err(CallbackError::BadSignature),
        };
        let content = sign_content(&auth, body);
        let ok = match sign_type {
            SignType::Sha256Rsa => self
                .creds
                .platform_key
                .as_ref()
                .is_some_and(|k| k.verify_base64(&content, given)),
            SignType::Md5 => self.creds.sign_key.as_ref().is_some_and(|k| {
                sign::ct_eq_ignore_ascii_case(given, &md5_sign(&content, k.expose_secret()))
            }),
        };
        if ok {
            Ok(())
        } else {
            Err(CallbackError::BadSignature)
        }
    }

    /// The check for a message without a `signType` header (see `Options::callback_sign_type`).
    fn unsigned_type(&self) -> SignType {
        match (self.options.callback_sign_type, &self.creds.sign_key) {
            (Some(t), _) => t,
            (None, Some(_)) => SignType::Md5,
            (None, None) => self.creds.sign_type,
        }
    }

    fn envelope(&self, resp: &HttpResponse) -> Result<wire::Envelope, Outcome> {
        let body = precheck(resp, self.max_body)?;
        if self.options.verify_response_sign {
            self.verify(&resp.headers, body)
                .map_err(|e| unknown("response_sign", e.to_string()))?;
        }
        wire::envelope(body).ok_or_else(|| unknown("unparsable", "no JSON {status,…} envelope"))
    }
}

impl ProviderAdapter for OpenapiRsa {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            query_by_our_id: true,
            // Not documented ("bizCode already exists" text unknown): do not rely on it.
            dedupes_our_id: false,
            sends_callbacks: true,
            callback_signed: true,
            has_balance: self.balance_url.is_some(),
            two_step: false,
            provider_side_failover: false,
        }
    }

    fn build_submit(
        &self,
        req: &SubmitRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let mut fields: Vec<(&str, &str)> = vec![
            ("merchantId", &self.creds.merchant_id),
            ("businessId", &self.creds.business_id),
            ("productCode", &req.route.provider_product),
        ];
        if let Some(m) = req.extra.get("mobile") {
            fields.push(("mobile", m));
        }
        fields.push(("account", &req.account));
        fields.push(("bizCode", req.attempt.as_str()));
        if let Some(url) = &req.callback_url {
            fields.push(("callbackUrl", url));
        }
        self.request(&self.submit_url, wire::ordered_json(&fields), ctx)
    }

    fn parse_submit(&self, resp: &HttpResponse) -> Parsed {
        let env = match self.envelope(resp) {
            Ok(e) => e,
            Err(o) => return o.into(),
        };
        if env.status == self.success_status {
            return Parsed::from(Outcome::Accepted {
                provider_ref: wire::text(env.data.get("orderCode")).filter(|s| !s.is_empty()),
            })
            .echoing(wire::text(env.data.get("bizCode")))
            .reporting(settlement(&env.data));
        }
        // Envelope: only the listed statuses (default: 2 验签失败) refuse; every other one is UNKNOWN, a
        // "bizCode already exists" answer included (docs/providers/README.md §4 rule 1).
        let code = env.status.to_string();
        let c = self
            .codes
            .classify(Phase::Submit, &code, &env.message, None, None);
        Parsed::classified(c, self.codes.lookup(Phase::Submit, &code))
    }

    fn build_query(
        &self,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let mut fields: Vec<(&str, &str)> = Vec::new();
        if let Some(r) = &req.provider_ref {
            fields.push(("orderCode", r));
        }
        fields.push(("bizCode", req.attempt.as_str()));
        self.request(&self.query_url, wire::ordered_json(&fields), ctx)
    }

    fn parse_query(&self, resp: &HttpResponse) -> Parsed {
        let env = match self.envelope(resp) {
            Ok(e) => e,
            Err(o) => return o.into(),
        };
        if env.status != self.success_status {
            // No not-found code is documented: a refused query says nothing about the order.
            return unknown(&env.status.to_string(), env.message).into();
        }
        if !env.data.is_object() {
            return unknown("no_data", "query answer without an order object").into();
        }
        self.classify_order(Phase::Query, &env.data)
    }

    fn build_balance(&self, ctx: &RequestContext) -> Result<HttpRequest, AdapterError> {
        let url = balance_endpoint(self.balance_url.as_deref())?;
        // Field order as in the doc's signature example, so that example is this request byte for byte.
        let body = wire::ordered_json(&[
            ("businessId", &self.creds.business_id),
            ("merchantId", &self.creds.merchant_id),
        ]);
        self.request(url, body, ctx)
    }

    fn parse_balance(&self, resp: &HttpResponse) -> Result<Fen, BalanceError> {
        let env = self.envelope(resp).map_err(|o| match o {
            Outcome::Unknown { reason } => BalanceError::Unknown(reason),
            other => BalanceError::Unknown(Reason::new("unparsable", format!("{other:?}"))),
        })?;
        if env.status != self.success_status {
            return Err(BalanceError::Unknown(Reason::new(
                env.status.to_string(),
                env.message,
            )));
        }
        // [ASSUME] `amount` is the balance in yuan (`creditLine` is the credit limit).
        let amount = wire::text(env.data.get("amount")).unwrap_or_default();
        Fen::parse_yuan(&amount)
            .map_err(|e| BalanceError::Unknown(Reason::new("bad_balance", e.to_string())))
    }

    fn verify_and_parse_callback(&self, raw: &RawCallback) -> Result<CallbackEvent, CallbackError> {
        codec::check_cap(&raw.body, self.max_body)?;
        // The body is a UTF-8 JSON string; other bytes were not signed as text the platform meant.
        std::str::from_utf8(&raw.body).map_err(|_| codec::CodecError::Malformed("UTF-8"))?;
        self.verify(&raw.headers, &raw.body)?;
        // Trusted from here on.
        if raw.header("businessId") != Some(self.creds.business_id.as_str()) {
            return Err(CallbackError::WrongAccount);
        }
        let v: Value = serde_json::from_slice(&raw.body)
            .map_err(|e| CallbackError::Malformed(format!("JSON: {e}")))?;
        if !v.is_object() {
            return Err(CallbackError::Malformed("not an object".to_owned()));
        }
        let attempt = attempt_from(wire::text(v.get("bizCode")).as_deref())?;
        let provider_ref = wire::text(v.get("orderCode")).filter(|s| !s.is_empty());
        let parsed = self.classify_order(Phase::Callback, &v);
        Ok(CallbackEvent {
            attempt,
            outcome: parsed.outcome,
            provider_ref,
            trust: CallbackTrust::Signed,
            reported: parsed.reported,
            unlisted: parsed.unlisted,
        })
    }

    fn callback_ack(&self, ack: CallbackAck) -> HttpResponse {
        match ack {
            CallbackAck::Accepted => HttpResponse::text(200, &self.options.callback_reply),
            // Anything but SUCCESS counts as failure and is retried on the documented schedule.
            CallbackAck::Rejected => HttpResponse::text(400, "FAIL"),
        }
    }
}

/// `settlementPrice` (yuan), what the platform charges us.
fn settlement(order: &Value) -> Reported {
    Reported {
        cost: wire::text(order.get("settlementPrice")).and_then(|t| Fen::parse_yuan(&t).ok()),
        ..Reported::default()
    }
}

#[cfg(test)]
mod tests;

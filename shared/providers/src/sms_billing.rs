//! 000 carrier billing (短代 / 话费代计费, docs/providers/sms-billing.md): not a recharge supplier but a payment-collection
//! channel. MP: `获取交易短信` returns SMS instructions the user's phone must send. PC: `获取验证码` makes the
//! operator text the user a code, and `验证码支付` confirms the charge. Authentication is the plain-text
//! channel password; the result notification (同步 sync) is an optional, sometimes signed, GET.

pub mod wire;

use crate::account::{ConfigError, Protocol, ProviderAccount};
use crate::adapter::{
    AdapterError, BalanceError, CallbackAck, CallbackError, CallbackEvent, CallbackTrust,
    Capabilities, Parsed, ProviderAdapter, QueryRequest, RequestContext, SubmitRequest,
    VerificationRequest, attempt_from, precheck, unknown,
};
use crate::codec::{self, Charset};
use crate::codes::{CodeTable, Phase};
use crate::http::{HttpRequest, HttpResponse, Method, RawCallback};
use crate::sign::{self, HexCase};
use recharge_core::{Fen, NextAction, Outcome, Reason, Reported};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The secret: channel code and password, and the sync signing key when the channel signs syncs.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub channelcode: String,
    pub password: SecretString,
    #[serde(default)]
    pub sync_key: Option<SecretString>,
}

impl Credentials {
    pub fn validated(self) -> Result<Credentials, String> {
        if self.channelcode.trim().is_empty() || self.password.expose_secret().is_empty() {
            return Err("channelcode and password are required".to_owned());
        }
        if self
            .sync_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().is_empty())
        {
            return Err("sync_key, when given, must not be empty".to_owned());
        }
        Ok(self)
    }
}

/// Which two-step flow this account sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// MP (app): the user's phone sends SMS to short codes.
    Mp,
    /// PC 页游: the user enters a verification code.
    Pc,
}

/// How request bodies are encoded: the seed does not say [ASSUME: form].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded` in `form_charset`.
    Form,
    /// `application/json; charset=utf-8`, fields in the seed's order.
    Json,
}

/// The assumptions of docs/providers/sms-billing.md §3 with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    pub flow: Flow,
    pub body_format: BodyFormat,
    /// Request body charset (`application/x-www-form-urlencoded`; the seed does not say).
    pub form_charset: Charset,
    /// Reply to an accepted sync (default `ok`; some channels want `0` or `success`).
    pub callback_reply: String,
    /// Refuse unsigned syncs. Off by default (many channels do not sign); unsigned syncs are then
    /// `Unverified` hints.
    pub require_sync_sign: bool,
    pub sync_charset: Charset,
    /// Send our attempt id as `cpparam` on the PC code request too. The seed lists it only for MP, but the sync
    /// names the order only by `cpparam` (docs/providers/sms-billing.md §3), so without it no PC sync can
    /// be matched and a lost payment answer would stay open for good. Off for a channel that refuses it.
    pub pc_cpparam: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            flow: Flow::Pc,
            body_format: BodyFormat::Form,
            form_charset: Charset::Utf8,
            callback_reply: "ok".to_owned(),
            require_sync_sign: false,
            sync_charset: Charset::Utf8,
            pc_cpparam: true,
        }
    }
}

/// The sync signature: `MD5("k1=v1&k2=v2…" + key)` uppercase over the sorted non-empty fields except `sign`.
pub fn sync_sign(fields: &BTreeMap<String, String>, key: &str) -> String {
    let joined: Vec<String> = fields
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut s = joined.join("&");
    s.push_str(key);
    sign::md5_hex(s.as_bytes(), HexCase::Upper)
}

/// The 000 adapter for one account.
#[derive(Debug)]
pub struct SmsBilling {
    creds: Credentials,
    options: Options,
    submit_url: String,
    verify_url: Option<String>,
    max_body: usize,
    codes: CodeTable,
}

impl SmsBilling {
    pub fn new(account: &ProviderAccount, creds: Credentials) -> Result<SmsBilling, ConfigError> {
        let options: Options = account.options_as()?;
        if options.require_sync_sign && creds.sync_key.is_none() {
            return Err(ConfigError::Options {
                protocol: Protocol::SmsBilling,
                message: "require_sync_sign needs sync_key in the secret".to_owned(),
            });
        }
        let verify_url = match options.flow {
            Flow::Pc => Some(account.endpoint("verify")?),
            Flow::Mp => None,
        };
        Ok(SmsBilling {
            submit_url: account.endpoint("submit")?,
            verify_url,
            creds,
            options,
            max_body: account.max_body_bytes,
            codes: account.code_table(wire::DEFAULT_CODES),
        })
    }

    fn form(&self, url: &str, pairs: &[(&str, &str)]) -> Result<HttpRequest, AdapterError> {
        let (content_type, body) = match self.options.body_format {
            BodyFormat::Form => (
                format!(
                    "application/x-www-form-urlencoded; charset={}",
                    self.options.form_charset.label()
                ),
                codec::encode_form(pairs, self.options.form_charset)?,
            ),
            BodyFormat::Json => (
                "application/json; charset=utf-8".to_owned(),
                codec::ordered_json(pairs),
            ),
        };
        Ok(HttpRequest {
            method: Method::Post,
            url: url.to_owned(),
            headers: vec![("Content-Type".to_owned(), content_type)],
            body: body.into_bytes(),
        })
    }

    fn answer(&self, resp: &HttpResponse) -> Result<wire::Answer, Outcome> {
        let body = precheck(resp, self.max_body)?;
        wire::answer(body).ok_or_else(|| unknown("unparsable", "no JSON {resultCode,…} answer"))
    }
}

impl ProviderAdapter for SmsBilling {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            query_by_our_id: false,
            dedupes_our_id: false,
            sends_callbacks: true,
            callback_signed: self.options.require_sync_sign,
            has_balance: false,
            two_step: true,
            provider_side_failover: false,
        }
    }

    fn build_submit(
        &self,
        req: &SubmitRequest,
        _ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let productcode = req.route.provider_product.as_str();
        let channelcode = self.creds.channelcode.as_str();
        let password = self.creds.password.expose_secret();
        match self.options.flow {
            Flow::Mp => {
                let get = |k: &'static str| {
                    req.extra
                        .get(k)
                        .map(String::as_str)
                        .filter(|v| !v.is_empty())
                        .ok_or(AdapterError::Missing(k))
                };
                // cpparam is passed through to the sync: our attempt id keys it back to the order.
                self.form(
                    &self.submit_url,
                    &[
                        ("productcode", productcode),
                        ("channelcode", channelcode),
                        ("password", password),
                        ("imsi", get("imsi")?),
                        ("imei", get("imei")?),
                        ("iccid", get("iccid")?),
                        ("cpparam", req.attempt.as_str()),
                    ],
                )
            }
            Flow::Pc => {
                let mut fields = vec![
                    ("productcode", productcode),
                    ("channelcode", channelcode),
                    ("password", password),
                    ("phone", req.account.as_str()),
                ];
                if self.options.pc_cpparam {
                    fields.push(("cpparam", req.attempt.as_str()));
                }
                self.form(&self.submit_url, &fields)
            }
        }
    }

    fn parse_submit(&self, resp: &HttpResponse) -> Parsed {
        let a = match self.answer(resp) {
            Ok(a) => a,
            Err(o) => return o.into(),
        };
        if a.result_code != wire::RESULT_OK {
            // [SEED] "0 为成功，其他为失败". This first step only issues SMS instructions or sends the user a
            // code: nothing is charged until the user acts, so a refusal here is safe to fail over.
            return Outcome::Rejected {
                failover_allowed: true,
                reason: Reason::new(a.result_code, a.result_desc),
            }
            .into();
        }
        let outcome = match self.options.flow {
            Flow::Mp => match a.messages {
                Some(messages) if !messages.is_empty() => Outcome::ActionRequired {
                    next: NextAction::SendSms { messages },
                    provider_ref: a.order_id,
                },
                // Success without usable instructions: the user cannot act; a person must look.
                Some(_) | None => unknown("no_sms", "resultCode 0 without {sms, accessno} pairs"),
            },
            Flow::Pc => Outcome::ActionRequired {
                next: NextAction::EnterVerificationCode,
                provider_ref: a.order_id,
            },
        };
        outcome.into()
    }

    fn build_query(
        &self,
        _req: &QueryRequest,
        _ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        // No query API: an unknown 验证码支付 waits for the sync, then manual review.
        Err(AdapterError::Unsupported("query"))
    }

    fn has_query(&self) -> bool {
        false
    }

    fn parse_query(&self, _resp: &HttpResponse) -> Parsed {
        unknown("unsupported", "sms-billing has no query").into()
    }

    fn build_balance(&self, _ctx: &RequestContext) -> Result<HttpRequest, AdapterError> {
        Err(AdapterError::Unsupported("balance"))
    }

    fn parse_balance(&self, _resp: &HttpResponse) -> Result<Fen, BalanceError> {
        Err(BalanceError::Unsupported)
    }

    fn build_verification(
        &self,
        req: &VerificationRequest,
        _ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let url = self
            .verify_url
            .as_deref()
            .ok_or(AdapterError::Unsupported("verification (MP flow)"))?;
        let code = req.code.trim();
        if code.is_empty() || code.len() > 16 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(AdapterError::Invalid(
                "verification code must be 1 to 16 ASCII letters or digits".to_owned(),
            ));
        }
        if req.provider_ref.is_empty() {
            return Err(AdapterError::Missing("provider order id"));
        }
        self.form(
            url,
            &[
                ("verifycode", code),
                ("channelcode", &self.creds.channelcode),
                ("password", self.creds.password.expose_secret()),
                ("orderid", &req.provider_ref),
            ],
        )
    }

    fn parse_verification(&self, resp: &HttpResponse) -> Parsed {
        let a = match self.answer(resp) {
            Ok(a) => a,
            Err(o) => return o.into(),
        };
        // 验证码支付 is the step that charges: `0` 交易成功, and only the codes the account lists mean
        // anything else; an unlisted one may have charged the user, so it is UNKNOWN (docs/providers/README.md §4
        // rule 1).
        let c = self.codes.classify(
            Phase::Submit,
            &a.result_code,
            &a.result_desc,
            a.order_id.clone(),
            None,
        );
        Parsed::classified(c, self.codes.lookup(Phase::Submit, &a.result_code))
    }

    fn verify_and_parse_callback(&self, raw: &RawCallback) -> Result<CallbackEvent, CallbackError> {
        codec::check_cap(&raw.body, self.max_body)?;
        let source: &[u8] = if raw.body.is_empty() {
            raw.query.as_bytes()
        } else {
            &raw.body
        };
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in codec::parse_form(source, self.options.sync_charset)? {
            fields.entry(k).or_insert(v);
        }
        let trust = match (fields.get("sign"), self.creds.sync_key.as_ref()) {
            (Some(given), Some(key)) => {
                if !sign::ct_eq_ignore_ascii_case(given, &sync_sign(&fields, key.expose_secret())) {
                    return Err(CallbackError::BadSignature);
                }
                CallbackTrust::Signed
            }
            // Signed, but we hold no key to check it with: refuse rather than trust it.
            (Some(_), None) => return Err(CallbackError::BadSignature),
            (None, _) if self.options.require_sync_sign => {
                return Err(CallbackError::MissingSignature);
            }
            (None, _) => CallbackTrust::Unverified,
        };
        let attempt = attempt_from(fields.get("cpparam").map(String::as_str))?;
        let provider_ref = ["orderid", "orderId", "linkid"]
            .iter()
            .find_map(|k| fields.get(*k))
            .filter(|s| !s.is_empty())
            .cloned();
        let status = fields
            .get("status")
            .ok_or_else(|| CallbackError::Malformed("status missing".to_owned()))?;
        // Only `DELIVRD` is known; a channel's failure statuses must be listed by the account, and any other
        // value is UNKNOWN (docs/providers/README.md §4 rules 1 and 2).
        let c = self.codes.classify(
            Phase::Callback,
            status,
            "operator status report",
            provider_ref.clone(),
            None,
        );
        Ok(CallbackEvent {
            attempt,
            outcome: c.outcome,
            provider_ref,
            trust,
            reported: Reported::default(),
            unlisted: c.unlisted,
        })
    }

    fn callback_ack(&self, ack: CallbackAck) -> HttpResponse {
        match ack {
            CallbackAck::Accepted => HttpResponse::text(200, &self.options.callback_reply),
            CallbackAck::Rejected => HttpResponse::text(400, "fail"),
        }
    }
}

#[cfg(test)]
mod tests;

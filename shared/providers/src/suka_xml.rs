//! 001 鼎音 and the 速卡 `onlinepay.do` XML family (docs/providers/suka-xml.md): GBK form requests signed with
//! `MD5(fixed-order k=v&…&key=KEY)` uppercase over GBK bytes, GB2312-declared GBK XML answers, and form
//! callbacks signed over five fields.

pub mod wire;

use crate::account::{ConfigError, ProviderAccount};
use crate::adapter::{
    AdapterError, BalanceError, CallbackAck, CallbackError, CallbackEvent, CallbackTrust,
    Capabilities, Parsed, ProviderAdapter, QueryRequest, RequestContext, SubmitRequest,
    attempt_from, balance_endpoint, precheck, unknown,
};
use crate::codec::{self, Charset, Element};
use crate::codes::{CodeTable, Phase};
use crate::http::{HttpRequest, HttpResponse, Method, RawCallback};
use crate::sign::{self, HexCase};
use recharge_core::{Fen, Outcome, ProductKind, Reason, Reported};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The secret: merchant number and signing key.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub userid: String,
    pub key: SecretString,
}

impl Credentials {
    pub fn validated(self) -> Result<Credentials, String> {
        if self.userid.trim().is_empty() || !self.userid.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err("userid must be non-empty ASCII alphanumerics".to_owned());
        }
        if self.key.expose_secret().is_empty() {
            return Err("key must not be empty".to_owned());
        }
        Ok(self)
    }
}

/// How the query (`searchpay.do`) is signed: docs/providers/suka-xml.md §3: send uppercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuerySign {
    Upper,
    Lower,
    /// The family doc and some clients send no sign at all.
    None,
}

/// The assumptions of docs/providers/suka-xml.md §3 with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Reply to an accepted callback (default `ok`).
    pub callback_reply: String,
    pub query_sign: QuerySign,
    /// Charset of request forms (default GBK, as the Go and 梵尘 clients send).
    pub form_charset: Charset,
    /// Charset of callback forms (default GBK: the Go client decodes callbacks as GBK).
    pub callback_charset: Charset,
    /// Charset of XML answers that carry no declaration (declared ones follow their declaration).
    pub response_charset: Charset,
    /// Send `checkprice` (the route's cost, unsigned). Unknown whether 鼎音 accepts it: off by default.
    pub send_checkprice: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            callback_reply: "ok".to_owned(),
            query_sign: QuerySign::Upper,
            form_charset: Charset::Gbk,
            callback_charset: Charset::Gbk,
            response_charset: Charset::Gbk,
            send_checkprice: false,
        }
    }
}

/// The 001 adapter for one account.
#[derive(Debug)]
pub struct SukaXml {
    creds: Credentials,
    options: Options,
    submit_url: String,
    query_url: String,
    balance_url: Option<String>,
    max_body: usize,
    codes: CodeTable,
}

/// The submit sign string, in the fixed order of docs/providers/suka-xml.md §4; empty values stay as empty strings.
#[allow(clippy::too_many_arguments)]
pub fn submit_sign_string(
    userid: &str,
    productid: &str,
    num: &str,
    areaid: &str,
    serverid: &str,
    account: &str,
    spordertime: &str,
    sporderid: &str,
    key: &str,
) -> String {
    format!(
        "userid={userid}&productid={productid}&num={num}&areaid={areaid}&serverid={serverid}&account={account}&spordertime={spordertime}&sporderid={sporderid}&key={key}"
    )
}

pub fn query_sign_string(userid: &str, sporderid: &str, key: &str) -> String {
    format!("userid={userid}&sporderid={sporderid}&key={key}")
}

pub fn balance_sign_string(userid: &str, key: &str) -> String {
    format!("userid={userid}&key={key}")
}

pub fn callback_sign_string(
    userid: &str,
    orderid: &str,
    sporderid: &str,
    merchantsubmittime: &str,
    resultno: &str,
    key: &str,
) -> String {
    format!(
        "userid={userid}&orderid={orderid}&sporderid={sporderid}&merchantsubmittime={merchantsubmittime}&resultno={resultno}&key={key}"
    )
}

/// The electricity `account` JSON of the seed, in its field order:
/// `{"product_type":"3","userid":"<户号>","username":"","type":"1","area":"江苏","city":"南京"}`.
pub fn electricity_account(
    account_no: &str,
    username: &str,
    kind: &str,
    area: &str,
    city: &str,
) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    format!(
        "{{\"product_type\":\"3\",\"userid\":{},\"username\":{},\"type\":{},\"area\":{},\"city\":{}}}",
        q(account_no),
        q(username),
        q(kind),
        q(area),
        q(city)
    )
}

impl SukaXml {
    pub fn new(account: &ProviderAccount, creds: Credentials) -> Result<SukaXml, ConfigError> {
        let options: Options = account.options_as()?;
        let balance_url = account.optional_endpoint("balance")?;
        Ok(SukaXml {
            submit_url: account.endpoint("submit")?,
            query_url: account.endpoint("query")?,
            balance_url,
            creds,
            options,
            max_body: account.max_body_bytes,
            codes: account.code_table(wire::DEFAULT_CODES),
        })
    }

    /// Reads `resultno` of an `<order>` answer through the account's code table at `phase`, with the
    /// echoed `sporderid`, the platform's `orderid`, and the reported `ordercash` (yuan) and `num`.
    fn classify_order(&self, phase: Phase, resp: &HttpResponse) -> Parsed {
        let root = match self.parse_xml(resp) {
            Ok(r) => r,
            Err(o) => return o.into(),
        };
        let Some(code) = root.child_text("resultno").filter(|_| root.name == "order") else {
            return unknown("unparsable", "no <order><resultno>").into();
        };
        let message = nonempty(&root, "remark1").unwrap_or_else(|| wire::meaning(code).to_owned());
        let c = self
            .codes
            .classify(phase, code, &message, nonempty(&root, "orderid"), None);
        let reported = Reported {
            cost: nonempty(&root, "ordercash").and_then(|t| Fen::parse_yuan(&t).ok()),
            quantity: nonempty(&root, "num").and_then(|t| t.parse().ok()),
            ..Reported::default()
        };
        Parsed::classified(c, self.codes.lookup(phase, code))
            .echoing(nonempty(&root, "sporderid"))
            .reporting(reported)
    }

    fn key(&self) -> &str {
        self.creds.key.expose_secret()
    }

    fn form_request(&self, url: &str, pairs: &[(&str, &str)]) -> Result<HttpRequest, AdapterError> {
        let body = codec::encode_form(pairs, self.options.form_charset)?;
        Ok(HttpRequest {
            method: Method::Post,
            url: url.to_owned(),
            headers: vec![(
                "Content-Type".to_owned(),
                format!(
                    "application/x-www-form-urlencoded;charset={}",
                    self.options.form_charset.label()
                ),
            )],
            body: body.into_bytes(),
        })
    }

    fn parse_xml(&self, resp: &HttpResponse) -> Result<Element, Outcome> {
        let body = precheck(resp, self.max_body)?;
        codec::parse_xml(body, self.options.response_charset)
            .map_err(|e| unknown("unparsable", e.to_string()))
    }

    fn sign(&self, text: &str) -> Result<String, AdapterError> {
        Ok(sign::md5_gbk_hex(text, HexCase::Upper)?)
    }
}

fn nonempty(el: &Element, name: &str) -> Option<String> {
    el.child_text(name)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl ProviderAdapter for SukaXml {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            query_by_our_id: true,
            // 5006 代理商订单号重复: the platform enforces sporderid uniqueness.
            dedupes_our_id: true,
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
        let get = |k: &str| req.extra.get(k).map(String::as_str).unwrap_or("");
        // The seed's electricity `account` is a JSON object built from the 户号 and the region, and `areaid`
        // carries the contact phone (docs/providers/suka-xml.md §1, electricity).
        let (account, areaid) = match req.kind {
            ProductKind::Electricity => (
                electricity_account(
                    &req.account,
                    get("username"),
                    req.extra.get("type").map(String::as_str).unwrap_or("1"),
                    get("area"),
                    get("city"),
                ),
                get("phone"),
            ),
            ProductKind::MobileFast
            | ProductKind::MobileSlow
            | ProductKind::Game
            | ProductKind::Vip
            | ProductKind::BillingSms
            | ProductKind::BillingCode => (req.account.clone(), get("areaid")),
        };
        // One unit per route: the quantity is never the merchant's to choose (docs/providers/README.md §4 rule 6).
        let num = "1";
        let spordertime = codec::beijing_compact(ctx.now);
        let userid = self.creds.userid.as_str();
        let productid = req.route.provider_product.as_str();
        let sporderid = req.attempt.as_str();
        let sign = self.sign(&submit_sign_string(
            userid,
            productid,
            num,
            areaid,
            get("serverid"),
            &account,
            &spordertime,
            sporderid,
            self.key(),
        ))?;
        let mut pairs: Vec<(&str, &str)> = vec![
            ("userid", userid),
            ("productid", productid),
            ("num", num),
            ("areaid", areaid),
            ("serverid", get("serverid")),
            ("account", &account),
        ];
        // Unsigned: buyer IP (南网 electricity: the ID-card number).
        if let Some(ip) = req.extra.get("userip") {
            pairs.push(("userip", ip));
        }
        pairs.push(("spordertime", &spordertime));
        pairs.push(("sporderid", sporderid));
        pairs.push(("sign", &sign));
        if let Some(url) = &req.callback_url {
            pairs.push(("back_url", url));
        }
        let checkprice = req.route.cost.to_string();
        if self.options.send_checkprice {
            pairs.push(("checkprice", &checkprice));
        }
        self.form_request(&self.submit_url, &pairs)
    }

    fn parse_submit(&self, resp: &HttpResponse) -> Parsed {
        self.classify_order(Phase::Submit, resp)
    }

    fn build_query(
        &self,
        req: &QueryRequest,
        _ctx: &RequestContext,
    ) -> Result<HttpRequest, AdapterError> {
        let userid = self.creds.userid.as_str();
        let sporderid = req.attempt.as_str();
        let text = query_sign_string(userid, sporderid, self.key());
        let sign = match self.options.query_sign {
            QuerySign::Upper => Some(sign::md5_gbk_hex(&text, HexCase::Upper)?),
            QuerySign::Lower => Some(sign::md5_gbk_hex(&text, HexCase::Lower)?),
            QuerySign::None => None,
        };
        let mut pairs = vec![("userid", userid), ("sporderid", sporderid)];
        if let Some(s) = &sign {
            pairs.push(("sign", s));
        }
        self.form_request(&self.query_url, &pairs)
    }

    fn parse_query(&self, resp: &HttpResponse) -> Parsed {
        self.classify_order(Phase::Query, resp)
    }

    fn build_balance(&self, _ctx: &RequestContext) -> Result<HttpRequest, AdapterError> {
        let url = balance_endpoint(self.balance_url.as_deref())?;
        let userid = self.creds.userid.as_str();
        let sign = self.sign(&balance_sign_string(userid, self.key()))?;
        self.form_request(url, &[("userid", userid), ("sign", &sign)])
    }

    fn parse_balance(&self, resp: &HttpResponse) -> Result<Fen, BalanceError> {
        let root = self.parse_xml(resp).map_err(|o| match o {
            Outcome::Unknown { reason } => BalanceError::Unknown(reason),
            other => BalanceError::Unknown(Reason::new("unparsable", format!("{other:?}"))),
        })?;
        let code = root.child_text("resultno").unwrap_or("");
        // Balance section: here resultno=1 means the balance query succeeded.
        if root.name != "user" || code != "1" {
            return Err(BalanceError::Unknown(Reason::new(
                code,
                wire::meaning(code),
            )));
        }
        let text = root.child_text("balance").unwrap_or("");
        // [ASSUME] balance is yuan, like ordercash.
        Fen::parse_yuan(text)
            .map_err(|e| BalanceError::Unknown(Reason::new("bad_balance", e.to_string())))
    }

    fn verify_and_parse_callback(&self, raw: &RawCallback) -> Result<CallbackEvent, CallbackError> {
        codec::check_cap(&raw.body, self.max_body)?;
        // POST form per the family doc; a GET with the same fields in the query is accepted too.
        let source: &[u8] = if raw.body.is_empty() {
            raw.query.as_bytes()
        } else {
            &raw.body
        };
        let pairs = codec::parse_form(source, self.options.callback_charset)?;
        let f = |k: &str| codec::field(&pairs, k).unwrap_or("");
        let given = codec::field(&pairs, "sign").ok_or(CallbackError::MissingSignature)?;
        let expected = sign::md5_gbk_hex(
            &callback_sign_string(
                f("userid"),
                f("orderid"),
                f("sporderid"),
                f("merchantsubmittime"),
                f("resultno"),
                self.key(),
            ),
            HexCase::Upper,
        )
        .map_err(|_| CallbackError::BadSignature)?;
        // Signatures are hex; their case carries no secret, so compare case-insensitively in constant time.
        if !sign::ct_eq_ignore_ascii_case(given, &expected) {
            return Err(CallbackError::BadSignature);
        }
        // Trusted from here on.
        if f("userid") != self.creds.userid {
            return Err(CallbackError::WrongAccount);
        }
        let attempt = attempt_from(codec::field(&pairs, "sporderid"))?;
        let provider_ref = Some(f("orderid").to_owned()).filter(|s| !s.is_empty());
        let code = f("resultno");
        let c = self.codes.classify(
            Phase::Callback,
            code,
            wire::meaning(code),
            provider_ref.clone(),
            None,
        );
        // `parvalue` and `fundbalance` are not signed (docs/providers/suka-xml.md §2): nothing is read from them.
        Ok(CallbackEvent {
            attempt,
            outcome: c.outcome,
            provider_ref,
            trust: CallbackTrust::Signed,
            reported: Reported::default(),
            unlisted: c.unlisted,
        })
    }

    fn text_fits(&self, text: &str) -> bool {
        match self.options.form_charset {
            Charset::Gbk => !encoding_rs::GBK.encode(text).2,
            Charset::Utf8 => true,
        }
    }

    fn callback_ack(&self, ack: CallbackAck) -> HttpResponse {
        match ack {
            CallbackAck::Accepted => HttpResponse::text(200, &self.options.callback_reply),
            // Anything but the reply text makes the platform retry.
            CallbackAck::Rejected => HttpResponse::text(400, "fail"),
        }
    }
}

#[cfg(test)]
mod tests;

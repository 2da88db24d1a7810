//! Provider accounts are configuration (DESIGN §4): `{id, protocol, endpoints, secret name, capabilities,
//! options}`. Credentials are typed per protocol and validated when the account is loaded, so a bad key fails
//! the cold start rather than the first order.

use crate::adapter::{Capabilities, DEFAULT_MAX_BODY, ProviderAdapter};
use crate::executor::Limits;
use crate::{ice, openapi_rsa, sms_billing, suka_xml, wikeyun};
use recharge_core::{Policy, ProviderAccountId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A protocol family, named as in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// 001 鼎音 and the 速卡 `onlinepay.do` XML family (GBK).
    #[serde(rename = "suka-xml")]
    SukaXml,
    /// 002 微客云.
    #[serde(rename = "wikeyun")]
    Wikeyun,
    /// 003 彩生活 micro-service behind the ICE gateway.
    #[serde(rename = "ice-microservice")]
    IceMicroservice,
    /// 004 兑换系统 header-signed JSON API (SHA256-RSA or MD5).
    #[serde(rename = "openapi-rsa")]
    OpenapiRsa,
    /// 000 carrier billing (MP SMS and PC verification code).
    #[serde(rename = "sms-billing")]
    SmsBilling,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::SukaXml => "suka-xml",
            Protocol::Wikeyun => "wikeyun",
            Protocol::IceMicroservice => "ice-microservice",
            Protocol::OpenapiRsa => "openapi-rsa",
            Protocol::SmsBilling => "sms-billing",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration problem, reported at load time with the account and field named. Never contains secret
/// values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("account config is not valid: {0}")]
    Parse(String),
    #[error("secret for {protocol}: {message}")]
    Secret { protocol: Protocol, message: String },
    #[error("options for {protocol}: {message}")]
    Options { protocol: Protocol, message: String },
    #[error("endpoint {name:?}: {message}")]
    Endpoint { name: String, message: String },
    #[error("capabilities: {0}")]
    Capabilities(String),
}

fn default_call_ms() -> u64 {
    10_000
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}
fn default_grace_secs() -> u64 {
    // PROVIDERS §0.3 rule 3 (海鑫 doc: ten minutes).
    600
}

/// Timeouts of one account's HTTP calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// The whole call, connect to last body byte.
    #[serde(default = "default_call_ms")]
    pub call_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            call_ms: default_call_ms(),
        }
    }
}

/// One provider account as configured (not secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderAccount {
    pub id: ProviderAccountId,
    pub protocol: Protocol,
    /// Full URLs per endpoint (`submit`, `query`, `balance`, `verify`): hosts and ports differ per endpoint
    /// on real accounts (PROVIDERS 001).
    pub endpoints: BTreeMap<String, String>,
    /// The Secrets Manager name of the credentials JSON.
    pub secret_name: String,
    /// Optional narrowing of the protocol's capabilities (e.g. switch off a balance API that an account lacks).
    /// May not claim more than the protocol can do.
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Response bodies larger than this are refused before decoding.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// "Not found" becomes a failure only after this long (PROVIDERS §0.3 rule 3).
    #[serde(default = "default_grace_secs")]
    pub not_found_grace_secs: u64,
    /// Protocol options; every [ASSUME] knob of PROVIDERS.md with its documented default.
    #[serde(default)]
    pub options: serde_json::Value,
}

impl ProviderAccount {
    pub fn from_json(text: &str) -> Result<ProviderAccount, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    pub fn from_toml(text: &str) -> Result<ProviderAccount, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// A required endpoint URL, checked to be http(s).
    pub fn endpoint(&self, name: &str) -> Result<String, ConfigError> {
        let url = self
            .endpoints
            .get(name)
            .ok_or_else(|| ConfigError::Endpoint {
                name: name.to_owned(),
                message: "missing".to_owned(),
            })?;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.contains(char::is_whitespace)
        {
            return Err(ConfigError::Endpoint {
                name: name.to_owned(),
                message: "must be an http(s) URL without spaces".to_owned(),
            });
        }
        Ok(url.clone())
    }

    /// The typed options of this account's protocol, with defaults for everything not given.
    pub fn options_as<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, ConfigError> {
        if self.options.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(self.options.clone()).map_err(|e| ConfigError::Options {
            protocol: self.protocol,
            message: e.to_string(),
        })
    }

    pub fn limits(&self) -> Limits {
        Limits {
            call_timeout: Duration::from_millis(self.timeouts.call_ms),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// Typed credentials of one account, parsed from the secret's JSON text. Debug redacts every secret.
#[derive(Debug)]
pub enum Credentials {
    SukaXml(suka_xml::Credentials),
    Wikeyun(wikeyun::Credentials),
    IceMicroservice(ice::Credentials),
    OpenapiRsa(openapi_rsa::Credentials),
    SmsBilling(sms_billing::Credentials),
}

impl Credentials {
    /// Parses and validates (non-empty fields, RSA keys parse) the secret for `protocol`.
    pub fn from_secret_json(protocol: Protocol, text: &str) -> Result<Credentials, ConfigError> {
        let err = |message: String| ConfigError::Secret { protocol, message };
        Ok(match protocol {
            Protocol::SukaXml => Credentials::SukaXml(
                serde_json::from_str::<suka_xml::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
            Protocol::Wikeyun => Credentials::Wikeyun(
                serde_json::from_str::<wikeyun::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
            Protocol::OpenapiRsa => {
                Credentials::OpenapiRsa(openapi_rsa::Credentials::from_json(text).map_err(err)?)
            }
            Protocol::IceMicroservice => Credentials::IceMicroservice(
                serde_json::from_str::<ice::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
            Protocol::SmsBilling => Credentials::SmsBilling(
                serde_json::from_str::<sms_billing::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
        })
    }
}

/// A serde_json error about a secret, without any value from it: serde's "invalid type: string \"…\"" and
/// "invalid value" messages quote the offending value, which may be the secret itself.
pub(crate) fn redacted(e: &serde_json::Error) -> String {
    let s = e.to_string();
    if s.starts_with("missing field")
        || s.starts_with("unknown field")
        || s.starts_with("duplicate field")
    {
        s
    } else {
        format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    }
}

/// A loaded account: configuration, its adapter (holding the credentials) and its limits.
#[derive(Debug)]
pub struct Provider {
    pub account: ProviderAccount,
    pub adapter: Box<dyn ProviderAdapter>,
}

impl Provider {
    /// Loads an account with its secret's JSON text. Every option, endpoint and key is checked here.
    pub fn load(account: ProviderAccount, secret_json: &str) -> Result<Provider, ConfigError> {
        let creds = Credentials::from_secret_json(account.protocol, secret_json)?;
        let adapter: Box<dyn ProviderAdapter> = match creds {
            Credentials::SukaXml(c) => Box::new(suka_xml::SukaXml::new(&account, c)?),
            Credentials::Wikeyun(c) => Box::new(wikeyun::Wikeyun::new(&account, c)?),
            Credentials::IceMicroservice(c) => Box::new(ice::Ice::new(&account, c)?),
            Credentials::OpenapiRsa(c) => Box::new(openapi_rsa::OpenapiRsa::new(&account, c)?),
            Credentials::SmsBilling(c) => Box::new(sms_billing::SmsBilling::new(&account, c)?),
        };
        if let Some(narrow) = account.capabilities {
            check_narrowing(narrow, adapter.capabilities())?;
        }
        Ok(Provider { account, adapter })
    }

    /// The protocol's capabilities, narrowed by the account's configuration.
    pub fn capabilities(&self) -> Capabilities {
        self.account
            .capabilities
            .unwrap_or_else(|| self.adapter.capabilities())
    }

    /// The state machine's timing rules for this account.
    pub fn policy(&self) -> Policy {
        let caps = self.capabilities();
        Policy {
            // The sweep must not call an attempt lost before our own HTTP call could have timed out.
            call_timeout: Duration::from_millis(self.account.timeouts.call_ms)
                .saturating_add(Duration::from_secs(20)),
            not_found_grace: Duration::from_secs(self.account.not_found_grace_secs),
            // Only a provider that refuses a reused id makes "not found" safe to fail over (§0.3 rule 3).
            not_found_failover: caps.dedupes_our_id,
            ..Policy::default()
        }
    }
}

fn check_narrowing(narrow: Capabilities, full: Capabilities) -> Result<(), ConfigError> {
    let pairs = [
        (
            "query_by_our_id",
            narrow.query_by_our_id,
            full.query_by_our_id,
        ),
        ("dedupes_our_id", narrow.dedupes_our_id, full.dedupes_our_id),
        (
            "sends_callbacks",
            narrow.sends_callbacks,
            full.sends_callbacks,
        ),
        (
            "callback_signed",
            narrow.callback_signed,
            full.callback_signed,
        ),
        ("has_balance", narrow.has_balance, full.has_balance),
        ("two_step", narrow.two_step, full.two_step),
        (
            "provider_side_failover",
            narrow.provider_side_failover,
            full.provider_side_failover,
        ),
    ];
    for (name, n, f) in pairs {
        if n && !f {
            return Err(ConfigError::Capabilities(format!(
                "{name} is claimed but the protocol (with these options) cannot do it"
            )));
        }
    }
    if narrow.two_step != full.two_step {
        return Err(ConfigError::Capabilities(
            "two_step is a property of the protocol and cannot be changed".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SUKA_TOML: &str = r#"
id = "dingyin-1"
protocol = "suka-xml"
secret_name = "recharge/provider/dingyin-1"
not_found_grace_secs = 900

[endpoints]
submit = "http://dy.example.com:9086/gameonlinepay.do"
query = "http://dy.example.com:8001/searchpay.do"
balance = "http://dy.example.com:9086/searchbalance.do"

[timeouts]
call_ms = 8000

[options]
callback_reply = "success"
query_sign = "lower"
"#;

    #[test]
    fn an_account_loads_from_toml_with_its_options() {
        let acct = ProviderAccount::from_toml(SUKA_TOML).unwrap();
        assert_eq!(acct.protocol, Protocol::SukaXml);
        let p = Provider::load(acct, r#"{"userid":"10004927","key":"k"}"#).unwrap();
        let policy = p.policy();
        assert_eq!(policy.not_found_grace, Duration::from_secs(900));
        assert!(policy.call_timeout > Duration::from_millis(8000));
        assert!(policy.not_found_failover, "001 dedupes sporderid");
        assert_eq!(p.account.limits().call_timeout, Duration::from_millis(8000));
        assert_eq!(
            p.adapter
                .callback_ack(crate::adapter::CallbackAck::Accepted)
                .body,
            b"success"
        );
    }

    #[test]
    fn every_protocol_loads_from_json() {
        let public = include_str!("openapi_rsa/fixtures/004_rsa_test_public_key.pem");
        let private = include_str!("openapi_rsa/fixtures/004_rsa_test_private_key.pem");
        let cases = [
            (
                "suka-xml",
                r#"{"submit":"http://h/a","query":"http://h/b"}"#,
                "null",
                r#"{"userid":"1","key":"k"}"#.to_owned(),
            ),
            (
                "wikeyun",
                r#"{"submit":"https://h/a","query":"https://h/b","balance":"https://h/c"}"#,
                r#"{"store_id":"1234"}"#,
                r#"{"app_key":"100001","app_secret":"s"}"#.to_owned(),
            ),
            (
                "ice-microservice",
                r#"{"submit":"http://h/a","query":"http://h/b"}"#,
                r#"{"company":"彩生活","supplier":"中国移动"}"#,
                r#"{"app_id":"A","token":"t","access_token":"x"}"#.to_owned(),
            ),
            (
                "openapi-rsa",
                r#"{"submit":"https://h/a","query":"https://h/b"}"#,
                "{}",
                serde_json::json!({"business_id":"b","merchant_id":"m","private_key_pem":private,"platform_public_key_pem":public}).to_string(),
            ),
            (
                "sms-billing",
                r#"{"submit":"https://h/a"}"#,
                r#"{"flow":"mp"}"#,
                r#"{"channelcode":"c","password":"p"}"#.to_owned(),
            ),
        ];
        for (protocol, endpoints, options, secret) in cases {
            let json = format!(
                r#"{{"id":"acct-1","protocol":"{protocol}","secret_name":"s","endpoints":{endpoints},"options":{options}}}"#
            );
            let acct = ProviderAccount::from_json(&json).unwrap();
            let p = Provider::load(acct, &secret).unwrap_or_else(|e| panic!("{protocol}: {e}"));
            assert_eq!(p.account.protocol.as_str(), protocol);
            let dbg = format!("{p:?}");
            for secret_value in ["\"k\"", "app_secret\":\"s", "\"t\"", "MIIE", "\"p\""] {
                assert!(
                    !dbg.contains(secret_value),
                    "{protocol} leaks {secret_value} in {dbg}"
                );
            }
        }
    }

    #[test]
    fn unknown_fields_protocols_and_bad_secrets_fail_at_load() {
        assert!(
            ProviderAccount::from_json(
                r#"{"id":"a","protocol":"ofpay","secret_name":"s","endpoints":{}}"#
            )
            .is_err()
        );
        assert!(
            ProviderAccount::from_json(
                r#"{"id":"a","protocol":"wikeyun","secret_name":"s","endpoints":{},"colour":1}"#
            )
            .is_err()
        );
        assert!(
            ProviderAccount::from_json(
                r#"{"id":"Bad Id","protocol":"wikeyun","secret_name":"s","endpoints":{}}"#
            )
            .is_err()
        );
        assert!(matches!(
            Credentials::from_secret_json(Protocol::SukaXml, "not json"),
            Err(ConfigError::Secret { .. })
        ));
        let e =
            Credentials::from_secret_json(Protocol::Wikeyun, r#"{"app_key":"1","app_secret":""}"#)
                .unwrap_err();
        assert!(e.to_string().contains("app_secret"));
    }

    #[test]
    fn capabilities_can_be_narrowed_but_not_widened() {
        let base = |caps: &str| {
            ProviderAccount::from_json(&format!(
                r#"{{"id":"a","protocol":"suka-xml","secret_name":"s","endpoints":{{"submit":"http://h/a","query":"http://h/b"}},"capabilities":{caps}}}"#
            ))
            .unwrap()
        };
        let secret = r#"{"userid":"1","key":"k"}"#;
        let narrow = r#"{"query_by_our_id":true,"dedupes_our_id":false,"sends_callbacks":true,"callback_signed":true,"has_balance":false,"two_step":false,"provider_side_failover":false}"#;
        let p = Provider::load(base(narrow), secret).unwrap();
        assert!(!p.capabilities().dedupes_our_id);
        assert!(!p.policy().not_found_failover);
        // No balance endpoint configured, so claiming a balance API is refused.
        let wide = narrow.replace("\"has_balance\":false", "\"has_balance\":true");
        assert!(matches!(
            Provider::load(base(&wide), secret),
            Err(ConfigError::Capabilities(_))
        ));
    }
}

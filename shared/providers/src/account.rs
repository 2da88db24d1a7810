//! The provider side's vocabulary (docs/providers/README.md §1): a provider *account* is configuration `{id, protocol,
//! endpoints, secret name, capabilities, code table, options}`, and a [`Protocol`] names the adapter that
//! speaks to it. The adapters import this module; only [`crate::registry`] imports the adapters.

use crate::adapter::{Capabilities, DEFAULT_MAX_BODY};
use crate::codes::CodeOverrides;
use crate::executor::Limits;
use recharge_core::ProviderAccountId;
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
    #[error("{0}")]
    Codes(String),
}

fn default_call_ms() -> u64 {
    10_000
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}
fn default_grace_secs() -> u64 {
    // docs/providers/README.md §3 rule 3 (海鑫 doc: ten minutes).
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
    /// on real accounts (docs/providers/suka-xml.md §5).
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
    /// "Not found" becomes a failure only after this long (docs/providers/README.md §3 rule 3).
    #[serde(default = "default_grace_secs")]
    pub not_found_grace_secs: u64,
    /// Additions to and overrides of the protocol's code table, per phase (`{"submit": {"2001": "unknown"}}`;
    /// meanings in [`crate::codes::Meaning`]). Every code in no table is Unknown (docs/providers/README.md §4 rule 1).
    #[serde(default)]
    pub codes: CodeOverrides,
    /// Protocol options; every assumption of the protocol's page under docs/providers/, with its default.
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

    /// An endpoint URL the account may leave out (`None`), checked like `endpoint` when it is there.
    pub fn optional_endpoint(&self, name: &str) -> Result<Option<String>, ConfigError> {
        if self.endpoints.contains_key(name) {
            self.endpoint(name).map(Some)
        } else {
            Ok(None)
        }
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

    /// The protocol's default code table with this account's overrides.
    pub fn code_table(
        &self,
        defaults: &[(crate::codes::Phase, &[(&str, crate::codes::Meaning)])],
    ) -> crate::codes::CodeTable {
        crate::codes::CodeTable::new(defaults, &self.codes)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            call_timeout: Duration::from_millis(self.timeouts.call_ms),
            max_body_bytes: self.max_body_bytes,
        }
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

//! `recharge-providers`: the provider side of the recharge gateway (docs/providers/README.md).
//!
//! * [`sign`] and [`codec`]: byte-level primitives (MD5 over GBK, TOP MD5, HMAC, SHA256withRSA, constant-time
//!   compare, GBK forms, strict XML).
//! * One sans-I/O adapter per protocol family: [`suka_xml`] (001), [`wikeyun`] (002), [`ice_microservice`] (003),
//!   [`openapi_rsa`] (004), [`sms_billing`] (000). Builders return exact request bytes; parsers classify every
//!   answer into [`recharge_core::Outcome`], defaulting to `Unknown`.
//! * [`account`]: the vocabulary (provider accounts, protocols, config errors) the adapters share.
//! * [`codes`]: code tables as data, per account and phase; every unlisted code is `Unknown`.
//! * [`registry`]: the only module that knows every adapter: loads accounts into [`Provider`]s and runs
//!   each flow of a provider call (submit, probe, query, verify, balance, callback review) once for all.
//! * [`latency`]: every provider call's duration per account, phase and outcome class, for the metrics.
//! * [`executor`]: the one HTTP client; a connection never made is a refusal, anything later `Unknown`.

pub mod account;
pub mod adapter;
pub mod codec;
pub mod codes;
pub mod executor;
pub mod http;
pub mod ice_microservice;
pub mod json;
pub mod latency;
pub mod openapi_rsa;
pub mod registry;
pub mod sign;
pub mod sms_billing;
pub mod suka_xml;
pub mod tls;
pub mod wikeyun;

#[cfg(test)]
mod testkit;

pub use account::{ConfigError, Protocol, ProviderAccount};
pub use adapter::{
    AdapterError, BalanceError, CallbackAck, CallbackError, CallbackEvent, CallbackTrust,
    Capabilities, Parsed, ProviderAdapter, QueryRequest, RequestContext, SubmitRequest,
    VerificationRequest,
};
pub use codes::{CodeTable, Meaning, Phase};
pub use executor::{Executor, Limits, TransportError};
pub use http::{HttpRequest, HttpResponse, Method, RawCallback};
pub use registry::{Answer, Credentials, Expect, Provider};

//! `recharge-providers`: the provider side of the recharge gateway (DESIGN §4).
//!
//! * [`sign`] and [`codec`]: byte-level primitives (MD5 over GBK, TOP MD5, HMAC, SHA256withRSA, constant-time
//!   compare, GBK forms, strict XML).
//! * One sans-I/O adapter per protocol family: [`suka_xml`] (001), [`wikeyun`] (002), [`ice`] (003),
//!   [`openapi_rsa`] (004), [`sms_billing`] (000). Builders return exact request bytes; parsers classify every
//!   answer into [`recharge_core::Outcome`], defaulting to `Unknown`.
//! * [`config`]: provider accounts and typed credentials, validated when loaded.
//! * [`executor`]: the one HTTP client; transport trouble becomes `Unknown`, never `Failed`.

pub mod adapter;
pub mod codec;
pub mod config;
pub mod executor;
pub mod http;
pub mod ice;
pub mod openapi_rsa;
pub mod sign;
pub mod sms_billing;
pub mod suka_xml;
pub mod tls;
pub mod wikeyun;

#[cfg(test)]
mod testkit;

pub use adapter::{
    AdapterError, BalanceError, CallbackAck, CallbackError, CallbackEvent, CallbackTrust,
    Capabilities, ProviderAdapter, QueryRequest, RequestContext, SubmitRequest,
    VerificationRequest,
};
pub use config::{ConfigError, Credentials, Protocol, Provider, ProviderAccount};
pub use executor::{Executor, Limits, TransportError};
pub use http::{HttpRequest, HttpResponse, Method, RawCallback};

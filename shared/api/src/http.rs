//! The HTTP face of the gateway. Here: the framework-neutral HTTP values (the Lambda adapter, API Gateway HTTP
//! API events, and the local server both convert to and from these, so one set of handlers serves both). Below:
//! - [`routes`]: the route table and the dispatch of a request to its use case;
//! - [`auth`]: merchant request authentication; [`client_secret`]: the per-order secrets of the client routes;
//! - [`error`]: client-facing errors and their HTTP status;
//! - [`view`]: the order as a merchant sees it, in responses and notifications.

pub mod auth;
pub mod client_secret;
pub mod error;
pub mod routes;
pub mod view;

use serde::Serialize;

/// Merchant request bodies larger than this are refused with 413 before anything reads them.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    /// The path as signed by the merchant, e.g. `/v1/orders/M1`.
    pub path: String,
    /// The raw query string without `?`, exactly as received.
    pub raw_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        recharge_providers::http::find_header(&self.headers, name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json<T: Serialize>(status: u16, value: &T) -> ApiResponse {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        ApiResponse {
            status,
            headers: vec![(
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        recharge_providers::http::find_header(&self.headers, name)
    }
}

impl From<recharge_providers::HttpResponse> for ApiResponse {
    fn from(r: recharge_providers::HttpResponse) -> ApiResponse {
        ApiResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

//! API Gateway HTTP API (payload format 2.0) events ⇄ the framework-neutral `ApiRequest`/`ApiResponse`.
//!
//! Merchant signatures cover the raw path and raw query string, and provider callbacks are verified over raw
//! bytes (GBK forms among them), so nothing here decodes, re-encodes or normalises: the path is `rawPath`,
//! the query is `rawQueryString`, and a body API Gateway delivered base64-encoded (every non-text content
//! type) is decoded back to its exact bytes. The HTTP API must use its `$default` stage, so `rawPath` carries
//! no stage prefix and equals the path the merchant signed.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use recharge_api::{ApiRequest, ApiResponse};

/// An event that cannot be turned into a request (API Gateway never sends one; a hand-made event might).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event body is marked base64 but does not decode")]
    BadBase64,
    #[error("event has no HTTP method")]
    NoMethod,
}

/// The request the handlers see. Repeated headers arrive comma-joined from API Gateway and stay so.
pub fn to_api_request(event: &ApiGatewayV2httpRequest) -> Result<ApiRequest, EventError> {
    let method = event.request_context.http.method.as_str().to_owned();
    if method.is_empty() {
        return Err(EventError::NoMethod);
    }
    let path = event
        .raw_path
        .clone()
        .filter(|p| !p.is_empty())
        .or_else(|| event.request_context.http.path.clone())
        .unwrap_or_else(|| "/".to_owned());
    let raw_query = event.raw_query_string.clone().unwrap_or_default();
    let headers = event
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match &event.body {
        None => Vec::new(),
        Some(text) if event.is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| EventError::BadBase64)?,
        Some(text) => text.as_bytes().to_vec(),
    };
    Ok(ApiRequest {
        method,
        path,
        raw_query,
        headers,
        body,
    })
}

/// The event API Gateway turns back into the HTTP answer. UTF-8 bodies go as text; anything else (a provider
/// acknowledgement in GBK) goes base64-encoded with `isBase64Encoded`, so the bytes arrive unchanged.
pub fn from_api_response(resp: ApiResponse) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    for (name, value) in &resp.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let (body, is_base64_encoded) = if resp.body.is_empty() {
        (None, false)
    } else {
        match String::from_utf8(resp.body) {
            Ok(text) => (Some(Body::Text(text)), false),
            Err(e) => (Some(Body::Binary(e.into_bytes())), true),
        }
    };
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(resp.status);
    out.headers = headers;
    out.body = body;
    out.is_base64_encoded = is_base64_encoded;
    out
}

/// The body bytes of a response event (tests, and `cargo lambda invoke` users reading the output).
pub fn response_body(resp: &ApiGatewayV2httpResponse) -> Vec<u8> {
    match &resp.body {
        None | Some(Body::Empty) => Vec::new(),
        Some(Body::Text(t)) => t.as_bytes().to_vec(),
        Some(Body::Binary(b)) => b.clone(),
        #[allow(unreachable_patterns)]
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 成功 in GBK, and a byte that is not UTF-8 on its own.
    const GBK: &[u8] = b"remark1=\xb3\xc9\xb9\xa6&x=\xff";

    fn event(json: serde_json::Value) -> ApiGatewayV2httpRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_base64_body_arrives_byte_exact_with_raw_path_and_query() {
        let e = event(serde_json::json!({
            "version": "2.0", "routeKey": "POST /v1/callbacks/{provider_account}",
            "rawPath": "/v1/callbacks/dingyin-1", "rawQueryString": "a=%B3%C9&b=1+2",
            "headers": {"content-type": "application/x-www-form-urlencoded; charset=GBK", "x-a": "1,2"},
            "requestContext": {"http": {"method": "POST", "path": "/v1/callbacks/dingyin-1"}},
            "body": base64::engine::general_purpose::STANDARD.encode(GBK),
            "isBase64Encoded": true
        }));
        let req = to_api_request(&e).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/callbacks/dingyin-1");
        assert_eq!(req.raw_query, "a=%B3%C9&b=1+2");
        assert_eq!(req.body, GBK);
        assert_eq!(req.header("X-A"), Some("1,2"));
    }

    #[test]
    fn a_text_body_is_taken_as_its_utf8_bytes_and_bad_base64_is_refused() {
        let mut json = serde_json::json!({
            "version": "2.0", "rawPath": "/v1/orders", "rawQueryString": "",
            "headers": {}, "requestContext": {"http": {"method": "POST"}},
            "body": "{\"account\":\"话费\"}", "isBase64Encoded": false
        });
        assert_eq!(
            to_api_request(&event(json.clone())).unwrap().body,
            "{\"account\":\"话费\"}".as_bytes()
        );
        json["isBase64Encoded"] = serde_json::json!(true);
        json["body"] = serde_json::json!("not base64!");
        assert_eq!(to_api_request(&event(json)), Err(EventError::BadBase64));
    }

    #[test]
    fn a_non_utf8_answer_goes_back_base64_and_text_stays_text() {
        let r = from_api_response(ApiResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain; charset=GBK".into())],
            body: GBK.to_vec(),
        });
        assert!(r.is_base64_encoded);
        assert_eq!(response_body(&r), GBK);
        let wire = serde_json::to_value(&r).unwrap();
        assert_eq!(
            wire["body"],
            base64::engine::general_purpose::STANDARD.encode(GBK)
        );
        let r = from_api_response(ApiResponse {
            status: 201,
            headers: vec![],
            body: b"ok".to_vec(),
        });
        assert!(!r.is_base64_encoded);
        assert_eq!(r.status_code, 201);
        assert_eq!(serde_json::to_value(&r).unwrap()["body"], "ok");
    }
}

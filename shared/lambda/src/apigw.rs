//! `lambda_http`'s request and response ⇄ the framework-neutral `ApiRequest`/`ApiResponse`.
//!
//! `lambda_http` turns the API Gateway HTTP API (payload format 2.0) event into an `http::Request` and the
//! `http::Response` back into the event API Gateway expects; what is left here keeps the bytes the signatures
//! cover. Merchant signatures cover the raw path and raw query string, and provider callbacks are verified
//! over raw bytes (GBK forms among them), so nothing here decodes, re-encodes or normalises:
//! - the path is the event's `rawPath` (`RequestExt::raw_http_path`), not the URI's path, which `lambda_http`
//!   builds through `url::Url` (percent-encoded, dot segments resolved). The HTTP API must use its `$default`
//!   stage, so `rawPath` carries no stage prefix and equals the path the merchant signed;
//! - the query is the URI's query, which `lambda_http` builds as `rawQueryString` appended verbatim;
//! - the body is `lambda_http`'s `Body`: a base64 body (every non-text content type) decoded to its bytes;
//! - the answer goes back as [`RawResponse`], never through `lambda_http`'s `Response<B>` conversion, which
//!   would decode a `charset=GBK` body into UTF-8 text: UTF-8 bodies go as text, anything else (a provider
//!   acknowledgement in GBK) base64-encoded with `isBase64Encoded`, so the bytes arrive unchanged.
//!
//! What `lambda_http` refuses before the handler runs (docs/benchmarks.md §7): an event whose base64 body does
//! not decode, or whose `rawQueryString` holds bytes `http::Uri` rejects (space, `"`, `<`, `>`, controls), ends
//! the invocation with a panic (the process, `panic = "abort"`), and a `#` ends the query. API Gateway sends
//! neither: it delivers valid base64 and keeps `rawQueryString` percent-encoded.

use lambda_http::http::{HeaderName, HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, IntoResponse, Request, RequestExt, Response};
use recharge_api::{ApiRequest, ApiResponse};

/// The request the handlers see. Repeated headers arrive comma-joined from API Gateway and stay so.
pub fn to_api_request(req: Request) -> ApiRequest {
    let raw_path = req.raw_http_path();
    let path = if raw_path.is_empty() {
        http_context(&req)
            .and_then(|c| c.http.path.clone())
            .unwrap_or_else(|| "/".to_owned())
    } else {
        raw_path.to_owned()
    };
    let (parts, body) = req.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    ApiRequest {
        method: parts.method.as_str().to_owned(),
        path,
        raw_query: parts.uri.query().unwrap_or_default().to_owned(),
        headers,
        body: match body {
            Body::Text(text) => text.into_bytes(),
            Body::Binary(bytes) => bytes,
            _ => Vec::new(),
        },
    }
}

/// The HTTP API request context (the authorizer's identity, the route's path) of a request.
pub fn http_context(
    req: &Request,
) -> Option<&lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => Some(context),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// An answer `lambda_http` passes on as it is: its body already `Text` (UTF-8) or `Binary` (sent base64).
#[derive(Debug)]
pub struct RawResponse(pub Response<Body>);

impl IntoResponse for RawResponse {
    fn into_response(
        self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>> {
        Box::pin(std::future::ready(self.0))
    }
}

/// The HTTP answer of an `ApiResponse`; a header that is not a valid HTTP header is left out.
pub fn from_api_response(resp: ApiResponse) -> RawResponse {
    let body = if resp.body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(resp.body) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() =
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &resp.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.headers_mut().append(n, v);
        }
    }
    RawResponse(out)
}

/// The body bytes of an answer (tests, and `cargo lambda invoke` users reading the output).
pub fn response_body(resp: &Response<Body>) -> Vec<u8> {
    match resp.body() {
        Body::Text(t) => t.as_bytes().to_vec(),
        Body::Binary(b) => b.clone(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use lambda_http::request::LambdaRequest;
    use lambda_http::{Adapter, Context, LambdaEvent, Service, service_fn};
    use serde_json::{Value, json};

    /// 成功 in GBK, and a byte that is not UTF-8 on its own.
    const GBK: &[u8] = b"remark1=\xb3\xc9\xb9\xa6&x=\xff";

    fn callback_event() -> Value {
        json!({
            "version": "2.0", "routeKey": "POST /v1/callbacks/{provider_account}",
            "rawPath": "/v1/callbacks/dingyin-1", "rawQueryString": "a=%B3%C9&b=1+2&c=%2F%3F%26&d=",
            "headers": {"content-type": "application/x-www-form-urlencoded; charset=GBK", "x-a": "1,2",
                        "host": "abc123.execute-api.us-east-1.amazonaws.com"},
            "requestContext": {"http": {"method": "POST", "path": "/v1/callbacks/dingyin-1"},
                               "stage": "$default"},
            "body": base64::engine::general_purpose::STANDARD.encode(GBK),
            "isBase64Encoded": true
        })
    }

    fn request(event: &Value) -> Request {
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    /// The event through `lambda_http`'s own adapter (what `lambda_http::run` does with each invocation) to
    /// the JSON answer it hands the runtime API.
    async fn on_the_wire(event: &Value, answer: ApiResponse) -> Value {
        let mut adapter = Adapter::from(service_fn(move |_: Request| {
            let answer = answer.clone();
            async move { Ok::<_, std::convert::Infallible>(from_api_response(answer)) }
        }));
        let payload: LambdaRequest = serde_json::from_value(event.clone()).unwrap();
        let resp = adapter
            .call(LambdaEvent::new(payload, Context::default()))
            .await
            .unwrap();
        serde_json::to_value(&resp).unwrap()
    }

    #[test]
    fn a_base64_gbk_body_arrives_byte_exact_with_raw_path_and_percent_encoded_query() {
        let req = to_api_request(request(&callback_event()));
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/callbacks/dingyin-1");
        assert_eq!(req.raw_query, "a=%B3%C9&b=1+2&c=%2F%3F%26&d=");
        assert_eq!(req.body, GBK);
        assert_eq!(req.header("X-A"), Some("1,2"));
    }

    #[test]
    fn the_path_is_raw_path_not_the_normalised_uri_path() {
        let mut event = callback_event();
        // `url::Url` would resolve the dot segment and percent-encode the space and 话; `rawPath` is what
        // API Gateway received, with or without a stage.
        event["rawPath"] = json!("/v1/orders/a%2Fb/../话 x");
        event["rawQueryString"] = json!("");
        for stage in ["$default", "prod"] {
            event["requestContext"]["stage"] = json!(stage);
            let req = to_api_request(request(&event));
            assert_eq!(req.path, "/v1/orders/a%2Fb/../话 x", "stage {stage}");
            assert_eq!(req.raw_query, "");
        }
    }

    #[test]
    fn a_text_body_is_taken_as_its_utf8_bytes() {
        let event = json!({
            "version": "2.0", "rawPath": "/v1/orders", "rawQueryString": "",
            "headers": {}, "requestContext": {"http": {"method": "POST"}},
            "body": "{\"account\":\"话费\"}", "isBase64Encoded": false
        });
        let req = to_api_request(request(&event));
        assert_eq!(req.body, "{\"account\":\"话费\"}".as_bytes());
        assert_eq!(req.path, "/v1/orders");
    }

    #[tokio::test]
    async fn a_gbk_answer_goes_back_base64_byte_exact_and_text_stays_text() {
        let wire = on_the_wire(
            &callback_event(),
            ApiResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/plain; charset=GBK".into())],
                body: GBK.to_vec(),
            },
        )
        .await;
        assert_eq!(wire["statusCode"], 200);
        assert_eq!(wire["isBase64Encoded"], true);
        assert_eq!(
            wire["body"],
            base64::engine::general_purpose::STANDARD.encode(GBK)
        );
        assert_eq!(wire["headers"]["content-type"], "text/plain; charset=GBK");

        // 成功 in GBK is valid UTF-8 nowhere; a UTF-8 answer with a GBK label would be re-decoded by
        // `lambda_http`'s own `Response<B>` conversion, never by `RawResponse`.
        let utf8 = "{\"status\":\"成功\"}";
        let wire = on_the_wire(
            &callback_event(),
            ApiResponse {
                status: 201,
                headers: vec![("content-type".into(), "application/json".into())],
                body: utf8.as_bytes().to_vec(),
            },
        )
        .await;
        assert_eq!(wire["statusCode"], 201);
        assert_eq!(wire["isBase64Encoded"], false);
        assert_eq!(wire["body"], utf8);
    }

    /// What `lambda_http` does with an event it cannot turn into a request (docs/benchmarks.md §7): it
    /// panics before any handler runs. API Gateway sends neither event; if this test fails, `lambda_http`
    /// changed and the module comment and §7 are out of date.
    #[test]
    fn lambda_http_panics_on_bad_base64_and_on_a_query_http_uri_rejects() {
        let mut bad_base64 = callback_event();
        bad_base64["body"] = json!("not base64!");
        let mut raw_quote = callback_event();
        raw_quote["rawQueryString"] = json!("q=\"x\"");
        for event in [bad_base64, raw_quote] {
            let converted = std::panic::catch_unwind(|| request(&event));
            assert!(converted.is_err(), "{event}");
        }
    }
}

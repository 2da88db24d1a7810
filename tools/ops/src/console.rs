//! The operator console (see docs/console.md): one static page (HTML, CSS and JS embedded in the binary, no
//! build step) and a same-origin proxy that signs each of the page's API calls on the server side, so the
//! browser never holds a credential.
//!
//! The page calls `/ops/console/api/<rest>`; the proxy sends `/ops/<rest>` (method, query and body as given)
//! through an [`OpsClient`]: SigV4 with the operator's AWS credentials for `recharge-ops console`, an admin
//! app's HMAC in the local stack. Only `/ops/` routes can be reached, only GET, POST and PUT, and only from the
//! page itself:
//! - the `Host` must be one the console listens as (no DNS rebinding);
//! - every call carries `X-Recharge-Console: 1`, a header no cross-origin page can send without a CORS
//!   preflight, which the proxy never grants; an `Origin` or `Sec-Fetch-Site` that names another origin is
//!   refused as well;
//! - `recharge-ops console` also requires a random per-run token that it prints in the page's URL fragment
//!   (never sent in a URL, never logged), so another user of the same machine cannot use the operator's keys.

use crate::{CliError, OpsClient};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{any, get};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where the console lives; the page's own paths are absolute under it.
pub const PREFIX: &str = "/ops/console";
/// The header every API call of the page carries.
pub const CONSOLE_HEADER: &str = "x-recharge-console";
/// The header carrying the per-run token (`recharge-ops console`).
pub const TOKEN_HEADER: &str = "x-recharge-console-token";

const INDEX_HTML: &str = include_str!("../console/index.html");
const CONSOLE_JS: &str = include_str!("../console/console.js");
const CONSOLE_CSS: &str = include_str!("../console/console.css");

/// The largest body the page sends (a resolution with its evidence); the API refuses more than 64 KiB anyway.
const MAX_BODY: usize = 64 * 1024;

/// The page and its assets' security headers: nothing but our own files, no framing, no referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A console: the client that signs, the hosts it answers as, and the token calls must carry (if any).
#[derive(Debug, Clone)]
pub struct Console {
    client: OpsClient,
    hosts: Vec<String>,
    token: Option<String>,
}

impl Console {
    /// A console signing with `client`, answering only requests whose `Host` is one of `hosts` (e.g.
    /// `127.0.0.1:8080`; empty: any), and requiring `token` on every API call when given.
    pub fn new(client: OpsClient, hosts: Vec<String>, token: Option<String>) -> Console {
        Console {
            client,
            hosts,
            token,
        }
    }

    /// The hosts a console listening on `addr` answers as: the address itself, and `localhost` on loopback. On
    /// an unspecified address (`0.0.0.0`, `::`, a local stack opened to its network) only the loopback names:
    /// the console stays a page of the machine it runs on.
    pub fn hosts_for(addr: SocketAddr) -> Vec<String> {
        let port = addr.port();
        if addr.ip().is_unspecified() {
            return vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ];
        }
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
        }
        hosts
    }
}

/// The console's routes (the page, its assets and the proxy), to serve alone or merged into another router.
pub fn router(console: Console) -> axum::Router {
    axum::Router::new()
        .route(PREFIX, get(index))
        .route(&format!("{PREFIX}/"), get(index))
        .route(&format!("{PREFIX}/console.js"), get(script))
        .route(&format!("{PREFIX}/console.css"), get(style))
        .route(&format!("{PREFIX}/api/{{*rest}}"), any(proxy))
        .with_state(Arc::new(console))
}

fn asset(console: &Console, headers: &HeaderMap, content_type: &str, body: &str) -> Response {
    if let Some(refused) = host_refusal(console, headers) {
        return refused;
    }
    let mut resp = Response::new(Body::from(body.to_owned()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain")),
    );
    secure(h);
    resp
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn index(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    asset(&console, &headers, "text/html; charset=utf-8", INDEX_HTML)
}

async fn script(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    asset(
        &console,
        &headers,
        "text/javascript; charset=utf-8",
        CONSOLE_JS,
    )
}

async fn style(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    asset(&console, &headers, "text/css; charset=utf-8", CONSOLE_CSS)
}

/// A refusal of the proxy itself, shaped like the API's errors so the page shows it the same way.
fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    secure(h);
    resp
}

/// A refusal unless the request's `Host` is one the console answers as.
fn host_refusal(console: &Console, headers: &HeaderMap) -> Option<Response> {
    if console.hosts.is_empty() {
        return None;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if console.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        None
    } else {
        Some(refuse(
            StatusCode::FORBIDDEN,
            "console_host",
            "the console answers only on the address it listens on",
        ))
    }
}

/// Equal without an early exit, so the comparison's time says nothing about the token.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A refusal unless the call comes from the console's own page (see the module documentation).
fn call_refusal(console: &Console, headers: &HeaderMap) -> Option<Response> {
    if let Some(refused) = host_refusal(console, headers) {
        return Some(refused);
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if text(CONSOLE_HEADER) != Some("1") {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "console_only",
            "API calls through the console come from its page (X-Recharge-Console: 1)",
        ));
    }
    if let Some(site) = text("sec-fetch-site")
        && site != "same-origin"
    {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "console_only",
            "cross-site requests are refused",
        ));
    }
    if let Some(origin) = text("origin") {
        let host = text("host").unwrap_or("");
        if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "console_only",
                "cross-origin requests are refused",
            ));
        }
    }
    if let Some(token) = &console.token {
        let given = text(TOKEN_HEADER).unwrap_or("");
        if !same_secret(given.as_bytes(), token.as_bytes()) {
            return Some(refuse(
                StatusCode::UNAUTHORIZED,
                "console_token",
                "open the console with the address `recharge-ops console` printed (it carries the token)",
            ));
        }
    }
    None
}

/// The `/ops/` path a console path maps to, if it is one the page may reach: plain segments of
/// `[A-Za-z0-9._~-]`, none of them only dots (no traversal, no escapes).
pub fn upstream_path(rest: &str) -> Option<String> {
    let plain = |seg: &str| {
        !seg.is_empty()
            && !seg.chars().all(|c| c == '.')
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    };
    rest.split('/').all(plain).then(|| format!("/ops/{rest}"))
}

async fn proxy(
    State(console): State<Arc<Console>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = call_refusal(&console, &headers) {
        return refused;
    }
    let verb = match method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        _ => {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the console sends GET, POST and PUT",
            );
        }
    };
    if body.len() > MAX_BODY {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the body is over 64 KiB",
        );
    }
    let rest = uri
        .path()
        .strip_prefix(PREFIX)
        .and_then(|p| p.strip_prefix("/api/"))
        .unwrap_or("");
    let Some(path) = upstream_path(rest) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "not an ops route the console reaches",
        );
    };
    let path_and_query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    };
    match console.client.send_raw(verb, &path_and_query, &body).await {
        Ok(raw) => {
            let mut resp = Response::new(Body::from(raw.body));
            *resp.status_mut() =
                StatusCode::from_u16(raw.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let h = resp.headers_mut();
            let content_type = raw.content_type.as_deref().unwrap_or("application/json");
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type)
                    .unwrap_or(HeaderValue::from_static("application/json")),
            );
            secure(h);
            resp
        }
        Err(e) => {
            let (status, code) = match &e {
                CliError::Credentials(_) | CliError::Signing(_) => {
                    (StatusCode::BAD_GATEWAY, "console_credentials")
                }
                CliError::Http(_) | CliError::Usage(_) | CliError::Api { .. } => {
                    (StatusCode::BAD_GATEWAY, "upstream_unreachable")
                }
            };
            eprintln!("recharge-ops console: {verb} {}: {e}", uri.path());
            refuse(status, code, &e.to_string())
        }
    }
}

/// A random token of 128 bits, hex, from the kernel.
pub fn random_token() -> Result<String, CliError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CliError::Usage(format!("random token: {e}")))?;
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

/// A console bound to a loopback address, ready to serve.
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    token: String,
}

impl Bound {
    /// Binds `listen`, which must be a loopback address (the console is never public).
    pub async fn bind(listen: SocketAddr) -> Result<Bound, CliError> {
        if !listen.ip().is_loopback() {
            return Err(CliError::Usage(format!(
                "--listen {listen}: the console listens on loopback only (127.0.0.1 or ::1)"
            )));
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| CliError::Usage(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::Usage(format!("cannot listen on {listen}: {e}")))?;
        Ok(Bound {
            listener,
            addr,
            token: random_token()?,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address to open: the page, with the token in the fragment (which the browser never sends).
    pub fn url(&self) -> String {
        format!("http://{}{PREFIX}/#token={}", self.addr, self.token)
    }

    /// Serves until the process ends (or the task is aborted).
    pub async fn serve(self, client: OpsClient) -> Result<(), CliError> {
        let console = Console::new(client, Console::hosts_for(self.addr), Some(self.token));
        axum::serve(self.listener, router(console))
            .await
            .map_err(|e| CliError::Usage(format!("console server: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    use std::sync::Mutex;

    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SESSION: &str = "session-token-example";
    const REGION: &str = "ap-east-1";

    /// What reached the API.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A stand-in for API Gateway that records every request and answers `{"ok":true}`.
    async fn upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = Arc::clone(&log);
                async move {
                    log.lock().unwrap().push(Seen {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        query: uri.query().unwrap_or("").to_owned(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                            .collect(),
                        body: body.to_vec(),
                    });
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        r#"{"ok":true}"#,
                    )
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, seen)
    }

    fn sigv4_client(base: &str) -> OpsClient {
        let credentials = Credentials::new(KEY_ID, SECRET_KEY, Some(SESSION.into()), None, "test");
        OpsClient::sigv4_with(base, SharedCredentialsProvider::new(credentials), REGION)
    }

    /// A console in front of `client` on an ephemeral loopback port: its base URL and token.
    async fn console(client: OpsClient) -> (String, String) {
        let bound = Bound::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", bound.addr());
        let token = bound.token.clone();
        tokio::spawn(async move { bound.serve(client).await.unwrap() });
        (base, token)
    }

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    fn rfc3986(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    }

    /// The signature AWS computes for a request as it arrived, written out from the SigV4 specification
    /// (canonical request, string to sign, derived key) with nothing of aws-sigv4: it must equal the one sent.
    fn expected_signature(seen: &Seen) -> String {
        let auth = seen.header("authorization").unwrap();
        let signed: Vec<&str> = auth
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .split(';')
            .collect();
        let date = seen.header("x-amz-date").unwrap();
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(seen.query.as_bytes())
            .map(|(k, v)| (rfc3986(&k), rfc3986(&v)))
            .collect();
        pairs.sort();
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let headers: String = signed
            .iter()
            .map(|h| format!("{h}:{}\n", seen.header(h).unwrap().trim()))
            .collect();
        let canonical = format!(
            "{}\n{}\n{query}\n{headers}\n{}\n{}",
            seen.method,
            seen.path,
            signed.join(";"),
            data_encoding::HEXLOWER.encode(&Sha256::digest(&seen.body))
        );
        let scope = format!("{}/{REGION}/execute-api/aws4_request", &date[..8]);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            data_encoding::HEXLOWER.encode(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{SECRET_KEY}").as_bytes(),
            &date.as_bytes()[..8],
        );
        for part in [REGION, "execute-api", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        data_encoding::HEXLOWER.encode(&hmac(&key, to_sign.as_bytes()))
    }

    fn sent_signature(seen: &Seen) -> String {
        let auth = seen.header("authorization").unwrap();
        assert!(
            auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/")),
            "{auth}"
        );
        auth.split("Signature=").nth(1).unwrap().to_owned()
    }

    fn page_call(
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        http.request(method, url)
            .header(CONSOLE_HEADER, "1")
            .header(TOKEN_HEADER, token)
    }

    #[tokio::test]
    async fn the_console_proxy_signs_each_call_as_the_cli_signs_its_own() {
        let (api, seen) = upstream().await;
        let client = sigv4_client(&api);
        let (base, token) = console(client.clone()).await;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();

        // The CLI's own request, then the same one made by the page through the console.
        client
            .send("GET", "/ops/orders?needs_operator=true&limit=200", b"")
            .await
            .unwrap();
        let r = page_call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/ops/console/api/orders?needs_operator=true&limit=200"),
            &token,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), r#"{"ok":true}"#);
        let body =
            r#"{"attempt":1,"outcome":"succeeded","reason":"r","evidence":"e","operator":"o"}"#;
        let r = page_call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/ops/console/api/orders/7JUWX4CXN3GSIQOKCCTK/resolve"),
            &token,
        )
        .header("origin", &base)
        .header("sec-fetch-site", "same-origin")
        .body(body)
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{seen:#?}");
        let (cli, page, post) = (&seen[0], &seen[1], &seen[2]);
        for s in &seen {
            assert_eq!(sent_signature(s), expected_signature(s), "{s:#?}");
            assert_eq!(s.header("x-amz-security-token"), Some(SESSION));
            // Nothing of the browser's request is passed on: no console header, no token.
            assert!(s.header(CONSOLE_HEADER).is_none() && s.header(TOKEN_HEADER).is_none());
        }
        assert_eq!(
            (cli.method.as_str(), cli.path.as_str()),
            ("GET", "/ops/orders")
        );
        assert_eq!(
            (
                page.method.as_str(),
                page.path.as_str(),
                page.query.as_str()
            ),
            (cli.method.as_str(), cli.path.as_str(), cli.query.as_str())
        );
        let signed = |s: &Seen| {
            s.header("authorization")
                .unwrap()
                .split("SignedHeaders=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(signed(page), signed(cli));
        assert!(signed(page).contains("host"), "{}", signed(page));
        assert_eq!(post.path, "/ops/orders/7JUWX4CXN3GSIQOKCCTK/resolve");
        assert_eq!(post.body, body.as_bytes());
    }

    #[tokio::test]
    async fn the_console_refuses_calls_that_do_not_come_from_its_own_page() {
        let (api, seen) = upstream().await;
        let (base, token) = console(sigv4_client(&api)).await;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("{base}/ops/console/api/accounts");
        let status = |r: reqwest::Response| r.status().as_u16();

        // No console header (a plain form post or image from another page), a wrong or missing token,
        // another origin, another site, another Host (DNS rebinding), a method the page never sends.
        let no_header = http
            .get(&url)
            .header(TOKEN_HEADER, &token)
            .send()
            .await
            .unwrap();
        assert_eq!(status(no_header), 403);
        let wrong_token = page_call(&http, reqwest::Method::GET, &url, "0123")
            .send()
            .await
            .unwrap();
        assert_eq!(status(wrong_token), 401);
        let no_token = http
            .get(&url)
            .header(CONSOLE_HEADER, "1")
            .send()
            .await
            .unwrap();
        assert_eq!(status(no_token), 401);
        for (method, name, value) in [
            (reqwest::Method::PUT, "origin", "http://evil.example"),
            (reqwest::Method::GET, "sec-fetch-site", "cross-site"),
            (reqwest::Method::GET, "host", "evil.example:80"),
        ] {
            let refused = page_call(&http, method, &url, &token)
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(status(refused), 403, "{name}: {value}");
        }
        let delete = page_call(&http, reqwest::Method::DELETE, &url, &token)
            .send()
            .await
            .unwrap();
        assert_eq!(status(delete), 405);
        // Paths as a client may send them raw (reqwest would normalise them first).
        for path in [
            "../../../v1/balances",
            "orders/%2e%2e/x",
            "orders//x",
            "./orders",
            "a%2Fb",
        ] {
            let answer = raw_get(&base, &format!("/ops/console/api/{path}"), &token).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "a refused call reached the API"
        );

        // The page itself is served to anyone on the right Host, with a strict content security policy.
        let page = http
            .get(format!("{base}/ops/console/"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(
            page.text()
                .await
                .unwrap()
                .contains("/ops/console/console.js")
        );
    }

    /// A GET written byte for byte on a TCP connection, so the path reaches the console exactly as given.
    async fn raw_get(base: &str, path: &str, token: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = base.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{CONSOLE_HEADER}: 1\r\n{TOKEN_HEADER}: {token}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[test]
    fn only_plain_ops_paths_are_reachable_through_the_console() {
        assert_eq!(upstream_path("orders").as_deref(), Some("/ops/orders"));
        assert_eq!(
            upstream_path("accounts/wikeyun-main").as_deref(),
            Some("/ops/accounts/wikeyun-main")
        );
        assert_eq!(
            upstream_path("recon/reports/2026-12-01").as_deref(),
            Some("/ops/recon/reports/2026-12-01")
        );
        for bad in [
            "",
            "..",
            "orders/..",
            "orders/./x",
            "orders//x",
            "orders/",
            "a%2Fb",
            "a\\b",
            "a b",
        ] {
            assert_eq!(upstream_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_console_answers_as_the_address_it_listens_on_and_as_localhost() {
        let hosts = |a: &str| Console::hosts_for(a.parse().unwrap());
        assert_eq!(
            hosts("127.0.0.1:8080"),
            ["127.0.0.1:8080", "localhost:8080"]
        );
        assert_eq!(hosts("[::1]:8080"), ["[::1]:8080", "localhost:8080"]);
        assert_eq!(hosts("10.0.0.5:8080"), ["10.0.0.5:8080"]);
        assert_eq!(
            hosts("0.0.0.0:8080"),
            ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"]
        );
    }

    #[tokio::test]
    async fn the_console_listens_on_loopback_only() {
        let err = Bound::bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let bound = Bound::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert!(bound.url().starts_with("http://127.0.0.1:"));
        assert!(bound.url().contains("/ops/console/#token="));
        assert_eq!(bound.token.len(), 32);
    }
}

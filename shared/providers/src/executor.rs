//! The one HTTP executor: a single reqwest client (rustls, keep-alive connection reuse) shared by every
//! account, per-account timeouts and a response body cap. Transport trouble becomes `Outcome::Unknown`, never
//! `Failed`: a request that timed out may well have been executed (docs/providers/README.md §3 rule 2). The one
//! exception is a connection that was never made (DNS failure, refused, TLS handshake failure, connect timeout): no
//! request byte left, so [`TransportError::NotConnected`] lets the submit flow call it a refusal
//! (docs/providers/README.md §4 rule 3).

use crate::adapter::unknown;
use crate::http::{HttpRequest, HttpResponse, Method};
use recharge_core::Outcome;
use std::time::{Duration, Instant};

/// Per-account limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole call, connect to last body byte.
    pub call_timeout: Duration,
    pub max_body_bytes: usize,
}

/// Why no response could be had. Every variant but `NotConnected` means "we do not know what the provider
/// did".
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection was never established (DNS, refused, TLS handshake, connect timeout): nothing was
    /// sent.
    #[error("no connection: {0}")]
    NotConnected(#[source] reqwest::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Displayed without the URL's query and userinfo (a reqwest error names its URL, and provider
    /// credentials travel in queries); this text is logged and kept with the attempt.
    #[error("transport: {}", crate::http::scrub_urls(&.0.to_string()))]
    Transport(#[source] reqwest::Error),
    #[error("response body over the cap of {0} bytes")]
    TooLarge(usize),
    #[error("request refused before sending: {}", crate::http::scrub_urls(.0))]
    Build(String),
}

impl TransportError {
    /// The outcome of a call that ended this way when nothing more is known: `Unknown`. (The submit flow
    /// turns `NotConnected` into a refusal itself; to a query it is just an answer not had.)
    pub fn to_outcome(&self) -> Outcome {
        let code = match self {
            TransportError::NotConnected(_) => "not_connected",
            TransportError::Timeout(_) => "timeout",
            TransportError::Transport(_) => "transport",
            TransportError::TooLarge(_) => "body_too_large",
            TransportError::Build(_) => "request_build",
        };
        unknown(code, self.to_string())
    }
}

/// How long a connection may take to establish. Past it nothing was sent, so a submit is refused and may
/// fail over; it is shorter than any call timeout worth having.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends adapter-built requests. Build one per process (Lambda cold start) and share it.
#[derive(Debug, Clone)]
pub struct Executor {
    client: reqwest::Client,
}

impl Executor {
    /// One client for all accounts: connections are pooled per host and reused across invocations.
    /// Redirects are not followed (a provider answer is never a redirect; following one could leak the
    /// signed query string elsewhere).
    pub fn new() -> Result<Executor, TransportError> {
        let client = crate::tls::client_builder()
            .map_err(|e| TransportError::Build(e.to_string()))?
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(TransportError::Transport)?;
        Ok(Executor { client })
    }

    /// Sends one request within `limits`. The body is read in chunks and refused as soon as it passes the cap,
    /// before anything decodes it.
    pub async fn execute(
        &self,
        req: &HttpRequest,
        limits: &Limits,
    ) -> Result<HttpResponse, TransportError> {
        let started = Instant::now();
        // Logged without query and userinfo: credentials travel there (see `loggable_url`).
        let path = crate::http::loggable_url(&req.url);
        let result = tokio::time::timeout(limits.call_timeout, self.send(req, limits)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(limits.call_timeout)),
        };
        match &result {
            Ok(resp) => tracing::info!(
                method = req.method.as_str(),
                url = %path,
                status = resp.status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "provider call"
            ),
            Err(e) => tracing::warn!(
                method = req.method.as_str(),
                url = %path,
                error = %e,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "provider call failed; outcome unknown"
            ),
        }
        result
    }

    async fn send(
        &self,
        req: &HttpRequest,
        limits: &Limits,
    ) -> Result<HttpResponse, TransportError> {
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut builder = self
            .client
            .request(method, &req.url)
            .timeout(limits.call_timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if req.method == Method::Post {
            builder = builder.body(req.body.clone());
        }
        let request = builder
            .build()
            .map_err(|e| TransportError::Build(e.to_string()))?;
        let mut resp = self
            .client
            .execute(request)
            .await
            .map_err(|e| classify(e, limits))?;
        if let Some(len) = resp.content_length()
            && usize::try_from(len).unwrap_or(usize::MAX) > limits.max_body_bytes
        {
            return Err(TransportError::TooLarge(limits.max_body_bytes));
        }
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(e, limits))? {
            if body.len() + chunk.len() > limits.max_body_bytes {
                return Err(TransportError::TooLarge(limits.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn classify(e: reqwest::Error, limits: &Limits) -> TransportError {
    // A connect error (which a connect timeout also is) happened before any request byte was written;
    // hyper retries a pooled connection found dead before writing on its own.
    if e.is_connect() {
        // Without the URL: a signed query string (app_key, sign, access tokens) must not reach a log.
        TransportError::NotConnected(e.without_url())
    } else if e.is_timeout() {
        TransportError::Timeout(limits.call_timeout)
    } else {
        TransportError::Transport(e.without_url())
    }
}

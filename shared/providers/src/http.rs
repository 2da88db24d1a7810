//! Plain HTTP values exchanged between the pure adapters and the executor (or the callback entry point).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request an adapter built: exact bytes, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    /// The full URL including any query string.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Bodies and query strings carry phone numbers and signatures: Debug shows only their size and the path.
impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.url.split('?').next().unwrap_or("");
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &path)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A response as received (or as an adapter wants to send it, for callback acknowledgements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `text/plain` reply, as the callback acknowledgements are.
    pub fn text(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![(
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A callback exactly as it arrived: nothing in it is trusted until the adapter has verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCallback {
    pub method: Method,
    pub headers: Vec<(String, String)>,
    /// The raw query string, without the `?`, still percent-encoded.
    pub query: String,
    pub body: Vec<u8>,
}

impl RawCallback {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// Header names are case-insensitive (API Gateway lowercases them).
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A URL as it may be logged: scheme, host, port and path, without userinfo, query or fragment. Provider
/// credentials travel in queries (ICE's `access_token`, wikeyun's `app_key` and `sign`) and could be in
/// userinfo; a merchant's notify URL may carry its own token in the query.
pub fn loggable_url(url: &str) -> String {
    let cut = url.find(['?', '#']).map_or(url, |i| &url[..i]);
    let (scheme, rest) = match cut.find("://") {
        Some(i) => cut.split_at(i + 3),
        None => ("", cut),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}{host}{path}")
}

/// `text` with every `http://` or `https://` URL in it reduced to [`loggable_url`]: for error messages of HTTP
/// clients, which name the URL they failed on (`error sending request for url (…)`).
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = [rest.find("http://"), rest.find("https://")]
        .into_iter()
        .flatten()
        .min()
    {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(tail.len());
        out.push_str(&loggable_url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loggable_url_keeps_host_port_and_path_and_drops_userinfo_query_and_fragment() {
        assert_eq!(
            loggable_url(
                "https://user:pw@api.example.com:8443/rest/Recharge/pushOrder?app_key=1&sign=AB#x"
            ),
            "https://api.example.com:8443/rest/Recharge/pushOrder"
        );
        assert_eq!(
            loggable_url("http://127.0.0.1:9/q?access_token=t"),
            "http://127.0.0.1:9/q"
        );
        assert_eq!(loggable_url("https://h.example?x=1"), "https://h.example");
        assert_eq!(
            loggable_url("https://a@b@h.example/p"),
            "https://h.example/p"
        );
        assert_eq!(loggable_url("/relative?x=1"), "/relative");
    }

    #[test]
    fn urls_inside_error_messages_are_scrubbed() {
        let msg = "error sending request for url (http://u:secret@127.0.0.1:9/a?access_token=tok): \
                   connection refused; retried https://h.example/b?k=v, and http://x/c?d";
        let scrubbed = scrub_urls(msg);
        assert_eq!(
            scrubbed,
            "error sending request for url (http://127.0.0.1:9/a): connection refused; retried \
             https://h.example/b, and http://x/c"
        );
        assert!(!scrubbed.contains("secret") && !scrubbed.contains("tok"));
        assert_eq!(scrub_urls("no url here"), "no url here");
    }
}

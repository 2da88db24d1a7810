//! Merchant notifications (DESIGN §8): when an order's public status changes, POST its view to the merchant's
//! `notify_url`, signed; a 2xx acknowledges; otherwise retry on a schedule of 15 tries over about 23 hours.
//!
//! Notify URLs are attacker-controlled input (SSRF): outside the local stack they must be `https` to a public
//! address. The check runs twice: on the URL when the order is created (IP literals, `localhost`), and on
//! every address the host name resolves to when the notification is sent (a resolver that drops private
//! addresses, so DNS rebinding cannot reach the VPC or the metadata endpoint). Redirects are not followed.

use crate::auth::hmac_hex;
use async_trait::async_trait;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub const HEADER_TIMESTAMP: &str = "X-Recharge-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Recharge-Signature";

/// Delay before retry k (after the k-th failure). With the first try, 15 tries spanning about 23 h.
pub const RETRY_SCHEDULE_SECS: [u64; 14] = [
    15, 30, 60, 120, 300, 600, 1_200, 1_800, 3_600, 7_200, 10_800, 14_400, 21_600, 21_600,
];

/// When to retry after `failures` failed tries (1-based), or `None` once the schedule is spent.
pub fn retry_delay(failures: u32, time_scale: f64) -> Option<Duration> {
    let i = usize::try_from(failures).ok()?.checked_sub(1)?;
    let secs = *RETRY_SCHEDULE_SECS.get(i)?;
    Some(Duration::from_secs_f64(secs as f64 / time_scale.max(1.0)))
}

/// `hex(HMAC-SHA256(app_secret, timestamp + "." + body))`.
pub fn signature(app_secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    hmac_hex(app_secret, &message)
}

/// Is this an address a merchant server can have? Refuses loopback, private, link-local (the metadata
/// endpoint 169.254.169.254), CGNAT, unspecified, multicast, documentation and benchmark ranges, and their
/// IPv4-mapped IPv6 forms.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link local fe80::/10
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xa9fe, 0xa9fe))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..=127).contains(&o[1])) // CGNAT 100.64/10
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || o[0] >= 240)
}

/// Checks a notify URL at order creation. `allow_loopback` is the local stack's exception.
pub fn check_notify_url(url: &str, allow_loopback: bool) -> Result<reqwest::Url, String> {
    if url.len() > 2048 {
        return Err("notify_url is longer than 2048 characters".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("notify_url is not a URL: {e}"))?;
    let scheme_ok = parsed.scheme() == "https" || (allow_loopback && parsed.scheme() == "http");
    if !scheme_ok {
        return Err("notify_url must be https".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("notify_url must not carry credentials".into());
    }
    let host = parsed.host().ok_or("notify_url has no host")?;
    let ip = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !allow_loopback
                && (d == "localhost" || d.ends_with(".localhost") || d.ends_with(".internal"))
            {
                return Err("notify_url must point to a public host".into());
            }
            None
        }
    };
    if let Some(ip) = ip
        && !is_public(ip)
        && !(allow_loopback && ip.is_loopback())
    {
        return Err("notify_url must point to a public address".into());
    }
    Ok(parsed)
}

/// What came of one notification try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The merchant answered 2xx.
    Acknowledged,
    /// Anything else: a non-2xx status, a refused address, a timeout.
    Failed(String),
}

/// Sends notifications.
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// POSTs `body` to `url` with `headers`; never follows redirects.
    async fn deliver(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> Delivery;
}

/// A DNS resolver that returns only public addresses, so a host name cannot be pointed at a private one.
#[derive(Debug, Clone, Copy)]
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

/// The production notifier: reqwest over rustls, no redirects, a short timeout, public addresses only
/// (unless built for the local stack).
#[derive(Debug, Clone)]
pub struct HttpNotifier {
    client: reqwest::Client,
    allow_loopback: bool,
}

/// Why the notifier's HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifierSetupError {
    #[error(transparent)]
    Tls(#[from] recharge_providers::tls::TlsSetupError),
    #[error("notification HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl HttpNotifier {
    pub fn new(
        timeout: Duration,
        allow_loopback: bool,
    ) -> Result<HttpNotifier, NotifierSetupError> {
        // The process's shared TLS configuration: the root certificates are read once, not per client.
        let mut builder = recharge_providers::tls::client_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent("recharge-gateway-notify/1");
        if !allow_loopback {
            builder = builder.dns_resolver(std::sync::Arc::new(PublicOnlyResolver));
        }
        Ok(HttpNotifier {
            client: builder.build()?,
            allow_loopback,
        })
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn deliver(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> Delivery {
        // IP-literal URLs bypass the resolver: check them again here.
        if let Err(e) = check_notify_url(url, self.allow_loopback) {
            return Delivery::Failed(e);
        }
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Delivery::Acknowledged,
            Ok(resp) => Delivery::Failed(format!("HTTP {}", resp.status().as_u16())),
            Err(e) => Delivery::Failed(if e.is_timeout() {
                "timeout".to_owned()
            } else {
                format!("transport: {e}")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "203.119.1.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn notify_urls_must_be_https_to_public_hosts_outside_local_mode() {
        assert!(check_notify_url("https://merchant.example.com/notify", false).is_ok());
        for bad in [
            "http://merchant.example.com/notify",
            "https://127.0.0.1/notify",
            "https://localhost/notify",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/x",
            "https://[::ffff:192.168.0.1]/x",
            "https://user:pw@merchant.example.com/",
            "https://metadata.google.internal/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(check_notify_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_notify_url("http://127.0.0.1:9000/notify", true).is_ok());
        assert!(
            check_notify_url("http://10.0.0.1/notify", true).is_err(),
            "local mode allows loopback only"
        );
    }

    #[test]
    fn the_retry_schedule_is_fifteen_tries_within_a_day() {
        let retries: Vec<Duration> = (1..).map_while(|k| retry_delay(k, 1.0)).collect();
        assert_eq!(retries.len() + 1, 15);
        let span: Duration = retries.iter().sum();
        assert!(
            span > Duration::from_secs(20 * 3600) && span < Duration::from_secs(24 * 3600),
            "{span:?}"
        );
        assert_eq!(retry_delay(1, 60.0), Some(Duration::from_millis(250)));
        assert_eq!(retry_delay(0, 1.0), None);
    }

    #[test]
    fn the_notification_signature_has_a_known_answer() {
        // python3: hmac.new(b"demo-secret", b"1700000000." + b'{"a":1}', sha256).hexdigest()
        assert_eq!(
            signature(b"demo-secret", 1_700_000_000, br#"{"a":1}"#),
            "2a542428182237bed2081dc2d1eabcbd3e780f8750a0be7281a9f494d66be808"
        );
    }

    #[tokio::test]
    async fn a_host_name_that_resolves_only_to_loopback_is_refused_by_the_resolver() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        // /etc/hosts maps `localhost` to 127.0.0.1 (and ::1): a rebinding attacker's name looks the same.
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let err = PublicOnlyResolver
            .resolve(name)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no public address"), "{err}");
    }

    #[tokio::test]
    async fn delivery_to_a_private_literal_fails_without_a_connection() {
        let notifier = HttpNotifier::new(Duration::from_secs(2), false).unwrap();
        let d = notifier
            .deliver("https://10.0.0.1/notify", &[], b"{}")
            .await;
        assert_eq!(
            d,
            Delivery::Failed("notify_url must point to a public address".into())
        );
    }
}

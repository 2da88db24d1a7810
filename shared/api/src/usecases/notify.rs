//! Merchant notifications (docs/merchant-api.md §5): when an order's public status changes, POST its view to the
//! merchant's `notify_url`, signed; a 2xx acknowledges; otherwise retry on a schedule of 15 tries over about 23 hours.
//!
//! Notify URLs are attacker-controlled input (SSRF): outside the local stack they must be `https` to a public
//! address. The check runs twice: on the URL when the order is created (IP literals, `localhost`), and on
//! every address the host name resolves to when the notification is sent (a resolver that drops private
//! addresses, so DNS rebinding cannot reach the VPC or the metadata endpoint). Redirects are not followed.

use crate::http::auth::hmac_hex;
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

/// What an address is, for the notify-URL guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Globally reachable unicast: a merchant server may live there.
    Public,
    /// 127.0.0.0/8, `::1`, or a loopback IPv4 address embedded in IPv6: allowed only in the local stack.
    Loopback,
    /// Anything else: private, link-local (the metadata endpoint), CGNAT, reserved, documentation, multicast,
    /// special-purpose. Never a notification target.
    Refused,
}

/// Classifies an address by the IANA special-purpose registries (IPv4 and IPv6, as of 2026). Every IPv6 form
/// that carries an IPv4 address is classified by that IPv4 address (by each of them where it carries two), so
/// no encoding of 169.254.169.254 or 10.0.0.1 passes:
///
/// | form | prefix | IPv4 bits |
/// |---|---|---|
/// | IPv4-compatible (deprecated, RFC 4291 §2.5.5.1) | `::/96` | 96–127 |
/// | IPv4-mapped (RFC 4291 §2.5.5.2) | `::ffff:0:0/96` | 96–127 |
/// | IPv4-translated (RFC 2765 SIIT) | `::ffff:0:0:0/96` | 96–127 |
/// | NAT64 well-known prefix (RFC 6052) | `64:ff9b::/96` | 96–127 |
/// | NAT64 local-use prefix (RFC 8215) | `64:ff9b:1::/48` | refused whole: not globally reachable |
/// | 6to4 (RFC 3056) | `2002::/16` | 16–47 |
/// | Teredo (RFC 4380) | `2001::/32` | server 32–63, client 96–127 inverted |
///
/// Native IPv6 must be in the global unicast space `2000::/3` (IANA's IPv6 address space: everything else,
/// `100::/64` discard, `5f00::/16` SRv6, `fc00::/7`, `fe80::/10`, `fec0::/10`, `ff00::/8`, is not), and not in
/// `2001::/23` (IETF protocol assignments: benchmarking, ORCHID, AMT, ...), `2001:db8::/32` or `3fff::/20`
/// (documentation).
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Is this an address a merchant server can have? (`classify(ip) == Public`.)
pub fn is_public(ip: IpAddr) -> bool {
    classify(ip) == AddrClass::Public
}

fn classify_v6(v6: Ipv6Addr) -> AddrClass {
    let s = v6.segments();
    let bits = u128::from(v6);
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if v6 == Ipv6Addr::LOCALHOST {
        return AddrClass::Loopback;
    }
    if v6.is_unspecified() {
        return AddrClass::Refused;
    }
    // ::/96 (IPv4-compatible), ::ffff:0:0/96 (mapped), ::ffff:0:0:0/96 (SIIT translated).
    if s[0..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        return classify_v4(low_v4);
    }
    if s[0..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return classify_v4(low_v4);
    }
    // 64:ff9b::/96, the NAT64 well-known prefix: the gateway's NAT64 would connect to the embedded address.
    if s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(low_v4);
    }
    // 64:ff9b:1::/48, NAT64 local use (RFC 8215): not globally reachable whatever it embeds.
    if s[0..3] == [0x64, 0xff9b, 1] {
        return AddrClass::Refused;
    }
    // 2002::/16, 6to4: the IPv4 address of the 6to4 router is in bits 16..48.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return public_only(classify_v4(v4));
    }
    // 2001::/32, Teredo: the server's IPv4 in bits 32..64, the client's (inverted) in bits 96..128.
    if s[0] == 0x2001 && s[1] == 0 {
        let server = Ipv4Addr::from(((bits >> 64) & 0xffff_ffff) as u32);
        let client = Ipv4Addr::from(!((bits & 0xffff_ffff) as u32));
        return match (classify_v4(server), classify_v4(client)) {
            (AddrClass::Public, AddrClass::Public) => AddrClass::Public,
            _ => AddrClass::Refused,
        };
    }
    let global_unicast = (s[0] & 0xe000) == 0x2000; // 2000::/3
    let ietf_protocol = s[0] == 0x2001 && s[1] < 0x0200; // 2001::/23
    // 2001:db8::/32 and 3fff::/20
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000);
    if global_unicast && !ietf_protocol && !documentation {
        AddrClass::Public
    } else {
        AddrClass::Refused
    }
}

/// A tunnel to a loopback IPv4 address is not the local machine: only `Public` survives.
fn public_only(c: AddrClass) -> AddrClass {
    match c {
        AddrClass::Public => AddrClass::Public,
        AddrClass::Loopback | AddrClass::Refused => AddrClass::Refused,
    }
}

/// The IANA IPv4 special-purpose registry, refusing also the few entries it marks globally reachable
/// (192.0.0.9/10, AS112, AMT): no merchant server lives there.
fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    if o[0] == 127 {
        return AddrClass::Loopback;
    }
    let refused = o[0] == 0 // "this network" 0/8
        || o[0] == 10 // private
        || (o[0] == 100 && (64..=127).contains(&o[1])) // CGNAT 100.64/10
        || (o[0] == 169 && o[1] == 254) // link local, the metadata endpoint
        || (o[0] == 172 && (16..=31).contains(&o[1])) // private 172.16/12
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments 192.0.0/24
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // TEST-NET-1
        || (o[0] == 192 && o[1] == 31 && o[2] == 196) // AS112-v4
        || (o[0] == 192 && o[1] == 52 && o[2] == 193) // AMT
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast (deprecated)
        || (o[0] == 192 && o[1] == 168) // private
        || (o[0] == 192 && o[1] == 175 && o[2] == 48) // AS112 direct delegation
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking 198.18/15
        || (o[0] == 198 && o[1] == 51 && o[2] == 100) // TEST-NET-2
        || (o[0] == 203 && o[1] == 0 && o[2] == 113) // TEST-NET-3
        || o[0] >= 224; // multicast 224/4, reserved 240/4, broadcast
    if refused {
        AddrClass::Refused
    } else {
        AddrClass::Public
    }
}

/// May a notification go to `ip`? Public addresses always; loopback only in the local stack.
pub fn allowed_target(ip: IpAddr, allow_loopback: bool) -> bool {
    match classify(ip) {
        AddrClass::Public => true,
        AddrClass::Loopback => allow_loopback,
        AddrClass::Refused => false,
    }
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
        && !allowed_target(ip, allow_loopback)
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

/// A DNS resolver that returns only the addresses the guard allows (public ones; in the local stack also
/// loopback), so a host name cannot be pointed at a private one.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allowed_target(a.ip(), allow_loopback))
                .collect();
            if addrs.is_empty() {
                let what = if allow_loopback {
                    "public or loopback"
                } else {
                    "public"
                };
                return Err(format!("{host} resolves to no {what} address").into());
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
        // The resolver runs in local mode too: there it lets loopback through, and nothing else private.
        let builder = recharge_providers::tls::client_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent("recharge-gateway-notify/1")
            .dns_resolver(std::sync::Arc::new(GuardedResolver { allow_loopback }));
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
            // `without_url`: the notify URL's query may carry the merchant's own tokens; the reason is logged.
            Err(e) => Delivery::Failed(if e.is_timeout() {
                "timeout".to_owned()
            } else {
                format!("transport: {}", e.without_url())
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

    fn class(ip: &str) -> AddrClass {
        classify(ip.parse().unwrap())
    }

    /// Each IPv4 address of interest, as (address, its class).
    const V4: [(&str, AddrClass); 6] = [
        ("127.0.0.1", AddrClass::Loopback),
        ("10.0.0.1", AddrClass::Refused),
        ("169.254.169.254", AddrClass::Refused),
        ("192.168.1.1", AddrClass::Refused),
        ("100.64.0.1", AddrClass::Refused),
        ("8.8.8.8", AddrClass::Public),
    ];

    fn v4(a: &str) -> u32 {
        u32::from(a.parse::<Ipv4Addr>().unwrap())
    }

    fn v6(bits: u128) -> String {
        Ipv6Addr::from(bits).to_string()
    }

    #[test]
    fn ipv4_compatible_addresses_are_classified_by_their_ipv4_address() {
        for (a, c) in V4 {
            assert_eq!(class(&format!("::{a}")), c, "::{a}");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_classified_by_their_ipv4_address() {
        for (a, c) in V4 {
            assert_eq!(class(&format!("::ffff:{a}")), c, "::ffff:{a}");
        }
    }

    #[test]
    fn siit_translated_addresses_are_classified_by_their_ipv4_address() {
        for (a, c) in V4 {
            assert_eq!(class(&format!("::ffff:0:{a}")), c, "::ffff:0:{a}");
        }
    }

    #[test]
    fn nat64_well_known_prefix_addresses_are_classified_by_their_ipv4_address() {
        for (a, c) in V4 {
            assert_eq!(class(&format!("64:ff9b::{a}")), c, "64:ff9b::{a}");
        }
    }

    #[test]
    fn the_nat64_local_use_prefix_is_refused_whatever_it_embeds() {
        for (a, _) in V4 {
            assert_eq!(class(&format!("64:ff9b:1::{a}")), AddrClass::Refused, "{a}");
        }
        // RFC 6052 /48 layout: IPv4 in bits 48..64 and 72..88.
        assert_eq!(class("64:ff9b:1:808:8:800::"), AddrClass::Refused);
        assert_eq!(
            class("64:ff9b:1:ffff:ffff:ffff:ffff:ffff"),
            AddrClass::Refused
        );
    }

    #[test]
    fn six_to_four_addresses_are_classified_by_their_ipv4_address_and_never_as_loopback() {
        for (a, c) in V4 {
            let ip = v6((0x2002u128 << 112) | (u128::from(v4(a)) << 80) | 1);
            let expected = if c == AddrClass::Public {
                AddrClass::Public
            } else {
                AddrClass::Refused
            };
            assert_eq!(class(&ip), expected, "{ip} ({a})");
        }
    }

    #[test]
    fn teredo_addresses_are_classified_by_both_their_server_and_client_ipv4_addresses() {
        let teredo = |server: &str, client: &str| {
            v6((0x2001u128 << 112) | (u128::from(v4(server)) << 64) | u128::from(!v4(client)))
        };
        assert_eq!(class(&teredo("8.8.8.8", "1.1.1.1")), AddrClass::Public);
        for (a, c) in V4 {
            if c == AddrClass::Public {
                continue;
            }
            assert_eq!(
                class(&teredo("8.8.8.8", a)),
                AddrClass::Refused,
                "client {a}"
            );
            assert_eq!(
                class(&teredo(a, "8.8.8.8")),
                AddrClass::Refused,
                "server {a}"
            );
        }
        // The client address is stored inverted: 2001:0:808:808::f5ff:fffe is client 10.0.0.1.
        assert_eq!(class("2001:0:808:808::f5ff:fffe"), AddrClass::Refused);
    }

    #[test]
    fn site_local_addresses_are_refused() {
        assert_eq!(class("fec0::1"), AddrClass::Refused);
        assert_eq!(class("feff:ffff::1"), AddrClass::Refused);
    }

    #[test]
    fn the_other_ipv6_special_purpose_ranges_are_refused() {
        for ip in [
            "::",
            "100::1",           // discard-only 100::/64
            "100:0:0:1::1",     // dummy prefix
            "2001:2::1",        // benchmarking, inside 2001::/23
            "2001:10::1",       // ORCHID
            "2001:20::1",       // ORCHIDv2
            "2001:1ff:ffff::1", // end of 2001::/23
            "2001:db8::1",      // documentation
            "3fff::1",          // documentation (RFC 9637)
            "3fff:fff:ffff::1", // end of 3fff::/20
            "5f00::1",          // SRv6 SIDs
            "fc00::1",          // unique local
            "fd12:3456::1",     // unique local
            "fe80::1",          // link local
            "ff02::1",          // multicast
            "4000::1",          // outside 2000::/3: unallocated
            "1::1",
        ] {
            assert_eq!(class(ip), AddrClass::Refused, "{ip}");
        }
        assert_eq!(class("::1"), AddrClass::Loopback);
        for ip in [
            "2606:4700:4700::1111",
            "2001:200::1",
            "2a00:1450:4001::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert_eq!(class(ip), AddrClass::Public, "{ip}");
        }
    }

    #[test]
    fn the_ipv4_special_purpose_ranges_are_refused() {
        for ip in [
            "0.1.2.3",
            "192.0.0.9",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "172.31.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert_eq!(class(ip), AddrClass::Refused, "{ip}");
        }
        for ip in [
            "172.15.0.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.1.1",
            "203.119.1.1",
        ] {
            assert_eq!(class(ip), AddrClass::Public, "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_forms_reach_the_url_check_in_both_modes() {
        for url in [
            "https://[::169.254.169.254]/x",
            "https://[::ffff:0:10.0.0.1]/x",
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://[64:ff9b:1::a00:1]/x",
            "https://[2002:a00:1::1]/x",
            "https://[fec0::1]/x",
        ] {
            assert!(check_notify_url(url, false).is_err(), "{url}");
            assert!(check_notify_url(url, true).is_err(), "{url} (local mode)");
        }
        assert!(check_notify_url("https://[64:ff9b::808:808]/x", false).is_ok());
        assert!(check_notify_url("http://[::ffff:127.0.0.1]:9/x", true).is_ok());
        assert!(check_notify_url("https://[::ffff:127.0.0.1]/x", false).is_err());
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
        let err = GuardedResolver {
            allow_loopback: false,
        }
        .resolve(name)
        .await
        .err()
        .expect("refused");
        assert!(err.to_string().contains("no public address"), "{err}");
    }

    #[tokio::test]
    async fn in_local_mode_the_resolver_lets_loopback_through_and_nothing_else_private() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let resolver = GuardedResolver {
            allow_loopback: true,
        };
        let addrs: Vec<SocketAddr> = resolver
            .resolve(reqwest::dns::Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        // A name that resolves only to a private address (here a literal the system resolver echoes back).
        let err = resolver
            .resolve(reqwest::dns::Name::from_str("10.0.0.1").unwrap())
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("no public or loopback address"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_notify_url_that_accepts_and_never_answers_costs_one_timeout() {
        // A merchant server that takes the connection and the request, then hangs: the try ends at the
        // notifier's timeout as a failure (retried on the schedule), not when the merchant feels like it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let notifier = HttpNotifier::new(Duration::from_millis(300), true).unwrap();
        let d = notifier
            .deliver(
                &format!("http://127.0.0.1:{port}/notify?token=t"),
                &[],
                b"{}",
            )
            .await;
        assert_eq!(d, Delivery::Failed("timeout".into()));
        hold.abort();
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

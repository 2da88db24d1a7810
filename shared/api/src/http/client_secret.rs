//! Per-order client secrets (issue 18): what a merchant's server hands a mini-program or a 公众号 H5 page so it
//! can follow one order and send its verification code, without ever holding the app secret.
//!
//! ```text
//! client_secret = "rcs1_" EXPIRES "_" base64url-nopad(HMAC-SHA256(gateway_key, "recharge client secret v1\n" ORDER_ID "\n" EXPIRES))
//! EXPIRES       = unix seconds: the order's created_at (seconds) + the app's client_secret ttl (default 24 h)
//! ```
//!
//! **Derived, not stored.** The secret is an HMAC under a gateway key held in Secrets Manager, over the order id
//! and the expiry, instead of a random value stored as a hash:
//! - a replay of the create (same merchant order number, same body) must return the secret again, but a stored
//!   hash cannot give back its secret, and minting a new one would need a write on a path that writes nothing
//!   (docs/storage.md §4: a duplicate create costs 0 writes). The derivation gives the same secret from the stored
//!   order;
//! - checking one costs no store round trip: a wrong, forged or other-order secret is refused before the order is
//!   read, so "no such order" and "wrong secret" are the same answer at the same cost;
//! - the expiry travels inside the secret, covered by the MAC, so it cannot be stretched.
//!
//! The key rotates like every secret here: current and previous both verify, new secrets use the current one.
//! Nothing in this module logs a secret; comparisons are constant time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use recharge_core::secrets::{Rotating, SecretError, SecretSource, parse_json};
use recharge_core::{OrderId, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The prefix of every client secret (a version: a future format gets another).
pub const PREFIX: &str = "rcs1_";
/// Domain separation: this key signs nothing else, but a second use must not be able to collide with this one.
const CONTEXT: &str = "recharge client secret v1";
/// 32 bytes of HMAC-SHA256, base64url without padding.
const MAC_CHARS: usize = 43;
/// The key is at least this many bytes (Secrets Manager's generated 64-character value is well above it).
pub const MIN_KEY_BYTES: usize = 32;
/// An app's client secrets live this long unless its configuration says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Bounds of a configured lifetime: 1 s (tests of expiry) to 30 days.
pub const TTL_RANGE_SECS: std::ops::RangeInclusive<u64> = 1..=30 * 86_400;

/// The gateway key's secret: `{"key": "<at least 32 bytes>"}`.
#[derive(Clone, Deserialize)]
pub struct ClientKey {
    #[serde(deserialize_with = "long_key")]
    key: SecretString,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey([REDACTED])")
    }
}

fn long_key<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    let s = SecretString::deserialize(d)?;
    if s.expose_secret().len() < MIN_KEY_BYTES {
        // The message names the rule, never the value.
        return Err(serde::de::Error::custom(format!(
            "key must be at least {MIN_KEY_BYTES} bytes"
        )));
    }
    Ok(s)
}

impl ClientKey {
    /// A key from its bytes (the local stack generates one; production reads it from Secrets Manager).
    pub fn new(key: SecretString) -> Result<ClientKey, String> {
        if key.expose_secret().len() < MIN_KEY_BYTES {
            return Err(format!("key must be at least {MIN_KEY_BYTES} bytes"));
        }
        Ok(ClientKey { key })
    }

    /// HMAC takes keys of any length, so `None` cannot happen; were it to, nothing is issued or verified.
    fn mac(&self, order_id: &OrderId, expires_secs: i64) -> Option<Hmac<Sha256Mac>> {
        let mut mac =
            Hmac::<Sha256Mac>::new_from_slice(self.key.expose_secret().as_bytes()).ok()?;
        mac.update(format!("{CONTEXT}\n{order_id}\n{expires_secs}").as_bytes());
        Some(mac)
    }

    /// The client secret of `order_id` expiring at `expires_secs` (unix seconds).
    pub fn issue(&self, order_id: &OrderId, expires_secs: i64) -> Option<SecretString> {
        let tag = self.mac(order_id, expires_secs)?.finalize().into_bytes();
        Some(SecretString::from(format!(
            "{PREFIX}{expires_secs}_{}",
            data_encoding::BASE64URL_NOPAD.encode(&tag)
        )))
    }
}

type Sha256Mac = sha2::Sha256;

/// Why a presented client secret is refused. Each is a 401 with its code (see `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefusal {
    /// Not of the format, not made with our key, or made for another order (or for no order at all).
    #[error("the client secret is not valid for this order")]
    Invalid,
    /// Genuine and for this order, but past its expiry.
    #[error("the client secret has expired")]
    Expired,
}

impl SecretRefusal {
    pub fn code(self) -> &'static str {
        match self {
            SecretRefusal::Invalid => "invalid_client_secret",
            SecretRefusal::Expired => "client_secret_expired",
        }
    }
}

/// Checks `presented` against `order_id` at `now` with every key candidate (current, then previous). The MAC
/// is checked before the expiry, so "expired" is said only of a secret we issued for this very order.
pub fn check(
    keys: &Rotating<ClientKey>,
    order_id: &OrderId,
    presented: &str,
    now: Timestamp,
) -> Result<(), SecretRefusal> {
    let rest = presented
        .strip_prefix(PREFIX)
        .ok_or(SecretRefusal::Invalid)?;
    let (expires, tag) = rest.split_once('_').ok_or(SecretRefusal::Invalid)?;
    if expires.is_empty()
        || expires.len() > 12
        || !expires.bytes().all(|b| b.is_ascii_digit())
        || tag.len() != MAC_CHARS
    {
        return Err(SecretRefusal::Invalid);
    }
    let expires_secs: i64 = expires.parse().map_err(|_| SecretRefusal::Invalid)?;
    // Canonical form only: `0123` would verify the same MAC input as `123` is never issued.
    if expires_secs.to_string() != expires {
        return Err(SecretRefusal::Invalid);
    }
    let tag = data_encoding::BASE64URL_NOPAD
        .decode(tag.as_bytes())
        .map_err(|_| SecretRefusal::Invalid)?;
    let genuine = keys.candidates().any(|k| {
        k.mac(order_id, expires_secs)
            .is_some_and(|m| m.verify_slice(&tag).is_ok())
    });
    if !genuine {
        return Err(SecretRefusal::Invalid);
    }
    if now.seconds() >= expires_secs {
        return Err(SecretRefusal::Expired);
    }
    Ok(())
}

/// The expiry (unix seconds) a client secret states; `None` if it is not of the form. Trust it only after
/// [`check`] accepted the secret.
pub fn presented_expiry(presented: &str) -> Option<i64> {
    presented
        .strip_prefix(PREFIX)?
        .split_once('_')?
        .0
        .parse()
        .ok()
}

/// The expiry of an order's client secret: its creation (whole seconds) plus the app's lifetime. Derived from
/// the stored order, so a replay of the create gives the same secret.
pub fn expiry_of(created_at: Timestamp, ttl: Duration) -> i64 {
    created_at
        .seconds()
        .saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

/// Why the gateway key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Client secrets are not configured here (no `RECHARGE_CLIENT_KEY_SECRET`).
    #[error("client secrets are not configured")]
    NotConfigured,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Reads the gateway key (both versions) through the cached secret source: no call on a warm read.
pub async fn keys(
    secrets: &dyn SecretSource,
    name: Option<&str>,
) -> Result<Rotating<ClientKey>, KeyError> {
    let name = name.ok_or(KeyError::NotConfigured)?;
    let versions = secrets.fetch(name).await?;
    Ok(parse_json::<ClientKey>(name, &versions)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClientKey {
        ClientKey::new(SecretString::from(s.to_owned())).unwrap()
    }

    fn one(k: ClientKey) -> Rotating<ClientKey> {
        Rotating {
            current: k,
            previous: None,
        }
    }

    const K: &str = "0123456789abcdef0123456789abcdef";
    const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn id(s: &str) -> OrderId {
        OrderId::parse(s).unwrap()
    }

    #[test]
    fn the_secret_has_a_known_answer() {
        // python3: base64.urlsafe_b64encode(hmac.new(K, b"recharge client secret v1\nAAAAAAAAAAAAAAAAAAAA\n1700086400",
        //          sha256).digest()).rstrip(b"=")
        let s = key(K)
            .issue(&id("AAAAAAAAAAAAAAAAAAAA"), 1_700_086_400)
            .unwrap();
        assert_eq!(
            s.expose_secret(),
            "rcs1_1700086400_a7I6nq5SVzRwo_RNtne2J2dQdS5EgsWyDrHefnIRiYI"
        );
    }

    #[test]
    fn an_issued_secret_verifies_for_its_order_until_it_expires() {
        let k = key(K);
        let order = id("ABCDEFGHIJKLMNOPQRST");
        let expires = expiry_of(NOW, DEFAULT_TTL);
        let s = k.issue(&order, expires).unwrap();
        let keys = one(k);
        assert_eq!(check(&keys, &order, s.expose_secret(), NOW), Ok(()));
        assert_eq!(presented_expiry(s.expose_secret()), Some(expires));
        let just_before = Timestamp::from_millis((expires - 1) * 1000);
        assert_eq!(check(&keys, &order, s.expose_secret(), just_before), Ok(()));
        let at = Timestamp::from_millis(expires * 1000);
        assert_eq!(
            check(&keys, &order, s.expose_secret(), at),
            Err(SecretRefusal::Expired)
        );
    }

    #[test]
    fn another_orders_secret_a_forged_expiry_or_another_key_is_invalid() {
        let k = key(K);
        let order = id("ABCDEFGHIJKLMNOPQRST");
        let other = id("ABCDEFGHIJKLMNOPQRSZ");
        let s = k
            .issue(&order, 1_700_086_400)
            .unwrap()
            .expose_secret()
            .to_owned();
        let keys = one(k);
        assert_eq!(
            check(&keys, &other, &s, NOW),
            Err(SecretRefusal::Invalid),
            "other order"
        );
        let stretched = s.replace("1700086400", "1800086400");
        assert_eq!(
            check(&keys, &order, &stretched, NOW),
            Err(SecretRefusal::Invalid),
            "a stretched expiry"
        );
        let padded = s.replace("_1700086400_", "_01700086400_");
        assert_eq!(
            check(&keys, &order, &padded, NOW),
            Err(SecretRefusal::Invalid)
        );
        let foreign = one(key("another key of at least 32 bytes!"));
        assert_eq!(
            check(&foreign, &order, &s, NOW),
            Err(SecretRefusal::Invalid)
        );
        // An expired forgery is invalid, not expired: expiry is said only of genuine secrets.
        let late = Timestamp::from_millis(1_900_000_000_000);
        assert_eq!(
            check(&foreign, &order, &s, late),
            Err(SecretRefusal::Invalid)
        );
        for garbage in [
            "",
            "rcs1_",
            "rcs1_1_",
            "Bearer x",
            &s[..s.len() - 1],
            &format!("{s}A"),
        ] {
            assert_eq!(
                check(&keys, &order, garbage, NOW),
                Err(SecretRefusal::Invalid),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn during_a_rotation_secrets_of_the_previous_key_still_verify() {
        let old = key(K);
        let order = id("ABCDEFGHIJKLMNOPQRST");
        let s = old.issue(&order, 1_700_086_400).unwrap();
        let keys = Rotating {
            current: key("the new key, 32 bytes or longer.."),
            previous: Some(old),
        };
        assert_eq!(check(&keys, &order, s.expose_secret(), NOW), Ok(()));
    }

    #[test]
    fn a_short_key_is_refused_and_debug_never_shows_the_key() {
        assert!(ClientKey::new(SecretString::from("short".to_owned())).is_err());
        let parsed: Result<ClientKey, _> = serde_json::from_str(r#"{"key":"short"}"#);
        let message = parsed.unwrap_err().to_string();
        assert!(!message.contains("short\""), "{message}");
        assert!(!format!("{:?}", key(K)).contains(K));
    }
}

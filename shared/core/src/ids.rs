//! Identifiers. Each newtype has a `parse` that validates; a value that exists is valid.
//!
//! `OrderId` is derived deterministically from `(app id, merchant order number)`, so that the create is its own
//! idempotency check (one conditional write) and a merchant's GET addresses the item directly (docs/storage.md §2).
//! The provider-facing `AttemptId` is the order id plus a two-digit attempt number, so a callback carrying it
//! resolves to the order's key without an index.

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Why an identifier was refused. The message names the field and the rule, for a merchant-facing 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct IdError {
    pub field: &'static str,
    pub rule: &'static str,
}

fn check(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: fn(u8) -> bool,
    rule: &'static str,
) -> Result<(), IdError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(allowed) {
        return Err(IdError { field, rule });
    }
    Ok(())
}

fn merchant_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn lower_code_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:expr, $allowed:expr, $rule:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check($field, value, $max, $allowed, $rule)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A merchant application (the `X-Recharge-App` header): the tenant every order belongs to.
    AppId,
    "app_id",
    32,
    merchant_char,
    "1 to 32 characters of [A-Za-z0-9_-]"
);
string_id!(
    /// The merchant's own order number, unique per app; the idempotency key of `POST /v1/orders`.
    MerchantOrderNo,
    "merchant_order_no",
    64,
    merchant_char,
    "1 to 64 characters of [A-Za-z0-9_-]"
);
string_id!(
    /// A provider account from configuration (one protocol family is sold under many accounts).
    ProviderAccountId,
    "provider_account",
    40,
    lower_code_char,
    "1 to 40 characters of [a-z0-9._-]"
);
string_id!(
    /// A product of our catalog, e.g. `mobile.100`, `game.demo.60`, `electricity.sgcc.100`.
    ProductCode,
    "product_code",
    64,
    lower_code_char,
    "1 to 64 characters of [a-z0-9._-]"
);

/// Our order id: 20 characters of RFC 4648 base32 (100 bits) of SHA-256(app id, merchant order number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrderId(String);

const ORDER_ID_LEN: usize = 20;
const BASE32_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl OrderId {
    /// The one derivation of an order id. The NUL separator cannot occur in either part, so distinct pairs
    /// never hash the same input.
    pub fn derive(app: &AppId, merchant_order_no: &MerchantOrderNo) -> OrderId {
        let mut h = Sha256::new();
        h.update(app.as_str().as_bytes());
        h.update([0u8]);
        h.update(merchant_order_no.as_str().as_bytes());
        let digest = h.finalize();
        let mut encoded = data_encoding::BASE32_NOPAD.encode(&digest);
        encoded.truncate(ORDER_ID_LEN);
        OrderId(encoded)
    }

    pub fn parse(value: &str) -> Result<OrderId, IdError> {
        if value.len() != ORDER_ID_LEN || !value.bytes().all(|b| BASE32_ALPHABET.contains(&b)) {
            return Err(IdError {
                field: "order_id",
                rule: "20 characters of [A-Z2-7]",
            });
        }
        Ok(OrderId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shard of the sweep's due index this order lives in: a stable spread of ids over `count` shards.
    pub fn shard(&self, count: u32) -> u32 {
        let count = count.max(1);
        // The first 4 characters carry 20 uniformly distributed bits of the hash.
        let bits = self.0.bytes().take(4).fold(0u32, |acc, b| {
            let v = BASE32_ALPHABET.iter().position(|&c| c == b).unwrap_or(0) as u32;
            (acc << 5) | v
        });
        bits % count
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OrderId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The number of a provider attempt within an order: 1, 2, ... up to 99.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AttemptNo(u8);

impl AttemptNo {
    pub const FIRST: AttemptNo = AttemptNo(1);
    pub const MAX: u8 = 99;

    pub fn new(n: u8) -> Result<AttemptNo, IdError> {
        if (1..=Self::MAX).contains(&n) {
            Ok(AttemptNo(n))
        } else {
            Err(IdError {
                field: "attempt",
                rule: "1 to 99",
            })
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The next attempt's number, or `None` once 99 attempts have been made.
    pub fn next(self) -> Option<AttemptNo> {
        AttemptNo::new(self.0.checked_add(1)?).ok()
    }
}

impl<'de> Deserialize<'de> for AttemptNo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AttemptNo::new(u8::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The order id as the provider sees it for one attempt: `order_id` + two digits, 22 characters of
/// `[A-Z2-7]` and digits. Stable for the attempt, unique across all attempts (invariant 4), and short and plain
/// enough for every protocol's order-number field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AttemptId(String);

impl AttemptId {
    pub fn new(order: &OrderId, attempt: AttemptNo) -> AttemptId {
        AttemptId(format!("{}{:02}", order.as_str(), attempt.get()))
    }

    /// Splits a provider-facing id back into the order's key and the attempt number.
    pub fn parse(value: &str) -> Result<AttemptId, IdError> {
        let bad = IdError {
            field: "attempt_id",
            rule: "an order id followed by two digits",
        };
        if value.len() != ORDER_ID_LEN + 2 || !value.is_ascii() {
            return Err(bad);
        }
        let (order, n) = value.split_at(ORDER_ID_LEN);
        OrderId::parse(order).map_err(|_| bad.clone())?;
        let n: u8 = n.parse().map_err(|_| bad.clone())?;
        AttemptNo::new(n).map_err(|_| bad)?;
        Ok(AttemptId(value.to_owned()))
    }

    pub fn order_id(&self) -> OrderId {
        OrderId(self.0[..ORDER_ID_LEN].to_owned())
    }

    pub fn attempt(&self) -> AttemptNo {
        // Validated at construction: two ASCII digits in 1..=99.
        AttemptNo(self.0[ORDER_ID_LEN..].parse().unwrap_or(1))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn app(s: &str) -> AppId {
        AppId::parse(s).unwrap()
    }
    fn no(s: &str) -> MerchantOrderNo {
        MerchantOrderNo::parse(s).unwrap()
    }

    #[test]
    fn order_id_is_a_stable_function_of_app_and_merchant_order_no() {
        let a = OrderId::derive(&app("demo"), &no("M1"));
        assert_eq!(a, OrderId::derive(&app("demo"), &no("M1")));
        assert_eq!(a.as_str().len(), 20);
        assert_ne!(a, OrderId::derive(&app("demo2"), &no("M1")));
        assert_ne!(a, OrderId::derive(&app("demo"), &no("M2")));
        assert_eq!(OrderId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn order_id_derivation_has_a_known_answer() {
        // python3: base64.b32encode(hashlib.sha256(b"demo\0M1").digest())[:20]
        let id = OrderId::derive(&app("demo"), &no("M1"));
        assert_eq!(id.as_str(), "7JUWX4CXN3GSIQOKCCTK");
    }

    #[test]
    fn separator_prevents_ambiguous_concatenations() {
        assert_ne!(
            OrderId::derive(&app("ab"), &no("c")),
            OrderId::derive(&app("a"), &no("bc"))
        );
    }

    #[test]
    fn attempt_id_round_trips_to_order_and_attempt() {
        let order = OrderId::derive(&app("demo"), &no("M1"));
        let attempt = AttemptNo::new(7).unwrap();
        let id = AttemptId::new(&order, attempt);
        assert_eq!(id.as_str().len(), 22);
        let parsed = AttemptId::parse(id.as_str()).unwrap();
        assert_eq!(parsed.order_id(), order);
        assert_eq!(parsed.attempt(), attempt);
    }

    #[test]
    fn malformed_ids_are_refused_with_the_field_named() {
        assert_eq!(AppId::parse("").unwrap_err().field, "app_id");
        assert!(AppId::parse("has space").is_err());
        assert!(MerchantOrderNo::parse(&"x".repeat(65)).is_err());
        assert!(MerchantOrderNo::parse("订单1").is_err());
        assert!(ProductCode::parse("Mobile.100").is_err());
        assert!(OrderId::parse("abcdefghijklmnopqrst").is_err());
        assert!(AttemptId::parse("AAAAAAAAAAAAAAAAAAAA00").is_err());
        assert!(AttemptId::parse("AAAAAAAAAAAAAAAAAAAA1x").is_err());
        assert!(AttemptNo::new(0).is_err());
        assert!(AttemptNo::new(100).is_err());
        assert_eq!(AttemptNo::new(99).unwrap().next(), None);
    }

    #[test]
    fn serde_refuses_invalid_ids() {
        assert!(serde_json::from_str::<AppId>("\"ok-app\"").is_ok());
        assert!(serde_json::from_str::<AppId>("\"bad app\"").is_err());
        assert!(serde_json::from_str::<AttemptNo>("0").is_err());
    }

    proptest! {
        #[test]
        fn shards_are_in_range_and_stable(a in "[a-z]{1,8}", n in "[A-Za-z0-9]{1,20}", count in 1u32..64) {
            let id = OrderId::derive(&app(&a), &no(&n));
            let s = id.shard(count);
            prop_assert!(s < count);
            prop_assert_eq!(s, id.shard(count));
        }

        #[test]
        fn attempt_id_parse_never_panics(s in "\\PC{0,30}") {
            let _ = AttemptId::parse(&s);
        }
    }
}

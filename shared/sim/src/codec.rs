//! Wire helpers shared by the simulators: GBK/UTF-8 form bodies, MD5 hex digests, fen-to-yuan strings and the
//! time stamps the protocols put on the wire (Beijing `yyyyMMddHHmmss`, Unix seconds and milliseconds).

use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use time::format_description::BorrowedFormatItem;
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Character set of a form body or of a sign string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8 (everything except the suka-xml family).
    Utf8,
    /// GBK (suka-xml: form values, sign strings and XML responses).
    Gbk,
}

impl Charset {
    /// Encodes `s` in this charset. GBK cannot fail for the characters the protocols use; unmappable characters
    /// become numeric character references, as encoding_rs does for web compatibility.
    pub fn encode(self, s: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => s.as_bytes().to_vec(),
            Charset::Gbk => encoding_rs::GBK.encode(s).0.into_owned(),
        }
    }

    /// Decodes `bytes`, replacing malformed sequences (a bad byte then fails the signature check, as it would
    /// on the real platform). GBK is decoded as GB18030, its superset.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Charset::Gbk => encoding_rs::GB18030.decode(bytes).0.into_owned(),
        }
    }

    /// The charset named by a `Content-Type` header's `charset=` parameter, or `default` when there is none.
    pub fn from_content_type(content_type: Option<&str>, default: Charset) -> Charset {
        let Some(ct) = content_type else {
            return default;
        };
        let lower = ct.to_ascii_lowercase();
        match lower
            .split("charset=")
            .nth(1)
            .map(|c| c.trim().trim_matches('"'))
        {
            Some(c) if c.starts_with("utf-8") || c.starts_with("utf8") => Charset::Utf8,
            Some(c)
                if c.starts_with("gbk") || c.starts_with("gb2312") || c.starts_with("gb18030") =>
            {
                Charset::Gbk
            }
            _ => default,
        }
    }
}

/// Parses an `application/x-www-form-urlencoded` body (or a query string): `+` is a space, `%XX` a byte, and
/// the bytes of each name and value are decoded in `charset`.
pub fn parse_form(body: &[u8], charset: Charset) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let name = it.next().unwrap_or_default();
            let value = it.next().unwrap_or_default();
            (
                decode_component(name, charset),
                decode_component(value, charset),
            )
        })
        .collect()
}

fn decode_component(raw: &[u8], charset: Charset) -> String {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&spaced).collect();
    charset.decode(&bytes)
}

/// Characters left as they are in a form value: the RFC 3986 unreserved set.
const FORM_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Encodes pairs as a form body, each value's bytes taken in `charset` then percent-encoded.
pub fn encode_form(pairs: &[(&str, &str)], charset: Charset) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encode(&charset.encode(k), FORM_SET),
                percent_encode(&charset.encode(v), FORM_SET)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// MD5 of `bytes` as uppercase hex.
pub fn md5_upper(bytes: &[u8]) -> String {
    md5_lower(bytes).to_ascii_uppercase()
}

/// MD5 of `bytes` as lowercase hex.
pub fn md5_lower(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An amount in fen as a yuan decimal string without trailing zeros: 9850 → `98.5`, 10000 → `100`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    let (whole, cents) = (abs / 100, abs % 100);
    match cents {
        0 => format!("{sign}{whole}"),
        c if c % 10 == 0 => format!("{sign}{whole}.{}", c / 10),
        c => format!("{sign}{whole}.{c:02}"),
    }
}

/// Parses a whole number of yuan (`"100"`) into fen. Fractions are refused: wikeyun's `money` is an integer.
pub fn whole_yuan_to_fen(s: &str) -> Option<i64> {
    let n: i64 = s.trim().parse().ok()?;
    n.checked_mul(100)
}

/// Seconds since the Unix epoch.
pub fn unix_secs(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Beijing time: UTC+8 all year (no DST).
const BEIJING: UtcOffset = offset!(+8);
/// `yyyyMMddHHmmss`.
const COMPACT: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day][hour][minute][second]");

/// `yyyyMMddHHmmss` in Beijing time, as the suka-xml and sms-billing protocols write times; past the
/// calendar's year 9999, its last second.
pub fn beijing_timestamp(now: SystemTime) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix_secs(now))
        .ok()
        .and_then(|t| t.checked_to_offset(BEIJING))
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_offset(BEIJING));
    // Cannot fail: the date-time has every component the description names, and it is written to a String.
    t.format(COMPACT).unwrap_or_default()
}

/// Constant-shape comparison of two ASCII signatures, optionally ignoring case.
pub fn sign_eq(expected: &str, given: &str, ignore_case: bool) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    let diff = expected
        .bytes()
        .zip(given.bytes())
        .fold(0u8, |acc, (a, b)| {
            let (a, b) = if ignore_case {
                (a.to_ascii_uppercase(), b.to_ascii_uppercase())
            } else {
                (a, b)
            };
            acc | (a ^ b)
        });
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn gbk_sign_of_the_electricity_example_matches_providers_md() {
        let s = r#"userid=10004927&productid=8801&num=1&areaid=13800138000&serverid=&account={"product_type":"3","userid":"123123123","username":"","type":"1","area":"江苏","city":"南京"}&spordertime=20210224134552&sporderid=DF2021022400001&key=abcdef0123456789ABCDEF0123456789"#;
        assert_eq!(
            md5_upper(&Charset::Gbk.encode(s)),
            "624D03A3AE309ED6B3D5B5842E1322FB"
        );
        assert_eq!(
            md5_upper(&Charset::Utf8.encode(s)),
            "6B29390D55D908F4CC7B98B7AC14E2AA"
        );
    }

    #[test]
    fn gbk_form_values_round_trip_through_percent_encoding() {
        let body = encode_form(&[("area", "江苏"), ("x", "a b&c")], Charset::Gbk);
        assert_eq!(body, "area=%BD%AD%CB%D5&x=a%20b%26c");
        let parsed = parse_form(body.as_bytes(), Charset::Gbk);
        assert_eq!(
            parsed,
            vec![("area".into(), "江苏".into()), ("x".into(), "a b&c".into())]
        );
        assert_eq!(
            parse_form(b"a=1+2", Charset::Utf8),
            vec![("a".into(), "1 2".into())]
        );
    }

    #[test]
    fn yuan_strings_have_no_trailing_zeros() {
        assert_eq!(yuan(9850), "98.5");
        assert_eq!(yuan(10000), "100");
        assert_eq!(yuan(9851), "98.51");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(whole_yuan_to_fen("100"), Some(10000));
        assert_eq!(whole_yuan_to_fen("1.5"), None);
    }

    #[test]
    fn beijing_timestamp_is_utc_plus_eight() {
        // 2021-02-24 05:45:52 UTC is 13:45:52 in Beijing.
        let t = UNIX_EPOCH + Duration::from_secs(1_614_145_552);
        assert_eq!(beijing_timestamp(t), "20210224134552");
    }

    #[test]
    fn charset_is_read_from_the_content_type() {
        let gbk = Some("application/x-www-form-urlencoded;charset=gbk");
        assert_eq!(Charset::from_content_type(gbk, Charset::Utf8), Charset::Gbk);
        let utf8 = Some("application/x-www-form-urlencoded; charset=UTF-8");
        assert_eq!(
            Charset::from_content_type(utf8, Charset::Gbk),
            Charset::Utf8
        );
        assert_eq!(Charset::from_content_type(None, Charset::Gbk), Charset::Gbk);
    }

    proptest::proptest! {
        #[test]
        fn any_form_value_round_trips_in_gbk_and_utf8(k in "[a-z_]{1,8}", v in "[ -~江苏南京彩生活中国移动充值]{0,24}") {
            for cs in [Charset::Gbk, Charset::Utf8] {
                let body = encode_form(&[(&k, &v)], cs);
                proptest::prop_assert_eq!(parse_form(body.as_bytes(), cs), vec![(k.clone(), v.clone())]);
            }
        }

        #[test]
        fn yuan_strings_read_back_as_the_same_fen(fen in -10_000_000_i64..10_000_000) {
            let s = yuan(fen);
            let (neg, digits) = s.strip_prefix('-').map_or((false, s.as_str()), |d| (true, d));
            let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
            proptest::prop_assert!(frac.len() <= 2 && !frac.ends_with('0'));
            let back = whole.parse::<i64>().unwrap() * 100 + format!("{frac:0<2}").parse::<i64>().unwrap();
            proptest::prop_assert_eq!(if neg { -back } else { back }, fen);
        }
    }

    #[test]
    fn sign_comparison_respects_the_case_flag() {
        assert!(sign_eq("ABC", "abc", true));
        assert!(!sign_eq("ABC", "abc", false));
        assert!(!sign_eq("ABC", "ABCD", true));
    }
}

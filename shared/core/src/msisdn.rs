//! Mainland China mobile numbers (MSISDN) and the carrier derived from the number segment (号段).
//!
//! Routes can be per carrier, so a number whose segment we do not know is refused rather than guessed.
//! Numbers ported between carriers (携号转网) keep their segment; a provider that sees a ported number refuses
//! it definitely (nothing charged), and routing fails over.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The operator a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Carrier {
    /// 中国移动
    Mobile,
    /// 中国联通
    Unicom,
    /// 中国电信
    Telecom,
    /// 中国广电
    Broadnet,
}

impl Carrier {
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Mobile => "mobile",
            Carrier::Unicom => "unicom",
            Carrier::Telecom => "telecom",
            Carrier::Broadnet => "broadnet",
        }
    }
}

/// Why a number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    #[error("account: a mobile number has 11 digits starting with 1")]
    Format,
    #[error("account: number segment {0} is not assigned to a carrier")]
    UnknownSegment(String),
}

/// An 11-digit mobile number with a known segment. Its `Debug` masks the middle digits, so it can be logged.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Msisdn(String);

impl Msisdn {
    /// Accepts `13800138000`, also written `+8613800138000` or `86-138-0013-8000`.
    pub fn parse(text: &str) -> Result<Msisdn, MsisdnError> {
        let digits: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        let digits = digits
            .strip_prefix("+86")
            .or_else(|| {
                (digits.len() == 13)
                    .then(|| digits.strip_prefix("86"))
                    .flatten()
            })
            .unwrap_or(&digits);
        if digits.len() != 11
            || !digits.starts_with('1')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(MsisdnError::Format);
        }
        if carrier_of(digits).is_none() {
            return Err(MsisdnError::UnknownSegment(digits[..3].to_owned()));
        }
        Ok(Msisdn(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn carrier(&self) -> Carrier {
        // Checked in `parse`; Mobile is never reached for a constructed value.
        carrier_of(&self.0).unwrap_or(Carrier::Mobile)
    }

    /// `138****8000`: what logs and audit records show.
    pub fn masked(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.masked())
    }
}

impl<'de> Deserialize<'de> for Msisdn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Msisdn::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The segment table (MIIT allocations as of 2025). Four-digit sub-allocations are checked before three-digit ones.
fn carrier_of(number: &str) -> Option<Carrier> {
    use Carrier::*;
    let four = &number[..4];
    let three = &number[..3];
    let by_four = match four {
        // 1349 was China Satcom's, now 电信 satellite; the rest of 134 is 移动.
        "1349" => Some(Telecom),
        // 170 is split between virtual operators of the three carriers.
        "1700" | "1701" | "1702" => Some(Telecom),
        "1703" | "1705" | "1706" => Some(Mobile),
        "1704" | "1707" | "1708" | "1709" => Some(Unicom),
        _ => None,
    };
    if by_four.is_some() {
        return by_four;
    }
    match three {
        "134" | "135" | "136" | "137" | "138" | "139" | "147" | "148" | "150" | "151" | "152"
        | "157" | "158" | "159" | "165" | "172" | "178" | "182" | "183" | "184" | "187" | "188"
        | "195" | "197" | "198" => Some(Mobile),
        "130" | "131" | "132" | "145" | "146" | "155" | "156" | "166" | "167" | "171" | "175"
        | "176" | "185" | "186" | "196" => Some(Unicom),
        "133" | "149" | "153" | "162" | "173" | "174" | "177" | "180" | "181" | "189" | "190"
        | "191" | "193" | "199" => Some(Telecom),
        "192" => Some(Broadnet),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn carrier_is_taken_from_the_segment() {
        assert_eq!(
            Msisdn::parse("13800138000").unwrap().carrier(),
            Carrier::Mobile
        );
        assert_eq!(
            Msisdn::parse("13590101510").unwrap().carrier(),
            Carrier::Mobile
        );
        assert_eq!(
            Msisdn::parse("18600000000").unwrap().carrier(),
            Carrier::Unicom
        );
        assert_eq!(
            Msisdn::parse("18900000000").unwrap().carrier(),
            Carrier::Telecom
        );
        assert_eq!(
            Msisdn::parse("19200000000").unwrap().carrier(),
            Carrier::Broadnet
        );
        assert_eq!(
            Msisdn::parse("13490000000").unwrap().carrier(),
            Carrier::Telecom
        );
        assert_eq!(
            Msisdn::parse("17050000000").unwrap().carrier(),
            Carrier::Mobile
        );
        assert_eq!(
            Msisdn::parse("17090000000").unwrap().carrier(),
            Carrier::Unicom
        );
    }

    #[test]
    fn country_code_and_separators_are_accepted() {
        assert_eq!(
            Msisdn::parse("+8613800138000").unwrap().as_str(),
            "13800138000"
        );
        assert_eq!(
            Msisdn::parse("8613800138000").unwrap().as_str(),
            "13800138000"
        );
        assert_eq!(
            Msisdn::parse(" 138-0013-8000 ").unwrap().as_str(),
            "13800138000"
        );
    }

    #[test]
    fn bad_numbers_are_refused_with_a_reason() {
        assert_eq!(Msisdn::parse("1380013800"), Err(MsisdnError::Format));
        assert_eq!(Msisdn::parse("23800138000"), Err(MsisdnError::Format));
        assert_eq!(Msisdn::parse("1380013800a"), Err(MsisdnError::Format));
        assert_eq!(
            Msisdn::parse("12000000000"),
            Err(MsisdnError::UnknownSegment("120".into()))
        );
        assert_eq!(
            Msisdn::parse("14000000000"),
            Err(MsisdnError::UnknownSegment("140".into()))
        );
    }

    #[test]
    fn debug_and_masked_hide_the_middle_digits() {
        let m = Msisdn::parse("13800138000").unwrap();
        assert_eq!(m.masked(), "138****8000");
        assert_eq!(format!("{m:?}"), "Msisdn(138****8000)");
        assert!(!format!("{m:?}").contains("0013"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = Msisdn::parse(&s);
        }
    }
}

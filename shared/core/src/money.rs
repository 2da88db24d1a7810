//! Money as integer fen (分). Provider decimals ("98.5" yuan) are parsed exactly, never through `f64`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of money in fen (1/100 yuan). Negative values exist (a provider's overdrawn balance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fen(i64);

/// Why a decimal amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a decimal number of yuan")]
    NotDecimal(String),
    #[error("amount {0:?} has a non-zero digit below one fen")]
    SubFen(String),
    #[error("amount {0:?} is out of range")]
    OutOfRange(String),
}

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub const fn new(fen: i64) -> Self {
        Fen(fen)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// Parses a yuan amount as providers write it: `"100"`, `"98.5"`, `"98.50"`, `"-189"`, `"0.01"`.
    /// Digits below one fen must be zeros (`"1.000"` is fine, `"1.005"` is refused): we never round money.
    pub fn parse_yuan(text: &str) -> Result<Fen, MoneyError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(MoneyError::Empty);
        }
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty())
            || !all_digits(int_part)
            || !all_digits(frac_part)
            || (digits.contains('.') && frac_part.is_empty() && int_part.is_empty())
        {
            return Err(MoneyError::NotDecimal(text.to_owned()));
        }
        let (fen_digits, below) = frac_part.split_at(frac_part.len().min(2));
        if below.bytes().any(|b| b != b'0') {
            return Err(MoneyError::SubFen(text.to_owned()));
        }
        let out_of_range = || MoneyError::OutOfRange(text.to_owned());
        let yuan: i64 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| out_of_range())?
        };
        let mut fen: i64 = 0;
        for (i, b) in fen_digits.bytes().enumerate() {
            let digit = i64::from(b - b'0');
            fen += if i == 0 { digit * 10 } else { digit };
        }
        let total = yuan
            .checked_mul(100)
            .and_then(|v| v.checked_add(fen))
            .ok_or_else(out_of_range)?;
        Ok(Fen(if negative { -total } else { total }))
    }

    /// Parses an integer count of fen (`"9850"`), as some providers and our own API write it.
    pub fn parse_fen(text: &str) -> Result<Fen, MoneyError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(MoneyError::Empty);
        }
        t.parse::<i64>()
            .map(Fen)
            .map_err(|_| MoneyError::NotDecimal(text.to_owned()))
    }

    /// Whole yuan, if the amount is a whole number of yuan (face values like 100 for `money=100`).
    pub fn whole_yuan(self) -> Option<i64> {
        (self.0 % 100 == 0).then_some(self.0 / 100)
    }

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }
}

/// Renders as yuan with two decimals: `98.50`, `-1.89`.
impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn provider_decimals_are_parsed_exactly() {
        assert_eq!(Fen::parse_yuan("98.5"), Ok(Fen(9850)));
        assert_eq!(Fen::parse_yuan("98.50"), Ok(Fen(9850)));
        assert_eq!(Fen::parse_yuan("100"), Ok(Fen(10000)));
        assert_eq!(Fen::parse_yuan("0.01"), Ok(Fen(1)));
        assert_eq!(Fen::parse_yuan(".5"), Ok(Fen(50)));
        assert_eq!(Fen::parse_yuan("-189"), Ok(Fen(-18900)));
        assert_eq!(Fen::parse_yuan("1.000"), Ok(Fen(100)));
        // 0.1 + 0.2 style float traps do not exist here.
        assert_eq!(Fen::parse_yuan("0.29"), Ok(Fen(29)));
    }

    #[test]
    fn amounts_that_are_not_money_are_refused() {
        assert_eq!(Fen::parse_yuan(""), Err(MoneyError::Empty));
        assert!(matches!(
            Fen::parse_yuan("1.005"),
            Err(MoneyError::SubFen(_))
        ));
        assert!(matches!(
            Fen::parse_yuan("1e3"),
            Err(MoneyError::NotDecimal(_))
        ));
        assert!(matches!(
            Fen::parse_yuan("."),
            Err(MoneyError::NotDecimal(_))
        ));
        assert!(matches!(
            Fen::parse_yuan("1,000"),
            Err(MoneyError::NotDecimal(_))
        ));
        assert!(matches!(
            Fen::parse_yuan("NaN"),
            Err(MoneyError::NotDecimal(_))
        ));
        assert!(matches!(
            Fen::parse_yuan("99999999999999999999"),
            Err(MoneyError::OutOfRange(_))
        ));
    }

    #[test]
    fn display_is_yuan_with_two_decimals() {
        assert_eq!(Fen(9850).to_string(), "98.50");
        assert_eq!(Fen(-189).to_string(), "-1.89");
        assert_eq!(Fen(5).to_string(), "0.05");
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(fen in -10_000_000_000i64..10_000_000_000i64) {
            prop_assert_eq!(Fen::parse_yuan(&Fen(fen).to_string()), Ok(Fen(fen)));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,24}") {
            let _ = Fen::parse_yuan(&s);
        }
    }
}

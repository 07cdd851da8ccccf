//! Money as integer fen. Floats never touch an amount: the only conversions are the exact
//! decimal-string ones at the Alipay edge (`"19.99"` ⇄ `Fen(1999)`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Errors from building or converting an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// A negative number of fen was given.
    #[error("amount must not be negative (got {0} fen)")]
    Negative(i64),
    /// Arithmetic left the `i64` range.
    #[error("amount overflows")]
    Overflow,
    /// Subtraction would go below zero.
    #[error("amount would become negative")]
    Underflow,
    /// A yuan string is not of the form `digits[.d[d]]`.
    #[error("not a yuan amount with at most two decimals: {0:?}")]
    InvalidYuan(String),
}

/// A non-negative amount in fen (1/100 yuan), the unit WeChat's `total_fee` uses and the unit
/// paygate stores everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Fen(i64);

impl Fen {
    /// Zero fen.
    pub const ZERO: Fen = Fen(0);
    /// The largest amount one order may carry: Alipay's ceiling of 100,000,000.00 yuan.
    pub const MAX_ORDER: Fen = Fen(10_000_000_000);

    /// Builds an amount from a count that cannot be negative (for limits fixed at compile time).
    pub const fn from_u32(fen: u32) -> Fen {
        Fen(fen as i64)
    }

    /// Builds an amount, refusing negatives.
    pub const fn new(fen: i64) -> Result<Fen, MoneyError> {
        if fen < 0 {
            Err(MoneyError::Negative(fen))
        } else {
            Ok(Fen(fen))
        }
    }

    /// The amount as a plain count of fen.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// Adds two amounts, failing on overflow.
    pub fn checked_add(self, other: Fen) -> Result<Fen, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Fen)
            .ok_or(MoneyError::Overflow)
    }

    /// Subtracts `other`, failing if the result would be negative.
    pub fn checked_sub(self, other: Fen) -> Result<Fen, MoneyError> {
        if other.0 > self.0 {
            return Err(MoneyError::Underflow);
        }
        Ok(Fen(self.0 - other.0))
    }

    /// Writes the amount as Alipay's yuan string with exactly two decimals (`1 → "0.01"`).
    pub fn to_yuan_string(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }

    /// Parses Alipay's yuan string exactly: ASCII digits, optionally a dot and one or two
    /// digits. Signs, exponents, spaces, a bare trailing dot and a third decimal are refused,
    /// because any of them means the peer and we may disagree about the amount.
    pub fn parse_yuan(text: &str) -> Result<Fen, MoneyError> {
        let invalid = || MoneyError::InvalidYuan(text.to_owned());
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let frac_fen = match frac {
            None => 0,
            Some(f) if f.is_empty() || f.len() > 2 || !f.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(invalid());
            }
            Some(f) => {
                let digits: i64 = f.parse().map_err(|_| invalid())?;
                if f.len() == 1 { digits * 10 } else { digits }
            }
        };
        let whole_yuan: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        whole_yuan
            .checked_mul(100)
            .and_then(|fen| fen.checked_add(frac_fen))
            .map(Fen)
            .ok_or(MoneyError::Overflow)
    }
}

/// A yuan amount a provider reported, read by its decimal value: `"19.9"`, `"19.90"` and
/// `"19.900"` are the same 1990 fen, and a value with a non-zero digit beyond the fen
/// (`"19.901"`) equals no amount paygate holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedYuan {
    /// A whole number of fen, however many trailing zeros it was written with.
    Fen(Fen),
    /// A value between two fen amounts, so it matches no order and no refund.
    BetweenFen,
}

impl ReportedYuan {
    /// The amount in fen, or `None` for a value between two fen amounts (which then compares
    /// unequal to every `Some(fen)`, as a mismatch should).
    pub const fn fen(self) -> Option<Fen> {
        match self {
            ReportedYuan::Fen(fen) => Some(fen),
            ReportedYuan::BetweenFen => None,
        }
    }
}

impl Fen {
    /// Parses a yuan amount a provider reported (an Alipay notify or query answer) by value:
    /// the format of [`Fen::parse_yuan`] but with any number of decimals, which beyond the
    /// second only matter when they are not all zeros. Malformed text is still an error; our
    /// own requests and the merchant's input keep the strict two-decimal form.
    pub fn parse_reported_yuan(text: &str) -> Result<ReportedYuan, MoneyError> {
        let invalid = || MoneyError::InvalidYuan(text.to_owned());
        let beyond_fen = match text.split_once('.') {
            Some((_, fraction)) if fraction.len() > 2 => fraction.get(2..).ok_or_else(invalid)?,
            _ => "",
        };
        if !beyond_fen.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let fen_part = text
            .get(..text.len() - beyond_fen.len())
            .ok_or_else(invalid)?;
        let fen = Fen::parse_yuan(fen_part).map_err(|error| match error {
            MoneyError::InvalidYuan(_) => invalid(),
            other => other,
        })?;
        Ok(if beyond_fen.bytes().all(|b| b == b'0') {
            ReportedYuan::Fen(fen)
        } else {
            ReportedYuan::BetweenFen
        })
    }
}

impl TryFrom<i64> for Fen {
    type Error = MoneyError;
    fn try_from(fen: i64) -> Result<Self, Self::Error> {
        Fen::new(fen)
    }
}

impl<'de> Deserialize<'de> for Fen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fen = i64::deserialize(deserializer)?;
        Fen::new(fen).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} fen", self.0)
    }
}

/// The currency of an order. Only CNY is accepted by both providers today; the type exists so
/// that another currency is a compile-time change, not a string comparison scattered around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Currency {
    /// Chinese yuan renminbi, counted in fen.
    #[default]
    #[serde(rename = "CNY")]
    Cny,
}

impl Currency {
    /// The ISO 4217 code, as both providers write it (`fee_type=CNY`).
    pub const fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
        }
    }

    /// Parses an ISO 4217 code; only currencies paygate supports are accepted.
    pub fn parse(code: &str) -> Result<Currency, crate::DomainError> {
        match code {
            "CNY" => Ok(Currency::Cny),
            other => Err(crate::DomainError::UnsupportedCurrency(other.to_owned())),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_the_brief_examples_exactly() {
        let cases = [
            (0, "0.00"),
            (1, "0.01"),
            (7, "0.07"),
            (10, "0.10"),
            (100, "1.00"),
            (1999, "19.99"),
            (100_000_000, "1000000.00"),
            (10_000_000_000, "100000000.00"),
        ];
        for (fen, yuan) in cases {
            assert_eq!(Fen::new(fen).unwrap().to_yuan_string(), yuan, "{fen} fen");
            assert_eq!(Fen::parse_yuan(yuan).unwrap().get(), fen, "{yuan}");
        }
    }

    #[test]
    fn parses_short_forms_alipay_may_send() {
        assert_eq!(Fen::parse_yuan("1").unwrap().get(), 100);
        assert_eq!(Fen::parse_yuan("1.5").unwrap().get(), 150);
        assert_eq!(Fen::parse_yuan("0.1").unwrap().get(), 10);
        assert_eq!(Fen::parse_yuan("007.01").unwrap().get(), 701);
    }

    #[test]
    fn rejects_ambiguous_or_malformed_yuan() {
        for bad in [
            "0.001", "-1", "+1", "1e3", " 1", "1 ", "", "1.", ".5", "1.2.3", "1,00", "0x10", "１",
            "NaN", "inf", "1.-1",
        ] {
            assert!(
                matches!(Fen::parse_yuan(bad), Err(MoneyError::InvalidYuan(_))),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn reported_amounts_are_equal_by_value_however_many_zeros_they_carry() {
        for text in ["19.9", "19.90", "19.900", "19.9000000", "019.90"] {
            assert_eq!(
                Fen::parse_reported_yuan(text),
                Ok(ReportedYuan::Fen(Fen(1990))),
                "{text}"
            );
        }
        assert_eq!(
            Fen::parse_reported_yuan("20"),
            Ok(ReportedYuan::Fen(Fen(2000)))
        );
        assert_eq!(
            Fen::parse_reported_yuan("0.010"),
            Ok(ReportedYuan::Fen(Fen(1)))
        );
        for between in ["19.901", "19.9001", "0.001", "19.90000001"] {
            assert_eq!(
                Fen::parse_reported_yuan(between),
                Ok(ReportedYuan::BetweenFen),
                "{between}"
            );
            assert_eq!(Fen::parse_reported_yuan(between).unwrap().fen(), None);
        }
    }

    #[test]
    fn reported_amounts_still_refuse_malformed_text_and_our_own_parsing_stays_strict() {
        for bad in [
            "",
            ".",
            "19.",
            ".90",
            "-19.90",
            "+19.90",
            "19.90x",
            "19.9x0",
            "19.900 ",
            "1e3",
            "19,90",
            "19.90.0",
            "１９.９０",
            "19.9０0",
        ] {
            assert!(
                matches!(
                    Fen::parse_reported_yuan(bad),
                    Err(MoneyError::InvalidYuan(_))
                ),
                "{bad:?}"
            );
        }
        assert!(Fen::parse_reported_yuan("92233720368547758.080").is_err());
        // What we send and what the merchant gives stays two decimals at most.
        assert!(Fen::parse_yuan("19.900").is_err());
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(
            Fen::parse_yuan("92233720368547758.08"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Fen::parse_yuan("99999999999999999999"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Fen(i64::MAX).checked_add(Fen(1)), Err(MoneyError::Overflow));
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert_eq!(Fen::new(-1), Err(MoneyError::Negative(-1)));
        assert!(serde_json::from_str::<Fen>("-5").is_err());
        assert_eq!(serde_json::from_str::<Fen>("5").unwrap(), Fen(5));
    }

    #[test]
    fn subtraction_never_goes_below_zero() {
        assert_eq!(Fen(5).checked_sub(Fen(6)), Err(MoneyError::Underflow));
        assert_eq!(Fen(5).checked_sub(Fen(5)), Ok(Fen::ZERO));
    }

    #[test]
    fn currency_codes_round_trip() {
        assert_eq!(Currency::parse("CNY").unwrap(), Currency::Cny);
        assert!(Currency::parse("USD").is_err());
        assert_eq!(serde_json::to_string(&Currency::Cny).unwrap(), "\"CNY\"");
    }

    proptest! {
        #[test]
        fn parse_inverts_format(fen in 0i64..=i64::MAX) {
            let fen = Fen::new(fen).unwrap();
            prop_assert_eq!(Fen::parse_yuan(&fen.to_yuan_string()).unwrap(), fen);
        }

        #[test]
        fn a_reported_amount_with_trailing_zeros_is_the_same_fen(
            fen in 0i64..=i64::MAX / 1000,
            zeros in 0usize..8,
        ) {
            let text = format!("{}{}", Fen(fen).to_yuan_string(), "0".repeat(zeros));
            prop_assert_eq!(Fen::parse_reported_yuan(&text), Ok(ReportedYuan::Fen(Fen(fen))));
            let between = format!("{}{}1", Fen(fen).to_yuan_string(), "0".repeat(zeros));
            prop_assert_eq!(Fen::parse_reported_yuan(&between), Ok(ReportedYuan::BetweenFen));
        }

        #[test]
        fn parse_never_panics(text in ".{0,24}") {
            let _ = Fen::parse_reported_yuan(&text);
            let _ = Fen::parse_yuan(&text);
        }
    }
}

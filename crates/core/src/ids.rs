//! Identifiers, each parsed once at the edge so that the rest of the code can trust them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Declares a `String` newtype whose only constructor is `parse`.
macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates the text; this is the only way to build one.
            pub fn parse(text: impl Into<String>) -> Result<Self, DomainError> {
                let text = text.into();
                let check: fn(&str) -> bool = $check;
                if check(&text) {
                    Ok(Self(text))
                } else {
                    Err(DomainError::InvalidIdentifier { kind: $what, value: text })
                }
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_string!(
    /// The merchant's order number, sent to the provider as `out_trade_no`. 1–64 letters,
    /// digits or `_-|*`: the union of what providers take. Each provider narrows it with its own
    /// rule (its `Capabilities::out_trade_no`: WeChat 6–32 of `[0-9A-Za-z_-|*]`, Alipay up to 64
    /// of letters, digits and `_`), checked when an order is created.
    OutTradeNo,
    "out_trade_no",
    |s| (1..=64).contains(&s.len()) && s.bytes().all(|b| is_word_char(b) || b"-|*".contains(&b))
);

checked_string!(
    /// The merchant's refund number (`out_refund_no` at WeChat, `out_request_no` at Alipay), the
    /// idempotency key of one refund. 6–64 letters, digits or `_`.
    OutRefundNo,
    "out_refund_no",
    |s| (6..=64).contains(&s.len()) && s.bytes().all(is_word_char)
);

checked_string!(
    /// The name of one configured provider app (`shop-mini`, `main_alipay`): 1–32 lowercase
    /// letters, digits, `-` or `_`, safe in URLs such as `/notify/wechat/{app}`.
    AppName,
    "app name",
    |s| {
        (1..=32).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    }
);

/// Declares a prefixed, time-ordered id (`ord_01J…`). ULIDs sort by creation time, which keeps
/// keyset pagination stable and index inserts append-only.
macro_rules! prefixed_ulid {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        checked_string!(
            $(#[$meta])*
            $name,
            $prefix,
            |s| s
                .strip_prefix(concat!($prefix, "_"))
                .is_some_and(|rest| ulid::Ulid::from_string(rest).is_ok() && rest.len() == 26)
        );

        impl $name {
            /// A fresh id whose order follows creation time.
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "_{}"), ulid::Ulid::new()))
            }
        }
    };
}

prefixed_ulid!(
    /// paygate's own id of an order (`ord_` + ULID), what merchants use in `/v1/orders/{id}`.
    OrderId,
    "ord"
);
prefixed_ulid!(
    /// paygate's own id of a refund (`rfd_` + ULID).
    RefundId,
    "rfd"
);

impl OutTradeNo {
    /// A fresh order number for merchants that do not bring their own: `pg` + ULID (28 chars).
    pub fn generate() -> Self {
        Self(format!("pg{}", ulid::Ulid::new()))
    }
}

impl OutRefundNo {
    /// A fresh refund number for merchants that do not bring their own: `rf` + ULID.
    pub fn generate() -> Self {
        Self(format!("rf{}", ulid::Ulid::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_trade_no_accepts_what_any_provider_accepts() {
        let long = "x".repeat(64);
        for ok in [
            "abc123",
            "A_b_C_1",
            &long,
            "202401020304050001",
            "abc-123",
            "a|b*c12",
            "a",
        ] {
            assert!(OutTradeNo::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn out_trade_no_rejects_what_every_provider_refuses() {
        for bad in [
            "",
            &"x".repeat(65),
            "abc 123",
            "订单123456",
            "abc@123",
            "abc/123",
            "abc\n123",
        ] {
            assert!(OutTradeNo::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_numbers_are_valid_and_distinct() {
        let a = OutTradeNo::generate();
        let b = OutTradeNo::generate();
        assert_ne!(a, b);
        assert!(OutTradeNo::parse(a.as_str()).is_ok());
        let id = OrderId::generate();
        assert!(id.as_str().starts_with("ord_"));
        assert_eq!(OrderId::parse(id.as_str()).unwrap(), id);
        assert!(RefundId::parse(RefundId::generate().as_str()).is_ok());
        let refund_no = OutRefundNo::generate();
        assert_eq!(OutRefundNo::parse(refund_no.as_str()).unwrap(), refund_no);
    }

    #[test]
    fn ids_with_the_wrong_prefix_or_body_are_rejected() {
        let refund = RefundId::generate();
        assert!(OrderId::parse(refund.as_str()).is_err());
        assert!(OrderId::parse("ord_notaulid").is_err());
        assert!(OrderId::parse("ord_").is_err());
    }

    #[test]
    fn app_names_are_url_safe() {
        assert!(AppName::parse("shop-mini_2").is_ok());
        for bad in ["", "Shop", "a/b", "a b", &"a".repeat(33)] {
            assert!(AppName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<OutTradeNo>("\"bad no\"").is_err());
        assert!(serde_json::from_str::<OutTradeNo>("\"good_123\"").is_ok());
    }
}

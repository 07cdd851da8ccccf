//! Merchant-supplied text and buyer identifiers, parsed once at the edge. Every one of them is
//! forwarded to a provider (inside WeChat's XML, Alipay's form) and stored, so a value that
//! XML 1.0 cannot carry or PostgreSQL cannot store (NUL) never gets past `parse`.

use std::fmt;

use serde::Serialize;

/// Why a text field was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty (or only white space) where a value is required.
    #[error("{field} must not be empty")]
    Empty {
        /// The request field.
        field: &'static str,
    },
    /// Longer than the providers accept.
    #[error("{field} must be at most {max} bytes")]
    TooLong {
        /// The request field.
        field: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// Holds a character XML 1.0 forbids (NUL, other C0 controls but tab/LF/CR, U+FFFE/U+FFFF).
    #[error("{field} contains the character U+{code:04X}, which cannot be sent to the provider")]
    ForbiddenCharacter {
        /// The request field.
        field: &'static str,
        /// The offending code point.
        code: u32,
    },
    /// Not of the shape the provider defines.
    #[error("{field} must be {expected}")]
    Format {
        /// The request field.
        field: &'static str,
        /// The expected shape, for people.
        expected: &'static str,
    },
}

impl TextError {
    /// The request field at fault (`subject`, `openid`, …).
    pub fn field(&self) -> &'static str {
        match self {
            TextError::Empty { field }
            | TextError::TooLong { field, .. }
            | TextError::ForbiddenCharacter { field, .. }
            | TextError::Format { field, .. } => field,
        }
    }
}

/// Whether XML 1.0 (§2.2 `Char`) can carry `c`; Rust's `char` already excludes surrogates.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Refuses the first character XML 1.0 cannot carry.
fn check_xml_text(field: &'static str, text: &str) -> Result<(), TextError> {
    match text.chars().find(|c| !xml_char(*c)) {
        Some(c) => Err(TextError::ForbiddenCharacter {
            field,
            code: u32::from(c),
        }),
        None => Ok(()),
    }
}

/// Refuses `text` unless `shape_ok`, saying what the shape should be.
fn check_shape(
    field: &'static str,
    shape_ok: bool,
    expected: &'static str,
) -> Result<(), TextError> {
    if shape_ok {
        Ok(())
    } else {
        Err(TextError::Format { field, expected })
    }
}

/// Refuses empty text and text XML cannot carry.
fn check_present(field: &'static str, text: &str) -> Result<(), TextError> {
    check_xml_text(field, text)?;
    if text.is_empty() {
        Err(TextError::Empty { field })
    } else {
        Ok(())
    }
}

fn check_length(field: &'static str, text: &str, max: usize) -> Result<(), TextError> {
    if text.len() > max {
        Err(TextError::TooLong { field, max })
    } else {
        Ok(())
    }
}

/// Declares a `String` newtype whose only constructor is `parse`, with the field name errors
/// carry.
macro_rules! parsed_text {
    ($(#[$meta:meta])* $name:ident, $field:literal, $parse:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The request field this value comes from.
            pub const FIELD: &'static str = $field;

            /// Parses and checks the text; this is the only way to build one.
            pub fn parse(text: impl Into<String>) -> Result<Self, TextError> {
                let text = text.into();
                let check: fn(&'static str, &str) -> Result<(), TextError> = $parse;
                check($field, &text)?;
                Ok(Self(text))
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value as an owned `String`.
            pub fn into_string(self) -> String {
                self.0
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
    };
}

/// WeChat's `body` is String(128) and Alipay's `subject` 256 characters; 127 bytes fits both.
pub const MAX_SUBJECT_BYTES: usize = 127;
/// The longest description paygate forwards (WeChat `detail`, Alipay `body`).
pub const MAX_DESCRIPTION_BYTES: usize = 1000;
/// WeChat's `openid` is String(128).
pub const MAX_OPENID_BYTES: usize = 128;
/// Alipay's refund `refund_reason` is String(256).
pub const MAX_REFUND_REASON_BYTES: usize = 256;
/// Alipay's `return_url` is String(256).
pub const MAX_RETURN_URL_BYTES: usize = 256;

parsed_text!(
    /// The item name the buyer sees (WeChat `body`, Alipay `subject`): 1–127 bytes, not blank.
    Subject,
    "subject",
    |field, text| {
        check_xml_text(field, text)?;
        if text.trim().is_empty() {
            return Err(TextError::Empty { field });
        }
        check_length(field, text, MAX_SUBJECT_BYTES)
    }
);

parsed_text!(
    /// The order's longer description: at most 1000 bytes.
    Description,
    "description",
    |field, text| {
        check_xml_text(field, text)?;
        check_length(field, text, MAX_DESCRIPTION_BYTES)
    }
);

parsed_text!(
    /// A WeChat buyer's `openid` for the paying appid: 1–128 letters, digits, `_` or `-`.
    OpenId,
    "openid",
    |field, text| {
        check_present(field, text)?;
        check_length(field, text, MAX_OPENID_BYTES)?;
        let shape_ok = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        check_shape(field, shape_ok, "letters, digits, `_` or `-`")
    }
);

parsed_text!(
    /// An Alipay buyer's user id (`buyer_id`): `2088` and 12 more digits.
    BuyerId,
    "buyer_id",
    |field, text| {
        check_present(field, text)?;
        let shape_ok =
            text.len() == 16 && text.starts_with("2088") && text.bytes().all(|b| b.is_ascii_digit());
        check_shape(field, shape_ok, "16 digits starting with 2088")
    }
);

parsed_text!(
    /// Why a refund is made, shown to the buyer: at most 256 bytes.
    RefundReason,
    "reason",
    |field, text| {
        check_xml_text(field, text)?;
        check_length(field, text, MAX_REFUND_REASON_BYTES)
    }
);

parsed_text!(
    /// Where the buyer's browser returns after paying (Alipay `return_url`): an absolute
    /// `http`/`https` URL with a host, at most 256 bytes.
    ReturnUrl,
    "return_url",
    |field, text| {
        // Control characters first: a URL parser would silently drop tabs and newlines.
        check_xml_text(field, text)?;
        check_length(field, text, MAX_RETURN_URL_BYTES)?;
        let expected = "an absolute http:// or https:// URL";
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or(TextError::Format { field, expected })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let shape_ok = !host.is_empty()
            && !host.contains('@')
            && text.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii());
        check_shape(field, shape_ok, expected)
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_xml_forbids_are_refused_with_the_field_named() {
        for bad in [
            "tea\u{0}",
            "\u{1}tea",
            "te\u{1b}a",
            "tea\u{FFFE}",
            "\u{FFFF}",
        ] {
            let err = Subject::parse(bad).unwrap_err();
            assert_eq!(err.field(), "subject", "{bad:?}");
            assert!(err.to_string().starts_with("subject "), "{err}");
        }
        let err = Description::parse("a\u{0}b").unwrap_err();
        assert_eq!(
            err,
            TextError::ForbiddenCharacter {
                field: "description",
                code: 0
            }
        );
        assert_eq!(RefundReason::parse("\u{7}").unwrap_err().field(), "reason");
        assert_eq!(OpenId::parse("o\u{0}x").unwrap_err().field(), "openid");
    }

    #[test]
    fn text_xml_can_carry_is_kept() {
        for ok in [
            "Oolong tea",
            "乌龙茶 🍵",
            "line\nbreak\tand\rreturn",
            "\u{E000}",
        ] {
            assert_eq!(Subject::parse(ok).unwrap().as_str(), ok);
        }
        assert!(Subject::parse("  ").is_err());
        assert!(Subject::parse("x".repeat(MAX_SUBJECT_BYTES)).is_ok());
        assert!(Subject::parse("x".repeat(MAX_SUBJECT_BYTES + 1)).is_err());
        assert!(Description::parse("").is_ok());
    }

    #[test]
    fn buyer_identifiers_have_the_providers_shapes() {
        assert!(OpenId::parse("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").is_ok());
        for bad in ["", "o pen", "o<x>", &"o".repeat(129)] {
            assert_eq!(OpenId::parse(bad).unwrap_err().field(), "openid", "{bad:?}");
        }
        assert!(BuyerId::parse("2088000000000099").is_ok());
        for bad in [
            "",
            "2088",
            "1088000000000099",
            "208800000000009x",
            "20880000000000999",
        ] {
            assert_eq!(
                BuyerId::parse(bad).unwrap_err().field(),
                "buyer_id",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn return_urls_are_absolute_http_or_https() {
        for ok in [
            "https://shop.example/paid?order=1",
            "http://127.0.0.1:8080/back",
            "https://商店.example/",
        ] {
            assert!(ReturnUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "ftp://shop.example/",
            "//shop.example/",
            "https://",
            "https:///path",
            "https://user@evil.example/",
            "https://shop.example/a b",
            "https://shop.example/\n",
            &format!("https://shop.example/{}", "x".repeat(MAX_RETURN_URL_BYTES)),
        ] {
            assert_eq!(
                ReturnUrl::parse(bad).unwrap_err().field(),
                "return_url",
                "{bad:?}"
            );
        }
    }
}
